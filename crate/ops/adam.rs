//! Adam on the GPU, as TensorFlow's AdamOptimizer (Lucid's) computes it:
//! shaders/adam.wgsl.

use bytemuck::{Pod, Zeroable};

use super::{check_len, check_u32};
use crate::error::{Error, Result};
use crate::gpu::{Binding, Dispatch, Gpu, KernelSpec, Tensor};

pub const SHADER: &str = include_str!("../../shaders/adam.wgsl");
const WG: u32 = 64;
const BINDINGS: [Binding; 5] = [Binding::Uniform, Binding::Read, Binding::ReadWrite, Binding::ReadWrite, Binding::ReadWrite];

/// Uniform of `adam_step`; mirrors `AdamParams` in adam.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct AdamParams {
    pub n4: u32,
    pub _pad: [u32; 3],
    pub lr_t: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub grad_sign: f32,
    pub _pad2: [f32; 3],
}

/// Lucid's defaults: lr 0.05, β1 0.9, β2 0.999, ε 1e-8.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

impl Default for Adam {
    fn default() -> Self {
        Adam { lr: 0.05, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

impl Adam {
    /// TensorFlow's bias-corrected step size for step `t` (1-based).
    pub fn lr_t(&self, t: u32) -> f32 {
        let t = t as f64;
        (self.lr as f64 * (1.0 - (self.beta2 as f64).powf(t)).sqrt() / (1.0 - (self.beta1 as f64).powf(t))) as f32
    }
}

/// A prepared Adam update of `param` (maximizing: the gradient of the
/// objective is negated into the loss gradient). Call [`AdamStep::set_step`]
/// before each submit.
pub struct AdamStep {
    pub dispatch: Dispatch,
    adam: Adam,
    n4: u32,
}

impl AdamStep {
    pub async fn new(gpu: &Gpu, adam: Adam, grad: &Tensor, param: &Tensor, m: &Tensor, v: &Tensor) -> Result<AdamStep> {
        if !param.len.is_multiple_of(4) {
            return Err(Error::Invalid(format!("adam: `{}` holds {} values, not a multiple of 4", param.label, param.len)));
        }
        for (what, t) in [("gradient", grad), ("first moment", m), ("second moment", v)] {
            check_len("adam_step", what, t, param.len)?;
        }
        let n4 = check_u32("adam_step", "parameters", param.len / 4)?;
        let k = gpu
            .kernel(&KernelSpec {
                shader: "adam.wgsl",
                source: SHADER,
                entry: "adam_step",
                constants: vec![("WG", WG)],
                bindings: &BINDINGS,
                workgroup_size: WG,
            })
            .await?;
        let p = Self::params(&adam, n4, 1);
        let dispatch =
            gpu.dispatch(&k, Some(bytemuck::bytes_of(&p)), &[&grad.buffer, &param.buffer, &m.buffer, &v.buffer], n4 as u64).await?;
        Ok(AdamStep { dispatch, adam, n4 })
    }

    fn params(adam: &Adam, n4: u32, t: u32) -> AdamParams {
        AdamParams {
            n4,
            _pad: [0; 3],
            lr_t: adam.lr_t(t),
            beta1: adam.beta1,
            beta2: adam.beta2,
            eps: adam.eps,
            grad_sign: -1.0,
            _pad2: [0.0; 3],
        }
    }

    /// Write step `t`'s (1-based) uniform; takes effect at the next submit.
    pub fn set_step(&self, gpu: &Gpu, t: u32) {
        if let Some(u) = self.dispatch.uniform() {
            gpu.queue.write_buffer(u, 0, bytemuck::bytes_of(&Self::params(&self.adam, self.n4, t.max(1))));
        }
    }
}

/// The same update on the CPU (f64), the tests' oracle.
pub fn reference_step(adam: &Adam, t: u32, grad_objective: &[f32], param: &mut [f64], m: &mut [f64], v: &mut [f64]) {
    let lr_t = adam.lr as f64 * (1.0 - (adam.beta2 as f64).powi(t as i32)).sqrt() / (1.0 - (adam.beta1 as f64).powi(t as i32));
    for i in 0..param.len() {
        let g = -(grad_objective[i] as f64);
        m[i] = adam.beta1 as f64 * m[i] + (1.0 - adam.beta1 as f64) * g;
        v[i] = adam.beta2 as f64 * v[i] + (1.0 - adam.beta2 as f64) * g * g;
        param[i] -= lr_t * m[i] / (v[i].sqrt() + adam.eps as f64);
    }
}
