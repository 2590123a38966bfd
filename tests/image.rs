//! Colour decorrelation + sigmoid, preprocessing and Adam against CPU
//! references; adjoint identities; finite differences for the sigmoid chain.

mod common;

use featvis::ops::adam::{self, Adam, AdamStep};
use featvis::ops::image;
use featvis::ops::{pad_channels, unpad_channels, Shape};
use featvis::reference as r;
use featvis::rng::Rng;
use featvis::weights::Preprocessing;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

const SHAPES: [(usize, usize, usize); 3] = [(1, 7, 9), (3, 13, 17), (2, 1, 65)];

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

gpu_test! {
    async fn color_sigmoid_forward_and_backward_match_reference() {
        let g = common::gpu().await;
        for (i, &(b, h, w)) in SHAPES.iter().enumerate() {
            for decorrelate in [true, false] {
                let s = Shape::new(b, h, w, 3);
                let mut rng = Rng::new(600 + i as u64);
                let t = rng.normal_vec(s.pixels() * 3, 1.5);
                let dimg = rng.normal_vec(s.pixels() * 3, 1.0);
                let tt = g.tensor_from("t", &pad_channels(&t, s)).unwrap();
                let img = g.tensor_filled("img", s.padded_len(), f32::NAN).unwrap();
                let dimg_t = g.tensor_from("dimg", &pad_channels(&dimg, s)).unwrap();
                let dt = g.tensor_filled("dt", s.padded_len(), f32::NAN).unwrap();
                let f = image::color_forward(g, s, decorrelate, &tt, &img).await.unwrap();
                let bw = image::color_backward(g, s, decorrelate, &dimg_t, &img, &dt).await.unwrap();
                g.run("color test", &[&f, &bw]).await.unwrap();
                let want_img = r::color_sigmoid_forward(&t, decorrelate);
                let got_img = unpad_channels(&g.read(&img).await.unwrap(), s);
                common::assert_close(&format!("color forward {s} decorrelate={decorrelate}"), &got_img, &want_img, 1e-5);
                let want = r::color_sigmoid_backward(&dimg, &want_img, decorrelate);
                common::assert_close(&format!("color backward {s}"), &unpad_channels(&g.read(&dt).await.unwrap(), s), &want, 1e-4);
            }
        }
    }
}

gpu_test! {
    async fn preprocess_matches_reference_and_is_its_adjoint() {
        let g = common::gpu().await;
        for (i, &(b, h, w)) in SHAPES.iter().enumerate() {
            for pre in [Preprocessing::keras(), Preprocessing::torchvision()] {
                let s = Shape::new(b, h, w, 3);
                let mut rng = Rng::new(700 + i as u64);
                let img = rng.uniform_vec(s.pixels() * 3, 0.0, 1.0);
                let dx = rng.normal_vec(s.pixels() * 3, 1.0);
                let it = g.tensor_from("img", &pad_channels(&img, s)).unwrap();
                let x = g.tensor_filled("x", s.padded_len(), f32::NAN).unwrap();
                let dxt = g.tensor_from("dx", &pad_channels(&dx, s)).unwrap();
                let di = g.tensor_filled("dimg", s.padded_len(), f32::NAN).unwrap();
                // The linear part (no mean) for the adjoint identity.
                let linear = Preprocessing { mean: [0.0; 3], ..pre };
                let xl = g.tensor_filled("x linear", s.padded_len(), f32::NAN).unwrap();
                let ds = [
                    image::preprocess_forward(g, s, &pre, &it, &x).await.unwrap(),
                    image::preprocess_forward(g, s, &linear, &it, &xl).await.unwrap(),
                    image::preprocess_backward(g, s, &pre, &dxt, &di).await.unwrap(),
                ];
                g.run("preprocess test", &ds.iter().collect::<Vec<_>>()).await.unwrap();
                let got_x = unpad_channels(&g.read(&x).await.unwrap(), s);
                common::assert_close(&format!("preprocess forward {s} bgr={}", pre.channel_order_bgr), &got_x, &r::preprocess_forward(&img, &pre), 1e-5);
                let got_di = unpad_channels(&g.read(&di).await.unwrap(), s);
                common::assert_close("preprocess backward", &got_di, &r::preprocess_backward(&dx, &pre), 1e-5);
                let got_xl = unpad_channels(&g.read(&xl).await.unwrap(), s);
                let (lhs, rhs) = (dot(&got_xl, &dx), dot(&img, &got_di));
                assert!((lhs - rhs).abs() <= 1e-5 * lhs.abs().max(1.0), "<Px, y> = {lhs} but <x, Pᵀy> = {rhs}");
            }
        }
    }
}

gpu_test! {
    async fn adam_three_steps_match_tensorflow_formula() {
        let g = common::gpu().await;
        let n = 4 * 37;
        let mut rng = Rng::new(800);
        let p0 = rng.normal_vec(n, 0.01);
        let grads: Vec<Vec<f32>> = (0..3).map(|_| rng.normal_vec(n, 1.0)).collect();
        let param = g.tensor_from("param", &p0).unwrap();
        let grad = g.tensor("grad", n).unwrap();
        let m = g.tensor("m", n).unwrap();
        let v = g.tensor("v", n).unwrap();
        let opt = Adam::default();
        let step = AdamStep::new(g, opt, &grad, &param, &m, &v).await.unwrap();
        let mut pr: Vec<f64> = p0.iter().map(|x| *x as f64).collect();
        let (mut mr, mut vr) = (vec![0.0; n], vec![0.0; n]);
        for (t, gr) in grads.iter().enumerate() {
            g.write(&grad, gr).unwrap();
            step.set_step(g, t as u32 + 1);
            g.run("adam", &[&step.dispatch]).await.unwrap();
            adam::reference_step(&opt, t as u32 + 1, gr, &mut pr, &mut mr, &mut vr);
        }
        let want: Vec<f32> = pr.iter().map(|x| *x as f32).collect();
        common::assert_close("adam after 3 steps", &g.read(&param).await.unwrap(), &want, 1e-5);
        // Maximizing: the first step moves each parameter by lr along its gradient's sign.
        assert!((opt.lr_t(1) - 0.05 * (0.001f32).sqrt() / 0.1).abs() < 1e-6);
    }
}
