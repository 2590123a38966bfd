//! `featvis tune` (choose the conv schedule on this device) and
//! `featvis kernel` (print a generated conv kernel).

use std::time::Instant;

use clap::Args;

use featvis::{ConvConfig, ConvShape, Gpu};

use crate::tuning;

/// Check and time every conv schedule on this GPU, then on each of VGG16's layer shapes; keep the choices.
///
/// Every schedule worth trying is checked against the CPU reference on this
/// GPU and the correct ones timed on a mid-network shape (the fastest is the
/// default), then on each of VGG16's layer shapes at --size (the fastest per
/// shape, within --budget). The choices go into the tuning cache
/// (~/.cache/featvis/tuning.json; FEATVIS_CACHE_DIR overrides the folder),
/// which every command that renders applies; a second run prints the cache
/// instead of timing (--force times again). FEATVIS_CONV=SPEC forces one
/// schedule everywhere.
#[derive(Args)]
#[command(args_override_self = true)]
pub struct TuneArgs {
    /// Image side whose layer shapes are timed one by one.
    #[arg(long, value_name = "PX", default_value = "128", value_parser = crate::whole)]
    size: usize,
    /// Images per timing run.
    #[arg(long, default_value = "1", value_parser = crate::whole)]
    batch: usize,
    /// Seconds for timing the layer shapes (the default schedule is timed on every shape regardless).
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = crate::bench::seconds)]
    budget: f64,
    /// Tune again even when the cache holds this adapter's choices for this size and batch.
    #[arg(long)]
    force: bool,
    /// One JSON object on stdout instead of the table.
    #[arg(long)]
    json: bool,
}

/// Print the WGSL generated for a conv schedule (valid WGSL on its own).
#[derive(Args)]
#[command(args_override_self = true, override_usage = "featvis kernel --conv SPEC")]
pub struct KernelArgs {
    /// The schedule: unrolled:PX,CO4,WG[,SG], gemm:BM,BN,BK,TM,TN,
    /// patch:TH,TW,CO4,WG or baked:PX,BPX (conv1_1 with the weights of --weights written in).
    #[arg(long, value_name = "SPEC")]
    conv: Option<String>,
    /// For baked:PX,BPX, the weights file whose conv1_1 goes into the kernels.
    #[arg(long, value_name = "FILE", default_value = "www/weights/vgg16-imagenet.safetensors")]
    weights: std::path::PathBuf,
}

pub fn tune_main(args: TuneArgs) -> Result<(), String> {
    let gpu = pollster::block_on(Gpu::new()).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let now = move || t0.elapsed().as_secs_f64() * 1e3;
    let json = args.json;
    let cache_path = tuning::path().map(|p| p.display().to_string()).unwrap_or_default();
    if gpu.conv_forced() {
        eprintln!("featvis: FEATVIS_CONV is set: it forces one schedule everywhere, whatever this tuning chooses");
    }
    // This adapter's choices for this size and batch, from an earlier run.
    let cached =
        (!args.force).then(|| tuning::read().and_then(|c| tuning::entry_for(&gpu, &c))).flatten().filter(|e| tuning::covers(e, args.size));
    if let Some(e) = cached {
        if json {
            let v = serde_json::json!({
                "adapter": gpu.adapter.to_string(),
                "cached": true,
                "cache": cache_path,
                "chosen_spec": e.global,
                "candidates": [],
                "size": e.size,
                "batch": e.batch,
                "shapes": e.shapes,
            });
            println!("{v}");
        } else {
            println!("from the tuning cache {cache_path} (--force tunes again):");
            print_shapes(&gpu, &e.global, &e.shapes);
        }
        return Ok(());
    }

    if !json {
        eprintln!("adapter: {} (starts on {})", gpu.adapter, gpu.conv_config().name());
        eprintln!("timed with {}", featvis::tune::clock(&gpu));
    }
    let mut show = |c: &featvis::tune::Candidate| {
        if !json {
            let what = match (&c.error, c.correct) {
                (Some(e), _) => format!("not available: {e}"),
                (None, false) => format!("WRONG on this device (relative error {:.1e}): never used", c.max_rel_error),
                (None, true) if matches!(c.config, ConvConfig::Baked(_)) => {
                    format!("correct (error {:.1e}); timed on the layer shapes it fits (at most 4 input channels)", c.max_rel_error)
                }
                (None, true) => format!("{:>7.2} GFLOP/s  (error {:.1e})", c.gflops, c.max_rel_error),
            };
            eprintln!("  {:<34} {}", c.spec, what);
        }
    };
    let t = pollster::block_on(featvis::tune::tune(&gpu, &now, &mut show)).map_err(|e| e.to_string())?;
    if !json {
        let [b, h, w, ci, co] = t.shape;
        eprintln!("fastest correct schedule on {b}x{h}x{w}, {ci}→{co} channels (forward + backward): {}", t.chosen_spec);
        eprintln!("layer shapes at {} px, batch {} (budget {} s):", args.size, args.batch, args.budget);
    }
    let configs = t.correct_fastest_first();
    let shapes = featvis::tune::vgg_shapes(args.size);
    let mut heard = |s: &ConvShape, spec: &str, g: f64| {
        if !json {
            eprintln!("  {s:<22} {spec:<22} {g:>7.2} GFLOP/s");
        }
    };
    let choices = pollster::block_on(featvis::tune::tune_shapes(&gpu, &configs, &shapes, args.batch, args.budget * 1e3, &now, &mut heard))
        .map_err(|e| e.to_string())?;
    let entry =
        tuning::Entry { key: tuning::key(&gpu), global: t.chosen_spec.clone(), size: args.size, batch: args.batch, shapes: choices };
    let written = tuning::write(entry.clone()).map(|(path, _)| path);
    if json {
        let mut v = serde_json::to_value(&t).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("cached".into(), false.into());
            o.insert("cache".into(), written.as_ref().map(|p| p.display().to_string()).unwrap_or_default().into());
            o.insert("size".into(), args.size.into());
            o.insert("batch".into(), args.batch.into());
            o.insert("shapes".into(), serde_json::to_value(&entry.shapes).unwrap_or_default());
        }
        println!("{v}");
    } else {
        println!("per layer shape at {} px, batch {} (forward + backward):", args.size, args.batch);
        print_shapes(&gpu, &entry.global, &entry.shapes);
    }
    match written {
        Ok(p) => {
            if !json {
                println!("kept in {} for every command that renders on this adapter", p.display());
            }
            Ok(())
        }
        Err(e) => Err(format!("the tuning is done but could not be kept: {e}")),
    }
}

fn print_shapes(gpu: &Gpu, global: &str, shapes: &[featvis::tune::ShapeChoice]) {
    println!("{}: default schedule {global}; per layer shape:", gpu.adapter);
    for s in shapes {
        let others: Vec<String> = s.timed.iter().filter(|(spec, _)| *spec != s.spec).map(|(spec, g)| format!("{spec} {g:.1}")).collect();
        let others = if others.is_empty() { String::new() } else { format!("  (also timed: {})", others.join(", ")) };
        println!("  {:<22} {:<22} {:>7.2} GFLOP/s{others}", s.shape.to_string(), s.spec, s.gflops);
    }
}

pub fn kernel_main(args: KernelArgs) -> Result<(), String> {
    let spec = args.conv.ok_or(format!("featvis kernel needs --conv SPEC: {}", featvis::gpu::CONV_SPECS))?;
    let spec = spec.as_str();
    match ConvConfig::parse(spec) {
        Some(ConvConfig::Unrolled(u)) => {
            print!("{}", featvis::ops::conv_gen::wgsl(u));
            Ok(())
        }
        Some(ConvConfig::Gemm(g)) => {
            print!("{}", featvis::ops::conv_gen::gemm_wgsl(g));
            Ok(())
        }
        Some(ConvConfig::Patch(t)) => {
            print!("{}", featvis::ops::conv_gen::patch_wgsl(t));
            Ok(())
        }
        Some(ConvConfig::Baked(b)) => {
            let path = args.weights.display().to_string();
            let bytes = std::fs::read(&args.weights).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => format!(
                    "{spec} writes conv1_1's weights into the kernels, and the weights file {path} does not exist; \
                     run `featvis fetch-weights` or pass --weights FILE"
                ),
                _ => format!("cannot read weights {path}: {e}"),
            })?;
            let f = featvis::weights::WeightsFile::from_bytes(&bytes).map_err(|e| format!("{path}: {e}"))?;
            let c = f.weights.convs.first().ok_or(format!("{path} holds no conv layer"))?;
            let (_, cin, cout) = featvis::model::CONVS[0];
            let forward = featvis::ops::conv_gen::baked_forward_wgsl(b, &c.w_hwio, &c.bias, cin, cout);
            let backward = featvis::ops::conv_gen::baked_backward_wgsl(b, &c.w_hwio, cin, cout);
            match (forward, backward) {
                (Some(f), Some(bk)) => {
                    print!("// ---- forward ----\n{f}\n// ---- backward to the input ----\n{bk}");
                    Ok(())
                }
                _ => Err(format!("{path}: conv1_1 holds a value that is not finite; it cannot be written into a kernel")),
            }
        }
        Some(other) => Err(format!(
            "{} is hand-written: see shaders/conv.wgsl (only unrolled:…, gemm:…, patch:… and baked:… schedules are generated)",
            other.name()
        )),
        None => Err(format!(
            "--conv expects unrolled:PX,CO4,WG[,SG] with PX 1..=16, CO4 1..=8, PX·CO4 ≤ 64, WG a multiple of SG, \
             gemm:BM,BN,BK,TM,TN with BM, BN 16..=128, BK 4..=32, TM 1..=8, TN 4 or 8 (powers of two), 32..=256 invocations, \
             patch:TH,TW,CO4,WG with TH, TW 1..=8, CO4 1, 2, 4 or 8, TH·TW·CO4 ≤ 64, \
             or baked:PX,BPX with PX 1..=8 and BPX 1..=4 — got `{spec}`"
        )),
    }
}
