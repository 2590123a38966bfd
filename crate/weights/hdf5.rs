//! A reader for the HDF5 files Keras writes (`model.save_weights`, `model.save`
//! with the h5 format, and keras_vggface's VGG16), and their mapping onto
//! VGG16's layers. Reads only what those files use; refuses the rest with an
//! error that says what it met.

use super::{Result, WeightsError, WeightsFile};

/// Keras VGG16 (ImageNet, with or without top) or keras_vggface VGG16 → weights file.
pub fn convert_keras_h5(_bytes: &[u8]) -> Result<WeightsFile> {
    Err(WeightsError::Header("Keras .h5 conversion is not implemented yet".into()))
}
