//! `featvis kernel` prints a generated conv kernel that is valid WGSL alone;
//! `featvis tune --json` checks and times the schedules on this device and
//! says which one it chose. Native (they run the CLI).
#![cfg(not(target_arch = "wasm32"))]

use std::process::{Command, Output};

fn featvis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_featvis")).args(args).env("WGPU_BACKEND", "vulkan").output().unwrap()
}

#[test]
fn kernel_prints_valid_wgsl_and_refuses_what_is_not_generated() {
    let o = featvis(&["kernel", "--conv", "unrolled:8,4,8,8"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let src = String::from_utf8(o.stdout).unwrap();
    assert!(src.contains("subgroupBroadcast") && src.contains("var a7_3 = vec4<f32>(0.0);"), "{src}");
    let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{}", e.emit_to_string(&src)));
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all()).validate(&module).unwrap();
    for (args, want) in [
        (&["kernel", "--conv", "tiled"][..], "hand-written"),
        (&["kernel", "--conv", "unrolled:9,9,9"][..], "--conv expects unrolled:PX,CO4,WG[,SG]"),
        (&["kernel"][..], "needs --conv"),
    ] {
        let o = featvis(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.trim_end().lines().count() == 1 && err.contains(want), "{args:?}: {err}");
    }
}

/// `featvis kernel --conv baked:PX` prints conv1_1's two kernels with the
/// weights file's values written in, each valid WGSL alone, with every
/// weight as an exact literal; without the file it says how to get one.
#[test]
fn kernel_prints_the_baked_kernels_of_a_weights_file() {
    let o = featvis(&["kernel", "--conv", "baked:4,1", "--weights", "/nonexistent/vgg16.safetensors"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("does not exist") && err.contains("featvis fetch-weights"), "{err}");
    let weights = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("www/weights/vgg16-imagenet.safetensors");
    if !weights.exists() {
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "{} is missing: tools/test fetches it", weights.display());
        eprintln!("skipping: {} is missing (run `featvis fetch-weights`)", weights.display());
        return;
    }
    let o = featvis(&["kernel", "--conv", "baked:4,1", "--weights", weights.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let (forward, backward) = text.split_once("// ---- backward to the input ----").expect("two kernels");
    for (src, entries) in
        [(forward, &["conv3x3_forward_baked"][..]), (backward, &["conv3x3_backward_taps_baked", "conv3x3_backward_sum_baked"][..])]
    {
        let module = naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{}", e.emit_to_string(src)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all()).validate(&module).unwrap();
        for e in entries {
            assert!(module.entry_points.iter().any(|p| p.name == *e), "{e}");
        }
    }
    // conv1_1's first weight (tap 0, red, channel 0) and first bias, exactly.
    let f = featvis::weights::WeightsFile::from_bytes(&std::fs::read(&weights).unwrap()).unwrap();
    let c = &f.weights.convs[0];
    for v in [c.w_hwio[0], c.bias[0]] {
        let lit = featvis::ops::conv_gen::f32_literal(v).unwrap();
        assert!(forward.contains(&lit), "{lit}");
    }
}

fn featvis_cached(cache: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_featvis")).args(args).env("WGPU_BACKEND", "vulkan").env("FEATVIS_CACHE_DIR", cache).output().unwrap()
}

/// `featvis tune` checks and times at least three schedules, chooses the
/// fastest correct one and one per layer shape, and keeps them in the
/// tuning cache; a second run reads the cache instead of timing; the
/// commands that render apply it; a corrupt, foreign or unknown entry is
/// ignored with a warning.
#[test]
fn tune_chooses_keeps_and_reuses_schedules() {
    let cache = std::env::temp_dir().join(format!("featvis-tune-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let o = featvis_cached(&cache, &["tune", "--size", "16", "--budget", "2", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert_eq!(v["cached"], false);
    let chosen = v["chosen_spec"].as_str().unwrap();
    let candidates = v["candidates"].as_array().unwrap();
    let timed: Vec<_> = candidates.iter().filter(|c| c["gflops"].as_f64().unwrap() > 0.0).collect();
    assert!(timed.len() >= 3, "{v}");
    assert!(timed.iter().all(|c| c["correct"] == true), "only correct schedules are timed: {v}");
    let best = timed.iter().max_by(|a, b| a["gflops"].as_f64().unwrap().total_cmp(&b["gflops"].as_f64().unwrap())).unwrap();
    assert_eq!(best["spec"].as_str().unwrap(), chosen, "{v}");
    assert!(featvis::ConvConfig::parse(chosen).is_some());
    // One choice per layer shape of VGG16 at 16 px (16, 8, 4, 2 and 1 px sides), each the fastest it timed.
    let shapes = v["shapes"].as_array().unwrap();
    assert_eq!(shapes.len(), featvis::tune::vgg_shapes(16).len(), "{v}");
    for s in shapes {
        let spec = s["spec"].as_str().unwrap();
        let timed = s["timed"].as_array().unwrap();
        assert!(!timed.is_empty() && featvis::ConvConfig::parse(spec).is_some(), "{s}");
        let fastest = timed.iter().max_by(|a, b| a[1].as_f64().unwrap().total_cmp(&b[1].as_f64().unwrap())).unwrap();
        assert_eq!(fastest[0].as_str(), Some(spec), "{s}");
        assert!(candidates.iter().any(|c| c["spec"].as_str() == Some(spec) && c["correct"] == true), "{spec} was not checked correct");
    }
    let file = cache.join("tuning.json");
    assert_eq!(v["cache"].as_str().map(std::path::PathBuf::from), Some(file.clone()));
    let kept: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(kept["entries"].as_array().map(Vec::len), Some(1), "{kept}");

    // Again: from the cache, nothing timed.
    let o = featvis_cached(&cache, &["tune", "--size", "16", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let again: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (&again["cached"], &again["chosen_spec"], &again["shapes"]),
        (&serde_json::Value::Bool(true), &v["chosen_spec"], &v["shapes"])
    );
    assert_eq!(again["candidates"].as_array().map(Vec::len), Some(0));

    // The commands that render use it.
    let o = featvis_cached(&cache, &["adapter"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && out.contains("(from the tuning cache)") && out.contains("layers of 8x8, 64→128:"), "{out}");

    // Corrupt, foreign (another featvis), an unknown schedule: each ignored with a warning, the built-in schedule used.
    let good = std::fs::read_to_string(&file).unwrap();
    let foreign = good.replace(&format!("featvis {}", env!("CARGO_PKG_VERSION")), "featvis 0.0.1");
    let unknown = good.replacen(&format!("\"global\": \"{chosen}\""), "\"global\": \"warp:9\"", 1);
    assert_ne!(unknown, good);
    for (text, warning) in [
        ("{\"format\": \"featvis-tuning\", \"ver", "it is corrupt"),
        (foreign.as_str(), "it was made for"),
        (unknown.as_str(), "unknown schedule `warp:9`"),
    ] {
        std::fs::write(&file, text).unwrap();
        let o = featvis_cached(&cache, &["adapter"]);
        let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success() && err.contains(warning) && out.contains("(built in;"), "{warning}: {err} / {out}");
    }
    let _ = std::fs::remove_dir_all(&cache);
}

/// On a GPU the first render of a size tunes the schedules of its layer
/// shapes (FEATVIS_TUNE=1 makes the CPU adapter behave so here); the next
/// render of that size finds them in the cache; FEATVIS_TUNE=0 never tunes.
#[test]
fn the_first_render_of_a_size_tunes_and_the_next_reuses() {
    let cache = std::env::temp_dir().join(format!("featvis-tune-first-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    std::fs::create_dir_all(&cache).unwrap();
    let out = cache.join("grid.png");
    let render = |tune: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_featvis"))
            .args(["render", "--random-weights", "--layer", "conv2_2", "--channels", "0-1", "--size", "12", "--steps", "3", "--out"])
            .arg(&out)
            .env("WGPU_BACKEND", "vulkan")
            .env("FEATVIS_CACHE_DIR", &cache)
            .env("FEATVIS_TUNE", tune)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let err = render("0");
    assert!(!err.contains("chose conv schedules") && !cache.join("tuning.json").exists(), "{err}");
    let err = render("1");
    assert!(err.contains("chose conv schedules for this GPU's layers at 12 px"), "{err}");
    let kept: serde_json::Value = serde_json::from_slice(&std::fs::read(cache.join("tuning.json")).unwrap()).unwrap();
    assert_eq!(kept["entries"][0]["shapes"].as_array().map(Vec::len), Some(featvis::tune::vgg_shapes(12).len()), "{kept}");
    let err = render("1");
    assert!(!err.contains("chose conv schedules"), "tuned again: {err}");
    let _ = std::fs::remove_dir_all(&cache);
}
