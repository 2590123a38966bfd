//! `featvis render`: visualize channels of a layer (or one objective with a
//! batch of images) into PNG grids, with a progress bar and an optional
//! JSON report.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use clap::Args;
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use signal_hook::consts::{SIGINT, SIGTERM};

use featvis::checkpoint::Checkpoint;
use featvis::job::{Built, JobSpec};
use featvis::model::{Vgg16, Vgg16Weights};
use featvis::render::{self, Job, Output, Progress, Render};
use featvis::report::RenderReport;
use featvis::weights::Preprocessing;
use featvis::Gpu;

use crate::whole;

/// Visualize channels of a layer, or one objective, into a PNG grid.
///
/// One channel objective per tile, in channel order; or with --objective
/// one objective (e.g. "conv4_3:12 - 100*diversity(conv4_3)") over --batch
/// images. A layer name means its activation after the ReLU; conv4_3_pre_relu the
/// value before it. Defaults: 128 px, 512 steps, Distill transforms,
/// Fourier + decorrelated colour, redirected ReLU on. --snapshots writes
/// OUT-STEP.png at each listed step; --json prints one JSON object at the
/// end (adapter, size, steps, ms_per_step, images, …).
///
/// Snapshots are written as they are reached. Ctrl-C (SIGINT) or SIGTERM
/// finishes the step, writes the current images as OUT-STEP.png and the
/// state as OUT.ckpt, and exits 130 (143); the same signal again exits at
/// once. --resume OUT.ckpt continues (same weights; settings from the
/// checkpoint) to the same bytes.
#[derive(Args)]
#[command(
    args_override_self = true,
    override_usage = "featvis render [--layer conv4_3 --channels 0-63 | --objective TEXT --batch 4] [OPTIONS]"
)]
pub struct RenderArgs {
    /// Weights file (featvis safetensors).
    #[arg(long, value_name = "FILE", default_value = "www/weights/vgg16-imagenet.safetensors")]
    weights: PathBuf,
    /// Random weights instead of a file (for speed tests).
    #[arg(long)]
    random_weights: bool,
    /// The layer whose channels are rendered, one tile each [default: conv4_3].
    #[arg(long)]
    layer: Option<String>,
    /// Channels: a list like 0-7,12, or `all` [default: 0-7].
    #[arg(long)]
    channels: Option<String>,
    /// One objective in the objective language, over --batch images.
    #[arg(long, value_name = "TEXT")]
    objective: Option<String>,
    /// Image side in pixels [default: 128].
    #[arg(long, value_name = "PX", value_parser = whole)]
    size: Option<usize>,
    #[command(flatten)]
    optimization: Optimization,
    /// Seed of the initial image and the transforms [default: 1].
    #[arg(long, value_parser = whole)]
    seed: Option<usize>,
    /// Images per GPU batch for a channel grid [default: 16]; with --objective, the number of images [default: 1].
    #[arg(long, value_parser = whole)]
    batch: Option<usize>,
    /// Turn Lucid's redirected ReLU (first 17 steps) off.
    #[arg(long)]
    no_redirect: bool,
    /// Steps at which to also write OUT-STEP.png, e.g. 32,128,512 (or `lucid`).
    #[arg(long, value_name = "STEPS")]
    snapshots: Option<String>,
    /// Tiles per row of the grid.
    #[arg(long, default_value = "8", value_parser = whole)]
    cols: usize,
    /// White pixels between and around the tiles.
    #[arg(long, default_value = "4", value_parser = whole)]
    margin: usize,
    /// Write each tile's channel under it.
    #[arg(long)]
    labels: bool,
    /// The grid PNG [default: grid.png, or the checkpoint's name with --resume].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// One JSON object on stdout at the end (the page's result object).
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Also write OUT.ckpt every N steps and at each snapshot (0: only when interrupted).
    #[arg(long, value_name = "N", default_value = "0", value_parser = whole)]
    checkpoint_every: usize,
    /// Continue the render saved in this checkpoint (OUT.ckpt); options that
    /// set the render, when given, must match it.
    #[arg(long, value_name = "FILE")]
    resume: Option<String>,
}

/// How the images are optimized: the options `featvis render` and
/// `featvis atlas` share.
#[derive(Args)]
pub struct Optimization {
    /// Adam steps [default: 512, or the preset's].
    #[arg(long, value_parser = steps)]
    pub(crate) steps: Option<u32>,
    /// distill: 2560 steps, Distill transforms, lr 0.05; lucid: 512 steps,
    /// Lucid's standard transforms, lr 0.05. Explicit options override it.
    #[arg(long, value_parser = ["distill", "lucid"])]
    pub(crate) preset: Option<String>,
    /// Random transforms each step [default: distill].
    #[arg(long, value_parser = ["distill", "lucid", "none"])]
    pub(crate) transforms: Option<String>,
    /// Parameterization: Fourier with decorrelated colour, or pixels [default: fft].
    #[arg(long, value_parser = ["fft", "pixel"])]
    pub(crate) param: Option<String>,
    /// Adam's learning rate [default: 0.05].
    #[arg(long, value_parser = positive, allow_hyphen_values = true)]
    pub(crate) lr: Option<f32>,
}

impl Optimization {
    /// `spec` with these options in it.
    pub(crate) fn apply_to(&self, spec: JobSpec) -> JobSpec {
        JobSpec {
            steps: self.steps,
            preset: self.preset.clone(),
            transforms: self.transforms.clone(),
            param: self.param.clone(),
            lr: self.lr,
            ..spec
        }
    }
}

fn steps(s: &str) -> Result<u32, String> {
    s.parse().map_err(|_| "a whole number of steps".to_string())
}

fn positive(s: &str) -> Result<f32, String> {
    s.parse().map_err(|_| "a positive number".to_string())
}

/// `grid.png` and step 32 → `grid-32.png`.
fn snapshot_path(out: &Path, step: u32) -> PathBuf {
    let stem = out.file_stem().and_then(|s| s.to_str()).unwrap_or("grid");
    let ext = out.extension().and_then(|s| s.to_str()).unwrap_or("png");
    out.with_file_name(format!("{stem}-{step}.{ext}"))
}

/// The progress bar on a terminal (steps/s and the time left); a line
/// every 10 % when stderr is a file or a pipe.
struct Bar {
    bar: Option<ProgressBar>,
    last_line: f64,
    quiet: bool,
}

impl Bar {
    fn new(quiet: bool) -> Bar {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let style = ProgressStyle::with_template("[{bar:30}] {percent:>3}%{msg}  {rate}  ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.1} steps/s", s.per_sec());
                })
                .progress_chars("#>-");
            ProgressBar::new(1).with_style(style)
        });
        Bar { bar, last_line: 0.0, quiet }
    }

    /// A message on stderr, above the bar when there is one.
    fn say(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{message}")),
            None => eprintln!("{message}"),
        }
    }

    fn show(&mut self, p: &Progress) {
        let batch = if p.batches > 1 { format!(" batch {}/{}", p.batch_index + 1, p.batches) } else { String::new() };
        if let Some(bar) = &self.bar {
            bar.set_length(p.total);
            bar.set_position(p.done);
            bar.set_message(format!("{batch} step {}/{}", p.step, p.steps));
            if p.done == p.total {
                bar.finish();
            }
            return;
        }
        let frac = p.done as f64 / p.total.max(1) as f64;
        if !self.quiet && (frac - self.last_line >= 0.1 || p.done == p.total) {
            self.last_line = frac;
            eprintln!("{:>3.0}%{batch} step {}/{}", frac * 100.0, p.step, p.steps);
        }
    }
}

/// Write `bytes` to `path` through a temporary file in the same folder and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

fn tmp_path(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|s| s.to_str()).unwrap_or("out");
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Fail before any GPU work when `path` cannot be written (without touching
/// an existing file there).
fn check_writable(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err(format!("cannot write {}: it is a directory", path.display()));
    }
    let tmp = tmp_path(path);
    std::fs::write(&tmp, b"").map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let _ = std::fs::remove_file(&tmp);
    Ok(())
}

pub fn main(args: RenderArgs) -> Result<(), String> {
    // The request in the same terms the page sends (crate/job.rs): one set
    // of defaults, presets and messages for both.
    let spec = args.optimization.apply_to(JobSpec {
        layer: args.layer.clone(),
        channels: args.channels.clone(),
        objective: args.objective.clone(),
        batch: args.batch,
        size: args.size,
        seed: args.seed.map(|s| s as u64),
        redirect: Some(!args.no_redirect),
        snapshots: args.snapshots.clone(),
        ..JobSpec::default()
    });
    // --resume FILE: the checkpoint's request, unless the command line gives
    // one (then it must be the same).
    let resume = match &args.resume {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| format!("cannot read checkpoint {path}: {e}"))?;
            Some((path.to_string(), Checkpoint::from_bytes(&bytes).map_err(|e| format!("{path}: {e}"))?))
        }
        None => None,
    };
    let job_options = JobSpec { redirect: None, ..spec.clone() };
    let spec = match &resume {
        Some((_, ck)) if job_options == JobSpec::default() && !args.no_redirect => ck.request.clone(),
        _ => spec,
    };
    let out = match (&args.out, &resume) {
        (Some(o), _) => o.clone(),
        (None, Some((path, _))) => PathBuf::from(path).with_extension("png"),
        (None, None) => PathBuf::from("grid.png"),
    };
    let ckpt_path = out.with_extension("ckpt");
    let checkpoint_every = args.checkpoint_every as u64;
    let (cols, margin) = (args.cols.max(1), args.margin);
    // `channels all` needs the head's size only for fc8; the weights are
    // read after the paths are checked, so fc8's count comes from the check.
    let Built { job, labels } = spec.build(None).map_err(|e| e.to_string())?;
    let snapshots = job.snapshots.clone();

    // Every output path is checked before minutes of GPU work.
    let mut paths: Vec<PathBuf> = snapshots.iter().map(|&s| snapshot_path(&out, s)).collect();
    paths.push(out.clone());
    for p in paths.iter().chain(std::iter::once(&ckpt_path)) {
        check_writable(p)?;
    }

    let (weights, preprocess, weights_name, weights_sha) = if args.random_weights {
        (Vgg16Weights::random(1, None), Preprocessing::keras(), "random".to_string(), "random weights, seed 1".to_string())
    } else {
        let path = args.weights.display().to_string();
        let bytes = std::fs::read(&args.weights).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("weights file {path} does not exist; run `featvis fetch-weights` or pass --weights FILE")
            }
            _ => format!("cannot read weights {path}: {e}"),
        })?;
        let f = featvis::weights::WeightsFile::from_bytes(&bytes).map_err(|e| format!("{path}: {e}"))?;
        let pre = f.preprocessing;
        (f.weights, pre, path, featvis::checkpoint::sha256_hex(&bytes))
    };
    if let Some((path, ck)) = &resume {
        ck.check_matches(&spec, &weights_sha).map_err(|e| format!("{path}: {e}"))?;
    }

    render::check(&job, weights.classes()).map_err(|e| e.to_string())?;
    let gpu = crate::tuning::open_gpu()?;
    if job.width == job.height {
        crate::tuning::tune_first_time(&gpu, job.width, job.objectives.len().clamp(1, 16), args.quiet);
    }
    let model = Vgg16::upload(&gpu, &weights).map_err(|e| e.to_string())?;

    // SIGINT / SIGTERM: finish the step under way, keep the picture and the
    // state; the same signal again exits at once.
    let signal = Arc::new(AtomicUsize::new(0));
    for (sig, code) in [(SIGINT, 130), (SIGTERM, 143)] {
        let again = Arc::new(AtomicBool::new(false));
        let _ = signal_hook::flag::register_conditional_shutdown(sig, code, again.clone());
        let _ = signal_hook::flag::register(sig, again);
        let _ = signal_hook::flag::register_usize(sig, signal.clone(), sig as usize);
    }

    let quiet = args.quiet;
    let mut bar = Bar::new(quiet);
    let mut r = match &resume {
        Some((_, ck)) => pollster::block_on(Render::resume(&gpu, &model, &preprocess, &job, &ck.state)),
        None => Render::new(&gpu, &model, &preprocess, &job),
    }
    .map_err(|e| e.to_string())?;
    let (h, w) = (job.height, job.width);
    let encode = |images: &[Vec<f32>]| {
        let (gw, gh, rgb) = if args.labels {
            featvis::png::grid_labeled(images, h, w, cols, margin, &labels)
        } else {
            featvis::png::grid(images, h, w, cols, margin)
        };
        (gw, gh, featvis::png::encode_rgb(gw, gh, &rgb))
    };
    let n = job.objectives.len();
    let mut written: Vec<PathBuf> = Vec::new();
    let write_checkpoint = |r: &Render| -> Result<(), String> {
        let state = pollster::block_on(r.state(&gpu)).map_err(|e| e.to_string())?;
        let ck = Checkpoint { request: spec.clone(), weights_sha256: weights_sha.clone(), state };
        write_atomic(&ckpt_path, &ck.to_bytes())
    };
    while !r.is_finished() {
        let report = pollster::block_on(r.step(&gpu, &model)).map_err(|e| e.to_string())?;
        bar.show(&report.progress());
        let last_step = report.step;
        // Snapshots are written as soon as every image has reached them.
        for snap in r.snapshots() {
            let path = snapshot_path(&out, snap.step);
            if snap.images.len() == n && !written.contains(&path) {
                let (gw, gh, png) = encode(&snap.images);
                write_atomic(&path, &png)?;
                if !quiet {
                    bar.say(&format!("wrote {} ({gw}x{gh}, step {})", path.display(), snap.step));
                }
                written.push(path);
            }
        }
        let interrupted = signal.load(Ordering::SeqCst) != 0;
        if !r.is_finished() && (interrupted || (checkpoint_every > 0 && (report.done % checkpoint_every == 0 || report.snapshot.is_some())))
        {
            write_checkpoint(&r)?;
        }
        if interrupted && !r.is_finished() {
            let sig = signal.load(Ordering::SeqCst) as i32;
            pollster::block_on(r.stop(&gpu)).map_err(|e| e.to_string())?;
            let output = r.output();
            let current = snapshot_path(&out, last_step);
            let finals: Vec<Vec<f32>> = output.images.iter().map(|i| i.pixels.clone()).collect();
            let (gw, gh, png) = encode(&finals);
            write_atomic(&current, &png)?;
            written.push(current.clone());
            bar.say(&format!(
                "featvis: interrupted ({}) at step {last_step} of {}: the current images are in {} ({gw}x{gh}); {} holds the state: \
                 continue with `featvis render --resume {}`",
                if sig == SIGTERM { "SIGTERM" } else { "SIGINT" },
                job.steps,
                current.display(),
                ckpt_path.display(),
                ckpt_path.display()
            ));
            if args.json {
                written.push(ckpt_path.clone());
                print_json(&gpu, &job, &output, &written)?;
            }
            std::process::exit(if sig == SIGTERM { 143 } else { 130 });
        }
    }
    let output = r.output();
    if resume.is_some() || checkpoint_every > 0 {
        // The render is complete: its checkpoint is of no further use.
        let _ = std::fs::remove_file(&ckpt_path);
    }

    let finals: Vec<Vec<f32>> = output.images.iter().map(|i| i.pixels.clone()).collect();
    let (gw, gh, png) = encode(&finals);
    write_atomic(&out, &png)?;
    if !quiet {
        for img in &output.images {
            eprintln!("  {}: {:.4} → {:.4}", img.objective, img.initial, img.last);
        }
        eprintln!(
            "wrote {} ({gw}x{gh}); {:.1} ms per step, median {:.1} ({} image{} per batch, {} batch{}) on {}; weights: {weights_name}",
            out.display(),
            output.ms_per_step,
            output.ms_per_step_median,
            output.batch,
            if output.batch == 1 { "" } else { "s" },
            output.batches,
            if output.batches == 1 { "" } else { "es" },
            gpu.adapter
        );
    }
    if args.json {
        print_json(&gpu, &job, &output, &paths)?;
    }
    Ok(())
}

fn print_json(gpu: &Gpu, job: &Job, out: &Output, paths: &[PathBuf]) -> Result<(), String> {
    let files = paths.iter().map(|p| p.display().to_string()).collect();
    let line = RenderReport::new(&gpu.adapter.to_string(), job, out, files).to_json();
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").map_err(|e| format!("cannot write the JSON report: {e}"))
}
