//! The whole optimization step (parameterization → colour → warp →
//! preprocessing → VGG16 → objective → adjoints → Adam) on random weights:
//! the objective rises, the same seed reproduces the same bits.

mod common;

use featvis::model::{Vgg16, Vgg16Weights};
use featvis::objective::Objective;
use featvis::ops::adam::Adam;
use featvis::pipeline::{Param, Pipeline, Settings};
use featvis::transform::Recipe;
use featvis::weights::Preprocessing;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

fn settings(param: Param, seed: u64) -> Settings {
    Settings {
        batch: 2,
        height: 32,
        width: 32,
        param,
        transforms: Recipe::distill(),
        adam: Adam::default(),
        preprocess: Preprocessing::keras(),
        seed,
        redirect_relu: true,
    }
}

fn channels(layer: &str, cs: &[usize]) -> Objective {
    Objective::per_image(cs.iter().map(|&c| Objective::channel(layer, c)).collect()).unwrap()
}

gpu_test! {
    async fn fifty_steps_raise_the_channel_fivefold() {
        let g = common::gpu().await;
        let model = Vgg16::upload(g, &Vgg16Weights::random(3, None)).unwrap();
        for param in [Param::Fourier { decay_power: 1.0 }, Param::Pixel] {
            let mut p = Pipeline::new(g, &model, settings(param, 1), &channels("conv2_2", &[3, 10])).await.unwrap();
            let before = p.evaluate(g).await.unwrap();
            p.run(g, 50).await.unwrap();
            let after = p.evaluate(g).await.unwrap();
            common::log(&format!("{param:?}: channel means {before:?} → {after:?}"));
            for (b, a) in before.iter().zip(&after) {
                assert!(*a > 0.0 && *a >= 5.0 * b.abs(), "{param:?}: activation {b} → {a}, wanted positive and ≥ 5× |initial|");
            }
            let img = p.read_images(g).await.unwrap();
            assert!(img.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)));
            let mean = img.iter().map(|v| *v as f64).sum::<f64>() / img.len() as f64;
            let var = img.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / img.len() as f64;
            assert!(var.sqrt() > 0.02, "{param:?}: the image stayed flat grey (std {})", var.sqrt());
        }
    }
}

gpu_test! {
    async fn same_seed_same_bits() {
        let g = common::gpu().await;
        let model = Vgg16::upload(g, &Vgg16Weights::random(3, None)).unwrap();
        let mut runs = Vec::new();
        for seed in [7, 7, 8] {
            let mut p = Pipeline::new(g, &model, settings(Param::Fourier { decay_power: 1.0 }, seed), &channels("conv1_2", &[1, 2])).await.unwrap();
            p.run(g, 5).await.unwrap();
            runs.push(p.read_images(g).await.unwrap());
        }
        assert!(runs[0].iter().zip(&runs[1]).all(|(a, b)| a.to_bits() == b.to_bits()), "same seed, different images");
        assert!(runs[0] != runs[2], "different seeds gave the same images");
    }
}
