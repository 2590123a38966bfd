//! Fully connected forward/backward against the reference, with the weights
//! split into several binding-sized chunks (as fc6 is on every device).

mod common;

use featvis::ops::fc;
use featvis::reference as r;
use featvis::rng::Rng;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

gpu_test! {
    async fn fc_forward_and_backward_match_reference_across_chunks() {
        let g = common::gpu().await;
        // (batch, inputs, outputs, chunk limit in bytes)
        for (i, &(b, n_in, n_out, chunk)) in [(1, 12, 5, None), (3, 64, 70, Some(64 * 16 * 5)), (2, 200, 2622 / 20, Some(200 * 16 * 7))].iter().enumerate() {
            let mut rng = Rng::new(400 + i as u64);
            let x = rng.normal_vec(b * n_in, 1.0);
            let w = rng.normal_vec(n_in * n_out, 0.2);
            let bias = rng.normal_vec(n_out, 0.5);
            let dy = rng.normal_vec(b * n_out, 1.0);
            let mask = rng.normal_vec(b * n_in, 1.0);
            let layer = fc::FcWeights::new(g, "fc", n_in, n_out, &w, &bias, chunk).unwrap();
            if chunk.is_some() {
                assert!(layer.chunk_count() > 1, "the test should split the layer");
            }
            let out4 = n_out.div_ceil(4) * 4;
            let xt = g.tensor_from("x", &x).unwrap();
            let y = g.tensor_filled("y", b * out4, f32::NAN).unwrap();
            let mut dyp = vec![0.0; b * out4];
            for n in 0..b {
                dyp[n * out4..n * out4 + n_out].copy_from_slice(&dy[n * n_out..(n + 1) * n_out]);
            }
            let dyt = g.tensor_from("dy", &dyp).unwrap();
            let mt = g.tensor_from("mask", &mask).unwrap();
            let dx = g.tensor_filled("dx", b * n_in, f32::NAN).unwrap();
            let dx2 = g.tensor_filled("dx unmasked", b * n_in, f32::NAN).unwrap();
            let relu = i == 1;
            let mut ds = fc::forward(g, &layer, b, &xt, &y, relu).await.unwrap();
            ds.extend(fc::backward_input(g, &layer, b, &dyt, &dx, Some(&mt)).await.unwrap());
            ds.extend(fc::backward_input(g, &layer, b, &dyt, &dx2, None).await.unwrap());
            let refs: Vec<_> = ds.iter().collect();
            g.run("fc test", &refs).await.unwrap();
            let yg = g.read(&y).await.unwrap();
            let got: Vec<f32> = (0..b).flat_map(|n| yg[n * out4..n * out4 + n_out].to_vec()).collect();
            let xr = if relu { r::relu(&x) } else { x.clone() };
            common::assert_close("fc forward", &got, &r::fc_forward(&xr, b, n_in, &w, &bias, n_out), 1e-4);
            let want = r::fc_backward_input(&dy, b, n_in, &w, n_out);
            common::assert_close("fc backward", &g.read(&dx2).await.unwrap(), &want, 1e-4);
            common::assert_close("fc backward masked", &g.read(&dx).await.unwrap(), &r::relu_backward(&want, &mask), 1e-4);
        }
    }
}
