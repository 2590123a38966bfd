//! The whole VGG16 trunk on the GPU against the CPU reference: forward to
//! conv5_3 and backward to the input at 32×32, batch 2, random He-scaled
//! weights, a different objective per image.

mod common;

use featvis::model::{resolve, Network, Vgg16, Vgg16Weights};
use featvis::ops::objective::Target;
use featvis::reference as r;
use featvis::rng::Rng;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

async fn check(target: &str, size: usize, targets: [(Target, f32); 2]) {
    let g = common::gpu().await;
    let weights = Vgg16Weights::random(7, None);
    let model = Vgg16::upload(g, &weights).unwrap();
    let (b, h, w) = (2, size, size);
    let net = Network::new(g, &model, b, h, w, target).await.unwrap();
    let mut rng = Rng::new(8);
    let images = rng.normal_vec(b * h * w * 3, 50.0);
    net.set_input(g, &images).unwrap();
    net.set_objectives(g, &targets).unwrap();
    // Poison the output gradient: every value must be written by the step.
    g.write(&net.grad_input, &vec![f32::NAN; net.grad_input.len]).unwrap();
    let ds = net.step_dispatches();
    g.run("vgg16 step", &ds).await.unwrap();

    let t = resolve(target, false).unwrap();
    let acts = r::vgg16_forward(&weights, &images, b, h, w, t.node);
    for (a, (s, want)) in net.acts.iter().zip(acts.iter()) {
        assert_eq!(a.shape, *s, "{}: shape", a.name);
        let got = net.read_activation(g, &a.name).await.unwrap();
        common::assert_close(&format!("forward {}", a.name), &got, want, 1e-4);
    }
    let (ts, tz) = acts.last().unwrap();
    let mut seed = vec![0.0; tz.len()];
    let mut want_vals = Vec::new();
    for (i, (tg, wt)) in targets.iter().enumerate() {
        let neuron = match *tg {
            Target::Neuron { x, y, .. } => Some((x, y)),
            Target::Channel(_) => None,
        };
        r::objective_seed(tz, *ts, i, tg.channel(), neuron, t.post_relu, *wt, &mut seed);
        want_vals.push((r::objective_value(tz, *ts, i, tg.channel(), neuron, t.post_relu) * *wt as f64) as f32);
    }
    common::assert_close("objective values", &net.read_values(g).await.unwrap(), &want_vals, 1e-4);
    let want = r::vgg16_backward(&weights, net.input_shape, &acts, &seed);
    assert!(want.iter().any(|v| *v != 0.0), "reference gradient is all zero: the test would prove nothing");
    let got = net.read_grad_input(g).await.unwrap();
    common::assert_close(&format!("gradient to the input from {target}"), &got, &want, 1e-3);
}

gpu_test! {
    async fn vgg16_forward_backward_conv5_3_matches_reference() {
        check("conv5_3", 32, [(Target::Channel(5), 1.0), (Target::Neuron { channel: 300, x: 1, y: 0 }, 1.0)]).await;
    }
}

gpu_test! {
    async fn vgg16_forward_backward_pre_relu_odd_size() {
        check("conv3_2_pre_relu", 21, [(Target::Channel(17), 1.0), (Target::Channel(200), -2.0)]).await;
    }
}

gpu_test! {
    async fn objective_at_several_layers_plain_and_redirected_relu() {
        use featvis::objective::{plan, Objective};
        let g = common::gpu().await;
        let weights = Vgg16Weights::random(9, None);
        let model = Vgg16::upload(g, &weights).unwrap();
        let (b, h, w) = (2, 19, 21);
        let text = "conv1_2:3 + 2*conv1_2:5@3,4[1] + 0.5*conv2_1_pre_relu:7 + 0.01*deepdream(pool1) \
                    + direction(conv2_2, 3=1, 9=-2) - 10*diversity(conv2_1) + conv2_2_pre_relu:1@";
        let pl = plan(&Objective::parse(text).unwrap(), b, h, w, false, 0).unwrap();
        let net = Network::with_plan(g, &model, None, h, w, pl.clone()).await.unwrap();
        let mut rng = Rng::new(8);
        let images = rng.normal_vec(b * h * w * 3, 50.0);
        net.set_input(g, &images).unwrap();
        let acts = r::vgg16_forward(&weights, &images, b, h, w, pl.deepest().unwrap());
        let want = r::plan_objective(&pl, &acts);
        for redirect in [false, true] {
            g.write(&net.grad_input, &vec![f32::NAN; net.grad_input.len]).unwrap();
            g.run("vgg16 step", &net.step_dispatches_with(redirect)).await.unwrap();
            let got = net.read_objective(g).await.unwrap();
            assert!((got.total - want.total).abs() <= 1e-4 * (want.total.abs() + 1.0), "total {} vs {}", got.total, want.total);
            let gi: Vec<f32> = got.per_image.iter().map(|v| *v as f32).collect();
            let wi: Vec<f32> = want.per_image.iter().map(|v| *v as f32).collect();
            common::assert_close("per-image values", &gi, &wi, 1e-4);
            let want_grad = r::vgg16_backward_seeds(&weights, net.input_shape, &acts, &want.seeds, redirect);
            assert!(want_grad.iter().any(|v| *v != 0.0));
            let got_grad = net.read_grad_input(g).await.unwrap();
            common::assert_close(&format!("input gradient, redirect={redirect}"), &got_grad, &want_grad, 1e-3);
        }
    }
}

gpu_test! {
    async fn redirected_relu_revives_a_dead_channel() {
        use featvis::objective::{plan, Objective};
        // conv1_2 channel 3 never fires (bias -1e4): its plain gradient is
        // zero everywhere, and Lucid's redirected gradient lets through what
        // pushes it up (the layer's whole ReLU gradient is zero in each image,
        // which is when Lucid redirects).
        let g = common::gpu().await;
        let mut weights = Vgg16Weights::random(9, None);
        weights.convs[1].bias[3] = -1e4;
        let model = Vgg16::upload(g, &weights).unwrap();
        let (b, h, w) = (2, 11, 9);
        let pl = plan(&Objective::parse("conv1_2:3").unwrap(), b, h, w, false, 0).unwrap();
        let net = Network::with_plan(g, &model, None, h, w, pl.clone()).await.unwrap();
        let images = Rng::new(4).normal_vec(b * h * w * 3, 50.0);
        net.set_input(g, &images).unwrap();
        let acts = r::vgg16_forward(&weights, &images, b, h, w, pl.deepest().unwrap());
        let want = r::plan_objective(&pl, &acts);
        let mut grads = Vec::new();
        for redirect in [false, true] {
            g.run("vgg16 step", &net.step_dispatches_with(redirect)).await.unwrap();
            let want_grad = r::vgg16_backward_seeds(&weights, net.input_shape, &acts, &want.seeds, redirect);
            let got = net.read_grad_input(g).await.unwrap();
            common::assert_close(&format!("input gradient, redirect={redirect}"), &got, &want_grad, 1e-3);
            grads.push(want_grad);
        }
        let size = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let (plain, redirected) = (size(&grads[0]), size(&grads[1]));
        assert!(plain == 0.0, "a dead channel has no plain gradient, got |grad| {plain}");
        assert!(redirected > 0.0, "the redirected ReLU let no gradient through to the dead channel");
    }
}
