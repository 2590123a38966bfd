//! Lucid's Fourier image parameterization and its adjoint: shaders/fourier.wgsl.

use bytemuck::{Pod, Zeroable};

use super::{check_len, check_u32, dummy, Shape};
use crate::error::{Error, Result};
use crate::gpu::{Binding, Dispatch, Gpu, KernelSpec, Tensor};

pub const SHADER: &str = include_str!("../../shaders/fourier.wgsl");
const WG: u32 = 64;
const BINDINGS: [Binding; 5] = [Binding::Uniform, Binding::Read, Binding::ReadWrite, Binding::ReadWrite, Binding::Read];

/// Uniform of the Fourier kernels; mirrors `FourierParams` in fourier.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct FourierParams {
    pub batch: u32,
    pub height: u32,
    pub width: u32,
    pub fw: u32,
    pub nx: u32,
    pub total: u32,
    pub decay_power: f32,
    pub _pad: u32,
}

/// Spectrum columns as Lucid's `rfft2d_freqs`: W/2+1 for even W, W/2+2 for
/// odd W (numpy's fftfreq(W) has only W entries, so W = 1 gives 1).
pub fn spectrum_width(w: usize) -> usize {
    let fw = if w % 2 == 1 { w / 2 + 2 } else { w / 2 + 1 };
    fw.min(w)
}

/// Length of the inverse transform along x: 2 (FW − 1), or 1 when W = 1.
pub fn inverse_width(w: usize) -> usize {
    (2 * (spectrum_width(w) - 1)).max(1)
}

/// f32 values of one spectrum (B, 3, H, FW, 2).
pub fn spectrum_len(batch: usize, h: usize, w: usize) -> usize {
    batch * 3 * h * spectrum_width(w) * 2
}

/// numpy's fftfreq(n)[k].
pub fn fftfreq(k: usize, n: usize) -> f64 {
    if k < n.div_ceil(2) {
        k as f64 / n as f64
    } else {
        (k as f64 - n as f64) / n as f64
    }
}

/// Lucid's spectrum scale, times sqrt(W·H).
pub fn spectrum_scale(ky: usize, kx: usize, h: usize, w: usize, decay_power: f64) -> f64 {
    let (fy, fx) = (fftfreq(ky, h), fftfreq(kx, w));
    let f = (fx * fx + fy * fy).sqrt().max(1.0 / h.max(w) as f64);
    ((w * h) as f64).sqrt() / f.powf(decay_power)
}

fn params(batch: usize, h: usize, w: usize, decay_power: f32, total: usize) -> Result<FourierParams> {
    Ok(FourierParams {
        batch: check_u32("fourier", "batch", batch)?,
        height: check_u32("fourier", "height", h)?,
        width: check_u32("fourier", "width", w)?,
        fw: spectrum_width(w) as u32,
        nx: inverse_width(w) as u32,
        total: check_u32("fourier", "invocations", total)?,
        decay_power,
        _pad: 0,
    })
}

/// Twiddles e^{2πi m/H} (m < H), e^{2πi m/NX} (m < NX) and the spectrum
/// scale (H × FW), as (re, im) pairs, computed in f64.
pub fn table(h: usize, w: usize, decay_power: f64) -> Vec<f32> {
    let (fw, nx) = (spectrum_width(w), inverse_width(w));
    let mut t = Vec::with_capacity(2 * (h + nx + h * fw));
    for (m, len) in (0..h).map(|m| (m, h)).chain((0..nx).map(|m| (m, nx))) {
        let a = std::f64::consts::TAU * m as f64 / len as f64;
        t.extend([a.cos() as f32, a.sin() as f32]);
    }
    for ky in 0..h {
        for kx in 0..fw {
            t.extend([spectrum_scale(ky, kx, h, w, decay_power) as f32, 0.0]);
        }
    }
    t
}

/// Invocations of each pass: one per output tile (fourier.wgsl's tiles:
/// 4 rows × 4 spectrum columns for the column passes, 2 rows × 4 pixels or
/// spectrum columns × 3 channels for the row passes).
fn tiles_columns(b: usize, h: usize, w: usize) -> usize {
    b * 3 * h.div_ceil(4) * spectrum_width(w).div_ceil(4)
}

fn tiles_rows(b: usize, h: usize, n: usize) -> usize {
    b * h.div_ceil(2) * n.div_ceil(4)
}

async fn prepare(gpu: &Gpu, entry: &'static str, p: FourierParams, bufs: [&wgpu::Buffer; 4]) -> Result<Dispatch> {
    let k = gpu
        .kernel(&KernelSpec {
            shader: "fourier.wgsl",
            source: SHADER,
            entry,
            constants: vec![("WG", WG)],
            bindings: &BINDINGS,
            workgroup_size: WG,
        })
        .await?;
    gpu.dispatch(&k, Some(bytemuck::bytes_of(&p)), &bufs, p.total as u64).await
}

fn check(shape: Shape, spectrum: &Tensor, tmp: &Tensor, img: &Tensor, decay_power: f32) -> Result<()> {
    if shape.height == 0 || shape.width == 0 || shape.batch == 0 || shape.channels != 3 {
        return Err(Error::Invalid(format!("the Fourier parameterization needs a non-empty RGB image, got {shape}")));
    }
    if !decay_power.is_finite() {
        return Err(Error::Invalid("decay_power must be finite".into()));
    }
    let n = spectrum_len(shape.batch, shape.height, shape.width);
    check_len("fourier", "spectrum", spectrum, n)?;
    check_len("fourier", "intermediate", tmp, n)?;
    check_len("fourier", "image", img, shape.padded_len())
}

/// image (B, H, W, 4) = fft_image(spectrum): two dispatches, using `tmp`
/// (same size as the spectrum) in between.
pub async fn forward(gpu: &Gpu, shape: Shape, decay_power: f32, spectrum: &Tensor, tmp: &Tensor, img: &Tensor) -> Result<Vec<Dispatch>> {
    check(shape, spectrum, tmp, img, decay_power)?;
    let (b, h, w) = (shape.batch, shape.height, shape.width);
    let unused = dummy(gpu, "fourier_rows")?;
    let tab = gpu.tensor_from("fourier twiddles and scale", &table(h, w, decay_power as f64))?;
    let cols = prepare(
        gpu,
        "fourier_columns",
        params(b, h, w, decay_power, tiles_columns(b, h, w))?,
        [&spectrum.buffer, &tmp.buffer, &unused.buffer, &tab.buffer],
    )
    .await?;
    let rows = prepare(
        gpu,
        "fourier_rows",
        params(b, h, w, decay_power, tiles_rows(b, h, w))?,
        [&tmp.buffer, &unused.buffer, &img.buffer, &tab.buffer],
    )
    .await?;
    Ok(vec![cols, rows])
}

/// d spectrum = fft_imageᵀ(d image): the exact adjoint of [`forward`].
pub async fn backward(gpu: &Gpu, shape: Shape, decay_power: f32, dimg: &Tensor, tmp: &Tensor, dspectrum: &Tensor) -> Result<Vec<Dispatch>> {
    check(shape, dspectrum, tmp, dimg, decay_power)?;
    let (b, h, w) = (shape.batch, shape.height, shape.width);
    let unused = dummy(gpu, "fourier_columns_adjoint")?;
    let tab = gpu.tensor_from("fourier twiddles and scale", &table(h, w, decay_power as f64))?;
    let rows = prepare(
        gpu,
        "fourier_rows_adjoint",
        params(b, h, w, decay_power, tiles_rows(b, h, spectrum_width(w)))?,
        [&unused.buffer, &tmp.buffer, &dimg.buffer, &tab.buffer],
    )
    .await?;
    let cols = prepare(
        gpu,
        "fourier_columns_adjoint",
        params(b, h, w, decay_power, tiles_columns(b, h, w))?,
        [&tmp.buffer, &dspectrum.buffer, &unused.buffer, &tab.buffer],
    )
    .await?;
    Ok(vec![rows, cols])
}
