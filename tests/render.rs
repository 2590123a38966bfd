//! The render loop (crate::render): snapshots at the asked steps,
//! cancellation within one step, seeds, batch splitting, progress, bad
//! requests. Random weights and tiny images, so both lanes run it; the
//! end-to-end check with the real weights is in tests/cli.rs.

mod common;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

use featvis::model::{Vgg16, Vgg16Weights};
use featvis::objective::Objective;
use featvis::render::{self, lucid_thresholds, Control, Job, Objectives, Output};
use featvis::transform::Recipe;
use featvis::weights::Preprocessing;
use featvis::Gpu;

fn channels(layer: &str, cs: &[usize]) -> Objectives {
    Objectives::PerImage(cs.iter().map(|&c| Objective::channel(layer, c)).collect())
}

fn job(objectives: Objectives, size: usize, steps: u32) -> Job {
    let mut j = Job::new(objectives, size, steps);
    j.seed = 7;
    j
}

async fn run(g: &Gpu, model: &Vgg16, job: &Job) -> (Output, Vec<u32>) {
    let mut seen = Vec::new();
    let out = render::render(g, model, &Preprocessing::keras(), job, &mut |p| {
        seen.push(p.step);
        Control::Continue
    })
    .await
    .unwrap();
    (out, seen)
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn thresholds_follow_lucid() {
    assert_eq!(lucid_thresholds(512), vec![32, 64, 128, 256, 512]);
    assert_eq!(lucid_thresholds(100), vec![32, 64, 100]);
    assert_eq!(lucid_thresholds(10), vec![10]);
}

gpu_test! {
    async fn snapshots_arrive_at_the_asked_steps() {
        let g = common::gpu().await;
        let model = Vgg16::upload(g, &Vgg16Weights::random(3, None)).unwrap();
        let mut j = job(channels("conv1_2", &[0, 5, 9]), 17, 6);
        j.snapshots = vec![1, 4, 6];
        j.values_every = 2;
        // At 17 px the Distill transforms (pad 16, jitter 16) can show the
        // network padding only, and then an image gets no gradient.
        j.transforms = Recipe::none();
        let mut values_at = Vec::new();
        let out = render::render(g, &model, &Preprocessing::keras(), &j, &mut |p| {
            if let Some(v) = p.values {
                assert_eq!(v.len(), 3);
                values_at.push(p.step);
            }
            Control::Continue
        })
        .await
        .unwrap();
        assert_eq!(values_at, vec![2, 4, 6]);
        assert_eq!(out.snapshots.iter().map(|s| s.step).collect::<Vec<_>>(), vec![1, 4, 6]);
        for s in &out.snapshots {
            assert_eq!(s.images.len(), 3);
            for img in &s.images {
                assert_eq!(img.len(), 17 * 17 * 3);
                assert!(img.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)));
            }
        }
        // Snapshots differ from each other (the image moves), and the last
        // one is the final image.
        let moved: f32 = out.snapshots[0].images[0].iter().zip(&out.snapshots[1].images[0]).map(|(a, b)| (a - b).abs()).sum();
        assert!(moved > 0.0, "the image did not change between snapshots ({:?})", out.images.iter().map(|i| (i.initial, i.last)).collect::<Vec<_>>());
        for (s, f) in out.snapshots[2].images.iter().zip(&out.images) {
            assert!(s == &f.pixels, "the snapshot at the last step is not the final image");
        }
        assert_eq!(out.steps_done, 6);
        assert!(!out.cancelled);
        assert_eq!(out.images[1].objective, "conv1_2:5");
    }
}

gpu_test! {
    async fn cancellation_stops_within_one_step() {
        let g = common::gpu().await;
        let model = Vgg16::upload(g, &Vgg16Weights::random(3, None)).unwrap();
        let mut j = job(channels("conv1_1", &[0, 1, 2, 3]), 12, 50);
        j.max_batch = 2; // two batches: the second never starts
        j.snapshots = vec![2, 40];
        let mut calls = 0;
        let out = render::render(g, &model, &Preprocessing::keras(), &j, &mut |p| {
            calls += 1;
            assert_eq!(p.batch_index, 0);
            if p.step == 3 { Control::Cancel } else { Control::Continue }
        })
        .await
        .unwrap();
        assert_eq!(calls, 3, "no step after the cancel");
        assert!(out.cancelled);
        assert_eq!(out.steps_done, 3);
        assert_eq!(out.images.len(), 2, "only the first batch's images exist");
        assert!(out.snapshots.is_empty(), "snapshots are returned only when every image reached them");
    }
}

gpu_test! {
    async fn same_seed_same_images_other_seed_other_images() {
        let g = common::gpu().await;
        let model = Vgg16::upload(g, &Vgg16Weights::random(3, None)).unwrap();
        let j = job(channels("conv1_2", &[1, 2]), 15, 4);
        let (a, _) = run(g, &model, &j).await;
        let (b, _) = run(g, &model, &j).await;
        for (x, y) in a.images.iter().zip(&b.images) {
            assert!(x.pixels == y.pixels, "same seed, different images");
            assert_eq!(x.last.to_bits(), y.last.to_bits());
        }
        let mut k = j.clone();
        k.seed = 8;
        let (c, _) = run(g, &model, &k).await;
        assert!(a.images[0].pixels != c.images[0].pixels, "another seed, same image");
    }
}

gpu_test! {
    async fn images_split_into_batches_in_order() {
        let g = common::gpu().await;
        let model = Vgg16::upload(g, &Vgg16Weights::random(3, None)).unwrap();
        let mut j = job(channels("conv1_1", &[4, 0, 2, 7, 1]), 11, 3);
        j.max_batch = 2;
        j.snapshots = vec![2];
        let (out, seen) = run(g, &model, &j).await;
        assert_eq!((out.batch, out.batches), (2, 3));
        assert_eq!(seen, vec![1, 2, 3, 1, 2, 3, 1, 2, 3]);
        let names: Vec<&str> = out.images.iter().map(|i| i.objective.as_str()).collect();
        assert_eq!(names, ["conv1_1:4", "conv1_1:0", "conv1_1:2", "conv1_1:7", "conv1_1:1"]);
        assert_eq!(out.snapshots[0].images.len(), 5);
        // The first batch alone gives the same first two images.
        let mut first = j.clone();
        first.objectives = channels("conv1_1", &[4, 0]);
        let (alone, _) = run(g, &model, &first).await;
        assert!(alone.images[1].pixels == out.images[1].pixels, "splitting changed the first batch");
    }
}

gpu_test! {
    async fn a_batch_objective_renders_its_images_together() {
        let g = common::gpu().await;
        let model = Vgg16::upload(g, &Vgg16Weights::random(3, None)).unwrap();
        let objective = Objective::parse("conv1_2:3 - 10*diversity(conv1_2)").unwrap();
        let j = job(Objectives::Batch { objective, batch: 3 }, 13, 3);
        let (out, _) = run(g, &model, &j).await;
        assert_eq!((out.batch, out.batches, out.images.len()), (3, 1, 3));
        assert!(out.images[0].objective.contains("diversity"), "{}", out.images[0].objective);
        assert!(out.images[0].pixels != out.images[1].pixels, "the batch's images are identical");
    }
}

gpu_test! {
    async fn bad_requests_fail_before_the_gpu_work() {
        let g = common::gpu().await;
        let model = Vgg16::upload(g, &Vgg16Weights::random(3, None)).unwrap();
        let err = |j: &Job| render::check(j, None).unwrap_err().to_string();
        let e = err(&job(channels("conv9_1", &[0]), 32, 4));
        assert!(e.contains("unknown layer `conv9_1`"), "{e}");
        let e = err(&job(channels("conv2_2", &[128]), 32, 4));
        assert!(e.contains("channel 128 is out of range") && e.contains("0..127"), "{e}");
        let e = err(&job(channels("conv5_3", &[0]), 15, 4));
        assert!(e.contains("too small") && e.contains("16x16"), "{e}");
        let e = err(&job(channels("conv1_1", &[0]), 16, 0));
        assert!(e.contains("steps must be at least 1"), "{e}");
        let mut j = job(channels("conv1_1", &[0]), 16, 4);
        j.snapshots = vec![5];
        assert!(err(&j).contains("snapshot step 5"), "{}", err(&j));
        let e = err(&job(Objectives::PerImage(Vec::new()), 16, 4));
        assert!(e.contains("nothing to render"), "{e}");
        // conv5_3 at exactly 16 px is fine.
        render::check(&job(channels("conv5_3", &[0]), 16, 4), None).unwrap();
        // A batch-wide objective larger than the device allows is refused, not split.
        let fit = render::max_batch(g, &model, 64, 64);
        assert!(fit >= 1);
        let objective = Objective::parse("conv1_1:0 - diversity(conv1_1)").unwrap();
        let big = job(Objectives::Batch { objective, batch: fit + 1 }, 64, 2);
        let e = render::render(g, &model, &Preprocessing::keras(), &big, &mut |_| Control::Continue).await.unwrap_err().to_string();
        assert!(e.contains("do not fit"), "{e}");
    }
}

gpu_test! {
    async fn stepping_by_hand_matches_the_loop_and_stops_keep_the_images() {
        let g = common::gpu().await;
        let model = Vgg16::upload(g, &Vgg16Weights::random(3, None)).unwrap();
        let mut j = job(channels("conv1_2", &[0, 1, 2]), 13, 4);
        j.max_batch = 2;
        j.snapshots = vec![2];
        j.preview_every = 2;
        j.loss_every = 1;
        let (whole, _) = run(g, &model, &j).await;
        let mut r = render::Render::new(g, &model, &Preprocessing::keras(), &j).unwrap();
        assert_eq!(r.labels(), ["conv1_2:0", "conv1_2:1", "conv1_2:2"]);
        assert_eq!(r.batches(), (2, 2));
        let mut reports = Vec::new();
        while !r.is_finished() {
            reports.push(r.step(g, &model).await.unwrap());
        }
        assert_eq!(reports.len(), 8);
        for (k, s) in reports.iter().enumerate() {
            let n = s.images.len();
            assert_eq!(s.losses.as_ref().map(Vec::len), Some(n), "step {k}: one loss per image");
            assert!(s.losses.as_ref().unwrap().iter().all(|v| v.is_finite()));
            // A preview after the first step and every 2 steps, 13·13·3 floats an image.
            assert_eq!(s.preview.as_ref().map(Vec::len), (s.step == 1 || s.step % 2 == 0).then_some(n * 13 * 13 * 3), "step {k}");
            assert_eq!(s.snapshot, (s.step == 2).then_some(2));
            assert_eq!(s.batch_done, s.step == 4);
        }
        assert!(reports[7].finished && !reports[6].finished);
        let out = r.output();
        assert_eq!(out.images.len(), 3);
        for (a, b) in out.images.iter().zip(&whole.images) {
            assert!(a.pixels == b.pixels && a.last.to_bits() == b.last.to_bits(), "stepping by hand changed {}", a.objective);
        }
        assert!(r.step(g, &model).await.is_err(), "a finished render takes no more steps");

        // Stopped in its second step: the first batch's images as they are, no second batch.
        let mut r = render::Render::new(g, &model, &Preprocessing::keras(), &j).unwrap();
        r.step(g, &model).await.unwrap();
        let second = r.step(g, &model).await.unwrap();
        r.stop(g).await.unwrap();
        assert!(r.is_finished());
        let out = r.output();
        assert!(out.cancelled && out.steps_done == 2 && out.images.len() == 2);
        let preview = second.preview.unwrap();
        assert!(out.images[1].pixels[..] == preview[13 * 13 * 3..], "the stopped images are the last preview's");
    }
}

/// Run `j` stopping after `stop_at` steps in all, take the state, and resume
/// it in a new Render: the output must equal an uninterrupted render's bit
/// for bit.
async fn resumed(g: &Gpu, model: &Vgg16, j: &Job, stop_at: usize) -> Output {
    let mut r = render::Render::new(g, model, &Preprocessing::keras(), j).unwrap();
    for _ in 0..stop_at {
        r.step(g, model).await.unwrap();
    }
    let state = r.state(g).await.unwrap();
    drop(r);
    let mut r = render::Render::resume(g, model, &Preprocessing::keras(), j, &state).await.unwrap();
    while !r.is_finished() {
        r.step(g, model).await.unwrap();
    }
    r.output()
}

gpu_test! {
    async fn a_render_resumed_from_its_state_ends_on_the_same_bits() {
        let g = common::gpu().await;
        let model = Vgg16::upload(g, &Vgg16Weights::random(3, None)).unwrap();
        for param in [featvis::pipeline::Param::Fourier { decay_power: 1.0 }, featvis::pipeline::Param::Pixel] {
            let mut j = job(channels("conv1_2", &[0, 1, 2]), 11, 20);
            j.param = param;
            j.max_batch = 2; // a batch of 2, then a batch of 1
            j.snapshots = vec![5, 20];
            let (whole, _) = run(g, &model, &j).await;
            // Mid first batch with the redirected ReLU still on (step 3 < 17),
            // between batches, and in the second batch past a snapshot.
            for stop_at in [3, 20, 27] {
                let out = resumed(g, &model, &j, stop_at).await;
                assert_eq!(out.images.len(), 3);
                for (a, b) in out.images.iter().zip(&whole.images) {
                    assert!(a.pixels == b.pixels, "{param:?}, resumed after {stop_at} steps: {} differs", a.objective);
                    assert_eq!((a.initial.to_bits(), a.last.to_bits()), (b.initial.to_bits(), b.last.to_bits()));
                }
                assert_eq!(out.snapshots.len(), 2);
                for (a, b) in out.snapshots.iter().zip(&whole.snapshots) {
                    assert!(a.step == b.step && a.images == b.images, "{param:?}, resumed after {stop_at}: snapshot {} differs", a.step);
                }
            }
        }
        // A state from another job is refused, not half-used.
        let j = job(channels("conv1_2", &[0, 1]), 11, 6);
        let mut r = render::Render::new(g, &model, &Preprocessing::keras(), &j).unwrap();
        r.step(g, &model).await.unwrap();
        let state = r.state(g).await.unwrap();
        let mut other = j.clone();
        other.height = 12;
        other.width = 12;
        let e = render::Render::resume(g, &model, &Preprocessing::keras(), &other, &state).await.err().expect("refused");
        assert!(e.to_string().contains("other settings"), "{e}");
        let e = render::Render::resume(g, &model, &Preprocessing::keras(), &job(channels("conv1_2", &[0, 1, 2, 3]), 11, 6), &state).await;
        assert!(e.is_err(), "a state of 2 images resumed a 4-image batch");
    }
}
