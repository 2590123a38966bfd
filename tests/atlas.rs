//! `featvis atlas`: shards that are disjoint and together complete, runs that
//! resume where they stopped, pictures that do not depend on the sharding,
//! and folders whose settings differ refused. Native (runs the CLI); random
//! weights and tiny images keep it quick.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn atlas(dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_featvis"))
        .args(["atlas", "--random-weights", "--layers", "conv1_1,conv2_1", "--size", "8", "--steps", "3", "--quiet", "--json", "--out"])
        .arg(dir)
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
    assert_eq!(all.iter().filter(|f| f.ends_with(".json")).count(), 192);
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
