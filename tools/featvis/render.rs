//! `featvis render`: visualize channels of a layer (or one objective with a
//! batch of images) into PNG grids, with a progress bar and an optional
//! JSON report.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use featvis::checkpoint::Checkpoint;
use featvis::job::{Built, JobSpec};
use featvis::model::{Vgg16, Vgg16Weights};
use featvis::render::{self, Job, Output, Progress, Render};
use signal_hook::consts::{SIGINT, SIGTERM};
use featvis::report::RenderReport;
use featvis::weights::Preprocessing;
use featvis::Gpu;

use crate::args::Args;

pub const USAGE: &str = "\
  featvis render [--weights FILE] [--layer conv4_3] [--channels 0-63] [--objective TEXT --batch 4]
                 [--size 128] [--steps 512] [--preset distill|lucid] [--transforms distill|lucid|none]
                 [--param fft|pixel] [--lr 0.05] [--seed 1] [--batch 16] [--no-redirect]
                 [--snapshots 32,128,512] [--cols 8] [--labels] [--out grid.png] [--json] [--quiet]
                 [--checkpoint-every N] [--resume OUT.ckpt]
      Visualize channels of a layer (one channel objective per tile, in channel order) into a PNG
      grid, or with --objective one objective (e.g. \"conv4_3:12 - 100*diversity(conv4_3)\") over
      --batch images. A layer name means its activation after the ReLU; conv4_3_pre_relu the value
      before it. Defaults: 128 px, 512 steps, Distill transforms, Fourier + decorrelated colour,
      redirected ReLU on. Presets: distill (2560 steps, Distill transforms, lr 0.05), lucid (512
      steps, Lucid's standard transforms). --snapshots writes OUT-STEP.png at each listed step.
      --json prints one JSON object at the end (adapter, size, steps, ms_per_step, images).
      Snapshots are written as they are reached. Ctrl-C (SIGINT) or SIGTERM finishes the step,
      writes the current images as OUT-STEP.png and the state as OUT.ckpt, and exits 130 (143);
      --checkpoint-every N also writes OUT.ckpt every N steps and at each snapshot. --resume
      OUT.ckpt continues (same weights; settings from the checkpoint) to the same bytes.
";

/// `grid.png` and step 32 → `grid-32.png`.
fn snapshot_path(out: &Path, step: u32) -> PathBuf {
    let stem = out.file_stem().and_then(|s| s.to_str()).unwrap_or("grid");
    let ext = out.extension().and_then(|s| s.to_str()).unwrap_or("png");
    out.with_file_name(format!("{stem}-{step}.{ext}"))
}

struct Bar {
    tty: bool,
    quiet: bool,
    start: Instant,
    last_line: f64,
}

impl Bar {
    /// Clear the bar's line (on a terminal) before printing a message.
    fn clear(&self) {
        if self.tty && !self.quiet {
            eprint!("\r{:80}\r", "");
        }
    }

    fn show(&mut self, p: &Progress) {
        if self.quiet {
            return;
        }
        let secs = self.start.elapsed().as_secs_f64();
        let rate = p.done as f64 / secs.max(1e-9);
        let eta = (p.total - p.done) as f64 / rate.max(1e-9);
        let frac = p.done as f64 / p.total.max(1) as f64;
        let batch = if p.batches > 1 { format!(" batch {}/{}", p.batch_index + 1, p.batches) } else { String::new() };
        if self.tty {
            let width = 30;
            let filled = (frac * width as f64).round() as usize;
            eprint!(
                "\r[{}{}] {:>3.0}%{batch} step {}/{}  {:.1} steps/s  ETA {}   ",
                "#".repeat(filled),
                "-".repeat(width - filled),
                frac * 100.0,
                p.step,
                p.steps,
                rate,
                fmt_secs(eta)
            );
            if p.done == p.total {
                eprintln!();
            }
        } else if frac - self.last_line >= 0.1 || p.done == p.total {
            self.last_line = frac;
            eprintln!("{:>3.0}%{batch} step {}/{}  {:.2} steps/s  ETA {}", frac * 100.0, p.step, p.steps, rate, fmt_secs(eta));
        }
    }
}

fn fmt_secs(s: f64) -> String {
    let s = s.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// Write `bytes` to `path` through a temporary file in the same folder and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
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

pub fn main(argv: &[String]) -> Result<(), String> {
    let args = Args::parse(
        argv,
        &[
            "weights", "layer", "channels", "objective", "size", "steps", "preset", "transforms", "param", "lr", "seed", "out", "batch", "cols",
            "snapshots", "margin", "checkpoint-every", "resume",
        ],
        &["random-weights", "json", "labels", "no-redirect", "quiet"],
    )?;
    let number = |name: &str| -> Result<Option<usize>, String> {
        args.get(name).map(|v| v.parse().map_err(|_| format!("--{name} expects a whole number, got `{v}`"))).transpose()
    };
    // The request in the same terms the page sends (crate/job.rs): one set
    // of defaults, presets and messages for both.
    let spec = JobSpec {
        layer: args.get("layer").map(String::from),
        channels: args.get("channels").map(String::from),
        objective: args.get("objective").map(String::from),
        batch: number("batch")?,
        size: number("size")?,
        steps: number("steps")?.map(|s| u32::try_from(s).map_err(|_| "--steps is too large".to_string())).transpose()?,
        preset: args.get("preset").map(String::from),
        transforms: args.get("transforms").map(String::from),
        param: args.get("param").map(String::from),
        lr: args.get("lr").map(|v| v.parse().map_err(|_| format!("--lr expects a positive number, got `{v}`"))).transpose()?,
        seed: number("seed")?.map(|s| s as u64),
        redirect: Some(!args.flag("no-redirect")),
        snapshots: args.get("snapshots").map(String::from),
        preview_every: None,
    };
    // --resume FILE: the checkpoint's request, unless the command line gives
    // one (then it must be the same).
    let resume = match args.get("resume") {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| format!("cannot read checkpoint {path}: {e}"))?;
            Some((path.to_string(), Checkpoint::from_bytes(&bytes).map_err(|e| format!("{path}: {e}"))?))
        }
        None => None,
    };
    let job_options = ["layer", "channels", "objective", "batch", "size", "steps", "preset", "transforms", "param", "lr", "seed", "snapshots"];
    let spec = match &resume {
        Some((_, ck)) if !job_options.iter().any(|k| args.get(k).is_some()) && !args.flag("no-redirect") => ck.request.clone(),
        _ => spec,
    };
    let out = match (args.get("out"), &resume) {
        (Some(o), _) => PathBuf::from(o),
        (None, Some((path, _))) => PathBuf::from(path).with_extension("png"),
        (None, None) => PathBuf::from("grid.png"),
    };
    let ckpt_path = out.with_extension("ckpt");
    let checkpoint_every = args.usize_or("checkpoint-every", 0)? as u64;
    let cols = args.usize_or("cols", 8)?.max(1);
    let margin = args.usize_or("margin", 4)?;
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

    let (weights, preprocess, weights_name, weights_sha) = if args.flag("random-weights") {
        (Vgg16Weights::random(1, None), Preprocessing::keras(), "random".to_string(), "random weights, seed 1".to_string())
    } else {
        let path = args.get("weights").unwrap_or("www/weights/vgg16-imagenet.safetensors");
        let bytes = std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("weights file {path} does not exist; run `featvis fetch-weights` or pass --weights FILE"),
            _ => format!("cannot read weights {path}: {e}"),
        })?;
        let f = featvis::weights::WeightsFile::from_bytes(&bytes).map_err(|e| format!("{path}: {e}"))?;
        let pre = f.preprocessing;
        (f.weights, pre, path.to_string(), featvis::checkpoint::sha256_hex(&bytes))
    };
    if let Some((path, ck)) = &resume {
        ck.check_matches(&spec, &weights_sha).map_err(|e| format!("{path}: {e}"))?;
    }

    render::check(&job, weights.classes()).map_err(|e| e.to_string())?;
    let gpu = pollster::block_on(Gpu::new()).map_err(|e| e.to_string())?;
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

    let quiet = args.flag("quiet");
    let mut bar = Bar { tty: std::io::stderr().is_terminal(), quiet, start: Instant::now(), last_line: 0.0 };
    let mut r = match &resume {
        Some((_, ck)) => pollster::block_on(Render::resume(&gpu, &model, &preprocess, &job, &ck.state)),
        None => Render::new(&gpu, &model, &preprocess, &job),
    }
    .map_err(|e| e.to_string())?;
    let (h, w) = (job.height, job.width);
    let encode = |images: &[Vec<f32>]| {
        let (gw, gh, rgb) = if args.flag("labels") {
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
                    bar.clear();
                    eprintln!("wrote {} ({gw}x{gh}, step {})", path.display(), snap.step);
                }
                written.push(path);
            }
        }
        let interrupted = signal.load(Ordering::SeqCst) != 0;
        if !r.is_finished() && (interrupted || (checkpoint_every > 0 && (report.done % checkpoint_every == 0 || report.snapshot.is_some()))) {
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
            bar.clear();
            eprintln!(
                "featvis: interrupted ({}) at step {last_step} of {}: the current images are in {} ({gw}x{gh}); {} holds the state: \
                 continue with `featvis render --resume {}`",
                if sig == SIGTERM { "SIGTERM" } else { "SIGINT" },
                job.steps,
                current.display(),
                ckpt_path.display(),
                ckpt_path.display()
            );
            if args.flag("json") {
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
            "wrote {} ({gw}x{gh}); {:.1} ms per step ({} image{} per batch, {} batch{}) on {}; weights: {weights_name}",
            out.display(),
            output.ms_per_step,
            output.batch,
            if output.batch == 1 { "" } else { "s" },
            output.batches,
            if output.batches == 1 { "" } else { "es" },
            gpu.adapter
        );
    }
    if args.flag("json") {
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
