//! `convert::convert_report`, the library side of `featvis convert`: format
//! detection, each input format to the project's file (full-size files
//! written here), the ONNX head rule, re-encoding f32 → f16, and the summary
//! the page shows. CPU only: runs natively and in the browser lane.

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

#[macro_use]
mod weights_common;

#[cfg(not(target_arch = "wasm32"))]
use featvis::model::Vgg16Weights;
use featvis::weights::convert::{self, Format};
use featvis::weights::safetensors::{self, Dtype, TensorOut};
use featvis::weights::{thousands, LoadSummary, Preprocessing};
use weights_common::*;

const NARROW_PTH: &[u8] = include_bytes!("fixtures/torch/narrow-vgg16.pth");
const NARROW_TIMM: &[u8] = include_bytes!("fixtures/torch/narrow-vgg16-timm.safetensors");
const OTHER_ARCH_H5: &[u8] = include_bytes!("fixtures/weights/other-arch.h5");

test! {
fn detects_each_format_by_its_magic() {
    assert_eq!(convert::detect(OTHER_ARCH_H5), Some(Format::KerasH5));
    assert_eq!(convert::detect(NARROW_PTH), Some(Format::TorchPth));
    assert_eq!(convert::detect(NARROW_TIMM), Some(Format::TimmSafetensors));
    assert_eq!(convert::detect(valid_f32()), Some(Format::Project));
    assert_eq!(convert::detect(&small_onnx()), Some(Format::Onnx));
    assert_eq!(convert::detect(b""), None);
    assert_eq!(convert::detect(b"GIF89a"), None);
    // A header length past the end is not safetensors.
    assert_eq!(convert::detect(&[0xff, 0xff, 0, 0, 0, 0, 0, 0, b'{']), None);
    for (flag, f) in [("h5", Format::KerasH5), ("pth", Format::TorchPth), ("onnx", Format::Onnx), ("safetensors", Format::TimmSafetensors), (".PTH", Format::TorchPth)] {
        assert_eq!(Format::from_flag(flag).unwrap(), f, "{flag}");
    }
}
}

test! {
fn torchvision_pth_full_size() {
    let c = convert::convert_report(&torchvision_pth(weights()), None).unwrap();
    assert_eq!(c.format, Format::TorchPth);
    assert_eq!(c.file.preprocessing, Preprocessing::torchvision());
    assert_eq!(c.file.parameter_count(), 14_714_688);
    assert!(c.file.weights.fcs.is_empty());
    for k in 0..13 {
        assert_eq!(c.file.weights.convs[k].w_hwio, weights().convs[k].w_hwio, "conv {k}");
    }
    // Forcing the format gives the same.
    let forced = convert::convert(&torchvision_pth(weights()), Some(Format::TorchPth)).unwrap();
    assert_eq!(forced.weights.convs[0].bias, weights().convs[0].bias);
}
}

test! {
fn timm_safetensors_full_size() {
    let w = weights();
    let mut names = Vec::new();
    let mut oihw = Vec::new();
    for ((&idx, &(_, cin, cout)), c) in featvis::weights::torch::FEATURE_INDICES.iter().zip(&featvis::model::CONVS).zip(&w.convs) {
        names.push((format!("features.{idx}.weight"), vec![cout, cin, 3, 3]));
        names.push((format!("features.{idx}.bias"), vec![cout]));
        oihw.push(hwio_to_oihw(&c.w_hwio, cin, cout));
        oihw.push(c.bias.clone());
    }
    let outs: Vec<TensorOut<'_>> = names.iter().zip(&oihw).map(|((n, s), v)| TensorOut { name: n, shape: s.clone(), values: v }).collect();
    let bytes = safetensors::write(&outs, &[], Dtype::F16);
    let c = convert::convert_report(&bytes, None).unwrap();
    assert_eq!(c.format, Format::TimmSafetensors);
    assert_eq!(c.file.preprocessing, Preprocessing::torchvision());
    let got = &c.file.weights.convs[5].w_hwio;
    for (x, y) in got.iter().zip(&w.convs[5].w_hwio).take(1000) {
        assert!((x - y).abs() <= y.abs() / 1024.0 + 1e-7, "{x} vs {y}");
    }
}
}

test! {
fn project_file_reencodes_to_f16() {
    let c = convert::convert_report(valid_f32(), Some(Format::TimmSafetensors)).unwrap();
    assert_eq!(c.format, Format::Project, "--format safetensors covers the project's own files");
    let f16 = c.file.to_bytes(true);
    assert_eq!(f16, keras_file().to_bytes(true));
    let ratio = valid_f32().len() as f64 / f16.len() as f64;
    assert!(ratio > 1.99, "f16 is {ratio:.3}× smaller");
}
}

test! {
fn onnx_head_is_dropped_when_not_vgg16s() {
    let c = convert::convert_report(&keras_onnx(weights(), true), None).unwrap();
    assert_eq!(c.format, Format::Onnx);
    assert!(c.file.weights.fcs.is_empty());
    assert_eq!(c.file.preprocessing, Preprocessing::keras());
    assert!(c.notes.iter().any(|n| n.contains("dense_1") && n.contains("[25088, 2]") && n.contains("conv trunk only")), "{:?}", c.notes);
    assert!(c.notes.iter().any(|n| n.contains("assumed Keras")), "{:?}", c.notes);
    assert_eq!(c.file.weights.convs[12].bias, weights().convs[12].bias);
    // Without any dense layer there is nothing to say about a head.
    let c = convert::convert_report(&keras_onnx(weights(), false), None).unwrap();
    assert!(!c.notes.iter().any(|n| n.contains("head")), "{:?}", c.notes);
}
}

test! {
fn wrong_architectures_are_refused_naming_the_tensor() {
    let e = convert::convert(NARROW_PTH, None).unwrap_err().to_string();
    assert!(e.contains("conv1_1.weight") && e.contains("expected shape [3, 3, 3, 64]"), "{e}");
    let e = convert::convert(NARROW_TIMM, None).unwrap_err().to_string();
    assert!(e.contains("expected shape"), "{e}");
    let e = convert::convert(&small_onnx(), None).unwrap_err().to_string();
    assert!(e.contains("conv1_1") && e.contains("[64, 3, 3, 3]"), "{e}");
    assert!(convert::convert(OTHER_ARCH_H5, None).is_err());
}
}

test! {
fn page_summary() {
    let f16 = keras_file().to_bytes(true);
    let (file, s) = LoadSummary::check(&f16).unwrap();
    assert_eq!(file.parameter_count(), 14_714_688);
    assert_eq!((s.dtype.as_str(), s.conv_layers, s.parameters, s.classes), ("F16", 13, 14_714_688, None));
    assert_eq!(s.preprocessing, "Keras");
    let text = s.text();
    assert!(text.starts_with("29.4 MB (f16), 13 conv layers, 14,714,688 parameters, Keras preprocessing"), "{text}");
    let json = s.to_json();
    assert!(json.contains("\"parameters\":14714688") && json.contains("\"dtype\":\"F16\"") && json.contains("\"classes\":null"), "{json}");
    let (_, s32) = LoadSummary::check(valid_f32()).unwrap();
    assert!(s32.text().starts_with("58.9 MB (f32)"), "{}", s32.text());
    assert!(s32.bytes as f64 / s.bytes as f64 >= 1.8);
    // Custom preprocessing is spelled out.
    let mut f = keras_file();
    f.preprocessing.mean = [1.0, 2.0, 3.0];
    assert!(f.preprocessing.describe().starts_with("custom (BGR"), "{}", f.preprocessing.describe());
    assert_eq!(Preprocessing::vggface().describe(), "VGGFace");
    assert!(LoadSummary::check(b"nope").is_err());
    assert_eq!(thousands(0), "0");
    assert_eq!(thousands(999), "999");
    assert_eq!(thousands(1000), "1,000");
    assert_eq!(thousands(14_714_688), "14,714,688");
    assert_eq!(thousands(138_357_544), "138,357,544");
}
}

/// Keras VGG16 with its ImageNet head exported to ONNX keeps fc6–fc8
/// (fc6 alone is 25088 × 4096: 411 MB in f32; run on demand).
#[cfg(not(target_arch = "wasm32"))]
#[test]
#[ignore = "allocates about 2 GB: cargo test --release --test weights_convert -- --ignored"]
fn onnx_vgg16_head_is_kept() {
    let w = Vgg16Weights::random(3, Some(1000));
    let c = convert::convert_report(&keras_onnx(&w, false), None).unwrap();
    assert_eq!(c.file.weights.classes(), Some(1000));
    assert_eq!(c.file.parameter_count(), 138_357_544);
    assert_eq!(c.file.weights.fcs[0].w_io[..100], w.fcs[0].w_io[..100]);
    assert_eq!(c.file.weights.fcs[2].bias, w.fcs[2].bias);
}
