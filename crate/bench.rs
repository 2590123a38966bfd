//! The benchmark behind `featvis bench` and the page's benchmark button:
//! GFLOP/s of every conv layer's forward and backward kernel, ms for a
//! whole forward+backward step to conv5_3, and the split of a whole
//! optimization step to one layer between the network and everything else
//! (parameterization, colour, transforms, preprocessing, their adjoints,
//! Adam), on random weights (speed does not depend on the values). Beside
//! them: the adapter's peak f32 throughput, measured once with an FMA-bound
//! kernel (shaders/peak.wgsl), and the GPU memory of a step per batch image.

use bytemuck::{Pod, Zeroable};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::gpu::{Binding, Dispatch, Gpu, KernelSpec, Tensor};
use crate::model::{Network, Vgg16, Vgg16Weights, CONVS};
use crate::objective::Objective;
use crate::ops::conv;
use crate::ops::objective::Target;
use crate::pipeline::{Pipeline, Settings};
use crate::weights::Preprocessing;

/// One conv layer's figures.
#[derive(Clone, Debug)]
pub struct LayerFigures {
    pub name: &'static str,
    /// The conv configuration its kernels ran with ([`crate::gpu::ConvConfig::name`]).
    pub config: String,
    pub gflop: f64,
    pub fwd_ms: f64,
    pub bwd_ms: f64,
    /// The adapter's peak, GFLOP/s (the same for every layer of a run).
    pub peak_gflops: f64,
}

impl LayerFigures {
    pub fn fwd_gflops(&self) -> f64 {
        self.gflop / self.fwd_ms * 1e3
    }
    pub fn bwd_gflops(&self) -> f64 {
        self.gflop / self.bwd_ms * 1e3
    }
    /// The forward kernel's GFLOP/s as a fraction of the adapter's peak.
    pub fn fwd_peak_fraction(&self) -> f64 {
        self.fwd_gflops() / self.peak_gflops
    }
    pub fn bwd_peak_fraction(&self) -> f64 {
        self.bwd_gflops() / self.peak_gflops
    }
}

#[derive(Clone, Debug)]
pub struct BenchReport {
    pub adapter: String,
    pub conv_schedule: String,
    pub size: usize,
    pub batch: usize,
    /// The adapter's peak f32 throughput ([`measure_peak`]).
    pub peak_gflops: f64,
    pub layers: Vec<LayerFigures>,
    pub step_ms: f64,
    /// GFLOP of all convolutions in one step (forward and backward).
    pub step_gflop: f64,
    /// GPU memory of an optimization step (None: a batch of 2 does not fit the device).
    pub memory: Option<StepMemory>,
    pub split: Option<StepSplit>,
}

/// The GPU memory of a whole optimization step to one layer (network,
/// image side, Adam) at the benchmark's image size: `bytes_fixed +
/// batch × bytes_per_image`, plus the weights.
#[derive(Clone, Debug)]
pub struct StepMemory {
    pub layer: String,
    pub bytes_per_image: u64,
    /// The part that does not grow with the batch (uniforms, tables, objective specs).
    pub bytes_fixed: u64,
    /// The conv weights (as uploaded, both orientations, padded).
    pub weights_bytes: u64,
}

/// A whole optimization step to one layer, and the part of it outside the network.
#[derive(Clone, Debug)]
pub struct StepSplit {
    pub layer: String,
    pub step_ms: f64,
    /// Parameterization, colour, warp, preprocessing, their adjoints and Adam.
    pub image_ms: f64,
    /// Each kernel of the image side timed alone, in step order: (kernel, ms).
    pub image_kernels: Vec<(String, f64)>,
    /// The step's conv kernels, each timed alone, summed.
    pub conv_ms: f64,
    /// Each kernel of the network outside its convs (pooling, objective,
    /// redirected ReLU) timed alone, in step order: (kernel, ms).
    pub network_kernels: Vec<(String, f64)>,
}

impl StepSplit {
    pub fn image_share(&self) -> f64 {
        self.image_ms / self.step_ms
    }

    /// The whole step against its conv kernels timed alone (what the step
    /// costs beyond its convs: the other kernels, and running in sequence
    /// rather than each kernel on warm caches).
    pub fn step_over_conv(&self) -> f64 {
        self.step_ms / self.conv_ms
    }
}

/// `x` rounded to `places` decimals: the report's figures are timings, not exact.
fn round(x: f64, places: i32) -> f64 {
    let k = 10f64.powi(places);
    (x * k).round() / k
}

/// The report as JSON (`featvis bench --json`, the page's benchmark result).
#[derive(Serialize)]
struct BenchJson<'a> {
    adapter: &'a str,
    conv_schedule: &'a str,
    size: usize,
    batch: usize,
    peak_gflops: f64,
    layers: Vec<LayerJson<'a>>,
    step_ms: f64,
    step_gflops: f64,
    memory: Option<MemoryJson<'a>>,
    split: Option<SplitJson<'a>>,
}

#[derive(Serialize)]
struct LayerJson<'a> {
    name: &'static str,
    config: &'a str,
    gflop: f64,
    fwd_gflops: f64,
    bwd_gflops: f64,
    fwd_peak_fraction: f64,
    bwd_peak_fraction: f64,
    fwd_ms: f64,
    bwd_ms: f64,
}

#[derive(Serialize)]
struct MemoryJson<'a> {
    layer: &'a str,
    bytes_per_image: u64,
    bytes_fixed: u64,
    weights_bytes: u64,
}

#[derive(Serialize)]
struct SplitJson<'a> {
    layer: &'a str,
    step_ms: f64,
    image_ms: f64,
    image_share: f64,
    image_kernels: Vec<KernelJson<'a>>,
    conv_ms: f64,
    network_kernels: Vec<KernelJson<'a>>,
    step_over_conv: f64,
}

#[derive(Serialize)]
struct KernelJson<'a> {
    name: &'a str,
    ms: f64,
}

impl BenchReport {
    /// One JSON object: adapter, conv_schedule, size, batch, peak_gflops,
    /// layers (name, config, gflop, fwd_gflops, bwd_gflops,
    /// fwd_peak_fraction, bwd_peak_fraction, fwd_ms, bwd_ms), step_ms,
    /// step_gflops, memory (layer, bytes_per_image, bytes_fixed,
    /// weights_bytes) or null, split (layer, step_ms, image_ms, image_share,
    /// image_kernels: name, ms; conv_ms, network_kernels: name, ms;
    /// step_over_conv) or null. A figure that is not a number (a
    /// kernel timed at 0 ms) is null.
    pub fn to_json(&self) -> String {
        let json = BenchJson {
            adapter: &self.adapter,
            conv_schedule: &self.conv_schedule,
            size: self.size,
            batch: self.batch,
            peak_gflops: round(self.peak_gflops, 3),
            layers: self
                .layers
                .iter()
                .map(|l| LayerJson {
                    name: l.name,
                    config: &l.config,
                    gflop: round(l.gflop, 4),
                    fwd_gflops: round(l.fwd_gflops(), 3),
                    bwd_gflops: round(l.bwd_gflops(), 3),
                    fwd_peak_fraction: round(l.fwd_peak_fraction(), 5),
                    bwd_peak_fraction: round(l.bwd_peak_fraction(), 5),
                    fwd_ms: round(l.fwd_ms, 3),
                    bwd_ms: round(l.bwd_ms, 3),
                })
                .collect(),
            step_ms: round(self.step_ms, 3),
            step_gflops: round(self.step_gflop / self.step_ms * 1e3, 3),
            memory: self.memory.as_ref().map(|m| MemoryJson {
                layer: &m.layer,
                bytes_per_image: m.bytes_per_image,
                bytes_fixed: m.bytes_fixed,
                weights_bytes: m.weights_bytes,
            }),
            split: self.split.as_ref().map(|s| SplitJson {
                layer: &s.layer,
                step_ms: round(s.step_ms, 3),
                image_ms: round(s.image_ms, 3),
                image_share: round(s.image_share(), 4),
                image_kernels: s.image_kernels.iter().map(|(name, ms)| KernelJson { name, ms: round(*ms, 3) }).collect(),
                conv_ms: round(s.conv_ms, 3),
                network_kernels: s.network_kernels.iter().map(|(name, ms)| KernelJson { name, ms: round(*ms, 3) }).collect(),
                step_over_conv: round(s.step_over_conv(), 4),
            }),
        };
        // Strings and numbers (non-finite ones become null): this cannot fail.
        serde_json::to_string(&json).unwrap_or_default()
    }
}

/// Milliseconds of the fastest run of `ds` (one pass, one submit, waiting
/// for the GPU), after one warm-up: at least three runs, and more until
/// `min_ms` have passed (at most 50). The fastest, not the mean: other work on
/// the machine only ever adds time (tests run beside each other on two cores),
/// so the fastest run is the one closest to the kernels' own cost, and a part
/// of the step (the image side) cannot come out slower than the whole.
///
/// A run is `ds` recorded several times back to back in one submit when one
/// pass takes under [`RUN_MS`]: a step submits all its kernels together, so
/// a kernel's cost in a step is its cost back to back, without the submit's
/// and the wait's fixed cost (about a millisecond in a browser, where it is
/// a round trip to the GPU process), which would otherwise dominate the
/// small kernels (conv1_1, the 4×4 conv5 layers at 64 px, the image side).
async fn time(gpu: &Gpu, what: &str, ds: &[&Dispatch], min_ms: f64, now: &dyn Fn() -> f64) -> Result<f64> {
    // The faster of two single passes decides the repetitions: the first
    // may compile, and one stalled pass must not leave a short kernel timed
    // one submit at a time.
    let mut once = f64::INFINITY;
    for _ in 0..2 {
        let t0 = now();
        gpu.run(what, ds).await?;
        gpu.finish().await?;
        once = once.min(now() - t0);
    }
    let reps = if once >= RUN_MS { 1 } else { ((RUN_MS / once.max(0.05)).ceil() as usize).min(MAX_REPS) };
    let run: Vec<&Dispatch> = (0..reps).flat_map(|_| ds.iter().copied()).collect();
    let start = now();
    let mut best = f64::INFINITY;
    for n in 1..=50 {
        let t0 = now();
        gpu.run(what, &run).await?;
        gpu.finish().await?;
        best = best.min((now() - t0) / reps as f64);
        if n >= 3 && now() - start >= min_ms {
            break;
        }
    }
    Ok(best)
}

/// A timed run lasts at least this long (ms) when one pass is shorter.
pub const RUN_MS: f64 = 20.0;
/// At most this many passes per timed run.
pub const MAX_REPS: usize = 64;

/// shaders/peak.wgsl: the FMA-bound kernel behind the peak figure.
pub const PEAK_SHADER: &str = include_str!("../shaders/peak.wgsl");
const PEAK_WG: u32 = 64;
const PEAK_BINDINGS: [Binding; 2] = [Binding::Uniform, Binding::ReadWrite];
/// Independent vec4 fma chains per invocation in peak.wgsl.
pub const PEAK_CHAINS: u32 = 2;
/// Fma rounds of every chain per loop iteration in peak.wgsl.
pub const PEAK_ROUNDS: u32 = 16;
/// The chains' multiplier and addend: c ← a·c + b converges to b / (1 − a) = 1.
pub const PEAK_A: f32 = 0.999;
pub const PEAK_B: f32 = 0.001;
/// Where the peak dispatch starts: 4,096 invocations of 64 iterations (67 MFLOP).
const PEAK_START: (usize, u32) = (4096, 64);
/// The most invocations of one peak dispatch (its output: 4 MiB); past them
/// the iterations grow, up to [`PEAK_MAX_ITERATIONS`] (2^20 invocations of
/// 2^14 iterations: 4.4 TFLOP, well over a second even on a large GPU).
const PEAK_MAX_INVOCATIONS: usize = 1 << 20;
const PEAK_MAX_ITERATIONS: u32 = 1 << 14;
/// The peak dispatch grows until one run takes this long.
const PEAK_RUN_MS: f64 = 25.0;

/// Uniform of `peak_fma`; mirrors `PeakParams` in peak.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct PeakParams {
    /// Invocations that write (the output's length).
    pub n: u32,
    /// Loop iterations per invocation, [`PEAK_ROUNDS`] rounds each.
    pub iterations: u32,
    pub _pad: [u32; 2],
    pub a: f32,
    pub b: f32,
    /// Start of invocation 0's first lane.
    pub seed: f32,
    /// Start offset from one invocation to the next.
    pub step: f32,
}

impl PeakParams {
    pub fn new(n: u32, iterations: u32, seed: f32) -> PeakParams {
        PeakParams { n, iterations, _pad: [0; 2], a: PEAK_A, b: PEAK_B, seed, step: 1.0 / 64.0 }
    }
}

/// FLOP of `invocations` invocations of `peak_fma` with `iterations` loop
/// iterations: 2 (an fma) × 4 lanes × [`PEAK_CHAINS`] × [`PEAK_ROUNDS`] an
/// iteration.
pub fn peak_flop(invocations: usize, iterations: u32) -> f64 {
    2.0 * 4.0 * PEAK_CHAINS as f64 * PEAK_ROUNDS as f64 * iterations as f64 * invocations as f64
}

/// A dispatch of `peak_fma` over `n` invocations (the first `n` values of
/// `out` are written, nothing else).
pub async fn peak_dispatch(gpu: &Gpu, out: &Tensor, n: usize, iterations: u32, seed: f32) -> Result<Dispatch> {
    if n > out.len {
        return Err(Error::Invalid(format!("peak_fma: {n} invocations, but `{}` holds {} values", out.label, out.len)));
    }
    let n32 = crate::ops::check_u32("peak_fma", "invocations", n)?;
    let k = gpu
        .kernel(&KernelSpec {
            shader: "peak.wgsl",
            source: PEAK_SHADER,
            entry: "peak_fma",
            constants: vec![("WG", PEAK_WG)],
            bindings: &PEAK_BINDINGS,
            workgroup_size: PEAK_WG,
        })
        .await?;
    let p = PeakParams::new(n32, iterations, seed);
    gpu.dispatch(&k, Some(bytemuck::bytes_of(&p)), &[&out.buffer], n as u64).await
}

/// What `peak_fma` writes, on the CPU: the same f32 fma chains (f32::mul_add
/// rounds once, as a fused fma does), summed in the shader's order.
pub fn peak_reference(n: usize, iterations: u32, seed: f32) -> Vec<f32> {
    let p = PeakParams::new(n as u32, iterations, seed);
    (0..n)
        .map(|i| {
            let x = p.seed + i as f32 * p.step;
            // Lanes 0–3: chain c0, 4–7: chain c1.
            let mut c: [f32; 8] = std::array::from_fn(|j| x + j as f32 / 8.0);
            for _ in 0..iterations * PEAK_ROUNDS {
                for v in c.iter_mut() {
                    *v = v.mul_add(p.a, p.b);
                }
            }
            let s: [f32; 4] = std::array::from_fn(|j| c[j] + c[4 + j]);
            (s[0] + s[1]) + (s[2] + s[3])
        })
        .collect()
}

/// The adapter's peak f32 throughput in GFLOP/s: `peak_fma`, grown (from
/// [`PEAK_START`], doubling the invocations, then the iterations) until one
/// run takes [`PEAK_RUN_MS`], then timed like the conv kernels.
pub async fn measure_peak(gpu: &Gpu, min_ms: f64, now: &dyn Fn() -> f64) -> Result<f64> {
    let max_n = PEAK_MAX_INVOCATIONS.min((gpu.max_binding_bytes() / 4) as usize);
    let out = gpu.tensor("peak output", max_n)?;
    let (mut n, mut iterations) = (PEAK_START.0.min(max_n), PEAK_START.1);
    loop {
        let d = peak_dispatch(gpu, &out, n, iterations, 0.5).await?;
        let ms = time_once(gpu, &d, now).await?;
        if ms >= PEAK_RUN_MS || iterations >= PEAK_MAX_ITERATIONS {
            let ms = time(gpu, "peak_fma", &[&d], min_ms, now).await?;
            return Ok(peak_flop(n, iterations) / ms / 1e6);
        }
        if n < max_n {
            n = (n * 2).min(max_n);
        } else {
            iterations *= 2;
        }
    }
}

/// Milliseconds of one run of `d` after one warm-up (the first run compiles
/// and allocates): the fastest of three, so that one stalled run (a cold
/// browser's GPU process, another program) does not stop the dispatch
/// growing while it is still small enough for the submit to dominate.
async fn time_once(gpu: &Gpu, d: &Dispatch, now: &dyn Fn() -> f64) -> Result<f64> {
    gpu.run("peak_fma", &[d]).await?;
    gpu.finish().await?;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t0 = now();
        gpu.run("peak_fma", &[d]).await?;
        gpu.finish().await?;
        best = best.min(now() - t0);
    }
    Ok(best)
}

/// The memory of an optimization step to `layer` at `size`: what one
/// pipeline at batch 1 and one at batch 2 allocate on the device (None when
/// 2 images do not fit it); `weights_bytes` is what uploading the model took.
async fn step_memory(gpu: &Gpu, model: &Vgg16, weights_bytes: u64, size: usize, layer: &str) -> Result<Option<StepMemory>> {
    let mut bytes = [0u64; 2];
    for (i, b) in [1, 2].into_iter().enumerate() {
        let objective = Objective::per_image((0..b).map(|j| Objective::channel(layer, j)).collect())?;
        let before = gpu.allocated_bytes();
        match Pipeline::new(gpu, model, Settings::new(b, size, Preprocessing::keras()), &objective).await {
            Ok(_p) => bytes[i] = gpu.allocated_bytes() - before,
            Err(Error::Limit(_)) if b > 1 => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    let per_image = bytes[1].saturating_sub(bytes[0]);
    Ok(Some(StepMemory {
        layer: layer.to_string(),
        bytes_per_image: per_image,
        bytes_fixed: bytes[0].saturating_sub(per_image),
        weights_bytes,
    }))
}

/// Run the benchmark. `layers`: conv layers to time (all if empty);
/// `split_layer`: the layer of the whole-step split (none: skip it); `now`:
/// a clock in milliseconds; `progress`: called with each layer's figures.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    gpu: &Gpu,
    size: usize,
    batch: usize,
    layers: &[String],
    split_layer: Option<&str>,
    min_ms: f64,
    now: &dyn Fn() -> f64,
    progress: &mut dyn FnMut(&LayerFigures),
) -> Result<BenchReport> {
    if size == 0 || batch == 0 {
        return Err(Error::Invalid(format!("size ({size}) and batch ({batch}) must be at least 1")));
    }
    if let Some(l) = split_layer {
        crate::model::resolve(l, false)?;
    }
    for l in layers {
        if !CONVS.iter().any(|(n, _, _)| n == l) {
            return Err(Error::UnknownLayer { name: l.clone(), known: "conv1_1 … conv5_3".into() });
        }
    }
    let peak_gflops = measure_peak(gpu, min_ms, now).await?;
    let before = gpu.allocated_bytes();
    let model = Vgg16::upload(gpu, &Vgg16Weights::random(1, None))?;
    let weights_bytes = gpu.allocated_bytes() - before;
    let net = Network::new(gpu, &model, batch, size, size, "conv5_3").await?;
    // The configuration each layer's kernels were built with.
    let config_of = |layer: &str| net.schedule(layer).unwrap_or_else(|| gpu.conv_config()).name();
    let targets: Vec<_> = (0..batch).map(|b| (Target::Channel(b % 512), 1.0)).collect();
    net.set_objectives(gpu, &targets)?;
    let mut out = Vec::new();
    for (name, cin, cout) in CONVS {
        if !layers.is_empty() && !layers.iter().any(|l| l == name) {
            continue;
        }
        let a = net.activation(name).ok_or_else(|| Error::Invalid(format!("{name} missing")))?;
        let (fwd, bwd) = net.node_dispatches(name).ok_or_else(|| Error::Invalid(format!("{name} dispatches missing")))?;
        let gflop = 2.0 * conv::macs(a.shape, cin, cout) as f64 / 1e9;
        let fwd_ms = time(gpu, name, &fwd, min_ms, now).await?;
        let bwd_ms = time(gpu, name, &bwd, min_ms, now).await?;
        let f = LayerFigures { name, config: config_of(name), gflop, fwd_ms, bwd_ms, peak_gflops };
        progress(&f);
        out.push(f);
    }
    let step = net.step_dispatches();
    let step_ms = time(gpu, "step", &step, min_ms, now).await?;
    let step_gflop =
        CONVS.iter().filter_map(|(n, cin, cout)| net.activation(n).map(|a| 4.0 * conv::macs(a.shape, *cin, *cout) as f64 / 1e9)).sum();
    drop(net);
    let memory = step_memory(gpu, &model, weights_bytes, size, "conv5_3").await?;
    let split = match split_layer {
        None => None,
        Some(layer) => {
            let objective = Objective::per_image((0..batch).map(|b| Objective::channel(layer, b)).collect())?;
            let settings = Settings::new(batch, size, Preprocessing::keras());
            let p = Pipeline::new(gpu, &model, settings, &objective).await?;
            let step_ms = time(gpu, "optimization step", &p.step_dispatches(false), min_ms, now).await?;
            let image = p.image_dispatches();
            let image_ms = time(gpu, "image side of the step", &image, min_ms, now).await?;
            // Every kernel of the step alone, in step order: the image side's,
            // the convs', and the rest of the network's.
            let (mut image_kernels, mut network_kernels, mut conv_ms) = (Vec::new(), Vec::new(), 0.0);
            let all = p.step_dispatches(false);
            for d in &all {
                let ms = time(gpu, &d.kernel.name, &[d], min_ms / all.len() as f64, now).await?;
                if image.iter().any(|i| std::ptr::eq(*i, *d)) {
                    image_kernels.push((d.kernel.name.clone(), ms));
                } else if d.kernel.name.starts_with("conv3x3") {
                    conv_ms += ms;
                } else {
                    network_kernels.push((d.kernel.name.clone(), ms));
                }
            }
            Some(StepSplit { layer: layer.to_string(), step_ms, image_ms, image_kernels, conv_ms, network_kernels })
        }
    };
    Ok(BenchReport {
        split,
        adapter: gpu.adapter.to_string(),
        conv_schedule: gpu.conv_config().name(),
        size,
        batch,
        peak_gflops,
        layers: out,
        step_ms,
        step_gflop,
        memory,
    })
}
