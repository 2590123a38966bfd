//! The `featvis` command line: render, benchmark, weights tools. The
//! commands and options are declared with clap; its errors are cut to one
//! line (`featvis: …`) like every other error of the tool.

mod atlas;
mod bench;
mod kernels;
mod render;
mod tuning;
mod weights;

use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser, Subcommand};

/// Feature visualization of VGG16 on the GPU.
#[derive(Parser)]
#[command(
    name = "featvis",
    version,
    about,
    arg_required_else_help = true,
    after_help = "Run `featvis COMMAND --help` for a command's options."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Render(Box<render::RenderArgs>),
    Atlas(Box<atlas::AtlasArgs>),
    AtlasIndex(atlas::IndexArgs),
    Bench(bench::BenchArgs),
    /// Print the GPU adapter, its limits and the conv schedule chosen for it.
    Adapter,
    Tune(kernels::TuneArgs),
    Kernel(kernels::KernelArgs),
    FetchWeights(weights::FetchArgs),
    Info(weights::InfoArgs),
    Convert(weights::ConvertArgs),
    /// Print a shell completion script: `featvis completions bash > /etc/bash_completion.d/featvis`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let result = match cli.command {
        Command::Render(a) => render::main(*a),
        Command::Atlas(a) => atlas::main(*a),
        Command::AtlasIndex(a) => atlas::index_main(a),
        Command::Bench(a) => bench::main(a),
        Command::Adapter => adapter(),
        Command::Tune(a) => kernels::tune_main(a),
        Command::Kernel(a) => kernels::kernel_main(a),
        Command::FetchWeights(a) => weights::fetch_main(a),
        Command::Info(a) => weights::info_main(a),
        Command::Convert(a) => weights::convert_main(a),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "featvis", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("featvis: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Help and version go to stdout with success; a bad command line is one
/// line on stderr and a failure.
fn usage_error(e: clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        // `featvis` alone: the list of commands.
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = Cli::command().print_help();
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    eprintln!("featvis: {}", one_line(&e));
    ExitCode::FAILURE
}

/// The command being parsed (the first argument that names one), for its usage line.
fn command_name() -> Option<String> {
    let cmd = Cli::command();
    std::env::args().skip(1).find(|a| cmd.find_subcommand(a).is_some())
}

fn one_line(e: &clap::Error) -> String {
    let ctx = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => s.clone(),
        Some(ContextValue::Strings(v)) => v.join(", "),
        Some(v) => v.to_string(),
        None => String::new(),
    };
    // "--size <N>" → "--size".
    let arg = ctx(ContextKind::InvalidArg).split(' ').next().unwrap_or_default().to_string();
    let value = ctx(ContextKind::InvalidValue);
    let help = match command_name() {
        Some(c) => format!("run `featvis {c} --help` for its options"),
        None => "run `featvis --help` for the list".to_string(),
    };
    match e.kind() {
        ErrorKind::InvalidSubcommand => {
            format!("unknown command `{}`; run `featvis --help` for the list", ctx(ContextKind::InvalidSubcommand))
        }
        ErrorKind::UnknownArgument if arg.starts_with('-') => {
            let similar = ctx(ContextKind::SuggestedArg);
            let similar = if similar.is_empty() { String::new() } else { format!(" (did you mean `{similar}`?)") };
            format!("unknown option `{arg}`{similar}; {help}")
        }
        ErrorKind::UnknownArgument => format!("unexpected argument `{arg}`; {help}"),
        ErrorKind::InvalidValue if value.is_empty() => format!("{arg} needs a value"),
        ErrorKind::InvalidValue => {
            let valid = match e.get(ContextKind::ValidValue) {
                Some(ContextValue::Strings(v)) if v.len() > 1 => format!("{} or {}", v[..v.len() - 1].join(", "), v[v.len() - 1]),
                _ => ctx(ContextKind::ValidValue),
            };
            format!("unknown value `{value}` for {arg}: use {valid}")
        }
        ErrorKind::ValueValidation => {
            let why = std::error::Error::source(e).map(|s| s.to_string()).unwrap_or_default();
            format!("{arg} expects {why}, got `{value}`")
        }
        ErrorKind::MissingRequiredArgument => {
            let missing = ctx(ContextKind::InvalidArg).replace(['<', '>'], "");
            let usage = command_name()
                .and_then(|c| Cli::command().find_subcommand(&c).and_then(|s| s.get_overridden_usage().map(|u| u.to_string())));
            format!("missing {missing}; usage: {}", usage.unwrap_or_default())
        }
        // Anything else: clap's own first line, without its "error: ".
        _ => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            format!("{}; {help}", first.trim_start_matches("error: "))
        }
    }
}

/// A whole number option (`--size`, `--batch`, …).
fn whole(s: &str) -> Result<usize, String> {
    s.parse().map_err(|_| "a whole number".to_string())
}

fn adapter() -> Result<(), String> {
    let gpu = tuning::open_gpu()?;
    println!("adapter: {}", gpu.adapter);
    let from = if gpu.conv_forced() {
        " (FEATVIS_CONV)"
    } else if gpu.conv_choices().is_empty() {
        " (built in; `featvis tune` chooses on this device)"
    } else {
        " (from the tuning cache)"
    };
    println!("conv schedule: {}{from}", gpu.conv_config().name());
    for (shape, c) in gpu.conv_choices() {
        println!("  layers of {shape}: {}", c.name());
    }
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
