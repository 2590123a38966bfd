//! One Rust file per shader family: the uniform struct (defined once, with a
//! test that its size matches the WGSL struct), the packing of constant data
//! and the functions that prepare [`crate::gpu::Dispatch`]es.
//!
//! Layout conventions shared by every op: activations are NHWC with the
//! channel dimension padded to a multiple of 4 and read as `vec4<f32>`.

pub mod adam;
pub mod conv;
pub mod conv_gen;
pub mod fc;
pub mod fourier;
pub mod image;
pub mod objective;
pub mod pool;
pub mod warp;

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};

/// Channel vec4s for `c` channels.
pub fn c4(c: usize) -> usize {
    c.div_ceil(4)
}

/// Activation shape (B, H, W, C); stored with C padded to a multiple of 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
}

impl Shape {
    pub fn new(batch: usize, height: usize, width: usize, channels: usize) -> Self {
        Shape { batch, height, width, channels }
    }
    pub fn c4(&self) -> usize {
        c4(self.channels)
    }
    /// Bytes of the padded storage, computed in 64 bits (no overflow on
    /// wasm32, where usize is 32 bits).
    pub fn padded_bytes(&self) -> u64 {
        [self.batch, self.height, self.width, self.c4(), 16].iter().fold(1u64, |a, &v| a.saturating_mul(v as u64))
    }
    /// f32 values in the padded storage (check [`Shape::padded_bytes`] against
    /// the device limits first).
    pub fn padded_len(&self) -> usize {
        self.batch * self.height * self.width * self.c4() * 4
    }
    pub fn pixels(&self) -> usize {
        self.batch * self.height * self.width
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}x{}", self.batch, self.height, self.width, self.channels)
    }
}

/// Pad an unpadded NHWC tensor to the vec4 channel layout.
pub fn pad_channels(data: &[f32], shape: Shape) -> Vec<f32> {
    let c = shape.channels;
    let cp = shape.c4() * 4;
    let mut out = vec![0.0; shape.padded_len()];
    for (p, src) in data.chunks_exact(c).enumerate() {
        out[p * cp..p * cp + c].copy_from_slice(src);
    }
    out
}

/// Drop the channel padding.
pub fn unpad_channels(data: &[f32], shape: Shape) -> Vec<f32> {
    let c = shape.channels;
    let cp = shape.c4() * 4;
    let mut out = Vec::with_capacity(shape.pixels() * c);
    for p in 0..shape.pixels() {
        out.extend_from_slice(&data[p * cp..p * cp + c]);
    }
    out
}

pub(crate) fn check_len(kernel: &str, what: &str, t: &Tensor, needed: usize) -> Result<()> {
    if t.len < needed {
        return Err(Error::Invalid(format!("kernel `{kernel}`: {what} `{}` holds {} values but the shape needs {needed}", t.label, t.len)));
    }
    Ok(())
}

pub(crate) fn check_u32(kernel: &str, what: &str, n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::Invalid(format!("kernel `{kernel}`: {what} = {n} does not fit in 32 bits")))
}

/// A 4-value buffer for bindings a kernel variant does not read.
pub(crate) fn dummy(gpu: &Gpu, kernel: &str) -> Result<Tensor> {
    gpu.tensor(&format!("{kernel} (unused binding)"), 4)
}
