//! Objective values and seeds against the reference, channel and neuron,
//! before and after the ReLU, batch > 1 with a different objective per image.

mod common;

use featvis::ops::objective::{self, Target};
use featvis::ops::{pad_channels, unpad_channels, Shape};
use featvis::reference as r;
use featvis::rng::Rng;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

gpu_test! {
    async fn objective_values_and_seeds_match_reference() {
        let g = common::gpu().await;
        for (case, &(h, w, c)) in [(7usize, 9usize, 70usize), (13, 17, 5), (1, 1, 12)].iter().enumerate() {
            let b = 3;
            let s = Shape::new(b, h, w, c);
            let mut rng = Rng::new(500 + case as u64);
            let z = rng.normal_vec(s.pixels() * c, 1.0);
            for post_relu in [false, true] {
                let targets = [
                    (Target::Channel(c - 1), 1.0f32),
                    (Target::Neuron { channel: 2 % c, x: w / 2, y: h / 2 }, 2.0),
                    (Target::Channel(3 % c), -0.5),
                ];
                let specs: Vec<_> = targets.iter().map(|(t, wt)| t.spec("test", s, *wt, post_relu).unwrap()).collect();
                let st = objective::specs_tensor(&g, &specs).unwrap();
                let zt = g.tensor_from("z", &pad_channels(&z, s)).unwrap();
                let seed = g.tensor_filled("seed", s.padded_len(), f32::NAN).unwrap();
                let vals = g.tensor_filled("values", b * 4, f32::NAN).unwrap();
                let d1 = objective::seed(&g, s, &st, &zt, &seed).await.unwrap();
                let d2 = objective::value(&g, s, &st, &zt, &vals).await.unwrap();
                g.run("objective test", &[&d1, &d2]).await.unwrap();
                let mut want_seed = vec![0.0; z.len()];
                let mut want_vals = Vec::new();
                for (i, (t, wt)) in targets.iter().enumerate() {
                    let neuron = match *t {
                        Target::Neuron { x, y, .. } => Some((x, y)),
                        Target::Channel(_) => None,
                    };
                    r::objective_seed(&z, s, i, t.channel(), neuron, post_relu, *wt, &mut want_seed);
                    want_vals.push((r::objective_value(&z, s, i, t.channel(), neuron, post_relu) * *wt as f64) as f32);
                }
                let got_seed = unpad_channels(&g.read(&seed).await.unwrap(), s);
                common::assert_close(&format!("seed {s} post_relu={post_relu}"), &got_seed, &want_seed, 1e-6);
                let got_vals: Vec<f32> = g.read(&vals).await.unwrap().chunks(4).map(|v| v[0]).collect();
                common::assert_close(&format!("values {s} post_relu={post_relu}"), &got_vals, &want_vals, 1e-5);
            }
        }
    }
}

gpu_test! {
    async fn objective_rejects_channel_and_position_out_of_range() {
        let s = Shape::new(1, 4, 6, 10);
        let e = Target::Channel(10).spec("conv1_1", s, 1.0, true).unwrap_err().to_string();
        assert!(e.contains("channel 10") && e.contains("conv1_1") && e.contains("0..9"), "{e}");
        let e = Target::Neuron { channel: 1, x: 6, y: 0 }.spec("conv1_1", s, 1.0, true).unwrap_err().to_string();
        assert!(e.contains("(6, 0)") && e.contains("6x4"), "{e}");
    }
}
