//! Objective values and seeds (the gradient that starts the backward pass),
//! one objective per batch image: shaders/objective.wgsl.

use bytemuck::{Pod, Zeroable};

use super::{check_len, check_u32, Shape};
use crate::error::{Error, Result};
use crate::gpu::{Binding, Dispatch, Gpu, KernelSpec, Tensor};

pub const SHADER: &str = include_str!("../../shaders/objective.wgsl");
const WG: u32 = 64;
const BINDINGS: [Binding; 4] = [Binding::Uniform, Binding::Read, Binding::Read, Binding::ReadWrite];

/// Uniform of the objective kernels; mirrors `ObjParams` in objective.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ObjParams {
    pub batch: u32,
    pub height: u32,
    pub width: u32,
    pub c4: u32,
    pub total: u32,
    pub _pad: [u32; 3],
}

/// One image's objective; mirrors `ObjSpec` in objective.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable, PartialEq)]
pub struct ObjSpec {
    pub kind: u32,
    pub channel: u32,
    pub x: u32,
    pub y: u32,
    pub weight: f32,
    pub post_relu: u32,
    pub _pad: [u32; 2],
}

pub const KIND_CHANNEL: u32 = 0;
pub const KIND_NEURON: u32 = 1;

/// What one image maximizes at the target layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// Mean over space of one channel.
    Channel(usize),
    /// One channel at one position (x, y).
    Neuron { channel: usize, x: usize, y: usize },
}

impl Target {
    pub fn channel(&self) -> usize {
        match *self {
            Target::Channel(c) => c,
            Target::Neuron { channel, .. } => channel,
        }
    }

    /// Check the target against the layer's shape.
    pub fn spec(&self, layer: &str, shape: Shape, weight: f32, post_relu: bool) -> Result<ObjSpec> {
        let c = self.channel();
        if c >= shape.channels {
            return Err(Error::Invalid(format!(
                "channel {c} is out of range for layer `{layer}`, which has channels 0..{}",
                shape.channels - 1
            )));
        }
        let (kind, x, y) = match *self {
            Target::Channel(_) => (KIND_CHANNEL, 0, 0),
            Target::Neuron { x, y, .. } => {
                if x >= shape.width || y >= shape.height {
                    return Err(Error::Invalid(format!(
                        "neuron position ({x}, {y}) is outside layer `{layer}`, which is {}x{} (x < {}, y < {})",
                        shape.width, shape.height, shape.width, shape.height
                    )));
                }
                (KIND_NEURON, x as u32, y as u32)
            }
        };
        Ok(ObjSpec { kind, channel: c as u32, x, y, weight, post_relu: u32::from(post_relu), _pad: [0; 2] })
    }
}

fn params(name: &str, shape: Shape, total: usize) -> Result<ObjParams> {
    Ok(ObjParams {
        batch: check_u32(name, "batch", shape.batch)?,
        height: check_u32(name, "height", shape.height)?,
        width: check_u32(name, "width", shape.width)?,
        c4: check_u32(name, "channels", shape.c4())?,
        total: check_u32(name, "invocations", total)?,
        _pad: [0; 3],
    })
}

fn check_specs(name: &str, specs: &Tensor, shape: Shape) -> Result<()> {
    check_len(name, "objective specs", specs, shape.batch * 8)
}

/// Write d(objective)/d(target pre-activation) over the whole target tensor.
/// `specs` holds one [`ObjSpec`] per image (as raw f32 words, see [`specs_tensor`]).
pub async fn seed(gpu: &Gpu, shape: Shape, specs: &Tensor, target: &Tensor, grad: &Tensor) -> Result<Dispatch> {
    let name = "objective_seed";
    check_specs(name, specs, shape)?;
    check_len(name, "target", target, shape.padded_len())?;
    check_len(name, "gradient", grad, shape.padded_len())?;
    let k = gpu
        .kernel(&KernelSpec { shader: "objective.wgsl", source: SHADER, entry: name, constants: vec![("WG", WG)], bindings: &BINDINGS, workgroup_size: WG })
        .await?;
    let total = shape.pixels() * shape.c4();
    let p = params(name, shape, total)?;
    gpu.dispatch(&k, Some(bytemuck::bytes_of(&p)), &[&specs.buffer, &target.buffer, &grad.buffer], total as u64).await
}

/// Write each image's weighted objective value to `values[4*b]`.
pub async fn value(gpu: &Gpu, shape: Shape, specs: &Tensor, target: &Tensor, values: &Tensor) -> Result<Dispatch> {
    let name = "objective_value";
    check_specs(name, specs, shape)?;
    check_len(name, "target", target, shape.padded_len())?;
    check_len(name, "values", values, shape.batch * 4)?;
    let k = gpu
        .kernel(&KernelSpec { shader: "objective.wgsl", source: SHADER, entry: name, constants: vec![("WG", WG)], bindings: &BINDINGS, workgroup_size: WG })
        .await?;
    let p = params(name, shape, shape.batch)?;
    let wg = gpu.split_workgroups(shape.batch as u64)?;
    gpu.dispatch_groups(&k, Some(bytemuck::bytes_of(&p)), &[&specs.buffer, &target.buffer, &values.buffer], wg).await
}

/// Upload per-image specs (8 words each).
pub fn specs_tensor(gpu: &Gpu, specs: &[ObjSpec]) -> Result<Tensor> {
    let words: &[f32] = bytemuck::cast_slice(specs);
    gpu.tensor_from("objective specs", words)
}
