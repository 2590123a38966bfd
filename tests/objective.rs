//! The objective's kernels against the CPU reference (Lucid's formulas):
//! per-layer terms (channel, neuron, deepdream, direction; before and after
//! the ReLU; whole batch or one image) in all seed phases, diversity, the
//! image regularizers and the redirected ReLU. Odd sizes, channel counts
//! that are not multiples of 4, batch 3, poisoned or pre-filled outputs.

mod common;

use featvis::objective::{ImageReg, LayerPlan, ObjSpec, Plan, ALL_IMAGES, KIND_CHANNEL, KIND_DEEPDREAM, KIND_DIRECTION, KIND_NEURON};
use featvis::ops::objective::{self as obj, Diversity, Phase, Specs};
use featvis::ops::{pad_channels, unpad_channels, Shape};
use featvis::reference as r;
use featvis::rng::Rng;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

fn specs_for(s: Shape) -> (Vec<ObjSpec>, Vec<f32>, Vec<f32>) {
    let c = s.channels as u32;
    let mut rng = Rng::new(77);
    let vectors = rng.normal_vec(2 * s.channels, 1.0);
    let sp =
        |kind, batch, channel, post: bool, scale| ObjSpec { kind, batch, channel, post_relu: u32::from(post), scale, ..Default::default() };
    let specs = vec![
        sp(KIND_CHANNEL, ALL_IMAGES, c - 1, true, 0.3),
        sp(KIND_CHANNEL, 1, 2 % c, false, -1.5),
        ObjSpec { x: (s.width / 2) as u32, y: (s.height - 1) as u32, ..sp(KIND_NEURON, 2, 3 % c, true, 2.0) },
        ObjSpec { x: 0, y: 0, ..sp(KIND_NEURON, ALL_IMAGES, 1 % c, false, 0.7) },
        sp(KIND_DEEPDREAM, ALL_IMAGES, 0, true, 0.01),
        sp(KIND_DEEPDREAM, 0, 0, false, -0.02),
        ObjSpec { vec_offset: 0, ..sp(KIND_DIRECTION, ALL_IMAGES, 0, true, 0.1) },
        ObjSpec { vec_offset: c, ..sp(KIND_DIRECTION, 1, 0, false, 0.2) },
    ];
    let per_image = vec![3.0, 1.0, 1.0, 1.0, 3.0, 1.0, 3.0, 1.0];
    (specs, vectors, per_image)
}

fn layer_plan(s: Shape, specs: Vec<ObjSpec>, vectors: Vec<f32>, per_image: Vec<f32>, diversity: Option<(f32, bool)>) -> Plan {
    Plan {
        batch: s.batch,
        layers: vec![LayerPlan { name: "test".into(), node: 0, shape: s, specs, vectors, per_image, diversity }],
        image: vec![ImageReg::default(); s.batch],
    }
}

gpu_test! {
    async fn objective_terms_match_reference_in_every_phase() {
        let g = common::gpu().await;
        for (case, &(h, w, c)) in [(7usize, 9usize, 70usize), (13, 17, 5), (1, 1, 12)].iter().enumerate() {
            let s = Shape::new(3, h, w, c);
            let mut rng = Rng::new(500 + case as u64);
            let z = rng.normal_vec(s.pixels() * c, 1.0);
            let (specs, vectors, per_image) = specs_for(s);
            let plan = layer_plan(s, specs.clone(), vectors.clone(), per_image, None);
            let want = r::plan_objective(&plan, &[(s, z.clone())]);
            let st = Specs::new(g, "test", specs.len(), vectors.len()).unwrap();
            st.write(g, &specs, &vectors).unwrap();
            let zt = g.tensor_from("z", &pad_channels(&z, s)).unwrap();
            let prior = rng.normal_vec(z.len(), 1.0);
            let mask = |v: &[f32]| r::relu_backward(v, &z);
            let add = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x + y).collect::<Vec<f32>>();
            let seed = &want.seeds[0];
            // (phase, accumulate, expected)
            let cases = [
                (Phase::All, false, add(&mask(&seed.post), &seed.pre)),
                (Phase::PostUnmasked, false, seed.post.clone()),
                (Phase::Pre, true, add(&prior, &seed.pre)),
                (Phase::All, true, add(&prior, &add(&mask(&seed.post), &seed.pre))),
            ];
            for (phase, accumulate, expect) in cases {
                let out = if accumulate {
                    g.tensor_from("seed", &pad_channels(&prior, s)).unwrap()
                } else {
                    g.tensor_filled("seed", s.padded_len(), f32::NAN).unwrap()
                };
                let d = obj::seed(g, s, &st, &zt, &out, phase, accumulate).await.unwrap();
                g.run("objective seed", &[&d]).await.unwrap();
                let got = g.read(&out).await.unwrap();
                common::assert_close(&format!("seed {s} {phase:?} accumulate={accumulate}"), &unpad_channels(&got, s), &expect, 1e-5);
                if !accumulate {
                    // The padding lanes are written too (zeros): the next kernel reads them.
                    assert!(got.iter().all(|v| v.is_finite()), "{s} {phase:?}: padding left unwritten");
                }
            }
            let offset = 2;
            let values = g.tensor_filled("values", (offset + specs.len() * 3) * 4, f32::NAN).unwrap();
            let d = obj::value(g, s, &st, &zt, &values, offset).await.unwrap();
            g.run("objective values", &[&d]).await.unwrap();
            let raw = g.read(&values).await.unwrap();
            let layout = featvis::model::ValueLayout { layers: vec![(offset, plan.layers[0].per_image.clone())], diversity: vec![], image: usize::MAX / 8, slots: 0 };
            let got = layout.decode(3, &raw);
            let rel = (got.total - want.total).abs() / (want.total.abs() + 1e-3);
            assert!(rel < 1e-4, "{s}: total {} vs reference {}", got.total, want.total);
            let gi: Vec<f32> = got.per_image.iter().map(|v| *v as f32).collect();
            let wi: Vec<f32> = want.per_image.iter().map(|v| *v as f32).collect();
            common::assert_close(&format!("per-image values {s}"), &gi, &wi, 1e-4);
        }
    }
}

gpu_test! {
    async fn diversity_matches_reference() {
        let g = common::gpu().await;
        for (case, &(b, h, w, c, post)) in [(3usize, 5usize, 7usize, 70usize, true), (2, 3, 3, 9, false), (1, 4, 4, 8, true)].iter().enumerate() {
            let s = Shape::new(b, h, w, c);
            let mut rng = Rng::new(900 + case as u64);
            let z = rng.normal_vec(s.pixels() * c, 1.0);
            let weight = -100.0;
            let plan = layer_plan(s, vec![], vec![], vec![], Some((weight, post)));
            let want = r::plan_objective(&plan, &[(s, z.clone())]);
            let zt = g.tensor_from("z", &pad_channels(&z, s)).unwrap();
            let prior = rng.normal_vec(z.len(), 1.0);
            let grad = g.tensor_from("gradient", &pad_channels(&prior, s)).unwrap();
            let (value_offset, coef) = (1, 4 * (1 + b));
            let values = g.tensor_filled("values", coef + Diversity::coef_len(b), f32::NAN).unwrap();
            let d = Diversity::new(g, s, weight, post, &zt, &grad, &values, value_offset, coef).await.unwrap();
            let masked = post;
            let ds: Vec<_> = d.value.iter().chain(if masked { d.grad.iter() } else { d.grad_unmasked.iter() }).collect();
            g.run("diversity", &ds).await.unwrap();
            let raw = g.read(&values).await.unwrap();
            let shares: Vec<f32> = (0..b).map(|i| raw[4 * (value_offset + i)]).collect();
            let want_shares: Vec<f32> = want.per_image.iter().map(|v| *v as f32).collect();
            common::assert_close(&format!("diversity shares {s}"), &shares, &want_shares, 1e-4);
            let seed = &want.seeds[0];
            let expect: Vec<f32> = if post {
                let m = r::relu_backward(&seed.post, &z);
                prior.iter().zip(&m).map(|(a, b)| a + b).collect()
            } else {
                prior.iter().zip(&seed.pre).map(|(a, b)| a + b).collect()
            };
            let got = unpad_channels(&g.read(&grad).await.unwrap(), s);
            common::assert_close(&format!("diversity gradient {s} post={post}"), &got, &expect, 1e-4);
            if b > 1 {
                assert!(want.total.abs() > 1e-3, "the reference diversity is ~0: the case proves nothing");
            }
        }
    }
}

gpu_test! {
    async fn image_regularizers_match_reference() {
        let g = common::gpu().await;
        let (b, h, w) = (3, 7, 9);
        let s = Shape::new(b, h, w, 3);
        let mut rng = Rng::new(31);
        let img = rng.uniform_vec(s.pixels() * 3, 0.0, 1.0);
        let regs = [
            ImageReg { l1: -0.5, l1_constant: 0.5, tv: 0.0, blur: 0.0 },
            ImageReg { l1: 0.0, l1_constant: 0.0, tv: -0.25, blur: 2.0 },
            ImageReg { l1: 1.0, l1_constant: 0.0, tv: 1.0, blur: -1.0 },
        ];
        let it = g.tensor_from("image", &pad_channels(&img, s)).unwrap();
        let rt = g.tensor_from("regs", bytemuck::cast_slice(&regs)).unwrap();
        let prior = rng.normal_vec(img.len(), 1.0);
        let d = g.tensor_from("gradient", &pad_channels(&prior, s)).unwrap();
        let values = g.tensor_filled("values", (2 + b) * 4, f32::NAN).unwrap();
        let d1 = obj::regularize_grad(g, s, &rt, &it, &d).await.unwrap();
        let d2 = obj::regularize_value(g, s, &rt, &it, &values, 2).await.unwrap();
        g.run("regularizers", &[&d1, &d2]).await.unwrap();
        let got_d = unpad_channels(&g.read(&d).await.unwrap(), s);
        let raw = g.read(&values).await.unwrap();
        let n = h * w * 3;
        let mut want_d = prior.clone();
        let mut want_v = Vec::new();
        for (i, reg) in regs.iter().enumerate() {
            let (v, grad) = r::image_regularizers(&img[i * n..(i + 1) * n], h, w, reg);
            want_v.push(v as f32);
            want_d[i * n..(i + 1) * n].iter_mut().zip(&grad).for_each(|(a, g)| *a += g);
        }
        common::assert_close("regularizer gradient", &got_d, &want_d, 1e-5);
        let got_v: Vec<f32> = (0..b).map(|i| raw[4 * (2 + i)]).collect();
        common::assert_close("regularizer values", &got_v, &want_v, 1e-5);
        // The padding lane of the gradient stays as it was (zero).
        assert!(g.read(&d).await.unwrap().chunks(4).all(|px| px[3] == 0.0));
    }
}

gpu_test! {
    async fn redirected_relu_matches_reference() {
        let g = common::gpu().await;
        let s = Shape::new(3, 5, 7, 6);
        let mut rng = Rng::new(41);
        let mut z = rng.normal_vec(s.pixels() * 6, 1.0);
        let gr = rng.normal_vec(z.len(), 1.0);
        // Image 1: every input negative, so its plain ReLU gradient is all zero.
        let per = 5 * 7 * 6;
        z[per..2 * per].iter_mut().for_each(|v| *v = -v.abs() - 0.1);
        let zt = g.tensor_from("z", &pad_channels(&z, s)).unwrap();
        let gt = g.tensor_from("g", &pad_channels(&gr, s)).unwrap();
        let flags = g.tensor_filled("flags", 8 + 3, 1.0).unwrap();
        let clear = obj::relu_flags_clear(g, &flags, 11).await.unwrap();
        let [f, a] = obj::relu_redirect(g, s, &zt, &flags, 8, &gt).await.unwrap();
        g.run("redirect", &[&clear, &f, &a]).await.unwrap();
        let want = r::relu_redirect(&gr, &z, 3);
        let got = unpad_channels(&g.read(&gt).await.unwrap(), s);
        common::assert_close("redirected relu", &got, &want, 0.0);
        // Image 1 let through the gradients that push z up, image 0 the plain ReLU gradient.
        assert!(want[per..2 * per].iter().any(|v| *v != 0.0));
        assert_eq!(want[..per], r::relu_backward(&gr[..per], &z[..per])[..]);
    }
}
