//! Fully connected layers, forward and backward to the input: shaders/fc.wgsl.
//! Weights are split by output feature into chunks that each fit one storage
//! binding of the device.

use bytemuck::{Pod, Zeroable};

use super::{c4, check_len, check_u32, dummy};
use crate::error::{Error, Result};
use crate::gpu::{Binding, Dispatch, Gpu, KernelSpec, Tensor};

pub const SHADER: &str = include_str!("../../shaders/fc.wgsl");
const WG: u32 = 64;
const BINDINGS: [Binding; 5] = [Binding::Uniform, Binding::Read, Binding::Read, Binding::Read, Binding::ReadWrite];

/// Uniform of the fc kernels; mirrors `FcParams` in fc.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct FcParams {
    pub batch: u32,
    pub in4: u32,
    pub out4: u32,
    pub chunk_out4: u32,
    pub o4_start: u32,
    pub total: u32,
    pub _pad: [u32; 2],
}

struct Chunk {
    o4_start: usize,
    out4: usize,
    weights: Tensor,
}

/// One fc layer on the GPU: weights (in, out) split into binding-sized chunks.
pub struct FcWeights {
    pub name: String,
    pub inputs: usize,
    pub outputs: usize,
    chunks: Vec<Chunk>,
    bias: Tensor,
}

impl FcWeights {
    /// `w_io`: (inputs, outputs) row-major; `inputs` must be a multiple of 4.
    /// `max_chunk_bytes` overrides the device's binding limit (tests use it
    /// to exercise the split on small layers).
    pub fn new(
        gpu: &Gpu,
        name: &str,
        inputs: usize,
        outputs: usize,
        w_io: &[f32],
        bias: &[f32],
        max_chunk_bytes: Option<u64>,
    ) -> Result<Self> {
        if inputs == 0 || outputs == 0 || !inputs.is_multiple_of(4) || w_io.len() != inputs * outputs || bias.len() != outputs {
            return Err(Error::Invalid(format!(
                "fc `{name}`: {} weights and {} biases for {inputs}→{outputs} (inputs must be a multiple of 4)",
                w_io.len(),
                bias.len()
            )));
        }
        let limit = max_chunk_bytes.unwrap_or(u64::MAX).min(gpu.max_binding_bytes());
        let row_bytes = (inputs * 16) as u64; // one output vec4 column over all inputs
        let per_chunk = (limit / row_bytes) as usize;
        if per_chunk == 0 {
            return Err(Error::Invalid(format!("fc `{name}`: one column of {inputs} inputs does not fit a storage binding")));
        }
        let out4 = c4(outputs);
        let mut chunks = Vec::new();
        let mut start = 0;
        while start < out4 {
            let n = per_chunk.min(out4 - start);
            let mut data = vec![0.0f32; inputs * n * 4];
            for i in 0..inputs {
                for o in 0..n * 4 {
                    let og = start * 4 + o;
                    if og < outputs {
                        data[i * n * 4 + o] = w_io[i * outputs + og];
                    }
                }
            }
            let weights = gpu.tensor_from(&format!("{name} weights [{}..{})", start * 4, (start + n) * 4), &data)?;
            chunks.push(Chunk { o4_start: start, out4: n, weights });
            start += n;
        }
        let mut b = vec![0.0; out4 * 4];
        b[..outputs].copy_from_slice(bias);
        let bias = gpu.tensor_from(&format!("{name} bias"), &b)?;
        Ok(FcWeights { name: name.to_string(), inputs, outputs, chunks, bias })
    }

    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }
}

async fn kernel(gpu: &Gpu, entry: &'static str, constants: Vec<(&'static str, u32)>) -> Result<std::sync::Arc<crate::gpu::Kernel>> {
    let mut constants = constants;
    constants.push(("WG", WG));
    gpu.kernel(&KernelSpec { shader: "fc.wgsl", source: SHADER, entry, constants, bindings: &BINDINGS, workgroup_size: WG }).await
}

/// y (B, c4(outputs)*4) = x' w + bias, x' = relu(x) if `relu_input`. One dispatch per chunk.
pub async fn forward(
    gpu: &Gpu,
    layer: &FcWeights,
    batch: usize,
    input: &Tensor,
    output: &Tensor,
    relu_input: bool,
) -> Result<Vec<Dispatch>> {
    let name = format!("fc_forward {}", layer.name);
    check_len(&name, "input", input, batch * layer.inputs)?;
    check_len(&name, "output", output, batch * c4(layer.outputs) * 4)?;
    let k = kernel(gpu, "fc_forward", vec![("RELU_INPUT", u32::from(relu_input))]).await?;
    let mut out = Vec::new();
    for c in &layer.chunks {
        let total = batch * c.out4;
        let p = FcParams {
            batch: check_u32(&name, "batch", batch)?,
            in4: check_u32(&name, "inputs", layer.inputs / 4)?,
            out4: check_u32(&name, "outputs", c4(layer.outputs))?,
            chunk_out4: c.out4 as u32,
            o4_start: c.o4_start as u32,
            total: check_u32(&name, "invocations", total)?,
            _pad: [0; 2],
        };
        out.push(
            gpu.dispatch(
                &k,
                Some(bytemuck::bytes_of(&p)),
                &[&input.buffer, &c.weights.buffer, &layer.bias.buffer, &output.buffer],
                total as u64,
            )
            .await?,
        );
    }
    Ok(out)
}

/// dx (B, inputs) = (dy wᵀ) * (mask > 0). One dispatch per chunk, accumulating.
pub async fn backward_input(
    gpu: &Gpu,
    layer: &FcWeights,
    batch: usize,
    grad_out: &Tensor,
    grad_in: &Tensor,
    mask: Option<&Tensor>,
) -> Result<Vec<Dispatch>> {
    let name = format!("fc_backward_input {}", layer.name);
    check_len(&name, "output gradient", grad_out, batch * c4(layer.outputs) * 4)?;
    check_len(&name, "input gradient", grad_in, batch * layer.inputs)?;
    if let Some(m) = mask {
        check_len(&name, "mask", m, batch * layer.inputs)?;
    }
    let unused = dummy(gpu, &name)?;
    let mut out = Vec::new();
    for (i, c) in layer.chunks.iter().enumerate() {
        let k =
            kernel(gpu, "fc_backward_input", vec![("ACCUMULATE", u32::from(i > 0)), ("MASK_OUTPUT", u32::from(mask.is_some()))]).await?;
        let total = batch * layer.inputs / 4;
        let p = FcParams {
            batch: check_u32(&name, "batch", batch)?,
            in4: check_u32(&name, "inputs", layer.inputs / 4)?,
            out4: check_u32(&name, "outputs", c4(layer.outputs))?,
            chunk_out4: c.out4 as u32,
            o4_start: c.o4_start as u32,
            total: check_u32(&name, "invocations", total)?,
            _pad: [0; 2],
        };
        out.push(
            gpu.dispatch(
                &k,
                Some(bytemuck::bytes_of(&p)),
                &[&grad_out.buffer, &c.weights.buffer, &mask.unwrap_or(&unused).buffer, &grad_in.buffer],
                total as u64,
            )
            .await?,
        );
    }
    Ok(out)
}
