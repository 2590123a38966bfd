//! `featvis tune` (choose the conv schedule on this device) and
//! `featvis kernel` (print a generated conv kernel).

use std::time::Instant;

use featvis::{ConvConfig, Gpu};

use crate::args::Args;

pub const USAGE: &str = "\
  featvis tune [--json]
      Check every conv schedule worth trying against the CPU reference on this GPU, time the
      correct ones and print them, fastest marked; FEATVIS_CONV=SPEC uses one (render, bench).
  featvis kernel --conv unrolled:PX,CO4,WG[,SG]
      Print the WGSL generated for a conv schedule (valid WGSL on its own).
";

pub fn tune_main(argv: &[String]) -> Result<(), String> {
    let args = Args::parse(argv, &[], &["json"])?;
    let gpu = pollster::block_on(Gpu::new()).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let now = move || t0.elapsed().as_secs_f64() * 1e3;
    let json = args.flag("json");
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

pub fn kernel_main(argv: &[String]) -> Result<(), String> {
    let args = Args::parse(argv, &["conv"], &[])?;
    let spec = args.get("conv").ok_or("featvis kernel needs --conv unrolled:PX,CO4,WG[,SG]")?;
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
