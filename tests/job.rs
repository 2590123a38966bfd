//! The render request in the CLI's terms (crate::job): defaults, presets,
//! overrides, the page's JSON, and the messages for bad values. CPU only;
//! both lanes (the page parses its requests in wasm).

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

use featvis::job::{parse_channels, parse_snapshots, JobSpec};
use featvis::pipeline::Param;
use featvis::render::{Job, Objectives};
use featvis::report::{ImageReport, RenderReport};

fn build(json: &str) -> featvis::Result<Job> {
    Ok(JobSpec::from_json(json)?.build(None)?.job)
}

fn err(json: &str) -> String {
    match build(json) {
        Ok(j) => panic!("{json} was accepted: {j:?}"),
        Err(e) => e.to_string(),
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn defaults_are_the_clis() {
    let j = build("{}").unwrap();
    assert_eq!((j.height, j.width, j.steps, j.seed, j.max_batch), (128, 128, 512, 1, 16));
    assert_eq!(j.transforms.name(), "distill");
    assert_eq!(j.param, Param::Fourier { decay_power: 1.0 });
    assert!((j.adam.lr - 0.05).abs() < 1e-9 && j.redirect_relu && j.snapshots.is_empty());
    match &j.objectives {
        Objectives::PerImage(v) => {
            assert_eq!(v.iter().map(|o| o.to_string()).collect::<Vec<_>>(), (0..8).map(|c| format!("conv4_3:{c}")).collect::<Vec<_>>())
        }
        o => panic!("{o:?}"),
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn presets_and_explicit_keys_over_them() {
    let j = build(r#"{"preset":"distill"}"#).unwrap();
    assert_eq!((j.steps, j.transforms.name()), (2560, "distill"));
    let j = build(r#"{"preset":"lucid"}"#).unwrap();
    assert_eq!((j.steps, j.transforms.name()), (512, "lucid"));
    let j = build(r#"{"preset":"distill","steps":64,"transforms":"none","lr":0.1,"param":"pixel","seed":9,"redirect":false}"#).unwrap();
    assert_eq!((j.steps, j.transforms.name(), j.param, j.seed, j.redirect_relu), (64, "none", Param::Pixel, 9, false));
    assert!((j.adam.lr - 0.1).abs() < 1e-9);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn objective_with_a_batch() {
    let j = build(r#"{"objective":"conv4_3:12 - 100*diversity(conv4_3)","batch":4,"size":64}"#).unwrap();
    match &j.objectives {
        Objectives::Batch { batch, objective } => {
            assert_eq!(*batch, 4);
            assert!(objective.to_string().contains("diversity"), "{objective}");
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(j.height, 64);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn channels_lists_ranges_and_all() {
    assert_eq!(parse_channels("0-3,7", None).unwrap(), vec![0, 1, 2, 3, 7]);
    assert_eq!(parse_channels("all", Some(64)).unwrap().len(), 64);
    let j = build(r#"{"layer":"conv2_2","channels":"all"}"#).unwrap();
    assert_eq!(j.objectives.len(), 128);
    let j = build(r#"{"layer":"conv5_3_pre_relu","channels":"all"}"#).unwrap();
    assert_eq!(j.objectives.len(), 512);
    assert!(parse_channels("3-1", None).unwrap_err().to_string().contains("channels expects a list like 0-7,12"));
    assert!(parse_channels("x", None).is_err());
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn snapshots_listed_or_lucids() {
    assert_eq!(parse_snapshots("lucid", 512).unwrap(), vec![32, 64, 128, 256, 512]);
    assert_eq!(parse_snapshots("128, 32,32", 512).unwrap(), vec![32, 128]);
    assert!(parse_snapshots("600", 512).unwrap_err().to_string().contains("step 600 is outside 1..=512"));
    assert!(parse_snapshots("a", 512).unwrap_err().to_string().contains("snapshots expects"));
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn bad_values_name_the_key() {
    for (json, want) in [
        (r#"{"steps":0}"#, "steps must be at least 1"),
        (r#"{"size":0}"#, "size must be at least 1"),
        (r#"{"lr":-1}"#, "lr must be a positive number"),
        (r#"{"preset":"fast"}"#, "unknown preset `fast`"),
        (r#"{"transforms":"wobbly"}"#, "unknown transforms"),
        (r#"{"param":"wavelet"}"#, "unknown parameterization `wavelet`"),
        (r#"{"objective":"conv4_3:1","layer":"conv4_3"}"#, "not both"),
        (r#"{"objective":"conv4_3:1","batch":0}"#, "batch must be at least 1"),
        (r#"{"objective":"conv4_3:"}"#, "objective `conv4_3:`"),
        (r#"{"chanels":"0-3"}"#, "unknown field `chanels`"),
        (r#"{"size":"48"}"#, "invalid type"),
        (r#"{"size":48"#, "render request"),
    ] {
        let e = err(json);
        assert!(e.contains(want), "{json}: expected `{want}` in: {e}");
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn the_report_is_standard_json_both_ways() {
    let report = RenderReport {
        adapter: "llvmpipe \"quoted\"".into(),
        size: 48,
        steps: 32,
        steps_done: 32,
        cancelled: false,
        ms_per_step: 12.5,
        ms_per_step_median: 12.0,
        batch: 4,
        batches: 1,
        transforms: "distill".into(),
        param: "fft".into(),
        lr: 0.05,
        seed: 1,
        redirect: true,
        files: vec!["g.png".into()],
        images: vec![
            ImageReport { objective: "conv2_2:0".into(), initial_activation: 1.5, final_activation: 300.25 },
            ImageReport { objective: "conv2_2:1".into(), initial_activation: f32::NAN, final_activation: 2.0 },
        ],
    };
    let text = report.to_json();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for key in ["adapter", "size", "steps", "ms_per_step", "ms_per_step_median", "batch", "batches", "transforms", "files", "images"] {
        assert!(v.get(key).is_some(), "{key} missing in {text}");
    }
    assert_eq!(v["images"][0]["final_activation"], 300.25);
    assert!(v["images"][1]["initial_activation"].is_null(), "NaN is written as null: {text}");
    assert_eq!(v["adapter"], "llvmpipe \"quoted\"");
}
