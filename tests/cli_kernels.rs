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

#[test]
fn tune_json_names_a_correct_fastest_schedule() {
    let o = featvis(&["tune", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    let chosen = v["chosen_spec"].as_str().unwrap();
    let candidates = v["candidates"].as_array().unwrap();
    let best = candidates
        .iter()
        .filter(|c| c["correct"] == true)
        .max_by(|a, b| a["gflops"].as_f64().unwrap().total_cmp(&b["gflops"].as_f64().unwrap()))
        .unwrap();
    assert_eq!(best["spec"].as_str().unwrap(), chosen, "{v}");
    assert!(featvis::ConvConfig::parse(chosen).is_some());
}
