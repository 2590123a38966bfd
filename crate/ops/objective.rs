//! The objective's kernels: values and seeds of per-layer specs
//! (shaders/objective.wgsl), diversity (shaders/diversity.wgsl), the input
//! image's regularizers (shaders/regularize.wgsl) and Lucid's redirected
//! ReLU gradient (shaders/relu.wgsl). What the specs mean is in
//! [`crate::objective`].

use bytemuck::{Pod, Zeroable};

use super::{check_len, check_u32, Shape};
use crate::error::{Error, Result};
use crate::gpu::{Binding, Dispatch, Gpu, KernelSpec, Tensor};
pub use crate::objective::{ImageReg, ObjSpec, ALL_IMAGES, KIND_CHANNEL, KIND_NEURON};

pub const SHADER: &str = include_str!("../../shaders/objective.wgsl");
pub const DIVERSITY_SHADER: &str = include_str!("../../shaders/diversity.wgsl");
pub const REGULARIZE_SHADER: &str = include_str!("../../shaders/regularize.wgsl");
pub const RELU_SHADER: &str = include_str!("../../shaders/relu.wgsl");
const WG: u32 = 64;
const OBJ_BINDINGS: [Binding; 5] = [Binding::Uniform, Binding::Read, Binding::Read, Binding::Read, Binding::ReadWrite];
const BINDINGS4: [Binding; 4] = [Binding::Uniform, Binding::Read, Binding::Read, Binding::ReadWrite];
const RELU_BINDINGS: [Binding; 4] = [Binding::Uniform, Binding::Read, Binding::ReadWrite, Binding::ReadWrite];

/// Which specs a seed dispatch writes (see objective.wgsl).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Every spec, after-ReLU specs masked by z > 0.
    All = 0,
    /// After-ReLU specs only, unmasked (before a redirected ReLU).
    PostUnmasked = 1,
    /// Before-ReLU specs only.
    Pre = 2,
}

/// Uniform of the objective kernels; mirrors `ObjParams` in objective.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ObjParams {
    pub batch: u32,
    pub height: u32,
    pub width: u32,
    pub c4: u32,
    pub channels: u32,
    pub total: u32,
    pub nspec: u32,
    pub phase: u32,
    pub accumulate: u32,
    pub value_offset: u32,
    pub _pad: [u32; 2],
}

/// What one image maximizes at one layer (the simple per-image form that
/// [`crate::model::Network::set_objectives`] takes).
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

    /// The spec for image `b`: its value is `weight` times the channel's
    /// mean (or the neuron). Checked against the layer's shape.
    pub fn spec(&self, layer: &str, shape: Shape, b: usize, weight: f32, post_relu: bool) -> Result<ObjSpec> {
        let c = self.channel();
        if c >= shape.channels {
            return Err(Error::Invalid(format!(
                "channel {c} is out of range for layer `{layer}`, which has channels 0..{}",
                shape.channels - 1
            )));
        }
        let mut s = ObjSpec { batch: b as u32, channel: c as u32, post_relu: u32::from(post_relu), ..Default::default() };
        match *self {
            Target::Channel(_) => {
                s.kind = KIND_CHANNEL;
                s.scale = weight / (shape.height * shape.width) as f32;
            }
            Target::Neuron { x, y, .. } => {
                if x >= shape.width || y >= shape.height {
                    return Err(Error::Invalid(format!(
                        "neuron position ({x}, {y}) is outside layer `{layer}`, which is {}x{} (x < {}, y < {})",
                        shape.width, shape.height, shape.width, shape.height
                    )));
                }
                s.kind = KIND_NEURON;
                s.x = x as u32;
                s.y = y as u32;
                s.scale = weight;
            }
        }
        Ok(s)
    }
}

fn obj_params(name: &str, shape: Shape, total: usize, nspec: usize) -> Result<ObjParams> {
    Ok(ObjParams {
        batch: check_u32(name, "batch", shape.batch)?,
        height: check_u32(name, "height", shape.height)?,
        width: check_u32(name, "width", shape.width)?,
        c4: check_u32(name, "channels", shape.c4())?,
        channels: check_u32(name, "channels", shape.channels)?,
        total: check_u32(name, "invocations", total)?,
        nspec: check_u32(name, "specs", nspec)?,
        ..Default::default()
    })
}

async fn kernel(
    gpu: &Gpu,
    shader: &'static str,
    source: &'static str,
    entry: &'static str,
    bindings: &'static [Binding],
) -> Result<std::sync::Arc<crate::gpu::Kernel>> {
    gpu.kernel(&KernelSpec { shader, source, entry, constants: vec![("WG", WG)], bindings, workgroup_size: WG }).await
}

/// The layer's spec list on the GPU.
pub struct Specs {
    pub specs: Tensor,
    pub vectors: Tensor,
    pub count: usize,
}

impl Specs {
    /// Room for `count` specs and `vector_len` direction components.
    pub fn new(gpu: &Gpu, label: &str, count: usize, vector_len: usize) -> Result<Specs> {
        Ok(Specs {
            specs: gpu.tensor(&format!("{label} objective specs"), (count * 8).max(8))?,
            vectors: gpu.tensor(&format!("{label} direction vectors"), vector_len.max(4))?,
            count,
        })
    }

    pub fn write(&self, gpu: &Gpu, specs: &[ObjSpec], vectors: &[f32]) -> Result<()> {
        if specs.len() != self.count {
            return Err(Error::Invalid(format!("{} objective specs given where the layer was prepared for {}", specs.len(), self.count)));
        }
        if !specs.is_empty() {
            gpu.write(&self.specs, bytemuck::cast_slice(specs))?;
        }
        if !vectors.is_empty() {
            gpu.write(&self.vectors, vectors)?;
        }
        Ok(())
    }
}

/// Write (or with `accumulate`, add) d(objective)/d(stored value) over the
/// whole layer tensor.
pub async fn seed(gpu: &Gpu, shape: Shape, specs: &Specs, z: &Tensor, grad: &Tensor, phase: Phase, accumulate: bool) -> Result<Dispatch> {
    let name = "objective_seed";
    check_len(name, "layer", z, shape.padded_len())?;
    check_len(name, "gradient", grad, shape.padded_len())?;
    let k = kernel(gpu, "objective.wgsl", SHADER, name, &OBJ_BINDINGS).await?;
    let total = shape.pixels() * shape.c4();
    let mut p = obj_params(name, shape, total, specs.count)?;
    p.phase = phase as u32;
    p.accumulate = u32::from(accumulate);
    gpu.dispatch(&k, Some(bytemuck::bytes_of(&p)), &[&specs.specs.buffer, &specs.vectors.buffer, &z.buffer, &grad.buffer], total as u64)
        .await
}

/// Each (spec, image)'s contribution to the objective, in value slots
/// `offset + spec * B + b` (4 floats per slot, the value first).
pub async fn value(gpu: &Gpu, shape: Shape, specs: &Specs, z: &Tensor, values: &Tensor, offset: usize) -> Result<Dispatch> {
    let name = "objective_value";
    check_len(name, "layer", z, shape.padded_len())?;
    let slots = specs.count * shape.batch;
    check_len(name, "values", values, (offset + slots) * 4)?;
    let k = kernel(gpu, "objective.wgsl", SHADER, name, &OBJ_BINDINGS).await?;
    let mut p = obj_params(name, shape, slots, specs.count)?;
    p.value_offset = check_u32(name, "value offset", offset)?;
    let wg = gpu.split_workgroups(slots as u64)?;
    gpu.dispatch_groups(&k, Some(bytemuck::bytes_of(&p)), &[&specs.specs.buffer, &specs.vectors.buffer, &z.buffer, &values.buffer], wg)
        .await
}

/// Uniform of the diversity kernels; mirrors `DivParams` in diversity.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct DivParams {
    pub batch: u32,
    pub hw: u32,
    pub channels: u32,
    pub cp: u32,
    pub total: u32,
    pub post_relu: u32,
    pub mask: u32,
    pub value_offset: u32,
    pub coef_offset: u32,
    pub weight: f32,
    pub _pad: [u32; 2],
}

/// Diversity at one layer: its value dispatches (gram, dots, coef: image b's
/// share of the weighted value goes to slot `value_offset + b`) and its
/// gradient dispatches (which add to the layer's gradient).
pub struct Diversity {
    pub value: Vec<Dispatch>,
    pub grad: Vec<Dispatch>,
    /// The same gradient without the ReLU mask (before a redirected ReLU).
    pub grad_unmasked: Vec<Dispatch>,
    _buffers: [Tensor; 3],
}

impl Diversity {
    /// Floats of the values buffer the coefficients use (after the slots).
    pub fn coef_len(batch: usize) -> usize {
        batch * batch
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn new(
        gpu: &Gpu,
        shape: Shape,
        weight: f32,
        post_relu: bool,
        z: &Tensor,
        grad: &Tensor,
        values: &Tensor,
        value_offset: usize,
        coef_offset: usize,
    ) -> Result<Diversity> {
        let name = "diversity";
        let (b, c) = (shape.batch, shape.channels);
        check_len(name, "layer", z, shape.padded_len())?;
        check_len(name, "gradient", grad, shape.padded_len())?;
        check_len(name, "values", values, ((value_offset + b) * 4).max(coef_offset + b * b))?;
        gpu.check_binding(&format!("diversity Gram matrices ({b} x {c} x {c})"), (b * c * c * 4) as u64)?;
        let gram = gpu.tensor("diversity Gram matrices", b * c * c)?;
        let dots = gpu.tensor("diversity Gram dot products", b * b)?;
        let pmat = gpu.tensor("diversity Gram gradients", b * c * c)?;
        let base = DivParams {
            batch: check_u32(name, "batch", b)?,
            hw: check_u32(name, "pixels", shape.height * shape.width)?,
            channels: check_u32(name, "channels", c)?,
            cp: check_u32(name, "channels", shape.c4() * 4)?,
            post_relu: u32::from(post_relu),
            value_offset: check_u32(name, "value offset", value_offset)?,
            coef_offset: check_u32(name, "coefficient offset", coef_offset)?,
            weight,
            ..Default::default()
        };
        let k = |entry: &'static str| kernel(gpu, "diversity.wgsl", DIVERSITY_SHADER, entry, &BINDINGS4);
        let total_gram = b * c * c;
        let p_gram = DivParams { total: check_u32(name, "invocations", total_gram)?, ..base };
        let gram_d = gpu
            .dispatch(
                &k("diversity_gram").await?,
                Some(bytemuck::bytes_of(&p_gram)),
                &[&z.buffer, &z.buffer, &gram.buffer],
                total_gram as u64,
            )
            .await?;
        let dots_d = gpu
            .dispatch_groups(
                &k("diversity_dots").await?,
                Some(bytemuck::bytes_of(&base)),
                &[&gram.buffer, &gram.buffer, &dots.buffer],
                gpu.split_workgroups((b * b) as u64)?,
            )
            .await?;
        let coef_d = gpu
            .dispatch_groups(
                &k("diversity_coef").await?,
                Some(bytemuck::bytes_of(&base)),
                &[&dots.buffer, &dots.buffer, &values.buffer],
                [1, 1, 1],
            )
            .await?;
        let pmat_d = gpu
            .dispatch(
                &k("diversity_pmat").await?,
                Some(bytemuck::bytes_of(&p_gram)),
                &[&gram.buffer, &values.buffer, &pmat.buffer],
                total_gram as u64,
            )
            .await?;
        let total_grad = shape.pixels() * shape.c4() * 4;
        let mut grads = Vec::new();
        for mask in [post_relu, false] {
            let p = DivParams { total: check_u32(name, "invocations", total_grad)?, mask: u32::from(mask), ..base };
            grads.push(
                gpu.dispatch(
                    &k("diversity_grad").await?,
                    Some(bytemuck::bytes_of(&p)),
                    &[&z.buffer, &pmat.buffer, &grad.buffer],
                    total_grad as u64,
                )
                .await?,
            );
        }
        let unmasked = grads.pop().expect("two variants");
        let masked = grads.pop().expect("two variants");
        let pmat_d2 = gpu
            .dispatch(
                &k("diversity_pmat").await?,
                Some(bytemuck::bytes_of(&p_gram)),
                &[&gram.buffer, &values.buffer, &pmat.buffer],
                total_gram as u64,
            )
            .await?;
        Ok(Diversity {
            value: vec![gram_d, dots_d, coef_d],
            grad: vec![pmat_d, masked],
            grad_unmasked: vec![pmat_d2, unmasked],
            _buffers: [gram, dots, pmat],
        })
    }
}

/// Uniform of the regularizer kernels; mirrors `RegParams` in regularize.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct RegParams {
    pub batch: u32,
    pub height: u32,
    pub width: u32,
    pub offset: u32,
}

fn reg_params(name: &str, shape: Shape, offset: usize) -> Result<RegParams> {
    Ok(RegParams {
        batch: check_u32(name, "batch", shape.batch)?,
        height: check_u32(name, "height", shape.height)?,
        width: check_u32(name, "width", shape.width)?,
        offset: check_u32(name, "value offset", offset)?,
    })
}

/// d += gradient of the image regularizers (`regs`: one [`ImageReg`] per image).
pub async fn regularize_grad(gpu: &Gpu, shape: Shape, regs: &Tensor, img: &Tensor, d: &Tensor) -> Result<Dispatch> {
    let name = "regularize_grad";
    check_len(name, "weights", regs, shape.batch * 4)?;
    check_len(name, "image", img, shape.pixels() * 4)?;
    check_len(name, "gradient", d, shape.pixels() * 4)?;
    let k = kernel(gpu, "regularize.wgsl", REGULARIZE_SHADER, name, &BINDINGS4).await?;
    let p = reg_params(name, shape, 0)?;
    gpu.dispatch(&k, Some(bytemuck::bytes_of(&p)), &[&regs.buffer, &img.buffer, &d.buffer], shape.pixels() as u64).await
}

/// Each image's regularizer value to slot `offset + b`.
pub async fn regularize_value(gpu: &Gpu, shape: Shape, regs: &Tensor, img: &Tensor, values: &Tensor, offset: usize) -> Result<Dispatch> {
    let name = "regularize_value";
    check_len(name, "weights", regs, shape.batch * 4)?;
    check_len(name, "image", img, shape.pixels() * 4)?;
    check_len(name, "values", values, (offset + shape.batch) * 4)?;
    let k = kernel(gpu, "regularize.wgsl", REGULARIZE_SHADER, name, &BINDINGS4).await?;
    let p = reg_params(name, shape, offset)?;
    gpu.dispatch_groups(
        &k,
        Some(bytemuck::bytes_of(&p)),
        &[&regs.buffer, &img.buffer, &values.buffer],
        gpu.split_workgroups(shape.batch as u64)?,
    )
    .await
}

/// Uniform of the ReLU kernels; mirrors `ReluParams` in relu.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ReluParams {
    pub batch: u32,
    pub per_image: u32,
    pub total: u32,
    pub offset: u32,
}

/// Zero `count` redirect flags.
pub async fn relu_flags_clear(gpu: &Gpu, flags: &Tensor, count: usize) -> Result<Dispatch> {
    let name = "relu_flags_clear";
    check_len(name, "flags", flags, count)?;
    let k = kernel(gpu, "relu.wgsl", RELU_SHADER, name, &RELU_BINDINGS).await?;
    let p = ReluParams { batch: 0, per_image: 1, total: check_u32(name, "flags", count)?, offset: 0 };
    let (z, g) = (super::dummy(gpu, name)?, super::dummy(gpu, name)?);
    gpu.dispatch(&k, Some(bytemuck::bytes_of(&p)), &[&z.buffer, &flags.buffer, &g.buffer], count as u64).await
}

/// Lucid's redirected ReLU gradient on `g` (gradient with respect to
/// relu(z)), in place; uses flags `offset .. offset + B` (cleared before).
pub async fn relu_redirect(gpu: &Gpu, shape: Shape, z: &Tensor, flags: &Tensor, offset: usize, g: &Tensor) -> Result<[Dispatch; 2]> {
    let name = "relu_redirect";
    check_len(name, "layer", z, shape.padded_len())?;
    check_len(name, "gradient", g, shape.padded_len())?;
    check_len(name, "flags", flags, offset + shape.batch)?;
    let per = shape.height * shape.width * shape.c4();
    let total = shape.batch * per;
    let p = ReluParams {
        batch: check_u32(name, "batch", shape.batch)?,
        per_image: check_u32(name, "values per image", per)?,
        total: check_u32(name, "invocations", total)?,
        offset: check_u32(name, "flag offset", offset)?,
    };
    let kf = kernel(gpu, "relu.wgsl", RELU_SHADER, "relu_redirect_flags", &RELU_BINDINGS).await?;
    let ka = kernel(gpu, "relu.wgsl", RELU_SHADER, "relu_redirect_apply", &RELU_BINDINGS).await?;
    let f = gpu.dispatch(&kf, Some(bytemuck::bytes_of(&p)), &[&z.buffer, &flags.buffer, &g.buffer], total as u64).await?;
    let a = gpu.dispatch(&ka, Some(bytemuck::bytes_of(&p)), &[&z.buffer, &flags.buffer, &g.buffer], total as u64).await?;
    Ok([f, a])
}
