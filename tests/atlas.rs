//! `featvis atlas`: shards that are disjoint and together complete, runs that
//! resume where they stopped, pictures that do not depend on the sharding,
//! and folders whose settings differ refused. Native (runs the CLI); random
//! weights and tiny images keep it quick.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `featvis atlas` on random weights at 8 px; conv1_1 and conv2_1 and 3 steps unless `extra` says otherwise.
fn atlas(dir: &Path, extra: &[&str]) -> Output {
    let mut defaults = vec![];
    for (key, value) in [("--layers", "conv1_1,conv2_1"), ("--steps", "3")] {
        if !extra.contains(&key) {
            defaults.extend([key, value]);
        }
    }
    Command::new(env!("CARGO_BIN_EXE_featvis"))
        .args(["atlas", "--random-weights", "--size", "8", "--quiet", "--json", "--out"])
        .arg(dir)
        .args(defaults)
        .args(extra)
        .env("WGPU_BACKEND", "vulkan")
        .output()
        .unwrap()
}

fn ok(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("one JSON summary")
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("featvis-atlas-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn files(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for layer in ["conv1_1", "conv2_1"] {
        if let Ok(rd) = std::fs::read_dir(dir.join(layer)) {
            for e in rd {
                out.insert(format!("{layer}/{}", e.unwrap().file_name().to_string_lossy()));
            }
        }
    }
    out
}

#[test]
fn shards_split_resume_and_agree_with_one_process() {
    let split = tmpdir("split");
    // conv1_1 (64 channels) and conv2_1 (128) in groups of 16: 12 groups.
    let a = ok(&atlas(&split, &["--shard", "1/3"]));
    let b = ok(&atlas(&split, &["--shard", "2/3"]));
    let c = ok(&atlas(&split, &["--shard", "3/3"]));
    assert_eq!([&a["rendered"], &b["rendered"], &c["rendered"]], [64, 64, 64]);
    // Disjoint and complete: every channel's record written once.
    let mut seen = BTreeSet::new();
    for i in 1..=3 {
        let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(split.join(format!("shards/{i}-of-3.json"))).unwrap()).unwrap();
        for ch in rec["channels"].as_array().unwrap() {
            assert!(seen.insert((ch[0].as_str().unwrap().to_string(), ch[1].as_u64().unwrap())), "{ch} rendered twice");
        }
    }
    assert_eq!(seen.len(), 64 + 128);
    let all = files(&split);
    assert_eq!(all.iter().filter(|f| f.ends_with(".json") && !f.ends_with("index.json")).count(), 192);
    // The last shard found every group done and wrote the site.
    assert!(c["site"].is_string() && split.join("index.html").exists() && split.join("atlas-index.json").exists(), "{c}");
    assert!(a["site"].is_null(), "{a}");
    assert!(all.iter().all(|f| !f.ends_with(".tmp")), "temporary files left");

    // Again: everything is done already.
    let again = ok(&atlas(&split, &["--shard", "2/3"]));
    assert_eq!((again["rendered"].as_u64(), again["skipped"].as_u64()), (Some(0), Some(64)));

    // A channel lost (as by a preempted run): its group is rendered again, to the same bytes.
    let png = split.join("conv1_1/17.png");
    let before = std::fs::read(&png).unwrap();
    std::fs::remove_file(split.join("conv1_1/17.json")).unwrap();
    std::fs::remove_file(&png).unwrap();
    // Group 1 (conv1_1 16–31) belongs to shard 2 of 3.
    let redo = ok(&atlas(&split, &["--shard", "2/3"]));
    assert_eq!((redo["rendered"].as_u64(), redo["skipped"].as_u64()), (Some(16), Some(48)));
    assert!(std::fs::read(&png).unwrap() == before, "the re-rendered channel differs");

    // One process renders the same pictures as three.
    let whole = tmpdir("whole");
    let w = ok(&atlas(&whole, &[]));
    assert_eq!(w["rendered"].as_u64(), Some(192));
    for f in all.iter().filter(|f| f.ends_with(".png")) {
        assert!(std::fs::read(split.join(f)).unwrap() == std::fs::read(whole.join(f)).unwrap(), "{f} depends on the sharding");
    }
    // And two shards: disjoint, complete, the same pictures.
    let halves = tmpdir("halves");
    let (h1, h2) = (ok(&atlas(&halves, &["--shard", "1/2"])), ok(&atlas(&halves, &["--shard", "2/2"])));
    assert_eq!((h1["rendered"].as_u64(), h2["rendered"].as_u64()), (Some(96), Some(96)));
    let mut seen = BTreeSet::new();
    for i in 1..=2 {
        let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(halves.join(format!("shards/{i}-of-2.json"))).unwrap()).unwrap();
        for ch in rec["channels"].as_array().unwrap() {
            assert!(seen.insert((ch[0].as_str().unwrap().to_string(), ch[1].as_u64().unwrap())), "{ch} rendered twice");
        }
    }
    assert_eq!(seen.len(), 192);
    for f in all.iter().filter(|f| f.ends_with(".png")) {
        assert!(std::fs::read(halves.join(f)).unwrap() == std::fs::read(whole.join(f)).unwrap(), "{f} differs with two shards");
    }
    let _ = std::fs::remove_dir_all(&halves);
    // A record says how to render its channel again.
    let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(whole.join("conv2_1/40.json")).unwrap()).unwrap();
    assert_eq!(
        (rec["request"]["layer"].as_str(), rec["request"]["channels"].as_str(), rec["index"].as_u64()),
        (Some("conv2_1"), Some("32-47"), Some(8))
    );
    // The static site: every link and picture it names exists.
    let o = Command::new(env!("CARGO_BIN_EXE_featvis")).arg("atlas-index").arg(&whole).env("WGPU_BACKEND", "vulkan").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut pages = vec![whole.join("index.html")];
    for layer in ["conv1_1", "conv2_1"] {
        pages.push(whole.join(layer).join("index.html"));
    }
    pages.push(whole.join("conv2_1/127.html"));
    for p in &pages {
        let html = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let mut links = 0;
        for attr in ["href=\"", "src=\""] {
            for part in html.split(attr).skip(1) {
                let target = &part[..part.find('"').unwrap()];
                assert!(p.parent().unwrap().join(target).exists(), "{} links to missing {target}", p.display());
                links += 1;
            }
        }
        assert!(links >= 3, "{}: {links} links", p.display());
    }
    let grid = std::fs::read_to_string(whole.join("conv2_1/index.html")).unwrap();
    assert_eq!(grid.matches("class=\"tile\"").count(), 128);
    let _ = std::fs::remove_dir_all(&whole);

    // Other settings in the same folder: refused, nothing written.
    let listing = files(&split);
    let o = atlas(&split, &["--seed", "2"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("with seed 1 but this run has 2"), "{err}");
    assert_eq!(files(&split), listing);
    let o = atlas(&split, &["--shard", "4/3"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--shard expects I/N"));
    let _ = std::fs::remove_dir_all(&split);
}

fn records(dir: &Path, layer: &str) -> BTreeSet<u64> {
    std::fs::read_dir(dir.join(layer))
        .map(|rd| {
            rd.filter_map(|e| {
                let name = e.ok()?.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".json")?.parse().ok()
            })
            .collect()
        })
        .unwrap_or_default()
}

/// A real SIGKILL in the middle of a run; the run started again renders only
/// what was not done, and every picture equals an uninterrupted run's.
#[test]
fn killed_run_resumes_to_the_same_pictures() {
    let args = ["--layers", "conv1_1", "--channels", "0-23", "--batch", "4", "--steps", "24"];
    let whole = tmpdir("kill-whole");
    assert_eq!(ok(&atlas(&whole, &args))["rendered"], 24);

    let dir = tmpdir("kill");
    let mut child = Command::new(env!("CARGO_BIN_EXE_featvis"))
        .args(["atlas", "--random-weights", "--size", "8", "--quiet", "--out"])
        .arg(&dir)
        .args(args)
        .env("WGPU_BACKEND", "vulkan")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once some groups are done and some are not.
    let t0 = std::time::Instant::now();
    while records(&dir, "conv1_1").len() < 4 {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        assert!(t0.elapsed().as_secs() < 300, "no channel done in 300 s");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done = records(&dir, "conv1_1");
    assert!(done.len() < 24, "the run finished before the kill: make it longer");
    // Records are written last: every recorded channel has its picture.
    for c in &done {
        assert!(dir.join(format!("conv1_1/{c}.png")).exists(), "record {c} without its PNG");
    }

    let again = ok(&atlas(&dir, &args));
    let (rendered, skipped) = (again["rendered"].as_u64().unwrap(), again["skipped"].as_u64().unwrap());
    assert_eq!(rendered + skipped, 24, "{again}");
    // Whole groups of 4 that were done are skipped; nothing done is rendered twice.
    assert!(skipped as usize >= done.len() / 4 * 4 && skipped > 0, "{again} after {} records", done.len());
    assert_eq!(records(&dir, "conv1_1").len(), 24);
    for c in 0..24 {
        let f = format!("conv1_1/{c}.png");
        assert!(std::fs::read(dir.join(&f)).unwrap() == std::fs::read(whole.join(&f)).unwrap(), "{f} differs after the resume");
    }
    assert!(!files(&dir).iter().any(|f| f.ends_with(".tmp")), "temporary files left");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&whole);
}

/// Other weights into the same folder are refused and change nothing; a
/// channel out of range is refused before any work.
#[test]
fn other_weights_and_bad_channels_are_refused() {
    let dir = tmpdir("weights");
    ok(&atlas(&dir, &["--layers", "conv1_1", "--channels", "0-1", "--batch", "2"]));
    let listing = files(&dir);
    let settings = std::fs::read(dir.join("atlas.json")).unwrap();
    // A weights file (not the random weights the folder was made with).
    let weights = Path::new(env!("CARGO_MANIFEST_DIR")).join("www/weights/vgg16-imagenet-f16.safetensors");
    if weights.exists() {
        let o = Command::new(env!("CARGO_BIN_EXE_featvis"))
            .args([
                "atlas",
                "--layers",
                "conv1_1",
                "--channels",
                "0-1",
                "--batch",
                "2",
                "--size",
                "8",
                "--steps",
                "3",
                "--quiet",
                "--weights",
            ])
            .arg(&weights)
            .arg("--out")
            .arg(&dir)
            .env("WGPU_BACKEND", "vulkan")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("holds an atlas with weights_sha256 \"random weights, seed 1\" but this run has \""),
            "{err}"
        );
    } else if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{} is missing: tools/test fetches it (featvis fetch-weights)", weights.display());
    } else {
        eprintln!("skipping the other-weights case: {} is missing (run `featvis fetch-weights`)", weights.display());
    }
    // Other channels: other groups, so other pictures: refused too.
    let o = atlas(&dir, &["--layers", "conv1_1", "--channels", "0-3", "--batch", "2"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("holds an atlas with channels \"0-1\" but this run has \"0-3\""), "{err}");
    assert_eq!(files(&dir), listing);
    assert!(std::fs::read(dir.join("atlas.json")).unwrap() == settings);

    let fresh = tmpdir("range");
    let o = atlas(&fresh, &["--layers", "conv1_1", "--channels", "60-70"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("channel 64 is out of range for conv1_1, which has 64 channels (0-63)"), "{err}");
    assert!(!fresh.join("atlas.json").exists(), "a refused run wrote its settings");
    let _ = std::fs::remove_dir_all(&dir);
}
