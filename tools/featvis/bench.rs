//! `featvis bench`: GFLOP/s per conv kernel and ms per whole step, on random
//! weights (speed does not depend on the values).

use std::time::Instant;

use featvis::gpu::Dispatch;
use featvis::model::{Network, Vgg16, Vgg16Weights, CONVS};
use featvis::ops::conv;
use featvis::ops::objective::Target;
use featvis::Gpu;

use crate::args::Args;

/// Seconds per run of `ds` (recorded into one pass, one submit), after one
/// warm-up, repeated until at least `min_secs` have passed (at least once).
fn time(gpu: &Gpu, what: &str, ds: &[&Dispatch], min_secs: f64) -> Result<f64, String> {
    let run = || pollster::block_on(async {
        gpu.run(what, ds).await?;
        gpu.finish().await
    });
    run().map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut n = 0;
    loop {
        run().map_err(|e| e.to_string())?;
        n += 1;
        let t = start.elapsed().as_secs_f64();
        if t >= min_secs || n >= 50 {
            return Ok(t / n as f64);
        }
    }
}

pub fn main(argv: &[String]) -> Result<(), String> {
    let args = Args::parse(argv, &["size", "batch", "layers", "min-time"], &["json"])?;
    let size = args.usize_or("size", 224)?;
    let batch = args.usize_or("batch", 1)?;
    let min_secs = args.get("min-time").map(|v| v.parse::<f64>()).transpose().map_err(|_| "--min-time expects seconds")?.unwrap_or(0.3);
    let json = args.flag("json");
    let only: Option<Vec<String>> = args.get("layers").map(|l| l.split(',').map(|s| s.trim().to_string()).collect());
    if let Some(list) = &only {
        for l in list {
            if !CONVS.iter().any(|(n, _, _)| n == l) {
                return Err(format!("unknown conv layer `{l}` in --layers; use conv1_1 … conv5_3"));
            }
        }
    }
    if size < 16 {
        return Err(format!("--size {size} is too small: the benchmark runs to conv5_3, which needs at least 16 px"));
    }
    let gpu = pollster::block_on(Gpu::new()).map_err(|e| e.to_string())?;
    if !json {
        println!("adapter: {}  (conv schedule {})", gpu.adapter, gpu.conv_config.name());
        println!("size {size}x{size}, batch {batch}");
        println!("{:<9} {:>10} {:>10} {:>10} {:>10}", "layer", "GFLOP", "fwd GF/s", "bwd GF/s", "fwd+bwd ms");
    }
    let model = Vgg16::upload(&gpu, &Vgg16Weights::random(1, None)).map_err(|e| e.to_string())?;
    let net = pollster::block_on(Network::new(&gpu, &model, batch, size, size, "conv5_3")).map_err(|e| e.to_string())?;
    let targets: Vec<_> = (0..batch).map(|b| (Target::Channel(b % 512), 1.0)).collect();
    net.set_objectives(&gpu, &targets).map_err(|e| e.to_string())?;

    let mut layers = Vec::new();
    let mut kernel_secs = 0.0;
    for (name, cin, cout) in CONVS {
        if let Some(list) = &only {
            if !list.iter().any(|l| l == name) {
                continue;
            }
        }
        let a = net.activation(name).ok_or("missing layer")?;
        let (fwd, bwd) = net.node_dispatches(name).ok_or("missing dispatches")?;
        let flops = 2.0 * conv::macs(a.shape, cin, cout) as f64;
        let tf = time(&gpu, name, &fwd, min_secs)?;
        let tb = time(&gpu, name, &bwd, min_secs)?;
        kernel_secs += tf + tb;
        let (gf, gb) = (flops / tf / 1e9, flops / tb / 1e9);
        if !json {
            println!("{name:<9} {:>10.2} {gf:>10.2} {gb:>10.2} {:>10.1}", flops / 1e9, (tf + tb) * 1e3);
        }
        layers.push(serde_json::json!({
            "name": name,
            "gflop": flops / 1e9,
            "fwd_gflops": gf,
            "bwd_gflops": gb,
            "fwd_ms": tf * 1e3,
            "bwd_ms": tb * 1e3,
        }));
    }
    let step = net.step_dispatches();
    let step_secs = time(&gpu, "step", &step, min_secs)?;
    let total_flops: f64 = CONVS
        .iter()
        .filter_map(|(n, cin, cout)| net.activation(n).map(|a| 4.0 * conv::macs(a.shape, *cin, *cout) as f64))
        .sum();
    if json {
        let out = serde_json::json!({
            "adapter": gpu.adapter.to_string(),
            "conv_schedule": gpu.conv_config.name(),
            "size": size,
            "batch": batch,
            "layers": layers,
            "step_ms": step_secs * 1e3,
            "step_gflops": total_flops / step_secs / 1e9,
            "conv_kernels_ms": kernel_secs * 1e3,
        });
        println!("{out}");
    } else {
        println!(
            "step to conv5_3 (forward + backward, all layers): {:.1} ms, {:.2} GFLOP/s over {:.1} GFLOP of convolutions",
            step_secs * 1e3,
            total_flops / step_secs / 1e9,
            total_flops / 1e9
        );
    }
    Ok(())
}
