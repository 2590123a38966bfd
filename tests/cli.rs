//! `featvis render` end to end: the binary on the native adapter with the
//! default real weights (fetched by tools/test; with CI=true their absence
//! fails the test instead of skipping it), small settings. Checks the PNG
//! (decoded here), the JSON report, determinism of the bytes, and the
//! one-line errors of bad input with nothing half-written.
#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const WEIGHTS: &str = "www/weights/vgg16-imagenet.safetensors";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The default weights, or None (skip) outside CI.
fn weights() -> Option<PathBuf> {
    let p = root().join(WEIGHTS);
    if p.exists() {
        return Some(p);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{} is missing: tools/test fetches it (featvis fetch-weights)", p.display());
    }
    eprintln!("skipping: {} is missing (run `featvis fetch-weights`)", p.display());
    None
}

fn featvis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_featvis")).args(args).current_dir(root()).env("WGPU_BACKEND", "vulkan").output().unwrap()
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("featvis-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A PNG written by featvis (8-bit RGB) → (w, h, rgb), by the png crate's decoder.
fn decode_png(bytes: &[u8]) -> (usize, usize, Vec<u8>) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a PNG's size")];
    let info = reader.next_frame(&mut buf).expect("the PNG's pixels");
    assert_eq!((info.color_type, info.bit_depth), (png::ColorType::Rgb, png::BitDepth::Eight), "8-bit RGB");
    buf.truncate(info.buffer_size());
    (info.width as usize, info.height as usize, buf)
}

fn tile(rgb: &[u8], gw: usize, i: usize, cols: usize, size: usize, margin: usize) -> Vec<u8> {
    let (ox, oy) = (margin + (i % cols) * (size + margin), margin + (i / cols) * (size + margin));
    let mut t = Vec::new();
    for y in oy..oy + size {
        t.extend_from_slice(&rgb[(y * gw + ox) * 3..(y * gw + ox + size) * 3]);
    }
    t
}

#[test]
fn renders_a_grid_of_conv2_2_channels_with_real_weights() {
    let Some(w) = weights() else { return };
    let dir = tmpdir("grid");
    let out = dir.join("grid.png");
    let o = featvis(&[
        "render",
        "--weights",
        w.to_str().unwrap(),
        "--layer",
        "conv2_2",
        "--channels",
        "0-3",
        "--size",
        "48",
        "--steps",
        "32",
        "--cols",
        "2",
        "--seed",
        "3",
        "--snapshots",
        "8,32",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let json = String::from_utf8(o.stdout).unwrap();
    eprintln!("{stderr}\n{json}");
    // A standard JSON parser reads it into the report type the page shares.
    let report: featvis::report::RenderReport = serde_json::from_str(json.trim()).expect("the --json line parses");
    assert_eq!((report.size, report.steps, report.steps_done, report.cancelled), (48, 32, 32, false));
    assert!(!report.adapter.is_empty());
    assert_eq!((report.transforms.as_str(), report.param.as_str(), report.seed), ("distill", "fft", 3));
    let initial: Vec<f64> = report.images.iter().map(|i| i.initial_activation as f64).collect();
    let last: Vec<f64> = report.images.iter().map(|i| i.final_activation as f64).collect();
    assert_eq!((initial.len(), last.len()), (4, 4));
    for (c, (a, b)) in initial.iter().zip(&last).enumerate() {
        assert!(*b > 0.0 && *b >= 10.0 * a.abs(), "conv2_2:{c}: {a} → {b}");
    }
    assert_eq!(report.images[3].objective, "conv2_2:3");
    assert!(report.ms_per_step > 0.0);

    let (gw, gh, rgb) = decode_png(&std::fs::read(&out).unwrap());
    assert_eq!((gw, gh), (2 * 48 + 3 * 4, 2 * 48 + 3 * 4));
    let tiles: Vec<Vec<u8>> = (0..4).map(|i| tile(&rgb, gw, i, 2, 48, 4)).collect();
    for i in 0..4 {
        for j in i + 1..4 {
            let diff: f64 = tiles[i].iter().zip(&tiles[j]).map(|(a, b)| (*a as f64 - *b as f64).abs()).sum::<f64>() / tiles[i].len() as f64;
            assert!(diff > 5.0, "tiles {i} and {j} differ by only {diff:.2} per value");
        }
        // Not grey: the tile has contrast.
        let mean = tiles[i].iter().map(|v| *v as f64).sum::<f64>() / tiles[i].len() as f64;
        let sd = (tiles[i].iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / tiles[i].len() as f64).sqrt();
        assert!(sd > 10.0, "tile {i} is flat (sd {sd:.1})");
    }
    for step in [8, 32] {
        let snap = dir.join(format!("grid-{step}.png"));
        let (sw, sh, _) = decode_png(&std::fs::read(&snap).unwrap());
        assert_eq!((sw, sh), (gw, gh));
    }
    // The snapshot at the last step is the final grid.
    assert!(std::fs::read(dir.join("grid-32.png")).unwrap() == std::fs::read(&out).unwrap(), "grid-32.png differs from grid.png");
    // No temporary files are left behind.
    let names: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_same_seed_gives_the_same_png_bytes() {
    let dir = tmpdir("seed");
    let run = |name: &str, seed: &str| {
        let out = dir.join(name);
        let o = featvis(&[
            "render",
            "--random-weights",
            "--layer",
            "conv1_2",
            "--channels",
            "0,3,5",
            "--size",
            "24",
            "--steps",
            "6",
            "--seed",
            seed,
            "--labels",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read(out).unwrap()
    };
    let a = run("a.png", "5");
    let b = run("b.png", "5");
    let c = run("c.png", "6");
    assert!(a == b, "the same seed gave different PNG bytes");
    assert!(a != c, "another seed gave the same PNG bytes");
    let (w, h, _) = decode_png(&a);
    assert_eq!((w, h), (3 * 24 + 4 * 4, 24 + featvis::png::LABEL_HEIGHT + 2 * 4));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `featvis render ARGS`, expects a one-line error containing `want`,
/// a non-zero exit and no file at `out`.
fn fails(args: &[&str], out: &Path, want: &str) {
    let o = featvis(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} succeeded");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("featvis: ") && err.contains(want), "{args:?}: expected `{want}` in: {err}");
    assert!(!out.exists(), "{args:?} left {}", out.display());
    assert!(o.stdout.is_empty());
}

#[test]
fn bad_input_is_a_one_line_error_and_writes_nothing() {
    let dir = tmpdir("bad");
    let out = dir.join("g.png");
    let o = out.to_str().unwrap();
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["render", "--random-weights", "--size", "32", "--steps", "2", "--out", o].map(String::from).to_vec();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let call = |extra: &[&str], want: &str| {
        let v = base(extra);
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        fails(&refs, &out, want);
    };
    call(&["--layer", "conv6_1"], "unknown layer `conv6_1`");
    call(&["--layer", "conv3_3", "--channels", "250-256"], "channel 256 is out of range");
    call(&["--layer", "conv5_3", "--size", "15"], "too small");
    call(&["--steps", "0"], "steps must be at least 1");
    call(&["--snapshots", "3"], "outside 1..=2");
    call(&["--preset", "fast"], "unknown value `fast` for --preset: use distill or lucid");
    call(&["--channels", "3-1"], "channels expects a list like 0-7,12");
    call(&["--objective", "conv4_3:"], "");
    call(&["--transforms", "wobbly"], "unknown value `wobbly` for --transforms");
    call(&["--size", "big"], "--size expects a whole number, got `big`");
    call(&["--size", "100000"], "100000");
    call(&["--lr", "-1"], "lr must be a positive number");
    call(&["--frobnicate"], "unknown option `--frobnicate`");
    call(&["--seed"], "--seed needs a value");
    call(&["extra"], "unexpected argument `extra`");
    // Unwritable output: a folder that does not exist, and a directory.
    let nowhere = dir.join("no/such/dir/g.png");
    fails(&["render", "--random-weights", "--steps", "2", "--out", nowhere.to_str().unwrap()], &nowhere, "cannot write");
    fails(&["render", "--random-weights", "--steps", "2", "--out", dir.to_str().unwrap()], &out, "is a directory");
    // Missing and corrupt weights.
    let missing = dir.join("missing.safetensors");
    fails(&["render", "--weights", missing.to_str().unwrap(), "--out", o], &out, "does not exist; run `featvis fetch-weights`");
    let corrupt = dir.join("corrupt.safetensors");
    std::fs::write(&corrupt, b"\x10\0\0\0\0\0\0\0{\"a\":").unwrap();
    fails(&["render", "--weights", corrupt.to_str().unwrap(), "--out", o], &out, "corrupt.safetensors");
    // An existing output file is left as it was when the render fails.
    std::fs::write(&out, b"keep").unwrap();
    let o2 = featvis(&["render", "--random-weights", "--layer", "conv6_1", "--out", o]);
    assert!(!o2.status.success());
    assert_eq!(std::fs::read(&out).unwrap(), b"keep");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--help` after any command prints that command's usage and options and
/// succeeds (no GPU, no weights); `featvis` alone lists the commands.
#[test]
fn help_after_a_command() {
    for (cmd, option) in [
        ("render", "--objective"),
        ("bench", "--min-time"),
        ("info", "FILE"),
        ("convert", "--f16"),
        ("fetch-weights", "--out-dir"),
        ("adapter", "--help"),
        ("tune", "--json"),
        ("kernel", "--conv"),
    ] {
        let out = featvis(&[cmd, "--help"]);
        assert!(out.status.success(), "{cmd} --help failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("featvis {cmd}")) && text.contains(option), "{cmd} --help: {text}");
    }
    let out = featvis(&[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["render", "bench", "adapter", "tune", "kernel", "fetch-weights", "info", "convert", "completions"] {
        assert!(text.contains(cmd), "`featvis` alone should list {cmd}: {text}");
    }
    let out = featvis(&["completions", "bash"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("--snapshots"));
    let out = featvis(&["frobnicate"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.trim_end().lines().count() == 1 && err.contains("unknown command `frobnicate`"), "{err}");
}

/// `featvis bench --json` on the native adapter at a tiny size: one line that
/// serde_json parses, with the keys the README lists.
#[test]
fn bench_json_parses() {
    let o = featvis(&["bench", "--size", "16", "--layers", "conv1_1,conv2_2", "--min-time", "0.05", "--split-layer", "conv1_2", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    assert_eq!(text.trim_end().lines().count(), 1, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("the --json line parses");
    assert_eq!((v["size"].as_u64(), v["batch"].as_u64()), (Some(16), Some(1)), "{v}");
    assert!(v["adapter"].as_str().is_some_and(|a| !a.is_empty()) && v["conv_schedule"].is_string(), "{v}");
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.iter().map(|l| l["name"].as_str().unwrap()).collect::<Vec<_>>(), ["conv1_1", "conv2_2"]);
    for l in layers {
        for k in ["gflop", "fwd_gflops", "bwd_gflops", "fwd_ms", "bwd_ms", "fwd_peak_fraction", "bwd_peak_fraction"] {
            assert!(l[k].as_f64().is_some_and(|x| x > 0.0 && x.is_finite()), "{k}: {l}");
        }
        assert!(l["config"].as_str().is_some_and(|c| !c.is_empty()), "config: {l}");
    }
    // The adapter's peak (an FMA-bound kernel) and a step's GPU memory: only
    // that they are there and positive (timings are not compared).
    assert!(v["peak_gflops"].as_f64().is_some_and(|x| x > 0.0 && x.is_finite()), "{v}");
    assert_eq!(v["memory"]["layer"], "conv5_3", "{v}");
    for k in ["bytes_per_image", "bytes_fixed", "weights_bytes"] {
        assert!(v["memory"][k].as_u64().is_some_and(|x| x > 0), "memory.{k}: {v}");
    }
    assert!(v["step_ms"].as_f64().is_some_and(|x| x > 0.0) && v["step_gflops"].as_f64().is_some(), "{v}");
    assert_eq!(v["split"]["layer"], "conv1_2");
    // The image side is a part of the step: with the fastest of many runs
    // (2 ms each at this size) it cannot come out slower than the whole.
    assert!(v["split"]["image_share"].as_f64().is_some_and(|x| x > 0.0 && x <= 1.0), "{v}");
    // The step to conv1_2 runs two conv kernels each way and, beside them,
    // the objective's kernels; the whole step costs more than its convs alone.
    assert!(v["split"]["conv_ms"].as_f64().is_some_and(|x| x > 0.0), "{v}");
    let others: Vec<&str> = v["split"]["network_kernels"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert!(others.iter().any(|n| n.starts_with("objective_seed")), "{others:?}");
    assert!(!others.iter().any(|n| n.starts_with("conv3x3")), "{others:?}");
    assert!(v["split"]["step_over_conv"].as_f64().is_some_and(|x| x > 1.0), "{v}");
}
