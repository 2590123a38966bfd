//! Shared by the weights tests (weights_bad, weights_convert, weights_h5,
//! weights_torch, fuzz_weights, weights_cli, weights_parity): a seeded generator, valid files to start from (made
//! here, no fixtures), a protobuf encoder for ONNX models like the default
//! one, and safetensors header surgery.
#![allow(dead_code)]

use std::sync::OnceLock;

use featvis::model::{Vgg16Weights, CONVS};
use featvis::weights::{Preprocessing, WeightsFile};

/// A CPU test in both lanes: `#[test]` natively, wasm_bindgen_test in the browser.
#[macro_export]
macro_rules! test {
    (fn $name:ident() $body:block) => {
        #[cfg_attr(not(target_arch = "wasm32"), test)]
        #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
        fn $name() $body
    };
}

/// Widths of the narrow VGG16 the converter fixtures use (also in
/// tools/h5_fixtures.py and tools/torch_fixtures.py).
pub const NARROW: [usize; 13] = [4, 4, 6, 6, 8, 8, 8, 8, 8, 8, 8, 8, 8];
pub const NARROW_FC: [usize; 3] = [16, 16, 10];

/// xorshift64: the same sequence natively and in wasm.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }

    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform()).collect()
    }

    /// Uniform in 0..n (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Random VGG16 weights (no head), made once.
pub fn weights() -> &'static Vgg16Weights {
    static W: OnceLock<Vgg16Weights> = OnceLock::new();
    W.get_or_init(|| Vgg16Weights::random(11, None))
}

pub fn keras_file() -> WeightsFile {
    WeightsFile {
        weights: weights().clone(),
        preprocessing: Preprocessing::keras(),
        source: "weights_common".into(),
        license: "test".into(),
    }
}

/// A valid F32 weights file, made once.
pub fn valid_f32() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| keras_file().to_bytes(false))
}

/// The JSON header of a safetensors file, and where its data starts.
pub fn header_of(bytes: &[u8]) -> (String, usize) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (String::from_utf8(bytes[8..8 + n].to_vec()).unwrap(), 8 + n)
}

/// `bytes` with its header replaced by `header` (the data kept as is).
pub fn with_header(bytes: &[u8], header: &str) -> Vec<u8> {
    let (_, data) = header_of(bytes);
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&bytes[data..]);
    out
}

/// `bytes` with `from` replaced once in its header (which must contain it).
pub fn edit_header(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let (h, _) = header_of(bytes);
    assert!(h.contains(from), "the header has no `{from}`");
    with_header(bytes, &h.replacen(from, to, 1))
}

/// The header entry of one tensor: `"name":{...}`.
pub fn entry(header: &str, name: &str) -> String {
    let start = header.find(&format!("\"{name}\":{{")).unwrap_or_else(|| panic!("no `{name}` in the header"));
    let end = start + header[start..].find('}').unwrap() + 1;
    header[start..end].to_string()
}

/// An F32 safetensors file without the tensors `drop` (data and metadata kept otherwise).
pub fn without(bytes: &[u8], drop: &[&str]) -> Vec<u8> {
    use featvis::weights::safetensors::{self, Dtype, TensorOut};
    let st = safetensors::parse(bytes).unwrap();
    let kept: Vec<(String, Vec<usize>, Vec<f32>)> = st
        .tensors
        .iter()
        .filter(|t| !drop.contains(&t.name.as_str()))
        .map(|t| (t.name.clone(), t.shape.clone(), t.to_f32().unwrap()))
        .collect();
    let outs: Vec<TensorOut<'_>> = kept.iter().map(|(n, s, v)| TensorOut { name: n, shape: s.clone(), values: v }).collect();
    let meta: Vec<(String, String)> = st.metadata.clone().into_iter().collect();
    safetensors::write(&outs, &meta, Dtype::F32)
}

/// A safetensors file from a raw header and data.
pub fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

// ---- ONNX: a protobuf encoder, enough to build a model like the real one.

pub fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn key(out: &mut Vec<u8>, field: u64, wire: u64) {
    varint(out, field << 3 | wire);
}

pub fn bytes_field(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    key(out, field, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A TensorProto with raw_data (FLOAT = 1), or float_data packed (`packed`).
pub fn tensor_proto(name: &str, dims: &[usize], data_type: u64, values: &[f32], packed: bool) -> Vec<u8> {
    let mut t = Vec::new();
    for &d in dims {
        key(&mut t, 1, 0);
        varint(&mut t, d as u64);
    }
    key(&mut t, 2, 0);
    varint(&mut t, data_type);
    let le: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    if packed {
        bytes_field(&mut t, 4, &le);
        bytes_field(&mut t, 8, name.as_bytes());
    } else {
        bytes_field(&mut t, 8, name.as_bytes());
        bytes_field(&mut t, 9, &le);
    }
    t
}

pub fn model(initializers: &[Vec<u8>]) -> Vec<u8> {
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

/// HWIO → OIHW.
pub fn hwio_to_oihw(w: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; w.len()];
    for o in 0..cout {
        for i in 0..cin {
            for t in 0..9 {
                out[(o * cin + i) * 9 + t] = w[(t * cin + i) * cout + o];
            }
        }
    }
    out
}

/// A Keras VGG16 exported to ONNX, named as tf2onnx names the default
/// model's tensors; `head`: Keras's fc1, fc2, predictions as (in, out)
/// MatMul kernels, or `dense` layers of other shapes when `other_head`.
pub fn keras_onnx(w: &Vgg16Weights, other_head: bool) -> Vec<u8> {
    let mut inits = Vec::new();
    for (&(name, cin, cout), c) in CONVS.iter().zip(&w.convs) {
        let keras = format!("block{}_conv{}", &name[4..5], &name[6..7]);
        inits.push(tensor_proto(
            &format!("functional_1/{keras}_1/convolution/ReadVariableOp:0"),
            &[cout, cin, 3, 3],
            1,
            &hwio_to_oihw(&c.w_hwio, cin, cout),
            false,
        ));
        inits.push(tensor_proto(&format!("functional_1/{keras}_1/Squeeze:0"), &[cout], 1, &c.bias, false));
    }
    let names = ["fc1", "fc2", "predictions"];
    for (n, f) in names.iter().zip(&w.fcs) {
        inits.push(tensor_proto(&format!("vgg16/{n}/MatMul/ReadVariableOp:0"), &[f.inputs, f.outputs], 1, &f.w_io, false));
        inits.push(tensor_proto(&format!("vgg16/{n}/BiasAdd/ReadVariableOp:0"), &[f.outputs], 1, &f.bias, false));
    }
    if other_head {
        inits.push(tensor_proto("functional_1/dense_1/Cast/ReadVariableOp:0", &[25088, 2], 1, &vec![0.5; 25088 * 2], false));
        inits.push(tensor_proto("functional_1/dense_1/BiasAdd/ReadVariableOp:0", &[2], 1, &[0.1, 0.2], false));
    }
    model(&inits)
}

/// A small ONNX model with every encoding the reader takes (a narrow
/// conv1_1: the conversion refuses its shape, the reader reads it all).
pub fn small_onnx() -> Vec<u8> {
    let vals: Vec<f32> = (0..40).map(|i| i as f32 * 0.25 - 3.0).collect();
    model(&[
        tensor_proto("functional_1/block1_conv1_1/Squeeze:0", &[4], 1, &vals[..4], false),
        tensor_proto("functional_1/block1_conv1_1/convolution/ReadVariableOp:0", &[4, 3, 3, 1], 1, &vals[..36], true),
        tensor_proto("c", &[2], 7, &vals[..4], false),
    ])
}

// ---- A torchvision .pth as torch.save writes it (stored zip members,
// pickle protocol 2), enough for a full-size state dict.

fn pickle_str(p: &mut Vec<u8>, s: &str) {
    p.push(b'X');
    p.extend((s.len() as u32).to_le_bytes());
    p.extend(s.bytes());
}

fn pickle_int(p: &mut Vec<u8>, v: u64) {
    match v {
        0..=255 => p.extend([b'K', v as u8]),
        256..=65535 => p.extend([b'M', v as u8, (v >> 8) as u8]),
        _ => {
            p.push(b'J');
            p.extend((v as u32).to_le_bytes());
        }
    }
}

fn pickle_global(p: &mut Vec<u8>, module: &str, name: &str) {
    p.push(b'c');
    p.extend(format!("{module}\n{name}\n").bytes());
}

fn pickle_ints(p: &mut Vec<u8>, v: &[u64]) {
    p.push(b'(');
    for &x in v {
        pickle_int(p, x);
    }
    p.push(b't');
}

/// A zip archive of stored members.
pub fn stored_zip(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in members {
        let crc = crc32fast::hash(data);
        let offset = out.len() as u32;
        let header = |sig: u32, central_entry: bool| {
            let mut h = Vec::new();
            h.extend(sig.to_le_bytes());
            if central_entry {
                h.extend(20u16.to_le_bytes());
            }
            h.extend(20u16.to_le_bytes());
            h.extend(0u16.to_le_bytes()); // flags
            h.extend(0u16.to_le_bytes()); // stored
            h.extend([0u8; 4]); // time, date
            h.extend(crc.to_le_bytes());
            h.extend((data.len() as u32).to_le_bytes());
            h.extend((data.len() as u32).to_le_bytes());
            h.extend((name.len() as u16).to_le_bytes());
            h.extend(0u16.to_le_bytes()); // extra
            if central_entry {
                h.extend([0u8; 10]); // comment, disk, internal and external attributes
                h.extend(offset.to_le_bytes());
            }
            h.extend(name.as_bytes());
            h
        };
        out.extend(header(0x0403_4b50, false));
        out.extend_from_slice(data);
        central.extend(header(0x0201_4b50, true));
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend((members.len() as u16).to_le_bytes());
    out.extend((members.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

/// A torchvision vgg16 state dict (`features.N.weight` OIHW, `.bias`) of
/// `w`'s trunk as a .pth.
pub fn torchvision_pth(w: &Vgg16Weights) -> Vec<u8> {
    use featvis::weights::torch::FEATURE_INDICES;
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for ((&idx, &(_, cin, cout)), c) in FEATURE_INDICES.iter().zip(&CONVS).zip(&w.convs) {
        tensors.push((format!("features.{idx}.weight"), vec![cout, cin, 3, 3], hwio_to_oihw(&c.w_hwio, cin, cout)));
        tensors.push((format!("features.{idx}.bias"), vec![cout], c.bias.clone()));
    }
    let mut p = vec![0x80, 2];
    pickle_global(&mut p, "collections", "OrderedDict");
    p.extend([b'q', 0, b')', b'R', b'q', 1, b'(']);
    for (i, (name, shape, values)) in tensors.iter().enumerate() {
        pickle_str(&mut p, name);
        pickle_global(&mut p, "torch._utils", "_rebuild_tensor_v2");
        p.extend(b"((");
        pickle_str(&mut p, "storage");
        pickle_global(&mut p, "torch", "FloatStorage");
        pickle_str(&mut p, &i.to_string());
        pickle_str(&mut p, "cpu");
        pickle_int(&mut p, values.len() as u64);
        p.extend(b"tQ");
        pickle_int(&mut p, 0);
        let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        pickle_ints(&mut p, &dims);
        let mut stride = vec![1u64; shape.len()];
        for d in (0..shape.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1] * shape[d + 1] as u64;
        }
        pickle_ints(&mut p, &stride);
        p.push(0x89);
        pickle_global(&mut p, "collections", "OrderedDict");
        p.extend(b")Rt");
        p.push(b'R');
    }
    p.extend(b"u}");
    pickle_str(&mut p, "_metadata");
    p.extend(b"}sb.");
    let mut members = vec![("archive/data.pkl".to_string(), p), ("archive/byteorder".to_string(), b"little".to_vec())];
    for (i, (_, _, values)) in tensors.iter().enumerate() {
        members.push((format!("archive/data/{i}"), values.iter().flat_map(|v| v.to_le_bytes()).collect()));
    }
    members.push(("archive/version".to_string(), b"3\n".to_vec()));
    stored_zip(&members)
}
