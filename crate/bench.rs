//! The benchmark behind `featvis bench` and the page's benchmark button:
//! GFLOP/s of every conv layer's forward and backward kernel, ms for a
//! whole forward+backward step to conv5_3, and the split of a whole
//! optimization step to one layer between the network and everything else
//! (parameterization, colour, transforms, preprocessing, their adjoints,
//! Adam), on random weights (speed does not depend on the values).

use serde::Serialize;

use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu};
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
    pub gflop: f64,
    pub fwd_ms: f64,
    pub bwd_ms: f64,
}

impl LayerFigures {
    pub fn fwd_gflops(&self) -> f64 {
        self.gflop / self.fwd_ms * 1e3
    }
    pub fn bwd_gflops(&self) -> f64 {
        self.gflop / self.bwd_ms * 1e3
    }
}

#[derive(Clone, Debug)]
pub struct BenchReport {
    pub adapter: String,
    pub conv_schedule: String,
    pub size: usize,
    pub batch: usize,
    pub layers: Vec<LayerFigures>,
    pub step_ms: f64,
    /// GFLOP of all convolutions in one step (forward and backward).
    pub step_gflop: f64,
    pub split: Option<StepSplit>,
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
}

impl StepSplit {
    pub fn image_share(&self) -> f64 {
        self.image_ms / self.step_ms
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
    layers: Vec<LayerJson>,
    step_ms: f64,
    step_gflops: f64,
    split: Option<SplitJson<'a>>,
}

#[derive(Serialize)]
struct LayerJson {
    name: &'static str,
    gflop: f64,
    fwd_gflops: f64,
    bwd_gflops: f64,
    fwd_ms: f64,
    bwd_ms: f64,
}

#[derive(Serialize)]
struct SplitJson<'a> {
    layer: &'a str,
    step_ms: f64,
    image_ms: f64,
    image_share: f64,
    image_kernels: Vec<KernelJson<'a>>,
}

#[derive(Serialize)]
struct KernelJson<'a> {
    name: &'a str,
    ms: f64,
}

impl BenchReport {
    /// One JSON object: adapter, conv_schedule, size, batch, layers (name,
    /// gflop, fwd_gflops, bwd_gflops, fwd_ms, bwd_ms), step_ms, step_gflops,
    /// split (layer, step_ms, image_ms, image_share, image_kernels: name, ms) or null. A figure that
    /// is not a number (a kernel timed at 0 ms) is null.
    pub fn to_json(&self) -> String {
        let json = BenchJson {
            adapter: &self.adapter,
            conv_schedule: &self.conv_schedule,
            size: self.size,
            batch: self.batch,
            layers: self
                .layers
                .iter()
                .map(|l| LayerJson {
                    name: l.name,
                    gflop: round(l.gflop, 4),
                    fwd_gflops: round(l.fwd_gflops(), 3),
                    bwd_gflops: round(l.bwd_gflops(), 3),
                    fwd_ms: round(l.fwd_ms, 3),
                    bwd_ms: round(l.bwd_ms, 3),
                })
                .collect(),
            step_ms: round(self.step_ms, 3),
            step_gflops: round(self.step_gflop / self.step_ms * 1e3, 3),
            split: self.split.as_ref().map(|s| SplitJson {
                layer: &s.layer,
                step_ms: round(s.step_ms, 3),
                image_ms: round(s.image_ms, 3),
                image_share: round(s.image_share(), 4),
                image_kernels: s.image_kernels.iter().map(|(name, ms)| KernelJson { name, ms: round(*ms, 3) }).collect(),
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
async fn time(gpu: &Gpu, what: &str, ds: &[&Dispatch], min_ms: f64, now: &dyn Fn() -> f64) -> Result<f64> {
    gpu.run(what, ds).await?;
    gpu.finish().await?;
    let start = now();
    let mut best = f64::INFINITY;
    for n in 1..=50 {
        let t0 = now();
        gpu.run(what, ds).await?;
        gpu.finish().await?;
        best = best.min(now() - t0);
        if n >= 3 && now() - start >= min_ms {
            break;
        }
    }
    Ok(best)
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
    let model = Vgg16::upload(gpu, &Vgg16Weights::random(1, None))?;
    let net = Network::new(gpu, &model, batch, size, size, "conv5_3").await?;
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
        let f = LayerFigures { name, gflop, fwd_ms, bwd_ms };
        progress(&f);
        out.push(f);
    }
    let step = net.step_dispatches();
    let step_ms = time(gpu, "step", &step, min_ms, now).await?;
    let step_gflop =
        CONVS.iter().filter_map(|(n, cin, cout)| net.activation(n).map(|a| 4.0 * conv::macs(a.shape, *cin, *cout) as f64 / 1e9)).sum();
    drop(net);
    let split = match split_layer {
        None => None,
        Some(layer) => {
            let objective = Objective::per_image((0..batch).map(|b| Objective::channel(layer, b)).collect())?;
            let settings = Settings::new(batch, size, Preprocessing::keras());
            let p = Pipeline::new(gpu, &model, settings, &objective).await?;
            let step_ms = time(gpu, "optimization step", &p.step_dispatches(false), min_ms, now).await?;
            let image = p.image_dispatches();
            let image_ms = time(gpu, "image side of the step", &image, min_ms, now).await?;
            let mut image_kernels = Vec::new();
            for d in &image {
                image_kernels.push((d.kernel.name.clone(), time(gpu, &d.kernel.name, &[d], min_ms / image.len() as f64, now).await?));
            }
            Some(StepSplit { layer: layer.to_string(), step_ms, image_ms, image_kernels })
        }
    };
    Ok(BenchReport {
        split,
        adapter: gpu.adapter.to_string(),
        conv_schedule: gpu.conv_config().name(),
        size,
        batch,
        layers: out,
        step_ms,
        step_gflop,
    })
}
