//! Long renders that lose nothing: a real SIGINT / SIGTERM to a real
//! `featvis render` keeps the current picture and the snapshots reached; a
//! SIGKILL loses at most the steps since the last checkpoint, and
//! `--resume` finishes to the same bytes as a render never interrupted.
//! Native (real processes and signals); random weights keep it quick.
#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn featvis() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_featvis"));
    c.env("WGPU_BACKEND", "vulkan");
    c
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("featvis-signals-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str], dir: &Path) -> Output {
    featvis().args(args).current_dir(dir).output().unwrap()
}

/// Start a render in `dir` and wait until `file` exists there.
fn start_until(args: &[&str], dir: &Path, file: &str) -> Child {
    let mut child = featvis().args(args).current_dir(dir).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let t0 = Instant::now();
    while !dir.join(file).exists() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the render ended ({status}) before {file} appeared");
        }
        assert!(t0.elapsed() < Duration::from_secs(300), "{file} never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig} failed");
}

fn is_png(path: &Path) -> bool {
    std::fs::read(path).map(|b| b.starts_with(b"\x89PNG\r\n\x1a\n") && b.len() > 60).unwrap_or(false)
}

fn no_temporary_files(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        assert!(!name.ends_with(".tmp"), "left behind: {name}");
    }
}

const BASE: [&str; 11] =
    ["render", "--random-weights", "--layer", "conv1_2", "--channels", "0-2", "--size", "20", "--batch", "2", "--quiet"];

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    BASE.iter().copied().chain(extra.iter().copied()).collect()
}

#[test]
fn sigint_and_sigterm_keep_the_picture_and_the_snapshots() {
    for (sig, code, name) in [("-INT", 130, "SIGINT"), ("-TERM", 143, "SIGTERM")] {
        let dir = tmpdir(name);
        let child = start_until(&args(&["--steps", "3000", "--snapshots", "2,4,2990", "--out", "g.png"]), &dir, "g-4.png");
        signal(&child, sig);
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{name}: {err}");
        assert!(err.contains(&format!("interrupted ({name}) at step")) && err.contains("--resume g.ckpt"), "{err}");
        // The current images, named by the step they stopped at.
        let current: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy().to_string();
                n.starts_with("g-") && n != "g-2.png" && n != "g-4.png"
            })
            .collect();
        assert_eq!(current.len(), 1, "{name}: {current:?}");
        assert!(is_png(&current[0]), "{}", current[0].display());
        assert!(is_png(&dir.join("g-2.png")) && is_png(&dir.join("g-4.png")), "{name}: the snapshots reached are on disk");
        assert!(!dir.join("g-2990.png").exists() && !dir.join("g.png").exists(), "{name}: nothing past the interruption");
        assert!(dir.join("g.ckpt").exists(), "{name}: the state is kept");
        no_temporary_files(&dir);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_killed_render_resumes_to_the_same_bytes() {
    for param in ["fft", "pixel"] {
        let dir = tmpdir(&format!("kill-{param}"));
        let common = ["--steps", "40", "--snapshots", "10,40", "--param", param];
        let whole = run(&args(&[&common[..], &["--out", "whole.png"]].concat()), &dir);
        assert!(whole.status.success(), "{}", String::from_utf8_lossy(&whole.stderr));
        // Checkpoints every 3 steps; killed once the first exists (step 3,
        // inside the 17 steps of redirected ReLU), then resumed.
        let child = start_until(&args(&[&common[..], &["--checkpoint-every", "3", "--out", "g.png"]].concat()), &dir, "g.ckpt");
        signal(&child, "-KILL");
        let _ = child.wait_with_output().unwrap();
        assert!(!dir.join("g.png").exists(), "{param}: killed before the end");
        let resumed = run(&["render", "--random-weights", "--resume", "g.ckpt", "--quiet"], &dir);
        assert!(resumed.status.success(), "{param}: {}", String::from_utf8_lossy(&resumed.stderr));
        for (a, b) in [("g.png", "whole.png"), ("g-40.png", "whole-40.png"), ("g-10.png", "whole-10.png")] {
            assert!(std::fs::read(dir.join(a)).unwrap() == std::fs::read(dir.join(b)).unwrap(), "{param}: {a} differs from {b}");
        }
        assert!(!dir.join("g.ckpt").exists(), "{param}: the finished render's checkpoint is removed");
        no_temporary_files(&dir);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn checkpoints_of_other_settings_or_damaged_are_refused_and_nothing_is_written() {
    let dir = tmpdir("refuse");
    let child = start_until(&args(&["--steps", "3000", "--checkpoint-every", "2", "--out", "g.png"]), &dir, "g.ckpt");
    signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let good = std::fs::read(dir.join("g.ckpt")).unwrap();
    let before: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    let refuse = |extra: &[&str], want: &str| {
        let mut a = vec!["render", "--random-weights", "--resume", "c.ckpt", "--out", "r.png", "--quiet"];
        a.extend_from_slice(extra);
        let o = run(&a, &dir);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.trim_end().lines().count() == 1 && err.contains(want), "{extra:?}: expected `{want}` in {err}");
        assert!(!dir.join("r.png").exists());
    };
    std::fs::write(dir.join("c.ckpt"), &good).unwrap();
    refuse(
        &["--layer", "conv1_2", "--channels", "0-2", "--size", "20", "--batch", "2", "--steps", "3000", "--seed", "2"],
        "seed is 1 but this render asks for 2",
    );
    std::fs::write(dir.join("c.ckpt"), &good[..good.len() / 2]).unwrap();
    refuse(&[], "damaged");
    let mut flipped = good.clone();
    let i = flipped.len() - 5;
    flipped[i] ^= 4;
    std::fs::write(dir.join("c.ckpt"), &flipped).unwrap();
    refuse(&[], "checksum");
    // Other weights: the real ones, when they are here.
    let weights = Path::new(env!("CARGO_MANIFEST_DIR")).join("www/weights/vgg16-imagenet-f16.safetensors");
    if weights.exists() {
        std::fs::write(dir.join("c.ckpt"), &good).unwrap();
        let o = run(&["render", "--weights", weights.to_str().unwrap(), "--resume", "c.ckpt", "--out", "r.png", "--quiet"], &dir);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains("other weights"), "{err}");
    }
    let _ = std::fs::remove_file(dir.join("c.ckpt"));
    let after: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(before, after, "a refused resume wrote something");
    let _ = std::fs::remove_dir_all(&dir);
}
