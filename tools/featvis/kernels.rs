//! `featvis tune` (choose the conv schedule on this device) and
//! `featvis kernel` (print a generated conv kernel).

use std::time::Instant;

use clap::Args;

use featvis::{ConvConfig, Gpu};

/// Check and time every conv schedule on this GPU; print the fastest correct one.
///
/// Every schedule worth trying is checked against the CPU reference on this
/// GPU, the correct ones timed and printed, the fastest marked;
/// FEATVIS_CONV=SPEC uses one (render, bench).
#[derive(Args)]
#[command(args_override_self = true)]
pub struct TuneArgs {
    /// One JSON object on stdout instead of the table.
    #[arg(long)]
    json: bool,
}

/// Print the WGSL generated for a conv schedule (valid WGSL on its own).
#[derive(Args)]
#[command(args_override_self = true, override_usage = "featvis kernel --conv unrolled:PX,CO4,WG[,SG]")]
pub struct KernelArgs {
    /// The schedule: unrolled:PX,CO4,WG[,SG].
    #[arg(long, value_name = "SPEC")]
    conv: Option<String>,
}

pub fn tune_main(args: TuneArgs) -> Result<(), String> {
    let gpu = pollster::block_on(Gpu::new()).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let now = move || t0.elapsed().as_secs_f64() * 1e3;
    let json = args.json;
    if !json {
        eprintln!("adapter: {} (starts on {})", gpu.adapter, gpu.conv_config().name());
    }
    let mut show = |c: &featvis::tune::Candidate| {
        if !json {
            let what = match (&c.error, c.correct) {
                (Some(e), _) => format!("not available: {e}"),
                (None, false) => format!("WRONG on this device (relative error {:.1e}): never used", c.max_rel_error),
                (None, true) => format!("{:>7.2} GFLOP/s  (error {:.1e})", c.gflops, c.max_rel_error),
            };
            eprintln!("  {:<34} {}", c.spec, what);
        }
    };
    let t = pollster::block_on(featvis::tune::tune(&gpu, &now, &mut show)).map_err(|e| e.to_string())?;
    if json {
        println!("{}", t.to_json());
    } else {
        let [b, h, w, ci, co] = t.shape;
        println!("fastest correct schedule on {} ({b}x{h}x{w}, {ci}→{co} channels, forward + backward): {}", t.adapter, t.chosen_spec);
        println!("use it with FEATVIS_CONV={}", t.chosen_spec);
    }
    Ok(())
}

pub fn kernel_main(args: KernelArgs) -> Result<(), String> {
    let spec = args.conv.ok_or("featvis kernel needs --conv unrolled:PX,CO4,WG[,SG]")?;
    let spec = spec.as_str();
    match ConvConfig::parse(spec) {
        Some(ConvConfig::Unrolled(u)) => {
            print!("{}", featvis::ops::conv_gen::wgsl(u));
            Ok(())
        }
        Some(other) => Err(format!("{} is hand-written: see shaders/conv.wgsl (only unrolled:… schedules are generated)", other.name())),
        None => Err(format!(
            "--conv expects unrolled:PX,CO4,WG[,SG] with PX 1..=16, CO4 1..=8, PX·CO4 ≤ 64, WG a multiple of SG — got `{spec}`"
        )),
    }
}
