//! maxpool 2×2/2 and adaptive average pooling, forward and backward: shaders/pool.wgsl.

use bytemuck::{Pod, Zeroable};

use super::{check_len, check_u32, dummy, Shape};
use crate::error::{Error, Result};
use crate::gpu::{Binding, Dispatch, Gpu, KernelSpec, Tensor};

pub const SHADER: &str = include_str!("../../shaders/pool.wgsl");
const WG: u32 = 64;
const BINDINGS: [Binding; 4] = [Binding::Uniform, Binding::Read, Binding::Read, Binding::ReadWrite];

/// Uniform of the pooling kernels; mirrors `PoolParams` in pool.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct PoolParams {
    pub batch: u32,
    pub in_h: u32,
    pub in_w: u32,
    pub c4: u32,
    pub out_h: u32,
    pub out_w: u32,
    pub total: u32,
    pub _pad: u32,
}

/// Output shape of maxpool 2×2/2 (floor).
pub fn maxpool_shape(input: Shape) -> Shape {
    Shape { height: input.height / 2, width: input.width / 2, ..input }
}

async fn prepare(
    gpu: &Gpu,
    entry: &'static str,
    input: Shape,
    output: Shape,
    over_input: bool,
    mask: bool,
    buffers: [&wgpu::Buffer; 3],
) -> Result<Dispatch> {
    let k = gpu
        .kernel(&KernelSpec {
            shader: "pool.wgsl",
            source: SHADER,
            entry,
            constants: if entry == "maxpool2x2_backward" { vec![("WG", WG), ("MASK_INPUT", u32::from(mask))] } else { vec![("WG", WG)] },
            bindings: &BINDINGS,
            workgroup_size: WG,
        })
        .await?;
    let invocations = if entry == "maxpool2x2_backward" {
        // One invocation per 2x2 block of the input (see pool.wgsl).
        input.batch * input.height.div_ceil(2) * input.width.div_ceil(2) * input.c4()
    } else if over_input {
        input.pixels() * input.c4()
    } else {
        output.pixels() * output.c4()
    };
    let p = PoolParams {
        batch: check_u32(entry, "batch", input.batch)?,
        in_h: check_u32(entry, "height", input.height)?,
        in_w: check_u32(entry, "width", input.width)?,
        c4: check_u32(entry, "channels", input.c4())?,
        out_h: check_u32(entry, "height", output.height)?,
        out_w: check_u32(entry, "width", output.width)?,
        total: check_u32(entry, "invocations", invocations)?,
        _pad: 0,
    };
    gpu.dispatch(&k, Some(bytemuck::bytes_of(&p)), &buffers, invocations as u64).await
}

fn check_pool(name: &str, input: Shape) -> Result<()> {
    if input.height < 2 || input.width < 2 {
        return Err(Error::Invalid(format!(
            "`{name}`: a 2x2 max pool needs at least 2x2 pixels, the input is {}x{}",
            input.height, input.width
        )));
    }
    Ok(())
}

/// y = relu(maxpool2x2(x)); `input` is the pre-ReLU conv activation.
pub async fn maxpool_forward(gpu: &Gpu, name: &str, input_shape: Shape, input: &Tensor, output: &Tensor) -> Result<Dispatch> {
    check_pool(name, input_shape)?;
    let out = maxpool_shape(input_shape);
    check_len("maxpool2x2_forward", "input", input, input_shape.padded_len())?;
    check_len("maxpool2x2_forward", "output", output, out.padded_len())?;
    let unused = dummy(gpu, "maxpool2x2_forward")?;
    prepare(gpu, "maxpool2x2_forward", input_shape, out, false, false, [&input.buffer, &unused.buffer, &output.buffer]).await
}

/// dx (shape of the input) from dy (shape of the output) and the forward
/// input; with `mask`, times the input's ReLU mask (input > 0).
pub async fn maxpool_backward(
    gpu: &Gpu,
    name: &str,
    input_shape: Shape,
    input: &Tensor,
    grad_out: &Tensor,
    grad_in: &Tensor,
    mask: bool,
) -> Result<Dispatch> {
    check_pool(name, input_shape)?;
    let out = maxpool_shape(input_shape);
    check_len("maxpool2x2_backward", "input", input, input_shape.padded_len())?;
    check_len("maxpool2x2_backward", "output gradient", grad_out, out.padded_len())?;
    check_len("maxpool2x2_backward", "input gradient", grad_in, input_shape.padded_len())?;
    prepare(gpu, "maxpool2x2_backward", input_shape, out, true, mask, [&grad_out.buffer, &input.buffer, &grad_in.buffer]).await
}

/// Adaptive average pooling of `input_shape` to `out_h` × `out_w` (torchvision's).
pub async fn adaptive_avgpool_forward(
    gpu: &Gpu,
    input_shape: Shape,
    out_h: usize,
    out_w: usize,
    input: &Tensor,
    output: &Tensor,
) -> Result<Dispatch> {
    let out = Shape { height: out_h, width: out_w, ..input_shape };
    check_len("adaptive_avgpool_forward", "input", input, input_shape.padded_len())?;
    check_len("adaptive_avgpool_forward", "output", output, out.padded_len())?;
    let unused = dummy(gpu, "adaptive_avgpool_forward")?;
    prepare(gpu, "adaptive_avgpool_forward", input_shape, out, false, false, [&input.buffer, &unused.buffer, &output.buffer]).await
}

pub async fn adaptive_avgpool_backward(
    gpu: &Gpu,
    input_shape: Shape,
    out_h: usize,
    out_w: usize,
    grad_out: &Tensor,
    grad_in: &Tensor,
) -> Result<Dispatch> {
    let out = Shape { height: out_h, width: out_w, ..input_shape };
    check_len("adaptive_avgpool_backward", "output gradient", grad_out, out.padded_len())?;
    check_len("adaptive_avgpool_backward", "input gradient", grad_in, input_shape.padded_len())?;
    let unused = dummy(gpu, "adaptive_avgpool_backward")?;
    prepare(gpu, "adaptive_avgpool_backward", input_shape, out, true, false, [&grad_out.buffer, &unused.buffer, &grad_in.buffer]).await
}
