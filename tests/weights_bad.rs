//! Bad weights files: each gives an error that names the problem, never a
//! panic. Truncations at many cut points, wrong magic, a header length past
//! the end, out-of-range and overlapping data_offsets, wrong shapes and
//! dtypes, missing and unknown tensors, NaN/Inf, a partial head, bad
//! metadata, hostile JSON (deep nesting, duplicate keys, huge numbers, ranks
//! over 8), bad ONNX, and a Keras .h5 of another architecture. CPU only: runs
//! natively and in the browser lane (no files; fixtures are compiled in).
//!
//! tests/fixtures/weights/other-arch.h5 was written with h5py 3 (Keras's
//! save_weights layout: root attribute layer_names, each layer a group with
//! weight_names, datasets under group/group/) holding `conv1_conv`
//! (7, 7, 3, 4) + (4,) and `predictions` (4, 3) + (3,): not VGG16.

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

#[macro_use]
mod weights_common;

use featvis::weights::convert::{self, Format};
use featvis::weights::{onnx, safetensors, NamedTensor, Preprocessing, WeightsFile};
use weights_common::*;

const OTHER_ARCH_H5: &[u8] = include_bytes!("fixtures/weights/other-arch.h5");

fn err_of(bytes: &[u8]) -> String {
    match WeightsFile::from_bytes(bytes) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

/// The loader's error must mention every needle.
fn expect_err(what: &str, bytes: &[u8], needles: &[&str]) {
    let msg = err_of(bytes);
    for n in needles {
        assert!(msg.contains(n), "{what}: error `{msg}` should mention `{n}`");
    }
}

test! {
fn truncated_at_many_cut_points() {
    let good = valid_f32();
    let (_, data_start) = header_of(good);
    let mut cuts: Vec<usize> = (0..=16).collect();
    cuts.extend((1..40).map(|k| 8 + k * (data_start - 8) / 40)); // inside the header
    cuts.push(data_start - 1);
    cuts.extend((0..60).map(|k| data_start + k * (good.len() - data_start) / 60)); // inside the data
    cuts.push(good.len() - 1);
    for cut in cuts {
        let msg = err_of(&good[..cut]);
        let named = if cut < 8 {
            msg.contains("8-byte header length")
        } else if cut < data_start {
            msg.contains("JSON header")
        } else {
            // The data is cut: the first tensor that runs past the end is named.
            msg.contains("past the end") && msg.contains('`')
        };
        assert!(msg.contains("truncated") || msg.contains("past the end"), "cut at {cut}: `{msg}`");
        assert!(named, "cut at {cut}: `{msg}` does not say what is cut");
    }
}
}

test! {
fn wrong_magic() {
    // A safetensors file starts with its header length: other files' magic
    // reads as an absurd length.
    for (what, head) in [
        ("PNG", &b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"[..]),
        ("zip (.pth)", &b"PK\x03\x04\x14\0\0\0\x08\0"[..]),
        ("HDF5", &b"\x89HDF\r\n\x1a\n\0\0\0\0\0\x08\x08\0"[..]),
        ("ELF", &b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0"[..]),
    ] {
        let mut b = head.to_vec();
        b.resize(4096, 0);
        expect_err(what, &b, &["header length", "safetensors"]);
    }
    expect_err("ONNX", &small_onnx(), &["header length", "safetensors"]);
    // Right length, not JSON.
    expect_err("not JSON", &raw_file("\u{0}\u{1}garbage", &[]), &["not valid JSON"]);
    // An empty file.
    expect_err("empty", &[], &["truncated", "8-byte header length"]);
    // convert: formats it does not know, named with the accepted ones.
    let e = convert::convert(b"\x7fELF\x02\x01\x01\0", None).unwrap_err().to_string();
    assert!(e.contains("unrecognized file format") && e.contains("7f 45 4c 46") && e.contains("ONNX") && e.contains(".pth"), "{e}");
    let e = convert::convert(b"", None).unwrap_err().to_string();
    assert!(e.contains("empty"), "{e}");
    let e = Format::from_flag("tflite").unwrap_err().to_string();
    assert!(e.contains("tflite") && e.contains("h5, pth, onnx, safetensors"), "{e}");
}
}

test! {
fn header_length_past_the_end() {
    let good = valid_f32();
    let mut b = good[..4096].to_vec();
    b[..8].copy_from_slice(&(good.len() as u64).to_le_bytes());
    expect_err("length past the end", &b, &["truncated", "JSON header", &good.len().to_string()]);
    b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    expect_err("u64::MAX", &b, &["header length", "limit"]);
    b[..8].copy_from_slice(&((100u64 << 20) + 1).to_le_bytes());
    expect_err("just over the limit", &b, &["header length", "limit"]);
}
}

test! {
fn data_offsets_out_of_range_or_overlapping() {
    let good = valid_f32();
    let (h, data_start) = header_of(good);
    let data_len = good.len() - data_start;
    // conv5_3.bias moved past the end.
    let e = entry(&h, "conv5_3.bias");
    let moved = format!("\"conv5_3.bias\":{{\"dtype\":\"F32\",\"shape\":[512],\"data_offsets\":[{},{}]}}", data_len, data_len + 2048);
    expect_err("past the end", &with_header(good, &h.replacen(&e, &moved, 1)), &["conv5_3.bias", "past the end"]);
    // Offsets near u64::MAX must not overflow anything.
    let huge = format!("\"conv5_3.bias\":{{\"dtype\":\"F32\",\"shape\":[512],\"data_offsets\":[{},{}]}}", u64::MAX - 2047, u64::MAX);
    expect_err("u64 offsets", &with_header(good, &h.replacen(&e, &huge, 1)), &["conv5_3.bias", "past the end"]);
    let over = format!("\"conv5_3.bias\":{{\"dtype\":\"F32\",\"shape\":[512],\"data_offsets\":[0,{}0]}}", u64::MAX);
    expect_err("offset over u64", &with_header(good, &h.replacen(&e, &over, 1)), &["conv5_3.bias", "data_offsets"]);
    // conv1_1.bias overlapping conv1_1.weight.
    let e = entry(&h, "conv1_1.bias");
    let overlap = "\"conv1_1.bias\":{\"dtype\":\"F32\",\"shape\":[64],\"data_offsets\":[6000,6256]}";
    expect_err("overlap", &with_header(good, &h.replacen(&e, overlap, 1)), &["conv1_1.weight", "conv1_1.bias", "overlapping"]);
    // Backwards, and a size that disagrees with the shape.
    let back = "\"conv1_1.bias\":{\"dtype\":\"F32\",\"shape\":[64],\"data_offsets\":[7168,6912]}";
    expect_err("backwards", &with_header(good, &h.replacen(&e, back, 1)), &["conv1_1.bias", "backwards"]);
    let short = "\"conv1_1.bias\":{\"dtype\":\"F32\",\"shape\":[64],\"data_offsets\":[6912,7164]}";
    expect_err("size vs shape", &with_header(good, &h.replacen(&e, short, 1)), &["conv1_1.bias", "needs 256"]);
    let neg = "\"conv1_1.bias\":{\"dtype\":\"F32\",\"shape\":[64],\"data_offsets\":[6912,-7168]}";
    expect_err("negative", &with_header(good, &h.replacen(&e, neg, 1)), &["conv1_1.bias", "data_offsets"]);
    let three = "\"conv1_1.bias\":{\"dtype\":\"F32\",\"shape\":[64],\"data_offsets\":[6912,7168,7168]}";
    expect_err("three offsets", &with_header(good, &h.replacen(&e, three, 1)), &["conv1_1.bias", "[begin, end]"]);
}
}

test! {
fn wrong_shape_or_dtype() {
    let good = valid_f32();
    let (h, _) = header_of(good);
    // The same byte count, transposed: the loader names the tensor and both shapes.
    let e = entry(&h, "conv2_1.weight");
    let t = e.replacen("[3,3,64,128]", "[3,3,128,64]", 1);
    expect_err("transposed", &with_header(good, &h.replacen(&e, &t, 1)), &["conv2_1.weight", "expected shape [3, 3, 64, 128]", "[3, 3, 128, 64]"]);
    let t = e.replacen("[3,3,64,128]", "[9,64,128]", 1);
    expect_err("rank 3", &with_header(good, &h.replacen(&e, &t, 1)), &["conv2_1.weight", "[9, 64, 128]"]);
    // Dtypes the loader does not take, named.
    for (dt, shape) in [("BF16", "[3,3,64,256]"), ("I64", "[3,3,64,64]"), ("F64", "[3,3,64,64]"), ("U8", "[3,3,64,512]")] {
        let t = e.replacen("\"F32\"", &format!("\"{dt}\""), 1).replacen("[3,3,64,128]", shape, 1);
        expect_err(dt, &with_header(good, &h.replacen(&e, &t, 1)), &["conv2_1.weight", "unknown dtype", dt]);
    }
    // An F16 tensor among F32 ones is fine when its bytes match its shape.
    let t = e.replacen("\"F32\"", "\"F16\"", 1).replacen("[3,3,64,128]", "[3,3,64,256]", 1);
    expect_err("F16 with F32's bytes: the shape is wrong", &with_header(good, &h.replacen(&e, &t, 1)), &["conv2_1.weight", "expected shape"]);
    // Ranks over 8, shapes whose product overflows.
    let t = e.replacen("[3,3,64,128]", "[1,1,1,1,1,3,3,64,128]", 1);
    expect_err("rank 9", &with_header(good, &h.replacen(&e, &t, 1)), &["conv2_1.weight", "9 dimensions", "8"]);
    let t = e.replacen("[3,3,64,128]", "[4294967296,4294967296,4294967296,3]", 1);
    expect_err("overflow", &with_header(good, &h.replacen(&e, &t, 1)), &["conv2_1.weight", "overflows"]);
    let t = e.replacen("[3,3,64,128]", "[3,3,64,-128]", 1);
    expect_err("negative dim", &with_header(good, &h.replacen(&e, &t, 1)), &["conv2_1.weight", "shape"]);
}
}

test! {
fn missing_layer_and_unknown_tensor() {
    let good = valid_f32();
    let (h, _) = header_of(good);
    // A file without conv3_2.bias.
    expect_err("missing", &without(good, &["conv3_2.bias"]), &["conv3_2.bias", "missing"]);
    // Its entry dropped but its bytes left in place: safetensors data has no
    // gaps, and the tensor after the gap is named.
    let e = entry(&h, "conv3_2.bias");
    let gap = h.replacen(&format!(",{e}"), "", 1);
    expect_err("gap", &with_header(good, &gap), &["conv3_3.weight", "without gaps"]);
    // A whole layer missing.
    expect_err("missing layer", &without(good, &["conv4_1.weight", "conv4_1.bias"]), &["conv4_1.weight", "missing"]);
    // An extra tensor of another network.
    let extra = h.replacen('{', "{\"block1_conv1_W_1:0\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},", 1);
    expect_err("unknown", &with_header(good, &extra), &["block1_conv1_W_1:0", "not part of VGG16"]);
    // An unexpected key in a tensor's entry.
    let e = entry(&h, "conv1_1.bias");
    let t = e.replacen("\"dtype\"", "\"quant\":\"q8\",\"dtype\"", 1);
    expect_err("extra key", &with_header(good, &h.replacen(&e, &t, 1)), &["conv1_1.bias", "quant"]);
}
}

test! {
fn nan_and_inf_weights() {
    let good = valid_f32();
    let (h, data_start) = header_of(good);
    let st = safetensors::parse(good).unwrap();
    for (tensor, index, bits) in [
        ("conv1_1.weight", 0usize, f32::NAN.to_bits()),
        ("conv3_3.bias", 255, f32::INFINITY.to_bits()),
        ("conv5_3.weight", 12345, f32::NEG_INFINITY.to_bits()),
        ("conv2_2.weight", 7, 0x7fc0_1234), // a NaN with a payload
    ] {
        let t = st.tensor(tensor).unwrap();
        let offset = t.data.as_ptr() as usize - good.as_ptr() as usize + 4 * index;
        let mut b = good.to_vec();
        b[offset..offset + 4].copy_from_slice(&bits.to_le_bytes());
        expect_err(tensor, &b, &[tensor, "non-finite", &format!("index {index}")]);
    }
    // The same in an F16 file (half infinity is 0x7c00).
    let f16 = keras_file().to_bytes(true);
    let st16 = safetensors::parse(&f16).unwrap();
    let t = st16.tensor("conv4_2.bias").unwrap();
    let offset = t.data.as_ptr() as usize - f16.as_ptr() as usize + 2 * 3;
    let mut b = f16.clone();
    b[offset..offset + 2].copy_from_slice(&0x7c00u16.to_le_bytes());
    expect_err("f16 inf", &b, &["conv4_2.bias", "non-finite", "index 3"]);
    let _ = (h, data_start);
    // And through the converters' door.
    let mut tensors = featvis::weights::tensors_of(weights());
    tensors[4].values[2] = f32::NAN;
    let e = WeightsFile::from_tensors(tensors, Preprocessing::keras(), "s", "l").unwrap_err().to_string();
    assert!(e.contains("conv2_1.weight") && e.contains("non-finite") && e.contains("index 2"), "{e}");
}
}

test! {
fn partial_head() {
    let good = valid_f32();
    let (h, _) = header_of(good);
    let fc6 = h.replacen('{', "{\"fc6.weight\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},", 1);
    expect_err("fc6 only", &with_header(good, &fc6), &["partial", "fc7 is missing"]);
    let fc8 = h.replacen('{', "{\"fc8.bias\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},", 1);
    expect_err("fc8 only", &with_header(good, &fc8), &["partial", "fc6 is missing"]);
    // Through from_tensors: fc6 and fc8 without fc7.
    let mut tensors = featvis::weights::tensors_of(weights());
    tensors.push(NamedTensor { name: "fc6.bias".into(), shape: vec![4096], values: vec![0.0; 4096] });
    tensors.push(NamedTensor { name: "fc8.bias".into(), shape: vec![10], values: vec![0.0; 10] });
    let e = WeightsFile::from_tensors(tensors, Preprocessing::keras(), "s", "l").unwrap_err().to_string();
    assert!(e.contains("partial") && e.contains("fc7"), "{e}");
}
}

test! {
fn bad_metadata() {
    let good = valid_f32();
    for (what, from, to, needles) in [
        ("mean of 2", "\"mean\":\"103.939,116.779,123.68\"", "\"mean\":\"103.939,116.779\"", &["mean", "3 comma-separated"][..]),
        ("mean not a number", "\"mean\":\"103.939,116.779,123.68\"", "\"mean\":\"103.939,abc,123.68\"", &["mean", "abc"]),
        ("mean overflows f32", "\"mean\":\"103.939,116.779,123.68\"", "\"mean\":\"1e39,1,1\"", &["mean", "not a finite"]),
        ("channel order", "\"channel_order\":\"BGR\"", "\"channel_order\":\"YUV\"", &["channel_order", "YUV", "BGR nor RGB"]),
        ("scale", "\"scale\":\"255\"", "\"scale\":\"256\"", &["scale", "256"]),
        ("std zero", "\"std\":\"1,1,1\"", "\"std\":\"1,0,1\"", &["std", "positive"]),
        ("architecture", "\"architecture\":\"vgg16\"", "\"architecture\":\"resnet50\"", &["architecture", "resnet50"]),
        ("architecture missing", "\"architecture\":\"vgg16\",", "", &["architecture", "missing"]),
        ("layers", "\"layers\":\"conv1_1,", "\"layers\":\"conv0_1,", &["layers", "conv0_1"]),
        ("metadata not strings", "\"scale\":\"255\"", "\"scale\":255", &["metadata `scale`", "string"]),
    ] {
        expect_err(what, &edit_header(good, from, to), needles);
    }
}
}

test! {
fn hostile_json() {
    let d = [0u8; 8];
    for (what, header, needles) in [
        ("deep nesting", "[".repeat(100_000), &["not valid JSON", "nested"][..]),
        ("deep objects", "{\"a\":".repeat(50_000), &["not valid JSON", "nested"]),
        ("duplicate tensor", r#"{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#.to_string(), &["duplicate key", "\"t\""]),
        ("duplicate metadata", r#"{"__metadata__":{"a":"1","a":"2"}}"#.to_string(), &["duplicate key"]),
        ("huge number", format!(r#"{{"t":{{"dtype":"F32","shape":[{}],"data_offsets":[0,4]}}}}"#, "9".repeat(5000)), &["not valid JSON", "number"]),
        ("leading zeros", r#"{"t":{"dtype":"F32","shape":[01],"data_offsets":[0,4]}}"#.to_string(), &["not valid JSON", "invalid number"]),
        ("bad escape", r#"{"t\q":1}"#.to_string(), &["not valid JSON", "escape"]),
        ("lone surrogate", r#"{"\ud800":1}"#.to_string(), &["not valid JSON", "escape"]),
        ("control char", "{\"a\u{1}\":1}".to_string(), &["not valid JSON", "control"]),
        ("metadata not an object", r#"{"__metadata__":["a"]}"#.to_string(), &["__metadata__", "expected an object"]),
        ("metadata value not a string", r#"{"__metadata__":{"a":{}}}"#.to_string(), &["metadata `a`", "expected a string"]),
        ("cut literal", "{\"a\":tru".to_string(), &["not valid JSON"]),
        ("trailing", "{} {}".to_string(), &["not valid JSON", "trailing"]),
        ("not an object", "[]".to_string(), &["expected an object"]),
        ("tensor not an object", r#"{"t":[1]}"#.to_string(), &["`t`", "expected an object"]),
    ] {
        expect_err(what, &raw_file(&header, &d), needles);
    }
    // Bytes that are not UTF-8 in a key.
    let mut b = raw_file("{\"xx\":1}", &d);
    b[10] = 0xff;
    expect_err("raw 0xff", &b, &["not valid JSON"]);
    // Many keys: a set finds the duplicate quickly (this would take a minute quadratically).
    let many = |n: usize| {
        let mut h = String::from("{");
        for i in 0..n {
            h.push_str(&format!("\"k{i}\":0,"));
        }
        h + "\"k7\":0}"
    };
    expect_err("duplicate among many", &raw_file(&many(60_000), &d), &["duplicate key", "k7"]);
    // More keys than the tensor cap: refused before anything is built for them.
    expect_err("too many keys", &raw_file(&many(200_000), &d), &["more than 65536 tensors"]);
}
}

test! {
fn bad_onnx() {
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("empty", vec![], &["no graph"]),
        ("truncated varint", vec![0x08, 0xff], &["malformed", "varint"]),
        ("field past the end", vec![0x3a, 0x05, 0x01], &["past the end"]),
        ("wire type 3", vec![0x0b], &["wire type"]),
        ("field 0", vec![0x00, 0x00], &["field number 0"]),
        ("11-byte varint", vec![0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], &["varint"]),
        ("huge length", { let mut m = vec![0x3a]; varint(&mut m, u64::MAX); m }, &["past the end"]),
        ("rank 9", model(&[tensor_proto("x", &[1; 9], 1, &[0.0], false)]), &["more than 8 dimensions"]),
        ("shape overflow", model(&[tensor_proto("x", &[1 << 31, 1 << 31, 1 << 31], 1, &[], false)]), &["`x`", "overflows"]),
        ("raw_data short", model(&[tensor_proto("functional_1/block1_conv1_1/Squeeze:0", &[64], 1, &[0.0; 63], false)]), &["block1_conv1_1/Squeeze:0", "raw_data"]),
        ("kernel missing", model(&[tensor_proto("functional_1/block1_conv1_1/Squeeze:0", &[64], 1, &[0.0; 64], false)]), &["block1_conv1", "conv1_1 kernel"]),
        ("narrow kernel", small_onnx(), &["conv1_1", "[64, 3, 3, 3]"]),
    ];
    for (what, bytes, needles) in cases {
        let msg = match convert::convert(&bytes, Some(Format::Onnx)) {
            Ok(_) => panic!("{what}: expected an error"),
            Err(e) => e.to_string(),
        };
        for n in needles {
            assert!(msg.contains(n), "{what}: `{msg}` should mention `{n}`");
        }
    }
    // External data and FLOAT16 tensors.
    let mut t = tensor_proto("functional_1/block1_conv1_1/Squeeze:0", &[64], 1, &[], false);
    key(&mut t, 14, 0);
    varint(&mut t, 1);
    let e = onnx::initializers(&model(&[t])).unwrap_err().to_string();
    assert!(e.contains("external") && e.contains("block1_conv1_1/Squeeze:0"), "{e}");
    let mut t = Vec::new();
    key(&mut t, 1, 0);
    varint(&mut t, 2);
    key(&mut t, 2, 0);
    varint(&mut t, 10); // FLOAT16
    bytes_field(&mut t, 8, b"h");
    bytes_field(&mut t, 9, &[0x00, 0x3c, 0x00, 0xc0]); // 1.0, -2.0
    let inits = onnx::initializers(&model(&[t])).unwrap();
    assert_eq!(inits[0].data, vec![1.0, -2.0]);
    // NaN in a kernel.
    let mut w = weights().clone();
    w.convs[2].w_hwio[5] = f32::NAN;
    let e = convert::convert(&keras_onnx(&w, false), None).unwrap_err().to_string();
    assert!(e.contains("block2_conv1") && e.contains("non-finite"), "{e}");
}
}

test! {
fn h5_of_another_architecture() {
    assert_eq!(convert::detect(OTHER_ARCH_H5), Some(Format::KerasH5));
    // Whatever state the .h5 reader is in, this file is an error, never a panic,
    // and the message says why (a reader names VGG16's layers it did not find).
    let msg = match std::panic::catch_unwind(|| convert::convert(OTHER_ARCH_H5, None)) {
        Ok(Ok(_)) => panic!("an .h5 of another architecture converted"),
        Ok(Err(e)) => e.to_string(),
        Err(_) => panic!("the .h5 reader panicked on a file of another architecture"),
    };
    let lower = msg.to_lowercase();
    assert!(
        ["not implemented", "vgg16", "block1_conv1", "conv1_1", "conv1_conv", "architecture"].iter().any(|n| lower.contains(n)),
        "the error `{msg}` does not say what is wrong"
    );
    // Truncated HDF5: also an error.
    for cut in [8, 100, 1000, OTHER_ARCH_H5.len() / 2] {
        let r = std::panic::catch_unwind(|| convert::convert(&OTHER_ARCH_H5[..cut], None));
        assert!(matches!(r, Ok(Err(_))), "cut at {cut}: expected an error, not a panic or success");
    }
}
}
