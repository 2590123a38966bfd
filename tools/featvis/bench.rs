//! `featvis bench`: the library's benchmark, printed as a table or JSON.

use std::time::Instant;

use featvis::Gpu;

use crate::args::Args;

pub fn main(argv: &[String]) -> Result<(), String> {
    let args = Args::parse(argv, &["size", "batch", "layers", "min-time", "split-layer"], &["json", "no-split"])?;
    let split_layer = if args.flag("no-split") { None } else { Some(args.get("split-layer").unwrap_or("conv3_3").to_string()) };
    let size = args.usize_or("size", 224)?;
    let batch = args.usize_or("batch", 1)?;
    let min_secs: f64 = match args.get("min-time") {
        None => 0.3,
        Some(v) => v.parse().map_err(|_| format!("--min-time expects seconds, got `{v}`"))?,
    };
    let json = args.flag("json");
    let layers: Vec<String> = args.get("layers").map(|l| l.split(',').map(|s| s.trim().to_string()).collect()).unwrap_or_default();
    let gpu = pollster::block_on(Gpu::new()).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let now = move || t0.elapsed().as_secs_f64() * 1e3;
    let mut header = !json;
    let mut progress = |l: &featvis::bench::LayerFigures| {
        // The header only once the network is built (no table before an error).
        if std::mem::take(&mut header) {
            println!("adapter: {}  (conv schedule {})", gpu.adapter, gpu.conv_config().name());
            println!("size {size}x{size}, batch {batch}");
            println!("{:<9} {:>8} {:>10} {:>10} {:>10} {:>10}", "layer", "GFLOP", "fwd GF/s", "bwd GF/s", "fwd ms", "bwd ms");
        }
        if !json {
            println!(
                "{:<9} {:>8.2} {:>10.2} {:>10.2} {:>10.1} {:>10.1}",
                l.name,
                l.gflop,
                l.fwd_gflops(),
                l.bwd_gflops(),
                l.fwd_ms,
                l.bwd_ms
            );
        }
    };
    let report = pollster::block_on(featvis::bench::run(&gpu, size, batch, &layers, split_layer.as_deref(), min_secs * 1e3, &now, &mut progress))
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
        if let Some(s) = &report.split {
            println!(
                "optimization step to {} ({size}x{size}, batch {batch}): {:.1} ms; parameterization + colour + transforms + preprocessing + adjoints + Adam: {:.2} ms = {:.1}% of the step",
                s.layer,
                s.step_ms,
                s.image_ms,
                100.0 * s.image_share()
            );
        }
    }
    Ok(())
}
