//! `featvis bench`: the library's benchmark, printed as a table or JSON.

use std::time::Instant;

use clap::Args;

use featvis::Gpu;

use crate::whole;

/// GFLOP/s of every conv layer's kernels (and their share of the adapter's
/// peak), ms for a whole step, and its GPU memory per image.
///
/// Forward and backward kernel of every conv layer, and a whole
/// forward+backward step to conv5_3, on random weights (speed only); the
/// peak is an FMA-bound kernel's GFLOP/s, measured once.
#[derive(Args)]
#[command(args_override_self = true)]
pub struct BenchArgs {
    /// Image side in pixels.
    #[arg(long, value_name = "PX", default_value = "224", value_parser = whole)]
    size: usize,
    /// Images per batch.
    #[arg(long, default_value = "1", value_parser = whole)]
    batch: usize,
    /// Only these conv layers, e.g. conv1_2,conv4_3 [default: all 13].
    #[arg(long, value_delimiter = ',')]
    layers: Vec<String>,
    /// Time each kernel for at least this long.
    #[arg(long, value_name = "SECONDS", default_value = "0.3", value_parser = seconds, allow_hyphen_values = true)]
    min_time: f64,
    /// The layer of the whole optimization step whose time is split between the network and the rest.
    #[arg(long, value_name = "LAYER", default_value = "conv3_3")]
    split_layer: String,
    /// Skip that optimization step.
    #[arg(long)]
    no_split: bool,
    /// One JSON object on stdout instead of the table.
    #[arg(long)]
    json: bool,
}

/// A duration option in seconds (`--min-time`, `tune --budget`).
pub(crate) fn seconds(s: &str) -> Result<f64, String> {
    s.parse().ok().filter(|v: &f64| v.is_finite() && *v >= 0.0).ok_or_else(|| "seconds (a number ≥ 0)".to_string())
}

pub fn main(args: BenchArgs) -> Result<(), String> {
    let split_layer = (!args.no_split).then_some(args.split_layer);
    let (size, batch, min_secs, json) = (args.size, args.batch, args.min_time, args.json);
    let layers: Vec<String> = args.layers.iter().map(|s| s.trim().to_string()).collect();
    let gpu = pollster::block_on(Gpu::new()).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let now = move || t0.elapsed().as_secs_f64() * 1e3;
    let mut header = !json;
    let mut progress = |l: &featvis::bench::LayerFigures| {
        // The header only once the network is built (no table before an error).
        if std::mem::take(&mut header) {
            println!("adapter: {}  (conv schedule {})", gpu.adapter, gpu.conv_config().name());
            println!("peak: {:.2} GFLOP/s (an FMA-bound kernel, shaders/peak.wgsl)", l.peak_gflops);
            println!("size {size}x{size}, batch {batch}");
            println!(
                "{:<9} {:>8} {:>10} {:>10} {:>7} {:>7} {:>10} {:>10}  config",
                "layer", "GFLOP", "fwd GF/s", "bwd GF/s", "fwd %", "bwd %", "fwd ms", "bwd ms"
            );
        }
        if !json {
            println!(
                "{:<9} {:>8.2} {:>10.2} {:>10.2} {:>6.1}% {:>6.1}% {:>10.1} {:>10.1}  {}",
                l.name,
                l.gflop,
                l.fwd_gflops(),
                l.bwd_gflops(),
                100.0 * l.fwd_peak_fraction(),
                100.0 * l.bwd_peak_fraction(),
                l.fwd_ms,
                l.bwd_ms,
                l.config
            );
        }
    };
    let report =
        pollster::block_on(featvis::bench::run(&gpu, size, batch, &layers, split_layer.as_deref(), min_secs * 1e3, &now, &mut progress))
            .map_err(|e| e.to_string())?;
    if json {
        println!("{}", report.to_json());
    } else {
        println!(
            "step to conv5_3 (forward + backward, every layer): {:.1} ms = {:.2} GFLOP/s over {:.1} GFLOP of convolutions",
            report.step_ms,
            report.step_gflop / report.step_ms * 1e3,
            report.step_gflop
        );
        if let Some(m) = &report.memory {
            let mib = |b: u64| b as f64 / (1 << 20) as f64;
            println!(
                "GPU memory of an optimization step to {} ({size}x{size}): {:.1} MiB per image + {:.2} MiB, and {:.1} MiB of conv weights",
                m.layer,
                mib(m.bytes_per_image),
                mib(m.bytes_fixed),
                mib(m.weights_bytes)
            );
        }
        if let Some(s) = &report.split {
            println!(
                "optimization step to {} ({size}x{size}, batch {batch}): {:.1} ms; parameterization + colour + transforms + preprocessing + adjoints + Adam: {:.2} ms = {:.1}% of the step",
                s.layer,
                s.step_ms,
                s.image_ms,
                100.0 * s.image_share()
            );
            for (name, ms) in &s.image_kernels {
                println!("  {name:<44} {ms:>9.2} ms");
            }
            let other: f64 = s.network_kernels.iter().map(|(_, ms)| ms).sum();
            println!(
                "its conv kernels, each alone: {:.1} ms; the network's other kernels: {other:.2} ms; the whole step is {:.3}x its conv kernels",
                s.conv_ms,
                s.step_over_conv()
            );
            for (name, ms) in &s.network_kernels {
                println!("  {name:<44} {ms:>9.2} ms");
            }
        }
    }
    Ok(())
}
