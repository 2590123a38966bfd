//! VGG16 with its classifier head (fc6–fc8) on the GPU against the CPU
//! reference: a 32×32 input reaches fc6 through torchvision's adaptive
//! average pool (1×1 → 7×7), fc6's 102 M weights are split over several
//! storage bindings, and a class-logit objective's gradient flows back to the
//! image. Native only: the head is 470 MB of weights.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use featvis::model::{resolve, Network, Vgg16, Vgg16Weights};
use featvis::ops::objective::Target;
use featvis::reference as r;
use featvis::rng::Rng;

gpu_test! {
    async fn vgg16_with_head_logit_gradient_matches_reference() {
        let g = common::gpu().await;
        let classes = 10;
        let weights = Vgg16Weights::random(11, Some(classes));
        let model = Vgg16::upload(g, &weights).unwrap();
        assert!(model.fcs[0].chunk_count() > 1, "fc6 should need several bindings on this device");
        let (b, h, w) = (2, 32, 32);
        let net = Network::new(g, &model, b, h, w, "fc8").await.unwrap();
        let mut rng = Rng::new(12);
        let images = rng.normal_vec(b * h * w * 3, 50.0);
        net.set_input(g, &images).unwrap();
        let targets = [(Target::Channel(3), 1.0f32), (Target::Channel(7), 1.0)];
        net.set_objectives(g, &targets).unwrap();
        g.write(&net.grad_input, &vec![f32::NAN; net.grad_input.len]).unwrap();
        g.run("vgg16 head step", &net.step_dispatches()).await.unwrap();

        let t = resolve("fc8", true).unwrap();
        assert!(!t.post_relu, "fc8 is the logits");
        let acts = r::vgg16_forward(&weights, &images, b, h, w, t.node);
        for (a, (s, want)) in net.acts.iter().zip(acts.iter()) {
            assert_eq!(a.shape, *s, "{}", a.name);
            let got = net.read_activation(g, &a.name).await.unwrap();
            common::assert_close(&format!("forward {}", a.name), &got, want, 1e-4);
        }
        let (ts, tz) = acts.last().unwrap();
        let mut seed = vec![0.0; tz.len()];
        for (i, (tg, wt)) in targets.iter().enumerate() {
            r::objective_seed(tz, *ts, i, tg.channel(), None, false, *wt, &mut seed);
        }
        let want = r::vgg16_backward(&weights, net.input_shape, &acts, &seed);
        assert!(want.iter().any(|v| *v != 0.0));
        let got = net.read_grad_input(g).await.unwrap();
        common::assert_close("gradient of the logits to the input", &got, &want, 1e-3);
    }
}
