//! featvis: feature visualization of VGG16 with hand-written WGSL compute
//! shaders, natively (CLI, tests) and in the browser (wasm + WebGPU).

pub mod bench;
pub mod checkpoint;
pub mod error;
pub mod gpu;
pub mod job;
pub mod model;
pub mod objective;
pub mod ops;
pub mod pipeline;
pub mod png;
pub mod reference;
pub mod render;
pub mod report;
pub mod rng;
pub mod transform;
pub mod tune;
pub mod weights;

#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};
pub use gpu::{ConvConfig, ConvShape, Gpu};
