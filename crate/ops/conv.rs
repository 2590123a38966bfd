//! conv3x3 (stride 1, pad 1) forward and backward to the input: shaders/conv.wgsl.

use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use super::conv_gen::Baked;
use super::{c4, check_len, check_u32, dummy, Shape};
use crate::error::{Error, Result};
use crate::gpu::{Binding, ConvConfig, ConvShape, Dispatch, Gpu, Kernel, KernelSpec, Tensor};

pub const SHADER: &str = include_str!("../../shaders/conv.wgsl");

/// Uniform of every conv kernel; mirrors `ConvParams` in conv.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ConvParams {
    pub batch: u32,
    pub height: u32,
    pub width: u32,
    /// Input channels / 4 (padded).
    pub cin4: u32,
    /// Output channels / 4 (padded): the stride of the output.
    pub cout4: u32,
    /// Output-channel vec4s per weight row (padded to a multiple of 16).
    pub co4_stride: u32,
    pub tiles_x: u32,
    pub tiles_co: u32,
    pub total: u32,
    pub _pad: [u32; 3],
}

const BINDINGS: [Binding; 6] = [Binding::Uniform, Binding::Read, Binding::Read, Binding::Read, Binding::Read, Binding::ReadWrite];

/// Largest register tile of output-channel vec4s a schedule may use.
pub const MAX_CO4: u32 = 32;
/// Largest register tile of pixels (llvmpipe computes wider rows wrong).
pub const MAX_PX: u32 = 16;

/// Output-channel vec4s per weight row: padded to a multiple of
/// [`MAX_CO4`] so that weight loads of every schedule stay in bounds.
pub fn co4_stride(cout: usize) -> usize {
    c4(cout).div_ceil(MAX_CO4 as usize) * MAX_CO4 as usize
}

/// Pack HWIO weights (3, 3, cin, cout) into the kernel layout
/// (3, 3, c4(cin)*4, co4_stride*4), zero padded.
pub fn pack_weights(w_hwio: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    let cin_p = c4(cin) * 4;
    let cout_p = co4_stride(cout) * 4;
    let mut out = vec![0.0; 9 * cin_p * cout_p];
    for k in 0..9 {
        for ci in 0..cin {
            let src = &w_hwio[(k * cin + ci) * cout..(k * cin + ci + 1) * cout];
            let dst = (k * cin_p + ci) * cout_p;
            out[dst..dst + cout].copy_from_slice(src);
        }
    }
    out
}

/// The weights of the backward convolution: HWIO (3, 3, cout, cin) with
/// w'[ky][kx][co][ci] = w[2-ky][2-kx][ci][co].
pub fn flip_weights(w_hwio: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    let mut out = vec![0.0; 9 * cin * cout];
    for ky in 0..3 {
        for kx in 0..3 {
            let kf = (2 - ky) * 3 + (2 - kx);
            let k = ky * 3 + kx;
            for ci in 0..cin {
                for co in 0..cout {
                    out[(k * cout + co) * cin + ci] = w_hwio[(kf * cin + ci) * cout + co];
                }
            }
        }
    }
    out
}

/// One conv layer's weights on the GPU, in both directions.
pub struct ConvWeights {
    pub name: String,
    pub cin: usize,
    pub cout: usize,
    forward: Tensor,
    backward: Tensor,
    bias: Tensor,
    /// The WGSL of the [`Baked`] kernels where the layer fits them:
    /// generated once, with the weights written in.
    baked: Option<BakedKernels>,
}

/// A layer's weights as constants in its kernels ([`Baked`]): the values
/// to write the kernels' text for any tile, and the digest that names them
/// in the pipeline cache.
struct BakedKernels {
    w_hwio: Vec<f32>,
    bias: Vec<f32>,
    digest: String,
}

impl BakedKernels {
    fn new(w_hwio: &[f32], bias: &[f32], cin: usize, cout: usize) -> Option<Self> {
        use sha2::Digest;
        // WGSL has no literal for an infinity or a NaN.
        if !Baked::fits(cin, cout) || !w_hwio.iter().chain(bias).all(|v| v.is_finite()) {
            return None;
        }
        let mut h = sha2::Sha256::new();
        h.update(bytemuck::cast_slice::<f32, u8>(w_hwio));
        h.update(bytemuck::cast_slice::<f32, u8>(bias));
        h.update(format!("{cin}x{cout}").as_bytes());
        let digest = h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
        Some(BakedKernels { w_hwio: w_hwio.to_vec(), bias: bias.to_vec(), digest })
    }
}

impl ConvWeights {
    /// `w_hwio`: (3, 3, cin, cout); `bias`: (cout).
    pub fn new(gpu: &Gpu, name: &str, cin: usize, cout: usize, w_hwio: &[f32], bias: &[f32]) -> Result<Self> {
        if cin == 0 || cout == 0 || w_hwio.len() != 9 * cin * cout || bias.len() != cout {
            return Err(Error::Invalid(format!(
                "conv `{name}`: weights hold {} values and bias {} for {cin}→{cout} channels (expected {} and {cout})",
                w_hwio.len(),
                bias.len(),
                9 * cin * cout
            )));
        }
        let forward = gpu.tensor_from(&format!("{name} weights"), &pack_weights(w_hwio, cin, cout))?;
        let flipped = flip_weights(w_hwio, cin, cout);
        let backward = gpu.tensor_from(&format!("{name} weights (flipped)"), &pack_weights(&flipped, cout, cin))?;
        let mut b = vec![0.0; co4_stride(cout) * 4];
        b[..cout].copy_from_slice(bias);
        let bias_t = gpu.tensor_from(&format!("{name} bias"), &b)?;
        let baked = BakedKernels::new(w_hwio, bias, cin, cout);
        Ok(ConvWeights { name: name.to_string(), cin, cout, forward, backward, bias: bias_t, baked })
    }

    /// Whether this layer's kernels can have its weights written in
    /// ([`Baked`]: few input channels, finite values).
    pub fn bakeable(&self) -> bool {
        self.baked.is_some()
    }
}

fn entry(config: ConvConfig, backward: bool) -> &'static str {
    match (config, backward) {
        (ConvConfig::Unrolled(_), false) => "conv3x3_forward_unrolled",
        (ConvConfig::Unrolled(_), true) => "conv3x3_backward_input_unrolled",
        (ConvConfig::Register { .. }, false) => "conv3x3_forward_register",
        (ConvConfig::Register { .. }, true) => "conv3x3_backward_input_register",
        (ConvConfig::Tiled, false) => "conv3x3_forward_tiled",
        (ConvConfig::Tiled, true) => "conv3x3_backward_input_tiled",
        (ConvConfig::Gemm(_), false) => "conv3x3_forward_gemm",
        (ConvConfig::Gemm(_), true) => "conv3x3_backward_input_gemm",
        (ConvConfig::Patch(_), false) => "conv3x3_forward_patch",
        (ConvConfig::Patch(_), true) => "conv3x3_backward_input_patch",
        (ConvConfig::Baked(_), false) => "conv3x3_forward_baked",
        (ConvConfig::Baked(_), true) => "conv3x3_backward_taps_baked",
    }
}

/// The schedule actually used for a layer with `cout` output channels: a
/// register tile wider than the layer's channels would compute padding, so
/// narrow layers trade channels for pixels (same accumulator count; at most
/// 16 pixels, since llvmpipe miscompiles rows of 24 and more — the parity
/// tests caught it).
pub fn effective(config: ConvConfig, cout: usize) -> ConvConfig {
    match config {
        ConvConfig::Register { px, co4, wg } => {
            let avail = c4(cout).max(1);
            let pow2 = 1usize << (usize::BITS - 1 - avail.leading_zeros());
            let co4_eff = (co4 as usize).min(pow2).max(1) as u32;
            let px_eff = if co4_eff < co4 { (px * co4 / co4_eff).min(MAX_PX).max(px) } else { px };
            ConvConfig::Register { px: px_eff, co4: co4_eff, wg }
        }
        ConvConfig::Tiled => ConvConfig::Tiled,
        ConvConfig::Gemm(g) => ConvConfig::Gemm(g),
        ConvConfig::Baked(b) => ConvConfig::Baked(b),
        ConvConfig::Patch(t) => {
            let avail = c4(cout).max(1);
            let pow2 = 1u32 << (usize::BITS - 1 - avail.leading_zeros());
            ConvConfig::Patch(super::conv_gen::Patch { co4: t.co4.min(pow2).max(1), ..t })
        }
        ConvConfig::Unrolled(u) => {
            let avail = c4(cout).max(1);
            let pow2 = 1u32 << (usize::BITS - 1 - avail.leading_zeros());
            ConvConfig::Unrolled(super::conv_gen::Unrolled { co4: u.co4.min(pow2).max(1), ..u })
        }
    }
}

async fn kernel(gpu: &Gpu, config: ConvConfig, backward: bool, flag: bool) -> Result<Arc<Kernel>> {
    let mut constants = Vec::new();
    let mut workgroup_size = 256;
    let (mut shader, mut source) = ("conv.wgsl".to_string(), std::borrow::Cow::Borrowed(SHADER));
    match config {
        ConvConfig::Register { px, co4, wg } => {
            constants.extend([("PX", px), ("CO4", co4), ("WG", wg)]);
            workgroup_size = wg;
        }
        ConvConfig::Unrolled(u) => {
            if u.sg > 0 && u.sg != gpu.subgroup_size {
                return Err(Error::Invalid(format!(
                    "conv schedule {} broadcasts across subgroups of {} lanes, but this device's are {}",
                    config.name(),
                    u.sg,
                    if gpu.subgroup_size == 0 {
                        "not available (or not of one fixed size)".to_string()
                    } else {
                        gpu.subgroup_size.to_string()
                    }
                )));
            }
            shader = u.name();
            source = std::borrow::Cow::Owned(super::conv_gen::wgsl(u));
            workgroup_size = u.wg;
        }
        ConvConfig::Gemm(g) => {
            let limits = &gpu.limits;
            if g.threads() > limits.max_compute_invocations_per_workgroup
                || g.threads() > limits.max_compute_workgroup_size_x
                || g.workgroup_bytes() > limits.max_compute_workgroup_storage_size
            {
                return Err(Error::Invalid(format!(
                    "conv schedule {} needs workgroups of {} invocations and {} bytes of workgroup memory; this device allows {} and {} bytes: \
                     pick smaller tiles (or run `featvis tune`)",
                    config.name(),
                    g.threads(),
                    g.workgroup_bytes(),
                    limits.max_compute_invocations_per_workgroup,
                    limits.max_compute_workgroup_storage_size
                )));
            }
            shader = g.name();
            source = std::borrow::Cow::Owned(super::conv_gen::gemm_wgsl(g));
            workgroup_size = g.threads();
        }
        ConvConfig::Patch(t) => {
            shader = t.name();
            source = std::borrow::Cow::Owned(super::conv_gen::patch_wgsl(t));
            workgroup_size = t.wg;
        }
        ConvConfig::Tiled => {}
        ConvConfig::Baked(_) => {
            return Err(Error::Invalid(format!("conv schedule {}: its kernels are built with the layer's weights", config.name())));
        }
    }
    if backward {
        constants.push(("MASK_OUTPUT", u32::from(flag)));
    } else {
        constants.push(("RELU_INPUT", u32::from(flag)));
    }
    gpu.kernel(&KernelSpec {
        shader: &shader,
        source: &source,
        entry: entry(config, backward),
        constants,
        bindings: &BINDINGS,
        workgroup_size,
    })
    .await
}

fn params(gpu: &Gpu, config: ConvConfig, name: &str, shape: Shape, cin: usize, cout: usize) -> Result<(ConvParams, u64)> {
    let pixels = shape.pixels();
    let register = match config {
        ConvConfig::Unrolled(u) => ConvConfig::Register { px: u.px, co4: u.co4, wg: u.wg },
        c => c,
    };
    let (tiles_x, tiles_co, total, groups) = match register {
        ConvConfig::Unrolled(_) => unreachable!("mapped to its register tiles above"),
        ConvConfig::Patch(t) => {
            let tx = shape.width.div_ceil(t.tw as usize);
            let tiles = tx * shape.height.div_ceil(t.th as usize) * shape.batch;
            let tc = c4(cout).div_ceil(t.co4 as usize);
            (tx, tc, tiles, tiles as u64 * tc.div_ceil(t.wg as usize) as u64)
        }
        ConvConfig::Gemm(g) => {
            let tm = pixels.div_ceil(g.bm as usize);
            let tc = c4(cout).div_ceil(g.bn as usize / 4);
            (tm, tc, pixels, (tm * tc) as u64)
        }
        ConvConfig::Register { px, co4, wg } => {
            let tx = shape.width.div_ceil(px as usize);
            let tc = c4(cout).div_ceil(co4 as usize);
            let pixel_tiles = tx * shape.height * shape.batch;
            (tx, tc, pixel_tiles, (pixel_tiles as u64).div_ceil(wg as u64) * tc as u64)
        }
        ConvConfig::Baked(b) => {
            let tx = shape.width.div_ceil(b.px as usize);
            let tiles = tx * shape.height * shape.batch;
            (tx, 1, tiles, tiles.div_ceil(b.workgroup_size() as usize) as u64)
        }
        ConvConfig::Tiled => {
            let tm = pixels.div_ceil(64);
            let tc = c4(cout).div_ceil(16);
            (tm, tc, tm * tc * 256, (tm * tc) as u64)
        }
    };
    let _ = gpu;
    let p = ConvParams {
        batch: check_u32(name, "batch", shape.batch)?,
        height: check_u32(name, "height", shape.height)?,
        width: check_u32(name, "width", shape.width)?,
        cin4: check_u32(name, "input channels", c4(cin))?,
        cout4: check_u32(name, "output channels", c4(cout))?,
        co4_stride: check_u32(name, "output channels", co4_stride(cout))?,
        tiles_x: check_u32(name, "tiles", tiles_x)?,
        tiles_co: check_u32(name, "tiles", tiles_co)?,
        total: check_u32(name, "invocations", total)?,
        _pad: [0; 3],
    };
    Ok((p, groups))
}

/// The schedule a layer runs: `config`, except that a [`Baked`] schedule
/// on a layer that cannot be baked gives way to the adapter's own.
fn for_layer(gpu: &Gpu, config: ConvConfig, weights: &ConvWeights, shape: Shape) -> ConvConfig {
    match config {
        ConvConfig::Baked(_) if !weights.bakeable() => {
            gpu.unbaked_conv_config(ConvShape { height: shape.height, width: shape.width, cin: weights.cin, cout: weights.cout })
        }
        c => c,
    }
}

/// The kernel of a [`Baked`] schedule: `source` is generated once per
/// layer, the specialization constant is RELU_INPUT or MASK_OUTPUT.
async fn baked_kernel(gpu: &Gpu, shader: &str, source: &str, entry: &str, constant: (&'static str, bool)) -> Result<Arc<Kernel>> {
    gpu.kernel(&KernelSpec {
        shader,
        source,
        entry,
        constants: vec![(constant.0, u32::from(constant.1))],
        bindings: &BINDINGS,
        workgroup_size: 4,
    })
    .await
}

/// y = conv3x3(relu?(x), w) + bias. `shape` is the input's (B, H, W) with
/// `weights.cin` channels; `output` holds (B, H, W, c4(cout)*4).
pub async fn forward(
    gpu: &Gpu,
    config: ConvConfig,
    weights: &ConvWeights,
    shape: Shape,
    input: &Tensor,
    output: &Tensor,
    relu_input: bool,
) -> Result<Dispatch> {
    let name = format!("conv3x3_forward {}", weights.name);
    let in_shape = Shape { channels: weights.cin, ..shape };
    let out_shape = Shape { channels: weights.cout, ..shape };
    check_len(&name, "input", input, in_shape.padded_len())?;
    check_len(&name, "output", output, out_shape.padded_len())?;
    let config = effective(for_layer(gpu, config, weights, shape), weights.cout);
    let k = match (config, &weights.baked) {
        (ConvConfig::Baked(b), Some(bk)) => {
            let source = super::conv_gen::baked_forward_wgsl(b, &bk.w_hwio, &bk.bias, weights.cin, weights.cout)
                .ok_or_else(|| Error::Invalid(format!("{name}: schedule {} does not fit this layer", config.name())))?;
            baked_kernel(gpu, &b.name(&bk.digest, false), &source, entry(config, false), ("RELU_INPUT", relu_input)).await?
        }
        _ => kernel(gpu, config, false, relu_input).await?,
    };
    let (p, groups) = params(gpu, config, &name, shape, weights.cin, weights.cout)?;
    let unused = dummy(gpu, &name)?;
    let wg = gpu.split_workgroups(groups)?;
    gpu.dispatch_groups(
        &k,
        Some(bytemuck::bytes_of(&p)),
        &[&input.buffer, &weights.forward.buffer, &weights.bias.buffer, &unused.buffer, &output.buffer],
        wg,
    )
    .await
}

/// dx = conv3x3(dy, flipped w) * (mask > 0). `shape` is the layer's (B, H, W);
/// `grad_out` holds (B, H, W, c4(cout)*4), `grad_in` (B, H, W, c4(cin)*4);
/// `mask` (same shape as `grad_in`) is the layer input stored before its
/// ReLU, or None when the input had no ReLU. One dispatch, or two for a
/// [`Baked`] schedule (the taps, then their sums).
pub async fn backward_input(
    gpu: &Gpu,
    config: ConvConfig,
    weights: &ConvWeights,
    shape: Shape,
    grad_out: &Tensor,
    grad_in: &Tensor,
    mask: Option<&Tensor>,
) -> Result<Vec<Dispatch>> {
    let name = format!("conv3x3_backward_input {}", weights.name);
    let in_shape = Shape { channels: weights.cin, ..shape };
    let out_shape = Shape { channels: weights.cout, ..shape };
    check_len(&name, "output gradient", grad_out, out_shape.padded_len())?;
    check_len(&name, "input gradient", grad_in, in_shape.padded_len())?;
    if let Some(m) = mask {
        check_len(&name, "mask", m, in_shape.padded_len())?;
    }
    let config = effective(for_layer(gpu, config, weights, shape), weights.cin);
    let unused = dummy(gpu, &name)?;
    if let (ConvConfig::Baked(b), Some(bk)) = (config, &weights.baked) {
        let pixels = shape.pixels();
        let taps = gpu.tensor(&format!("{name} taps ({} pixels × 9 vec4s)", pixels), pixels.saturating_mul(36))?;
        let shader = b.name(&bk.digest, true);
        let source = super::conv_gen::baked_backward_wgsl(b, &bk.w_hwio, weights.cin, weights.cout)
            .ok_or_else(|| Error::Invalid(format!("{name}: schedule {} does not fit this layer", config.name())))?;
        let constant = ("MASK_OUTPUT", mask.is_some());
        let k_taps = baked_kernel(gpu, &shader, &source, "conv3x3_backward_taps_baked", constant).await?;
        let k_sum = baked_kernel(gpu, &shader, &source, "conv3x3_backward_sum_baked", constant).await?;
        let mut p = ConvParams {
            batch: check_u32(&name, "batch", shape.batch)?,
            height: check_u32(&name, "height", shape.height)?,
            width: check_u32(&name, "width", shape.width)?,
            cin4: check_u32(&name, "output channels", c4(weights.cout))?,
            cout4: 1,
            co4_stride: 1,
            tiles_x: 1,
            tiles_co: 1,
            total: check_u32(&name, "pixels", pixels)?,
            _pad: [0; 3],
        };
        let wgs = b.workgroup_size() as u64;
        let taps_groups = gpu.split_workgroups((pixels as u64).div_ceil(b.backward_px() as u64).div_ceil(wgs))?;
        let d_taps = gpu
            .dispatch_groups(
                &k_taps,
                Some(bytemuck::bytes_of(&p)),
                &[&grad_out.buffer, &unused.buffer, &unused.buffer, &unused.buffer, &taps.buffer],
                taps_groups,
            )
            .await?;
        p.cin4 = 9;
        let d_sum = gpu
            .dispatch_groups(
                &k_sum,
                Some(bytemuck::bytes_of(&p)),
                &[&taps.buffer, &unused.buffer, &unused.buffer, &mask.unwrap_or(&unused).buffer, &grad_in.buffer],
                gpu.split_workgroups((pixels as u64).div_ceil(wgs))?,
            )
            .await?;
        return Ok(vec![d_taps, d_sum]);
    }
    let k = kernel(gpu, config, true, mask.is_some()).await?;
    let (p, groups) = params(gpu, config, &name, shape, weights.cout, weights.cin)?;
    let wg = gpu.split_workgroups(groups)?;
    Ok(vec![
        gpu.dispatch_groups(
            &k,
            Some(bytemuck::bytes_of(&p)),
            &[&grad_out.buffer, &weights.backward.buffer, &unused.buffer, &mask.unwrap_or(&unused).buffer, &grad_in.buffer],
            wg,
        )
        .await?,
    ])
}

/// Multiply-adds of one conv3x3 over `shape` (either direction).
pub fn macs(shape: Shape, cin: usize, cout: usize) -> u64 {
    (shape.pixels() * 9 * cin * cout) as u64
}
