//! Colour decorrelation + sigmoid, and the model's preprocessing, forward
//! and adjoint: shaders/image.wgsl.

use bytemuck::{Pod, Zeroable};

use super::{check_len, check_u32, dummy, Shape};
use crate::error::{Error, Result};
use crate::gpu::{Binding, Dispatch, Gpu, KernelSpec, Tensor};
use crate::weights::Preprocessing;

pub const SHADER: &str = include_str!("../../shaders/image.wgsl");
const WG: u32 = 64;
const BINDINGS: [Binding; 4] = [Binding::Uniform, Binding::Read, Binding::Read, Binding::ReadWrite];

/// Lucid's `color_correlation_svd_sqrt`.
pub const COLOR_CORRELATION_SQRT: [[f32; 3]; 3] = [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]];
/// Its largest column L2 norm, by which Lucid divides it.
pub const MAX_NORM: f32 = 0.4619524;

/// Uniform of the image kernels; mirrors `ImageParams` in image.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ImageParams {
    pub pixels: u32,
    pub _pad: [u32; 3],
    pub mean: [f32; 4],
    pub inv_std: [f32; 4],
    pub perm: [u32; 4],
    pub scale: [f32; 4],
}

fn params(pixels: usize, pre: &Preprocessing) -> Result<ImageParams> {
    let perm = pre.perm();
    Ok(ImageParams {
        pixels: check_u32("image", "pixels", pixels)?,
        _pad: [0; 3],
        mean: [pre.mean[0], pre.mean[1], pre.mean[2], 0.0],
        inv_std: [1.0 / pre.std[0], 1.0 / pre.std[1], 1.0 / pre.std[2], 0.0],
        perm: [perm[0] as u32, perm[1] as u32, perm[2] as u32, 3],
        scale: [pre.scale, 0.0, 0.0, 0.0],
    })
}

async fn prepare(gpu: &Gpu, entry: &'static str, decorrelate: bool, p: ImageParams, bufs: [&wgpu::Buffer; 3]) -> Result<Dispatch> {
    let k = gpu
        .kernel(&KernelSpec {
            shader: "image.wgsl",
            source: SHADER,
            entry,
            constants: vec![("WG", WG), ("DECORRELATE", u32::from(decorrelate))],
            bindings: &BINDINGS,
            workgroup_size: WG,
        })
        .await?;
    gpu.dispatch(&k, Some(bytemuck::bytes_of(&p)), &bufs, p.pixels as u64).await
}

fn check_image(kernel: &str, shape: Shape, tensors: &[(&str, &Tensor)]) -> Result<()> {
    if shape.channels != 3 {
        return Err(Error::Invalid(format!("kernel `{kernel}`: images have 3 channels, not {}", shape.channels)));
    }
    for (what, t) in tensors {
        check_len(kernel, what, t, shape.padded_len())?;
    }
    Ok(())
}

/// img = sigmoid(C·t) (or sigmoid(t) without decorrelation).
pub async fn color_forward(gpu: &Gpu, shape: Shape, decorrelate: bool, t: &Tensor, img: &Tensor) -> Result<Dispatch> {
    check_image("color_sigmoid_forward", shape, &[("input", t), ("image", img)])?;
    let unused = dummy(gpu, "color_sigmoid_forward")?;
    let p = params(shape.pixels(), &Preprocessing::keras())?;
    prepare(gpu, "color_sigmoid_forward", decorrelate, p, [&t.buffer, &unused.buffer, &img.buffer]).await
}

/// dt = Cᵀ (dimg ⊙ img ⊙ (1 − img)).
pub async fn color_backward(gpu: &Gpu, shape: Shape, decorrelate: bool, dimg: &Tensor, img: &Tensor, dt: &Tensor) -> Result<Dispatch> {
    check_image("color_sigmoid_backward", shape, &[("image gradient", dimg), ("image", img), ("gradient", dt)])?;
    let p = params(shape.pixels(), &Preprocessing::keras())?;
    prepare(gpu, "color_sigmoid_backward", decorrelate, p, [&dimg.buffer, &img.buffer, &dt.buffer]).await
}

/// x = preprocess(img).
pub async fn preprocess_forward(gpu: &Gpu, shape: Shape, pre: &Preprocessing, img: &Tensor, x: &Tensor) -> Result<Dispatch> {
    pre.validate()?;
    check_image("preprocess_forward", shape, &[("image", img), ("network input", x)])?;
    let unused = dummy(gpu, "preprocess_forward")?;
    prepare(gpu, "preprocess_forward", false, params(shape.pixels(), pre)?, [&img.buffer, &unused.buffer, &x.buffer]).await
}

/// dimg = preprocessᵀ(dx).
pub async fn preprocess_backward(gpu: &Gpu, shape: Shape, pre: &Preprocessing, dx: &Tensor, dimg: &Tensor) -> Result<Dispatch> {
    pre.validate()?;
    check_image("preprocess_backward", shape, &[("input gradient", dx), ("image gradient", dimg)])?;
    let unused = dummy(gpu, "preprocess_backward")?;
    prepare(gpu, "preprocess_backward", false, params(shape.pixels(), pre)?, [&dx.buffer, &unused.buffer, &dimg.buffer]).await
}
