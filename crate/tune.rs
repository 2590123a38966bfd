//! Choosing the conv schedule on the device it will run on: every candidate
//! is first checked against the CPU reference on a small case whose sizes
//! divide none of the tiles (a schedule that computes wrong results on this
//! driver is never offered), then timed forward and backward on a
//! mid-network shape; the fastest correct one wins.
//!
//! `featvis tune` and the page's "Tune" button run it; the page keeps the
//! choice per adapter, so each device is tuned once. [`tune_shapes`] then
//! times the correct candidates on each of VGG16's layer shapes at a size
//! (a 14×14 layer with 512 channels wants other tiles than a 224×224 one
//! with 64), within a time budget; the CLI keeps those choices in its
//! tuning cache and sets them with [`Gpu::set_conv_choice`].

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::gpu::{ConvConfig, ConvShape, Gpu};
use crate::ops::conv_gen::Unrolled;
use crate::ops::{conv, pad_channels, unpad_channels, Shape};
use crate::reference as r;
use crate::rng::Rng;

/// One candidate's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct Candidate {
    pub schedule: String,
    /// The schedule as `FEATVIS_CONV` and `setConvSchedule` take it.
    pub spec: String,
    #[serde(skip)]
    pub config: ConvConfig,
    /// Largest error against the CPU reference, relative to the largest
    /// reference value (forward and backward).
    pub max_rel_error: f64,
    pub correct: bool,
    /// Forward + backward GFLOP/s on the timing shape (0 when not timed).
    pub gflops: f64,
    /// Why it could not run here (compile error, no subgroups …).
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Tuning {
    pub adapter: String,
    /// The timing shape: (batch, height, width, cin, cout).
    pub shape: [usize; 5],
    pub chosen: String,
    /// The chosen schedule as `FEATVIS_CONV` and `setConvSchedule` take it.
    pub chosen_spec: String,
    #[serde(skip)]
    pub chosen_config: ConvConfig,
    /// How the candidates were timed ([`clock`]).
    pub clock: String,
    pub candidates: Vec<Candidate>,
}

impl Tuning {
    /// The schedules that passed the check, the fastest first (the chosen
    /// one, when any is correct): what [`tune_shapes`] times on each shape.
    pub fn correct_fastest_first(&self) -> Vec<ConvConfig> {
        let mut correct: Vec<&Candidate> = self.candidates.iter().filter(|c| c.correct && c.error.is_none()).collect();
        correct.sort_by(|a, b| b.gflops.total_cmp(&a.gflops));
        correct.iter().map(|c| c.config).collect()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// A schedule is correct when it is within this of the reference.
pub const TOLERANCE: f64 = 1e-4;

/// The implicit-GEMM tiles a GPU is offered (those its limits allow):
/// (pixels, channels, K step, pixels and channels per invocation). Large
/// tiles for the wide early layers, 32-pixel tiles and 64 invocations for the
/// 28×28 and 14×14 layers, where 128-pixel tiles would leave most of a GPU idle.
pub const GEMM_TILES: [(u32, u32, u32, u32, u32); 11] = [
    (64, 64, 16, 4, 4),
    (64, 64, 8, 4, 4),
    (64, 64, 32, 4, 4),
    (128, 128, 8, 8, 8),
    (128, 128, 16, 8, 8),
    (128, 64, 16, 8, 4),
    (64, 128, 16, 4, 8),
    (128, 64, 8, 8, 8),
    (64, 64, 16, 8, 8),
    (32, 64, 16, 4, 4),
    (32, 32, 16, 4, 4),
];

/// The schedules worth timing on `gpu`: the hand-written ones, generated
/// tiles of 4–8 pixels × 8–32 channels (with subgroup broadcast where the
/// device has fixed-size subgroups), and on GPUs the implicit-GEMM family of
/// [`GEMM_TILES`] within the device's workgroup limits (CPU adapters run
/// those correctly, the parity tests check it, but several times slower than
/// the register tiles, so they are not timed there).
pub fn candidates(gpu: &Gpu) -> Vec<ConvConfig> {
    let mut out = vec![ConvConfig::LLVMPIPE, ConvConfig::SWIFTSHADER];
    if gpu.limits.max_compute_invocations_per_workgroup >= 256 && gpu.limits.max_compute_workgroup_storage_size >= 16384 {
        out.push(ConvConfig::TILED);
    }
    if !gpu.adapter.device_type.contains("Cpu") {
        for (bm, bn, bk, tm, tn) in GEMM_TILES {
            let g = crate::ops::conv_gen::Gemm { bm, bn, bk, tm, tn };
            let l = &gpu.limits;
            if g.is_valid()
                && g.threads() <= l.max_compute_invocations_per_workgroup.min(l.max_compute_workgroup_size_x)
                && g.workgroup_bytes() <= l.max_compute_workgroup_storage_size
            {
                out.push(ConvConfig::Gemm(g));
            }
        }
    }
    let sg = gpu.subgroup_size;
    for (px, co4) in [(8, 4), (8, 8), (4, 4), (8, 2)] {
        out.push(ConvConfig::Unrolled(Unrolled { px, co4, wg: 8, sg: 0 }));
        if sg > 0 && sg <= 64 {
            let wg = sg.max(8);
            if wg <= gpu.limits.max_compute_invocations_per_workgroup {
                out.push(ConvConfig::Unrolled(Unrolled { px, co4, wg, sg }));
            }
        }
    }
    // Checked here, timed only on the layer shapes it fits ([`tune_shapes`]).
    out.push(ConvConfig::CPU_BAKED);
    if !out.contains(&gpu.conv_config()) {
        out.insert(0, gpu.conv_config());
    }
    out
}

fn max_rel(got: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-6);
    got.iter().zip(want).fold(0.0f64, |m, (g, w)| m.max(if g.is_finite() { (*g as f64 - w).abs() / scale } else { f64::INFINITY }))
}

/// Forward (with ReLU on the input) and backward (with a mask) of `config`
/// against the reference on (2, 9, 11, 20 → 36): largest relative error.
pub async fn check(gpu: &Gpu, config: ConvConfig) -> Result<f64> {
    // A baked schedule runs only on layers of at most 4 input channels.
    let (b, h, w, cin, cout) = if matches!(config, ConvConfig::Baked(_)) { (2, 9, 11, 3, 36) } else { (2, 9, 11, 20, 36) };
    let mut rng = Rng::new(17);
    let s = Shape::new(b, h, w, cin);
    let so = Shape { channels: cout, ..s };
    let x = rng.normal_vec(s.pixels() * cin, 1.0);
    let wt = rng.normal_vec(9 * cin * cout, 0.3);
    let bias = rng.normal_vec(cout, 0.5);
    let dy = rng.normal_vec(so.pixels() * cout, 1.0);
    let weights = conv::ConvWeights::new(gpu, "tune", cin, cout, &wt, &bias)?;
    let xt = gpu.tensor_from("tune x", &pad_channels(&x, s))?;
    let y = gpu.tensor_filled("tune y", so.padded_len(), f32::NAN)?;
    let dyt = gpu.tensor_from("tune dy", &pad_channels(&dy, so))?;
    let dx = gpu.tensor_filled("tune dx", s.padded_len(), f32::NAN)?;
    let fwd = conv::forward(gpu, config, &weights, s, &xt, &y, true).await?;
    let bwd = conv::backward_input(gpu, config, &weights, s, &dyt, &dx, Some(&xt)).await?;
    let step: Vec<&crate::gpu::Dispatch> = std::iter::once(&fwd).chain(&bwd).collect();
    gpu.run("tune check", &step).await?;
    let got_y = unpad_channels(&gpu.read(&y).await?, so);
    let got_dx = unpad_channels(&gpu.read(&dx).await?, s);
    let want_y: Vec<f64> = r::conv3x3_forward(&r::relu(&x), s, &wt, &bias, cout).iter().map(|&v| v as f64).collect();
    let want_dx: Vec<f64> = r::relu_backward(&r::conv3x3_backward_input(&dy, s, &wt, cout), &x).iter().map(|&v| v as f64).collect();
    Ok(max_rel(&got_y, &want_y).max(max_rel(&got_dx, &want_dx)))
}

/// One layer shape's outcome: the schedules timed there, the fastest chosen.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ShapeChoice {
    #[serde(flatten)]
    pub shape: ConvShape,
    /// The chosen schedule as `FEATVIS_CONV` takes it.
    pub spec: String,
    /// Its forward + backward GFLOP/s at the tuning batch.
    pub gflops: f64,
    /// Every schedule timed on this shape: (spec, GFLOP/s).
    #[serde(default)]
    pub timed: Vec<(String, f64)>,
}

/// VGG16's distinct conv layer shapes for `size`×`size` images, in network order.
pub fn vgg_shapes(size: usize) -> Vec<ConvShape> {
    let mut out: Vec<ConvShape> = Vec::new();
    let mut side = size;
    let mut block = 1;
    for (name, cin, cout) in crate::model::CONVS {
        let b: usize = name[4..5].parse().unwrap_or(1);
        if b != block {
            side /= 2;
            block = b;
        }
        let s = ConvShape { height: side, width: side, cin, cout };
        if side > 0 && !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Time each of `configs` (checked correct on this device already) on
/// every shape in `shapes` at `batch` images, forward + backward, and choose
/// the fastest per shape. The first config is timed on every shape, and
/// [`ConvConfig::CPU_BAKED`] on every shape it fits (at most 4 input
/// channels) after a check on this device; the
/// others while the shape's share of `budget_ms` lasts (a shape that cannot
/// afford them keeps the fastest of those timed). Does not change `gpu`.
pub async fn tune_shapes(
    gpu: &Gpu,
    configs: &[ConvConfig],
    shapes: &[ConvShape],
    batch: usize,
    budget_ms: f64,
    now: &dyn Fn() -> f64,
    progress: &mut dyn FnMut(&ConvShape, &str, f64),
) -> Result<Vec<ShapeChoice>> {
    let share = budget_ms / shapes.len().max(1) as f64;
    let mut out = Vec::new();
    // Shapes of at most 4 input channels (conv1_1) also time the weights
    // written into the kernels (checked on this device, by [`tune`] when
    // `configs` holds them); the other shapes never do.
    let baked = ConvConfig::CPU_BAKED;
    let mut baked_correct: Option<bool> = None;
    for &shape in shapes {
        let t0 = now();
        let mut timed: Vec<(String, f64)> = Vec::new();
        let mut best: Option<(ConvConfig, f64)> = None;
        // Second, after the schedule timed on every shape, so that the budget never cuts it.
        let mut list: Vec<ConvConfig> = configs.iter().copied().filter(|c| !matches!(c, ConvConfig::Baked(_))).collect();
        if crate::ops::conv_gen::Baked::fits(shape.cin, shape.cout) {
            let correct = match baked_correct {
                Some(c) => c,
                None if configs.contains(&baked) => *baked_correct.insert(true),
                None => *baked_correct.insert(check(gpu, baked).await.is_ok_and(|e| e <= TOLERANCE)),
            };
            if correct {
                list.insert(list.len().min(1), baked);
            }
        }
        for (k, &config) in list.iter().enumerate() {
            if k > 0 && !matches!(config, ConvConfig::Baked(_)) && now() - t0 > share {
                break;
            }
            let dims = [batch, shape.height, shape.width, shape.cin, shape.cout];
            let mut g = time(gpu, config, dims, 1, now).await?;
            // A run of a few ms is mostly noise: the fastest of more runs.
            let flop = 4.0 * conv::macs(Shape::new(batch, shape.height, shape.width, shape.cin), shape.cin, shape.cout) as f64;
            if flop / (g.max(1e-9) * 1e6) < 20.0 {
                for _ in 0..4 {
                    g = g.max(time(gpu, config, dims, 1, now).await?);
                }
            }
            progress(&shape, &config.spec(), g);
            timed.push((config.spec(), g));
            if best.is_none_or(|(_, b)| g > b) {
                best = Some((config, g));
            }
        }
        if let Some((config, gflops)) = best {
            out.push(ShapeChoice { shape, spec: config.spec(), gflops, timed });
        }
    }
    Ok(out)
}

/// Forward + backward GFLOP/s of `config` on `shape`, over at least `reps` runs.
async fn time(gpu: &Gpu, config: ConvConfig, shape: [usize; 5], reps: usize, now: &dyn Fn() -> f64) -> Result<f64> {
    let [b, h, w, cin, cout] = shape;
    let s = Shape::new(b, h, w, cin);
    let so = Shape { channels: cout, ..s };
    let mut rng = Rng::new(5);
    let weights = conv::ConvWeights::new(gpu, "tune", cin, cout, &rng.normal_vec(9 * cin * cout, 0.05), &vec![0.0; cout])?;
    let x = gpu.tensor_from("tune x", &rng.normal_vec(s.padded_len(), 1.0))?;
    let y = gpu.tensor("tune y", so.padded_len())?;
    let dx = gpu.tensor("tune dx", s.padded_len())?;
    let fwd = conv::forward(gpu, config, &weights, s, &x, &y, true).await?;
    let bwd = conv::backward_input(gpu, config, &weights, s, &y, &dx, Some(&x)).await?;
    let step: Vec<&crate::gpu::Dispatch> = std::iter::once(&fwd).chain(&bwd).collect();
    gpu.run("tune warm-up", &step).await?;
    gpu.sync().await?;
    // On the GPU's own clock where it has one: `reps` passes back to back in
    // one compute pass, the faster of two such runs.
    let mut ms = f64::INFINITY;
    if gpu.has_timestamps() {
        let run: Vec<&crate::gpu::Dispatch> = (0..reps).flat_map(|_| step.iter().copied()).collect();
        for _ in 0..2 {
            if let Some(t) = gpu.time_on_device("tune timing", &run).await? {
                ms = ms.min(t / reps as f64);
            }
        }
    }
    // A wall clock where it has none (or where its clock reads nothing).
    if !(ms.is_finite() && ms > 0.0) {
        let t0 = now();
        for _ in 0..reps {
            gpu.run("tune timing", &step).await?;
        }
        gpu.sync().await?;
        ms = (now() - t0) / reps as f64;
    }
    Ok(2.0 * 2.0 * conv::macs(s, cin, cout) as f64 / (ms.max(1e-6) * 1e6))
}

/// How [`tune`] and [`tune_shapes`] time candidates on `gpu`.
pub fn clock(gpu: &Gpu) -> &'static str {
    if gpu.has_timestamps() {
        "GPU timestamp queries (one compute pass of repeated forward + backward passes)"
    } else {
        "wall clock, submit to done (this device has no timestamp queries)"
    }
}

/// Check and time every candidate of [`candidates`]; the fastest correct
/// one is `chosen` (the current schedule when none is correct). `progress`
/// hears each candidate as it is done. Does not change `gpu`.
pub async fn tune(gpu: &Gpu, now: &dyn Fn() -> f64, progress: &mut dyn FnMut(&Candidate)) -> Result<Tuning> {
    // A mid-network layer: conv3_x at 56 px (at 28 px on CPU adapters, where
    // a run of the larger one takes seconds).
    let cpu = gpu.adapter.device_type.contains("Cpu");
    let shape = if cpu { [1, 28, 28, 128, 128] } else { [4, 56, 56, 256, 256] };
    let reps = if cpu { 2 } else { 10 };
    let mut out = Vec::new();
    for config in candidates(gpu) {
        let mut c = Candidate {
            schedule: config.name(),
            spec: config.spec(),
            config,
            max_rel_error: f64::NAN,
            correct: false,
            gflops: 0.0,
            error: None,
        };
        match check(gpu, config).await {
            Ok(err) => {
                c.max_rel_error = err;
                c.correct = err <= TOLERANCE;
                // A baked schedule is no candidate for the timing shape's 128 channels.
                if c.correct && !matches!(config, ConvConfig::Baked(_)) {
                    match time(gpu, config, shape, reps, now).await {
                        Ok(g) => c.gflops = g,
                        Err(e) => c.error = Some(e.to_string()),
                    }
                }
            }
            Err(e) => c.error = Some(e.to_string()),
        }
        progress(&c);
        out.push(c);
    }
    let best = out.iter().filter(|c| c.correct && c.error.is_none()).max_by(|a, b| a.gflops.total_cmp(&b.gflops));
    let chosen_config = best.map_or(gpu.conv_config(), |c| c.config);
    Ok(Tuning {
        adapter: gpu.adapter.to_string(),
        shape,
        chosen: chosen_config.name(),
        chosen_spec: chosen_config.spec(),
        chosen_config,
        clock: clock(gpu).to_string(),
        candidates: out,
    })
}
