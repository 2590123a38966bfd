//! The benchmark behind `featvis bench` and the page's benchmark button:
//! GFLOP/s of every conv layer's forward and backward kernel, and ms for a
//! whole forward+backward step to conv5_3, on random weights (speed does not
//! depend on the values).

use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu};
use crate::model::{Network, Vgg16, Vgg16Weights, CONVS};
use crate::ops::conv;
use crate::ops::objective::Target;

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
}

impl BenchReport {
    /// One JSON object: adapter, size, batch, layers (name, fwd_gflops,
    /// bwd_gflops, ...), step_ms.
    pub fn to_json(&self) -> String {
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let layers: Vec<String> = self
            .layers
            .iter()
            .map(|l| {
                format!(
                    "{{\"name\":\"{}\",\"gflop\":{:.4},\"fwd_gflops\":{:.3},\"bwd_gflops\":{:.3},\"fwd_ms\":{:.3},\"bwd_ms\":{:.3}}}",
                    l.name,
                    l.gflop,
                    l.fwd_gflops(),
                    l.bwd_gflops(),
                    l.fwd_ms,
                    l.bwd_ms
                )
            })
            .collect();
        format!(
            "{{\"adapter\":\"{}\",\"conv_schedule\":\"{}\",\"size\":{},\"batch\":{},\"layers\":[{}],\"step_ms\":{:.3},\"step_gflops\":{:.3}}}",
            esc(&self.adapter),
            esc(&self.conv_schedule),
            self.size,
            self.batch,
            layers.join(","),
            self.step_ms,
            self.step_gflop / self.step_ms * 1e3
        )
    }
}

/// Milliseconds per run of `ds` (one pass, one submit, waiting for the GPU),
/// after one warm-up, repeated until `min_ms` have passed (at least once).
async fn time(gpu: &Gpu, what: &str, ds: &[&Dispatch], min_ms: f64, now: &dyn Fn() -> f64) -> Result<f64> {
    gpu.run(what, ds).await?;
    gpu.finish().await?;
    let start = now();
    let mut n = 0;
    loop {
        gpu.run(what, ds).await?;
        gpu.finish().await?;
        n += 1;
        let t = now() - start;
        if t >= min_ms || n >= 50 {
            return Ok(t / n as f64);
        }
    }
}

/// Run the benchmark. `layers`: conv layers to time (all if empty); `now`:
/// a clock in milliseconds; `progress`: called with each layer's figures.
pub async fn run(
    gpu: &Gpu,
    size: usize,
    batch: usize,
    layers: &[String],
    min_ms: f64,
    now: &dyn Fn() -> f64,
    progress: &mut dyn FnMut(&LayerFigures),
) -> Result<BenchReport> {
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
    let step_gflop = CONVS
        .iter()
        .filter_map(|(n, cin, cout)| net.activation(n).map(|a| 4.0 * conv::macs(a.shape, *cin, *cout) as f64 / 1e9))
        .sum();
    Ok(BenchReport {
        adapter: gpu.adapter.to_string(),
        conv_schedule: gpu.conv_config.name(),
        size,
        batch,
        layers: out,
        step_ms,
        step_gflop,
    })
}
