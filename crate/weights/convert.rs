//! `featvis convert`: the weights files users have (Keras .h5, keras_vggface
//! .h5, torchvision .pth, ONNX, timm-style safetensors) into the project's
//! weights file. Format detection by magic bytes; each reader lives in its
//! own module. No file system access (builds for wasm too).

use super::{Result, WeightsError, WeightsFile};

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
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::KerasH5 => "Keras HDF5 (.h5)",
            Format::TorchPth => "PyTorch state dict (.pth)",
            Format::Onnx => "ONNX",
            Format::TimmSafetensors => "timm/torchvision safetensors",
        }
    }
}

/// Guess the format from the first bytes.
pub fn detect(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(b"\x89HDF\r\n\x1a\n") {
        Some(Format::KerasH5)
    } else if super::torch::looks_like_pth(bytes) {
        Some(Format::TorchPth)
    } else if bytes.len() >= 8 && u64::from_le_bytes(bytes[..8].try_into().unwrap()) < bytes.len() as u64 && bytes.get(8) == Some(&b'{') {
        Some(Format::TimmSafetensors)
    } else if bytes.first() == Some(&0x08) {
        Some(Format::Onnx)
    } else {
        None
    }
}

/// Convert `bytes` of the given (or detected) format.
pub fn convert(bytes: &[u8], format: Option<Format>) -> Result<WeightsFile> {
    let format = match format.or_else(|| detect(bytes)) {
        Some(f) => f,
        None => {
            return Err(WeightsError::Header(
                "unrecognized file format (expected Keras .h5, PyTorch .pth, ONNX or safetensors)".into(),
            ))
        }
    };
    match format {
        Format::KerasH5 => super::hdf5::convert_keras_h5(bytes),
        Format::TorchPth => super::torch::convert_pth(bytes),
        Format::Onnx => WeightsFile::from_keras_onnx(bytes),
        Format::TimmSafetensors => super::torch::convert_torch_safetensors(bytes),
    }
}
