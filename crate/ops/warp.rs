//! Per-image affine warp (bilinear, 0.5 outside) and its adjoint: shaders/warp.wgsl.

use bytemuck::{Pod, Zeroable};

use super::{check_len, check_u32, Shape};
use crate::error::{Error, Result};
use crate::gpu::{Binding, Dispatch, Gpu, KernelSpec, Tensor};
use crate::transform::Affine;

pub const SHADER: &str = include_str!("../../shaders/warp.wgsl");
const WG: u32 = 64;
const BINDINGS: [Binding; 4] = [Binding::Uniform, Binding::Read, Binding::Read, Binding::ReadWrite];

/// Uniform of the warp kernels; mirrors `WarpParams` in warp.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct WarpParams {
    pub batch: u32,
    pub height: u32,
    pub width: u32,
    pub total: u32,
}

/// The per-image maps on the GPU (rewritten every step).
pub struct WarpMaps {
    pub tensor: Tensor,
    pub batch: usize,
}

impl WarpMaps {
    pub fn new(gpu: &Gpu, batch: usize) -> Result<WarpMaps> {
        let tensor = gpu.tensor("warp maps", batch * 16)?;
        let maps = WarpMaps { tensor, batch };
        maps.set(gpu, &vec![Affine::identity(); batch])?;
        Ok(maps)
    }

    /// Upload one map per image; takes effect at the next submit.
    pub fn set(&self, gpu: &Gpu, maps: &[Affine]) -> Result<()> {
        if maps.len() != self.batch {
            return Err(Error::Invalid(format!("{} warp maps for a batch of {}", maps.len(), self.batch)));
        }
        let data: Vec<f32> = maps.iter().flat_map(|m| m.to_gpu()).collect();
        gpu.write(&self.tensor, &data)
    }
}

async fn prepare(gpu: &Gpu, entry: &'static str, shape: Shape, maps: &WarpMaps, src: &Tensor, dst: &Tensor) -> Result<Dispatch> {
    if shape.channels != 3 || maps.batch != shape.batch {
        return Err(Error::Invalid(format!("kernel `{entry}`: {shape} with {} maps (RGB images, one map each)", maps.batch)));
    }
    check_len(entry, "input", src, shape.padded_len())?;
    check_len(entry, "output", dst, shape.padded_len())?;
    let k = gpu
        .kernel(&KernelSpec {
            shader: "warp.wgsl",
            source: SHADER,
            entry,
            constants: vec![("WG", WG)],
            bindings: &BINDINGS,
            workgroup_size: WG,
        })
        .await?;
    let total = shape.pixels();
    let p = WarpParams {
        batch: check_u32(entry, "batch", shape.batch)?,
        height: check_u32(entry, "height", shape.height)?,
        width: check_u32(entry, "width", shape.width)?,
        total: check_u32(entry, "pixels", total)?,
    };
    gpu.dispatch(&k, Some(bytemuck::bytes_of(&p)), &[&maps.tensor.buffer, &src.buffer, &dst.buffer], total as u64).await
}

/// out = warp(img).
pub async fn forward(gpu: &Gpu, shape: Shape, maps: &WarpMaps, img: &Tensor, out: &Tensor) -> Result<Dispatch> {
    prepare(gpu, "warp_bilinear", shape, maps, img, out).await
}

/// d img = warpᵀ(d out).
pub async fn adjoint(gpu: &Gpu, shape: Shape, maps: &WarpMaps, dout: &Tensor, dimg: &Tensor) -> Result<Dispatch> {
    prepare(gpu, "warp_bilinear_adjoint", shape, maps, dout, dimg).await
}
