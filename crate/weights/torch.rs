//! torchvision vgg16 state dicts as `torch.save` writes them (a zip archive
//! holding a pickle and one storage file per tensor), mapped onto VGG16's
//! layers with the OIHW → HWIO transposition.

use super::{Result, WeightsError, WeightsFile};

/// A torchvision vgg16 `.pth` state dict → weights file (RGB, torchvision preprocessing).
pub fn convert_pth(_bytes: &[u8]) -> Result<WeightsFile> {
    Err(WeightsError::Header("PyTorch .pth conversion is not implemented yet".into()))
}

/// A safetensors file with torchvision/timm names (`features.0.weight` OIHW,
/// `classifier.0.weight` (out, in), …) → weights file (torchvision preprocessing).
pub fn convert_torch_safetensors(_bytes: &[u8]) -> Result<WeightsFile> {
    Err(WeightsError::Header("timm safetensors conversion is not implemented yet".into()))
}
