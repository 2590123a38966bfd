//! The one error type of the library. Every variant says what went wrong and,
//! where there is one, what the user can do about it.

use std::fmt;

/// Which device limit a request ran into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitExceeded {
    /// What was being created, e.g. "activation buffer conv1_1 (B=4, 224x224x64)".
    pub what: String,
    /// The wgpu limit's name, e.g. "max_storage_buffer_binding_size".
    pub limit: &'static str,
    pub needed: u64,
    pub allowed: u64,
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Limits named *_size are bytes: both sides in binary units.
        if self.limit.ends_with("_size") {
            let (needed, allowed) = (crate::render::human_bytes(self.needed), crate::render::human_bytes(self.allowed));
            write!(f, "{} needs {needed}, but this device allows {allowed} ({}); use a smaller image size or batch", self.what, self.limit)
        } else {
            write!(
                f,
                "{} needs {} but this device's {} is {}; use a smaller image size or batch",
                self.what, self.needed, self.limit, self.allowed
            )
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no GPU adapter is available ({0}); natively install a Vulkan driver (e.g. mesa-vulkan-drivers), in a browser enable WebGPU")]
    NoAdapter(String),
    #[error("the GPU adapter refused to open a device: {0}")]
    RequestDevice(String),
    #[error("kernel `{kernel}` failed GPU validation: {message}")]
    Validation { kernel: String, message: String },
    #[error("kernel `{kernel}`: the GPU ran out of memory ({message}); use a smaller image size or batch")]
    OutOfMemory { kernel: String, message: String },
    #[error("{0}")]
    Limit(LimitExceeded),
    #[error("unknown layer `{name}`; known layers: {known}")]
    UnknownLayer { name: String, known: String },
    #[error("shader `{shader}` has no constant `{constant}` to specialize")]
    Specialize { shader: String, constant: String },
    #[error("{0}")]
    Invalid(String),
    #[error("the GPU device was lost ({0}); a new device is needed: reload the page, or run the command again")]
    DeviceLost(String),
    #[error("reading back `{buffer}` from the GPU failed: {message}")]
    Readback { buffer: String, message: String },
}

impl Error {
    pub(crate) fn from_wgpu(kernel: &str, e: wgpu::Error) -> Self {
        match e {
            wgpu::Error::OutOfMemory { source } => Error::OutOfMemory { kernel: kernel.to_string(), message: source.to_string() },
            wgpu::Error::Validation { description, .. } => Error::Validation { kernel: kernel.to_string(), message: description },
            wgpu::Error::Internal { description, .. } => Error::Validation { kernel: kernel.to_string(), message: description },
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
