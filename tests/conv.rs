//! conv3x3 forward and backward-to-input against the CPU reference, for every
//! schedule, on sizes that do not divide the tiles, batch 1 and 3, outputs
//! poisoned with NaN.

mod common;

use featvis::ops::{conv, pad_channels, unpad_channels, Shape};
use featvis::reference as r;
use featvis::rng::Rng;
use featvis::ConvConfig;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// (batch, height, width, cin, cout)
/// Output channel counts cover every effective register tile: 5 → 2 vec4,
/// 64 and 70 → 16, 3 → 1, 20 → 4, 130 → 32.
const CASES: [(usize, usize, usize, usize, usize); 6] =
    [(1, 7, 9, 3, 5), (3, 13, 17, 5, 64), (1, 30, 30, 64, 70), (3, 7, 9, 70, 3), (2, 5, 33, 16, 20), (1, 9, 11, 36, 130)];

async fn check_forward(config: ConvConfig, case: (usize, usize, usize, usize, usize), relu: bool, seed: u64) {
    let g = common::gpu().await;
    let (b, h, w, cin, cout) = case;
    let mut rng = Rng::new(seed);
    let s = Shape::new(b, h, w, cin);
    let x = rng.normal_vec(s.pixels() * cin, 1.0);
    let wt = rng.normal_vec(9 * cin * cout, 0.3);
    let bias = rng.normal_vec(cout, 0.5);
    let weights = conv::ConvWeights::new(g, "test", cin, cout, &wt, &bias).unwrap();
    let xin = g.tensor_from("x", &pad_channels(&x, s)).unwrap();
    let so = Shape { channels: cout, ..s };
    let y = g.tensor_filled("y", so.padded_len(), f32::NAN).unwrap();
    let d = conv::forward(g, config, &weights, s, &xin, &y, relu).await.unwrap();
    g.run("conv forward test", &[&d]).await.unwrap();
    let got = unpad_channels(&g.read(&y).await.unwrap(), so);
    let xr = if relu { r::relu(&x) } else { x.clone() };
    let want = r::conv3x3_forward(&xr, s, &wt, &bias, cout);
    common::assert_close(&format!("conv forward {} {case:?} relu={relu}", config.name()), &got, &want, 1e-4);
}

async fn check_backward(config: ConvConfig, case: (usize, usize, usize, usize, usize), masked: bool, seed: u64) {
    let g = common::gpu().await;
    let (b, h, w, cin, cout) = case;
    let mut rng = Rng::new(seed);
    let s = Shape::new(b, h, w, cin);
    let so = Shape { channels: cout, ..s };
    let dy = rng.normal_vec(so.pixels() * cout, 1.0);
    let wt = rng.normal_vec(9 * cin * cout, 0.3);
    let bias = rng.normal_vec(cout, 0.5);
    let mask = rng.normal_vec(s.pixels() * cin, 1.0);
    let weights = conv::ConvWeights::new(g, "test", cin, cout, &wt, &bias).unwrap();
    let dyt = g.tensor_from("dy", &pad_channels(&dy, so)).unwrap();
    let mt = g.tensor_from("mask", &pad_channels(&mask, s)).unwrap();
    let dx = g.tensor_filled("dx", s.padded_len(), f32::NAN).unwrap();
    let d = conv::backward_input(g, config, &weights, s, &dyt, &dx, masked.then_some(&mt)).await.unwrap();
    g.run("conv backward test", &d.iter().collect::<Vec<_>>()).await.unwrap();
    let got = unpad_channels(&g.read(&dx).await.unwrap(), s);
    let mut want = r::conv3x3_backward_input(&dy, s, &wt, cout);
    if masked {
        want = r::relu_backward(&want, &mask);
    }
    common::assert_close(&format!("conv backward {} {case:?} mask={masked}", config.name()), &got, &want, 1e-4);
}

gpu_test! {
    async fn conv_forward_register_llvmpipe_schedule() {
        for (i, case) in CASES.iter().enumerate() {
            check_forward(ConvConfig::LLVMPIPE, *case, i % 2 == 1, i as u64).await;
        }
    }
}

gpu_test! {
    async fn conv_forward_register_swiftshader_schedule() {
        for (i, case) in CASES.iter().enumerate() {
            check_forward(ConvConfig::SWIFTSHADER, *case, i % 2 == 0, 10 + i as u64).await;
        }
    }
}

gpu_test! {
    async fn conv_forward_tiled_schedule() {
        for (i, case) in CASES.iter().enumerate() {
            check_forward(ConvConfig::TILED, *case, i % 2 == 1, 20 + i as u64).await;
        }
    }
}

gpu_test! {
    async fn conv_backward_register_llvmpipe_schedule() {
        for (i, case) in CASES.iter().enumerate() {
            check_backward(ConvConfig::LLVMPIPE, *case, i % 2 == 0, 30 + i as u64).await;
        }
    }
}

gpu_test! {
    async fn conv_backward_register_swiftshader_schedule() {
        for (i, case) in CASES.iter().enumerate() {
            check_backward(ConvConfig::SWIFTSHADER, *case, i % 2 == 1, 40 + i as u64).await;
        }
    }
}

gpu_test! {
    async fn conv_backward_tiled_schedule() {
        for (i, case) in CASES.iter().enumerate() {
            check_backward(ConvConfig::TILED, *case, i % 2 == 0, 50 + i as u64).await;
        }
    }
}

/// Generated schedules without subgroups: named accumulators, weights loaded
/// by every invocation. Tiles that do and do not divide the cases' widths
/// and channel counts, workgroups of one and of several subgroups.
// (px, co4, wg); (8, 4, 4) is SwiftShader's default, (16, 4, 4) its rows on
// layers at least 16 wide (Gpu::conv_config_for).
const UNROLLED_PLAIN: [(u32, u32, u32); 7] = [(8, 4, 4), (16, 4, 4), (4, 8, 4), (4, 2, 16), (3, 1, 8), (5, 8, 4), (4, 4, 8)];

fn unrolled(px: u32, co4: u32, wg: u32, sg: u32) -> ConvConfig {
    ConvConfig::Unrolled(featvis::ops::conv_gen::Unrolled { px, co4, wg, sg })
}

gpu_test! {
    async fn conv_forward_and_backward_unrolled_named_accumulators() {
        for (k, &(px, co4, wg)) in UNROLLED_PLAIN.iter().enumerate() {
            for (i, case) in CASES.iter().enumerate() {
                check_forward(unrolled(px, co4, wg, 0), *case, (i + k) % 2 == 1, 60 + (k * 10 + i) as u64).await;
                check_backward(unrolled(px, co4, wg, 0), *case, (i + k) % 2 == 0, 160 + (k * 10 + i) as u64).await;
            }
        }
    }
}

gpu_test! {
    /// Weights loaded once per subgroup and broadcast: every tile shape that
    /// changes how the 4·CO4 weight vec4s spread over the lanes (fewer than
    /// the lanes, exactly as many, several rounds), one and two subgroups per
    /// workgroup. Where the device has no fixed-size subgroups (WebGPU in
    /// wgpu 30), asking for them is a clear error instead.
    async fn conv_forward_and_backward_unrolled_subgroup_broadcast() {
        let g = common::gpu().await;
        let sg = g.subgroup_size;
        if sg == 0 {
            let e = match conv::ConvWeights::new(g, "test", 4, 4, &[0.0; 144], &[0.0; 4]) {
                Ok(w) => {
                    let s = Shape::new(1, 3, 3, 4);
                    let t = g.tensor("t", s.padded_len()).unwrap();
                    conv::forward(g, unrolled(8, 4, 8, 8), &w, s, &t, &t, false).await.err().expect("no subgroups: refused")
                }
                Err(e) => panic!("{e}"),
            };
            assert!(e.to_string().contains("subgroups of 8 lanes"), "{e}");
            return;
        }
        // (4, 4, sg): what layers at most 4 wide get from llvmpipe's default.
        for (k, &(px, co4, wg)) in [(8, 4, sg), (5, 1, sg), (4, 8, 2 * sg), (7, 3, sg), (4, 4, sg)].iter().enumerate() {
            for (i, case) in CASES.iter().enumerate() {
                check_forward(unrolled(px, co4, wg, sg), *case, (i + k) % 2 == 0, 260 + (k * 10 + i) as u64).await;
                check_backward(unrolled(px, co4, wg, sg), *case, (i + k) % 2 == 1, 360 + (k * 10 + i) as u64).await;
            }
        }
    }
}

gpu_test! {
    /// More workgroups than one dimension allows: the dispatch is split in two
    /// dimensions and every output is still written once.
    async fn conv_forward_many_workgroups() {
        let g = common::gpu().await;
        // One invocation per workgroup and one 4-pixel tile per row: 66,000 rows
        // give 66,000 workgroups, past the 65,535 per-dimension limit.
        assert!(g.limits.max_compute_workgroups_per_dimension < 66_000, "adapter allows {} workgroups per dimension: pick a taller image", g.limits.max_compute_workgroups_per_dimension);
        let config = ConvConfig::Register { px: 4, co4: 1, wg: 1 };
        check_forward(config, (1, 66_000, 3, 4, 4), true, 99).await;
    }
}

/// The implicit-GEMM family for GPUs (crate/ops/conv_gen.rs): every tile
/// axis at both ends of its range, K steps wider than some cases' input
/// channels (3, 5) and narrower than others' (130), tiles larger than whole
/// images and partial tiles at every edge, forward with and without ReLU,
/// backward with and without the mask. A configuration over the device's
/// workgroup limits is refused with a message that names them.
const GEMM: [(u32, u32, u32, u32, u32); 8] = [
    (64, 64, 16, 4, 4),
    (32, 32, 16, 4, 4),
    (128, 128, 8, 8, 8),
    (32, 64, 16, 4, 4),
    (64, 128, 16, 4, 8),
    (16, 16, 16, 1, 4),
    (64, 64, 4, 8, 8),
    (128, 64, 32, 8, 4),
];

gpu_test! {
    async fn conv_forward_and_backward_gemm_family() {
        let g = common::gpu().await;
        for (k, &(bm, bn, bk, tm, tn)) in GEMM.iter().enumerate() {
            let gm = featvis::ops::conv_gen::Gemm { bm, bn, bk, tm, tn };
            assert!(gm.is_valid(), "{gm:?}");
            let config = ConvConfig::Gemm(gm);
            if gm.workgroup_bytes() > g.limits.max_compute_workgroup_storage_size || gm.threads() > g.limits.max_compute_invocations_per_workgroup {
                let w = conv::ConvWeights::new(g, "test", 4, 4, &[0.0; 144], &[0.0; 4]).unwrap();
                let s = Shape::new(1, 3, 3, 4);
                let t = g.tensor("t", s.padded_len()).unwrap();
                let e = conv::forward(g, config, &w, s, &t, &t, false).await.err().expect("over the limits: refused");
                assert!(e.to_string().contains("bytes of workgroup memory"), "{e}");
                continue;
            }
            for (i, case) in CASES.iter().enumerate() {
                check_forward(config, *case, (i + k) % 2 == 0, 460 + (k * 10 + i) as u64).await;
                check_backward(config, *case, (i + k) % 2 == 1, 560 + (k * 10 + i) as u64).await;
            }
        }
    }
}

/// The 2-D tiles with lanes over channels: tiles taller and wider than some
/// cases' images (7×9, 5×33), channel tiles wider than 3 and 5 channels,
/// workgroups wider than the channel tiles (lanes past the last tile),
/// one lane, and the tiles SwiftShader's layers at most 4 wide and 5–15
/// wide are given (4×4 × 8 channels, 8 lanes; 2×8 × 8 channels, 4 lanes:
/// Gpu::conv_config_for).
const PATCH: [(u32, u32, u32, u32); 8] =
    [(4, 4, 2, 8), (2, 8, 2, 4), (2, 4, 4, 4), (3, 5, 1, 8), (3, 6, 1, 4), (1, 8, 4, 4), (4, 2, 4, 16), (2, 2, 1, 1)];

gpu_test! {
    async fn conv_forward_and_backward_patch_tiles() {
        for (k, &(th, tw, co4, wg)) in PATCH.iter().enumerate() {
            let t = featvis::ops::conv_gen::Patch { th, tw, co4, wg };
            assert!(t.is_valid(), "{t:?}");
            common::log(&format!("{} …", t.name()));
            for (i, case) in CASES.iter().enumerate() {
                check_forward(ConvConfig::Patch(t), *case, (i + k) % 2 == 1, 660 + (k * 10 + i) as u64).await;
                check_backward(ConvConfig::Patch(t), *case, (i + k) % 2 == 0, 760 + (k * 10 + i) as u64).await;
            }
        }
    }
}

/// Layers with the weights written into the kernels (conv1_1's schedule on
/// SwiftShader): 1–4 input channels, output channels that fill 1 to 16
/// vec4s and leave some partly empty (5, 61), rows narrower than the tile
/// (a 1×1 image, 3 wide against 4 and 8), batch 3, forward with and
/// without ReLU, backward with and without the mask, and a layer of too
/// many input channels, which runs the adapter's own schedule instead.
const BAKED_CASES: [(usize, usize, usize, usize, usize); 6] =
    [(1, 7, 9, 3, 5), (3, 13, 17, 3, 64), (2, 5, 33, 4, 20), (1, 1, 1, 1, 1), (3, 6, 3, 2, 61), (1, 9, 11, 36, 30)];

gpu_test! {
    async fn conv_forward_and_backward_baked_weights() {
        for (k, (px, bpx)) in [(4u32, 1u32), (1, 2), (3, 3), (8, 4)].into_iter().enumerate() {
            let config = ConvConfig::Baked(featvis::ops::conv_gen::Baked { px, bpx });
            for (i, case) in BAKED_CASES.iter().enumerate() {
                check_forward(config, *case, (i + k) % 2 == 1, 860 + (k * 10 + i) as u64).await;
                check_backward(config, *case, (i + k) % 2 == 0, 960 + (k * 10 + i) as u64).await;
            }
        }
    }
}
