//! Choosing the conv schedule on the device (crate::tune): every candidate
//! is checked against the CPU reference before it is timed, the fastest
//! correct one is chosen, and a schedule set on a shared device is what new
//! networks use. Both lanes.

mod common;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

use featvis::tune;
use featvis::ConvConfig;

fn now() -> f64 {
    #[cfg(target_arch = "wasm32")]
    {
        js_sys::Date::now()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::sync::OnceLock;
        static START: OnceLock<std::time::Instant> = OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed().as_secs_f64() * 1e3
    }
}

gpu_test! {
    async fn tuning_checks_every_candidate_and_picks_the_fastest_correct_one() {
        let g = common::gpu().await;
        let before = g.conv_config();
        let mut heard = Vec::new();
        let t = tune::tune(g, &now, &mut |c| heard.push(c.schedule.clone())).await.unwrap();
        common::log(&format!("tuning on {}: {}", t.adapter, t.to_json()));
        assert_eq!(g.conv_config(), before, "tune() itself leaves the device's schedule alone");
        let names: Vec<String> = t.candidates.iter().map(|c| c.schedule.clone()).collect();
        assert_eq!(heard, names, "progress heard every candidate in order");
        assert!(t.candidates.len() >= 6, "{names:?}");
        assert!(t.candidates.iter().any(|c| matches!(c.config, ConvConfig::Unrolled(_))), "generated schedules are tried");
        for c in &t.candidates {
            if matches!(c.config, ConvConfig::Baked(_)) {
                // Checked on a 3-channel layer, timed only per layer shape (below).
                assert!(c.correct && c.error.is_none() && c.gflops == 0.0, "{c:?}");
                assert_ne!(t.chosen_config, c.config);
            } else if c.error.is_none() {
                assert_eq!(c.correct, c.max_rel_error <= tune::TOLERANCE, "{c:?}");
                assert_eq!(c.gflops > 0.0, c.correct, "only correct schedules are timed: {c:?}");
            }
        }
        let best = t.candidates.iter().filter(|c| c.correct && c.error.is_none()).max_by(|a, b| a.gflops.total_cmp(&b.gflops)).expect("a correct schedule");
        assert_eq!(t.chosen_config, best.config);
        assert_eq!(ConvConfig::parse(&t.chosen_spec), Some(t.chosen_config), "chosen_spec reads back");
        // The check itself can fail: a schedule is compared, not trusted.
        assert!(tune::check(g, t.chosen_config).await.unwrap() <= tune::TOLERANCE);
        let v: serde_json::Value = serde_json::from_str(&t.to_json()).unwrap();
        assert_eq!(v["candidates"].as_array().map(Vec::len), Some(t.candidates.len()));

        // Per layer shape: the weights written into the kernels are timed on
        // a layer of 3 input channels (second, after the schedule every
        // shape times), never on one of 64.
        let first = featvis::ConvShape { height: 8, width: 8, cin: 3, cout: 64 };
        let second = featvis::ConvShape { height: 8, width: 8, cin: 64, cout: 64 };
        let choices = tune::tune_shapes(g, &t.correct_fastest_first(), &[first, second], 1, 1.0, &now, &mut |_, _, _| {}).await.unwrap();
        assert_eq!(choices.len(), 2);
        assert_eq!(choices[0].timed.get(1).map(|(spec, _)| spec.clone()), Some(ConvConfig::CPU_BAKED.spec()), "{:?}", choices[0]);
        assert!(choices[1].timed.iter().all(|(spec, _)| !spec.starts_with("baked")), "{:?}", choices[1]);

        // A schedule set on the shared device is what new networks use (in
        // this test, not another: the tests of one binary share the device).
        let other = if before == ConvConfig::LLVMPIPE { ConvConfig::SWIFTSHADER } else { ConvConfig::LLVMPIPE };
        g.set_conv_config(other);
        assert_eq!(g.conv_config(), other);
        g.set_conv_config(before);
        assert_eq!(g.conv_config(), before);
        for c in [ConvConfig::LLVMPIPE, ConvConfig::SWIFTSHADER, ConvConfig::TILED, ConvConfig::LLVMPIPE_SUBGROUPS, ConvConfig::SWIFTSHADER_UNROLLED] {
            assert_eq!(ConvConfig::parse(&c.spec()), Some(c), "{}", c.spec());
        }
    }
}

gpu_test! {
    async fn a_schedule_chosen_for_a_layer_shape_is_what_that_layer_uses() {
        use featvis::model::{Network, Vgg16, Vgg16Weights};
        use featvis::ConvShape;
        let g = common::gpu().await;
        let model = Vgg16::upload(g, &Vgg16Weights::random(3, None)).unwrap();
        // 12 px: conv2_x run at 6×6; conv2_1 is 64 → 128.
        let shape = ConvShape { height: 6, width: 6, cin: 64, cout: 128 };
        assert_eq!(featvis::tune::vgg_shapes(12)[2], shape);
        let global = g.conv_config();
        // Layers at least 16 and 5–15 wide, not tuned: without subgroups
        // (SwiftShader) rows of 16 pixels and 2×8 tiles, else the default.
        let (wide, mid) = match global {
            ConvConfig::Unrolled(u) if global == ConvConfig::SWIFTSHADER_UNROLLED => {
                (ConvConfig::Unrolled(featvis::ops::conv_gen::Unrolled { px: 16, ..u }), ConvConfig::SWIFTSHADER_MID)
            }
            c => (c, c),
        };
        let other = if global == ConvConfig::SWIFTSHADER_UNROLLED { ConvConfig::LLVMPIPE } else { ConvConfig::SWIFTSHADER_UNROLLED };
        g.set_conv_choice(shape, other);
        let net = Network::new(g, &model, 2, 12, 12, "conv2_2").await.unwrap();
        // The choices are the device's: leave it as it was for the other tests of this binary.
        g.set_conv_choice(shape, global);
        assert_eq!(net.schedule("conv2_1"), Some(other));
        // conv1_2 (12 px wide) and conv2_2 (6 px wide), not tuned: the
        // default for layers 5–15 wide; conv1_1 (3 input channels) on the
        // CPU adapters: its weights written into its kernels.
        for layer in ["conv1_2", "conv2_2"] {
            assert_eq!(net.schedule(layer), Some(mid), "{layer}");
        }
        let cpu = [ConvConfig::SWIFTSHADER_UNROLLED, ConvConfig::LLVMPIPE_SUBGROUPS, ConvConfig::LLVMPIPE].contains(&global);
        assert_eq!(net.schedule("conv1_1"), Some(if cpu { ConvConfig::CPU_BAKED } else { mid }));
        // Whatever schedule is set for the device (on the page, say).
        let first = ConvShape { height: 64, width: 64, cin: 3, cout: 64 };
        g.set_conv_config(ConvConfig::Register { px: 4, co4: 8, wg: 8 });
        let set = g.conv_config_for(first);
        g.set_conv_config(global);
        assert_eq!(set, if cpu { ConvConfig::CPU_BAKED } else { ConvConfig::Register { px: 4, co4: 8, wg: 8 } });
        assert_eq!(net.schedules.len(), 4);
        // A layer at most 4 wide, not tuned: the default with 4-pixel rows.
        let narrow = match global {
            ConvConfig::Unrolled(u) if u.px > 4 => featvis::gpu::narrow_rows(u),
            c => c,
        };
        assert_eq!(g.conv_config_for(ConvShape { height: 3, width: 3, cin: 512, cout: 512 }), narrow);
        assert_eq!(g.conv_config_for(ConvShape { height: 16, width: 16, cin: 64, cout: 64 }), wide);
        assert_eq!(g.conv_config_for(ConvShape { height: 8, width: 8, cin: 256, cout: 512 }), mid);
        // Another row tile (picked on the page, say) keeps its rows on those layers.
        let picked = featvis::ops::conv_gen::Unrolled { px: 8, co4: 2, wg: 4, sg: 0 };
        for width in [8, 16] {
            assert_eq!(featvis::gpu::rows_for_width(picked, width), ConvConfig::Unrolled(picked), "{width}");
        }
    }
}

gpu_test! {
    /// The GPU's own clock (timestamp queries), which the tuner uses where
    /// the device has it: positive, never longer than the wall-clock time of
    /// the same call (submit, work, wait and readback), and four times the
    /// work reads clearly longer than once. Without timestamp queries the
    /// call says so (None) and the tuner names the wall clock.
    async fn the_gpu_clock_times_work_where_the_device_has_one() {
        use featvis::ops::{conv, Shape};
        let g = common::gpu().await;
        let s = Shape::new(1, 32, 32, 64);
        let mut rng = featvis::rng::Rng::new(3);
        let w = conv::ConvWeights::new(g, "clock", 64, 64, &rng.normal_vec(9 * 64 * 64, 0.05), &[0.0; 64]).unwrap();
        let x = g.tensor_from("clock x", &rng.normal_vec(s.padded_len(), 1.0)).unwrap();
        let y = g.tensor("clock y", s.padded_len()).unwrap();
        let d = conv::forward(g, g.conv_config(), &w, s, &x, &y, true).await.unwrap();
        if !g.has_timestamps() {
            assert_eq!(g.time_on_device("clock", &[&d]).await.unwrap(), None);
            assert!(tune::clock(g).starts_with("wall clock"), "{}", tune::clock(g));
            common::log("no timestamp queries on this device: the tuner uses the wall clock");
            return;
        }
        assert!(tune::clock(g).starts_with("GPU timestamp"), "{}", tune::clock(g));
        g.run("clock warm-up", &[&d]).await.unwrap();
        let (mut once, mut four) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..3 {
            let t0 = now();
            let t = g.time_on_device("clock", &[&d]).await.unwrap().expect("timestamps");
            let wall = now() - t0;
            assert!(t > 0.0 && t <= wall + 0.5, "GPU clock {t} ms, wall clock {wall} ms");
            once = once.min(t);
            four = four.min(g.time_on_device("clock", &[&d, &d, &d, &d]).await.unwrap().expect("timestamps"));
        }
        common::log(&format!("conv 32x32 64→64 on the GPU clock: {once:.3} ms once, {four:.3} ms four times"));
        assert!(four > 1.5 * once, "four passes {four} ms against one {once} ms");
    }
}
