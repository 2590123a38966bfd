//! Each shader is valid WGSL on its own, and each uniform struct defined in
//! Rust has the size of its WGSL twin.
#![cfg(not(target_arch = "wasm32"))]

use featvis::ops::{adam, conv, fc, fourier, image, objective, pool, warp};

fn module(name: &str, src: &str) -> naga::Module {
    let m = naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
        .validate(&m)
        .unwrap_or_else(|e| panic!("{name} does not validate: {e:?}"));
    m
}

fn struct_size(m: &naga::Module, name: &str) -> u32 {
    let mut layouter = naga::proc::Layouter::default();
    layouter.update(m.to_ctx()).unwrap();
    for (h, t) in m.types.iter() {
        if t.name.as_deref() == Some(name) {
            return layouter[h].size;
        }
    }
    panic!("struct {name} not found")
}

#[test]
fn uniform_structs_match_wgsl() {
    let cases: [(&str, &str, &str, usize); 16] = [
        ("warp.wgsl", warp::SHADER, "WarpParams", std::mem::size_of::<warp::WarpParams>()),
        ("fourier.wgsl", fourier::SHADER, "FourierParams", std::mem::size_of::<fourier::FourierParams>()),
        ("image.wgsl", image::SHADER, "ImageParams", std::mem::size_of::<image::ImageParams>()),
        ("adam.wgsl", adam::SHADER, "AdamParams", std::mem::size_of::<adam::AdamParams>()),
        ("conv.wgsl", conv::SHADER, "ConvParams", std::mem::size_of::<conv::ConvParams>()),
        ("pool.wgsl", pool::SHADER, "PoolParams", std::mem::size_of::<pool::PoolParams>()),
        ("fc.wgsl", fc::SHADER, "FcParams", std::mem::size_of::<fc::FcParams>()),
        ("objective.wgsl", objective::SHADER, "ObjParams", std::mem::size_of::<objective::ObjParams>()),
        ("objective.wgsl", objective::SHADER, "ObjSpec", std::mem::size_of::<objective::ObjSpec>()),
        ("conv.wgsl", conv::SHADER, "ConvParams", 48),
        ("diversity.wgsl", objective::DIVERSITY_SHADER, "DivParams", std::mem::size_of::<objective::DivParams>()),
        ("regularize.wgsl", objective::REGULARIZE_SHADER, "RegParams", std::mem::size_of::<objective::RegParams>()),
        ("regularize.wgsl", objective::REGULARIZE_SHADER, "Reg", std::mem::size_of::<objective::ImageReg>()),
        ("relu.wgsl", objective::RELU_SHADER, "ReluParams", std::mem::size_of::<objective::ReluParams>()),
        ("objective.wgsl", objective::SHADER, "ObjParams", 48),
        ("peak.wgsl", featvis::bench::PEAK_SHADER, "PeakParams", std::mem::size_of::<featvis::bench::PeakParams>()),
    ];
    for (file, src, name, rust) in cases {
        let m = module(file, src);
        assert_eq!(struct_size(&m, name) as usize, rust, "{file}: {name}");
    }
}

#[test]
fn every_shader_file_is_valid_wgsl_alone() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|s| s.to_str()) == Some("wgsl") {
            let src = std::fs::read_to_string(&p).unwrap();
            module(&p.display().to_string(), &src);
            n += 1;
        }
    }
    assert!(n >= 11, "found only {n} shaders");
}

#[test]
fn specialization_rewrites_constants_and_stays_valid() {
    let src = featvis::gpu::specialize("conv.wgsl", conv::SHADER, &[("PX", 4), ("CO4", 2), ("WG", 64), ("RELU_INPUT", 1)]).unwrap();
    assert!(src.contains("const PX: u32 = 4u;") && src.contains("const CO4: u32 = 2u;"));
    module("conv.wgsl specialized", &src);
}

#[test]
fn every_generated_conv_kernel_is_valid_wgsl_alone() {
    use featvis::ops::conv_gen::{wgsl, Unrolled};
    let mut n = 0;
    for &(px, co4) in &[(1, 1), (3, 1), (4, 2), (5, 3), (8, 4), (8, 8), (16, 4)] {
        for &(wg, sg) in &[(8, 0), (16, 0), (8, 8), (16, 8), (4, 4), (32, 32)] {
            let u = Unrolled { px, co4, wg, sg };
            assert!(u.is_valid(), "{u:?}");
            let src = wgsl(u);
            let m = module(&u.name(), &src);
            assert_eq!(struct_size(&m, "ConvParams") as usize, std::mem::size_of::<conv::ConvParams>(), "{}", u.name());
            let entries: Vec<&str> = m.entry_points.iter().map(|e| e.name.as_str()).collect();
            assert_eq!(entries, ["conv3x3_forward_unrolled", "conv3x3_backward_input_unrolled"], "{}", u.name());
            // Named accumulators, no accumulator array; subgroups only when asked for.
            assert!(
                src.contains(&format!("var a{}_{} = vec4<f32>(0.0);", px - 1, co4 - 1)) && !src.contains("array<vec4<f32>, "),
                "{}",
                u.name()
            );
            assert_eq!(src.contains("subgroupBroadcast"), sg > 0, "{}", u.name());
            let spec = featvis::gpu::specialize(&u.name(), &src, &[("RELU_INPUT", 1), ("MASK_OUTPUT", 1)]).unwrap();
            module(&u.name(), &spec);
            n += 1;
        }
    }
    assert_eq!(n, 42);
    for bad in [
        Unrolled { px: 0, co4: 1, wg: 8, sg: 0 },
        Unrolled { px: 8, co4: 9, wg: 8, sg: 0 },
        Unrolled { px: 16, co4: 8, wg: 8, sg: 0 },
        Unrolled { px: 8, co4: 4, wg: 12, sg: 8 },
    ] {
        assert!(!bad.is_valid(), "{bad:?}");
    }
    assert_eq!(featvis::ConvConfig::parse("unrolled:8,4,8,8").map(|c| c.name()).as_deref(), Some("unrolled(px=8,co=16,wg=8,sg=8)"));
    assert_eq!(featvis::ConvConfig::parse("unrolled:8,4,8").map(|c| c.name()).as_deref(), Some("unrolled(px=8,co=16,wg=8,sg=0)"));
    assert!(featvis::ConvConfig::parse("unrolled:8,4,12,8").is_none());
}

/// Every implicit-GEMM configuration the generator accepts (the whole space,
/// not a sample) is valid WGSL alone, with the conv uniform and entry
/// points, named accumulators and a double buffer of the advertised size.
#[test]
fn every_generated_gemm_kernel_is_valid_wgsl_alone() {
    use featvis::ops::conv_gen::{gemm_wgsl, Gemm};
    let p2 = |lo: u32, hi: u32| (0..8).map(|i| 1u32 << i).filter(move |v| (lo..=hi).contains(v));
    let mut n = 0;
    for bm in p2(16, 128) {
        for bn in p2(16, 128) {
            for bk in p2(4, 32) {
                for tm in p2(1, 8) {
                    for tn in [4, 8] {
                        let g = Gemm { bm, bn, bk, tm, tn };
                        if !g.is_valid() {
                            continue;
                        }
                        let src = gemm_wgsl(g);
                        let m = module(&g.name(), &src);
                        assert_eq!(struct_size(&m, "ConvParams") as usize, std::mem::size_of::<conv::ConvParams>(), "{}", g.name());
                        let entries: Vec<&str> = m.entry_points.iter().map(|e| e.name.as_str()).collect();
                        assert_eq!(entries, ["conv3x3_forward_gemm", "conv3x3_backward_input_gemm"], "{}", g.name());
                        assert!(src.contains(&format!("var a{}_{} = vec4<f32>(0.0);", tm - 1, tn / 4 - 1)), "{}", g.name());
                        let wg_bytes: u32 = m
                            .global_variables
                            .iter()
                            .filter(|(_, v)| v.space == naga::AddressSpace::WorkGroup)
                            .map(|(_, v)| m.types[v.ty].inner.size(m.to_ctx()))
                            .sum();
                        assert_eq!(wg_bytes, g.workgroup_bytes(), "{}", g.name());
                        let spec = featvis::gpu::specialize(&g.name(), &src, &[("RELU_INPUT", 1), ("MASK_OUTPUT", 1)]).unwrap();
                        module(&g.name(), &spec);
                        let parsed = featvis::ConvConfig::parse(&featvis::ConvConfig::Gemm(g).spec());
                        assert_eq!(parsed, Some(featvis::ConvConfig::Gemm(g)));
                        n += 1;
                    }
                }
            }
        }
    }
    assert!(n >= 100, "only {n} configurations");
    eprintln!("{n} gemm configurations valid");
    for bad in ["gemm:64,64,16,4,3", "gemm:256,64,16,4,4", "gemm:64,64,2,4,4", "gemm:16,16,4,4,4", "gemm:128,128,32,2,4", "gemm:64,64,16,4"]
    {
        assert!(featvis::ConvConfig::parse(bad).is_none(), "{bad}");
    }
}

/// Every 2-D tile the generator accepts is valid WGSL alone, and the
/// configurations just outside the range are refused.
#[test]
fn every_generated_patch_kernel_is_valid_wgsl_alone() {
    use featvis::ops::conv_gen::{patch_wgsl, Patch};
    let mut n = 0;
    for th in 1..=8 {
        for tw in 1..=8 {
            for co4 in [1, 2, 4, 8] {
                for wg in [1, 4, 64] {
                    let t = Patch { th, tw, co4, wg };
                    if !t.is_valid() {
                        assert!(t.live() > featvis::ops::conv_gen::MAX_LIVE || th * (tw + 2) > featvis::ops::conv_gen::MAX_INPUTS, "{t:?}");
                        continue;
                    }
                    let src = patch_wgsl(t);
                    let m = module(&t.name(), &src);
                    assert_eq!(struct_size(&m, "ConvParams") as usize, std::mem::size_of::<conv::ConvParams>(), "{}", t.name());
                    let entries: Vec<&str> = m.entry_points.iter().map(|e| e.name.as_str()).collect();
                    assert_eq!(entries, ["conv3x3_forward_patch", "conv3x3_backward_input_patch"], "{}", t.name());
                    assert!(src.contains(&format!("var a{}_{}_{} = vec4<f32>(0.0);", th - 1, tw - 1, co4 - 1)), "{}", t.name());
                    assert_eq!(featvis::ConvConfig::parse(&featvis::ConvConfig::Patch(t).spec()), Some(featvis::ConvConfig::Patch(t)));
                    n += 1;
                }
            }
        }
    }
    assert!(n >= 100, "only {n}");
    for bad in ["patch:0,4,2,4", "patch:9,4,2,4", "patch:4,4,3,4", "patch:4,8,1,4", "patch:6,4,1,4", "patch:4,4,2,0", "patch:4,4,2"] {
        assert!(featvis::ConvConfig::parse(bad).is_none(), "{bad}");
    }
}
