//! maxpool 2×2/2 and adaptive average pooling against the CPU reference.

mod common;

use featvis::ops::{pad_channels, pool, unpad_channels, Shape};
use featvis::reference as r;
use featvis::rng::Rng;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

const CASES: [(usize, usize, usize, usize); 4] = [(1, 7, 9, 3), (3, 13, 17, 5), (2, 30, 30, 64), (3, 2, 5, 70)];

gpu_test! {
    async fn maxpool_forward_matches_reference() {
        let g = common::gpu().await;
        for (i, &(b, h, w, c)) in CASES.iter().enumerate() {
            let mut rng = Rng::new(100 + i as u64);
            let s = Shape::new(b, h, w, c);
            let x = rng.normal_vec(s.pixels() * c, 1.0);
            let so = pool::maxpool_shape(s);
            let xt = g.tensor_from("x", &pad_channels(&x, s)).unwrap();
            let y = g.tensor_filled("y", so.padded_len(), f32::NAN).unwrap();
            let d = pool::maxpool_forward(g, "pool", s, &xt, &y).await.unwrap();
            g.run("maxpool forward test", &[&d]).await.unwrap();
            let got = unpad_channels(&g.read(&y).await.unwrap(), so);
            common::assert_close(&format!("maxpool forward {s}"), &got, &r::maxpool_forward(&x, s), 0.0);
        }
    }
}

gpu_test! {
    async fn maxpool_backward_matches_reference_with_ties() {
        let g = common::gpu().await;
        for (i, &(b, h, w, c)) in CASES.iter().enumerate() {
            let mut rng = Rng::new(200 + i as u64);
            let s = Shape::new(b, h, w, c);
            // Values from a small set so that windows have ties, negatives and zeros.
            let x: Vec<f32> = (0..s.pixels() * c).map(|_| rng.below(5) as f32 - 2.0).collect();
            let so = pool::maxpool_shape(s);
            let dy = rng.normal_vec(so.pixels() * c, 1.0);
            let xt = g.tensor_from("x", &pad_channels(&x, s)).unwrap();
            let dyt = g.tensor_from("dy", &pad_channels(&dy, so)).unwrap();
            // With the ReLU mask (the plain gradient) and without (the
            // gradient with respect to the ReLU's output, for the redirected ReLU).
            for mask in [true, false] {
                let dx = g.tensor_filled("dx", s.padded_len(), f32::NAN).unwrap();
                let d = pool::maxpool_backward(g, "pool", s, &xt, &dyt, &dx, mask).await.unwrap();
                g.run("maxpool backward test", &[&d]).await.unwrap();
                let got = unpad_channels(&g.read(&dx).await.unwrap(), s);
                let want = r::maxpool_backward(&x, s, &dy, mask);
                common::assert_close(&format!("maxpool backward {s} mask={mask}"), &got, &want, 0.0);
            }
            assert!(r::maxpool_backward(&x, s, &dy, true) != r::maxpool_backward(&x, s, &dy, false), "no window is all non-positive");
        }
    }
}

gpu_test! {
    async fn adaptive_avgpool_forward_and_backward_match_reference() {
        let g = common::gpu().await;
        // Shrinking, growing (1×1 → 7×7 as at 32 px) and non-square.
        for (i, &(b, h, w, c, oh, ow)) in [(2, 9, 13, 8, 7, 7), (3, 1, 1, 5, 7, 7), (1, 14, 3, 64, 7, 7), (2, 7, 7, 4, 7, 7)].iter().enumerate() {
            let mut rng = Rng::new(300 + i as u64);
            let s = Shape::new(b, h, w, c);
            let so = Shape::new(b, oh, ow, c);
            let x = rng.normal_vec(s.pixels() * c, 1.0);
            let dy = rng.normal_vec(so.pixels() * c, 1.0);
            let xt = g.tensor_from("x", &pad_channels(&x, s)).unwrap();
            let y = g.tensor_filled("y", so.padded_len(), f32::NAN).unwrap();
            let dyt = g.tensor_from("dy", &pad_channels(&dy, so)).unwrap();
            let dx = g.tensor_filled("dx", s.padded_len(), f32::NAN).unwrap();
            let f = pool::adaptive_avgpool_forward(g, s, oh, ow, &xt, &y).await.unwrap();
            let bw = pool::adaptive_avgpool_backward(g, s, oh, ow, &dyt, &dx).await.unwrap();
            g.run("adaptive avgpool test", &[&f, &bw]).await.unwrap();
            let got = unpad_channels(&g.read(&y).await.unwrap(), so);
            common::assert_close(&format!("avgpool forward {s}"), &got, &r::adaptive_avgpool_forward(&x, s, oh, ow), 1e-5);
            let got = unpad_channels(&g.read(&dx).await.unwrap(), s);
            common::assert_close(&format!("avgpool backward {s}"), &got, &r::adaptive_avgpool_backward(&dy, s, oh, ow), 1e-5);
        }
    }
}
