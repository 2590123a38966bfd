//! A deterministic mutation fuzzer over the safetensors and ONNX readers
//! (and the whole loader and converter behind them): bit flips, byte
//! rewrites, insertions, deletions, truncations, splices of two seeds,
//! duplicated chunks and header-length rewrites, from valid seeds, with a
//! seeded xorshift. Every input must give Ok or an error, never a panic; a
//! panic is reported with its seed, iteration and the input's bytes (hex,
//! first 256).
//!
//! In the suite it runs a few seconds; `FEATVIS_FUZZ_SECS=60 cargo test
//! --release --test fuzz_weights -- --nocapture` (or the ignored
//! `fuzz_long`) runs it for that long and prints inputs/s. Native only.
#![cfg(not(target_arch = "wasm32"))]

mod weights_common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use featvis::model::Vgg16Weights;
use featvis::weights::convert;
use featvis::weights::safetensors::{self, Dtype, TensorOut};
use featvis::weights::{onnx, LoadSummary, WeightsFile};
use weights_common::*;

/// Small seeds (fast to mutate) and the full-size files (mutated only in
/// their first bytes, where the structure is).
struct Seeds {
    small: Vec<Vec<u8>>,
    full: Vec<Vec<u8>>,
}

fn seeds() -> Seeds {
    let vals: Vec<f32> = (0..64).map(|i| i as f32 * 0.25 - 3.0).collect();
    let meta: Vec<(String, String)> = [
        ("architecture", "vgg16"),
        ("channel_order", "BGR"),
        ("scale", "255"),
        ("mean", "103.939,116.779,123.68"),
        ("std", "1,1,1"),
        ("layers", "conv1_1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let outs = [
        TensorOut { name: "conv1_1.bias", shape: vec![4, 5], values: &vals[..20] },
        TensorOut { name: "conv1_1.weight", shape: vec![2, 2, 2, 2], values: &vals[20..36] },
        TensorOut { name: "b\"\\é", shape: vec![20], values: &vals[36..56] },
    ];
    let timm = [
        TensorOut { name: "features.0.weight", shape: vec![4, 3, 3, 3], values: &[0.5; 108] },
        TensorOut { name: "features.0.bias", shape: vec![4], values: &vals[..4] },
        TensorOut { name: "classifier.6.bias", shape: vec![3], values: &vals[..3] },
    ];
    let small = vec![
        safetensors::write(&outs, &meta, Dtype::F32),
        safetensors::write(&outs, &meta, Dtype::F16),
        safetensors::write(&timm, &[], Dtype::F32),
        small_onnx(),
        model(&[
            tensor_proto("vgg16/fc1/MatMul/ReadVariableOp:0", &[3, 2], 1, &vals[..6], true),
            tensor_proto("vgg16/predictions/BiasAdd/ReadVariableOp:0", &[2], 1, &vals[..2], false),
        ]),
    ];
    let w = Vgg16Weights::random(5, None);
    let full = vec![
        WeightsFile { weights: w.clone(), ..keras_file() }.to_bytes(false),
        WeightsFile { weights: w.clone(), ..keras_file() }.to_bytes(true),
        keras_onnx(&w, true),
    ];
    Seeds { small, full }
}

fn mutate(rng: &mut Rng, base: &[u8], other: &[u8]) -> Vec<u8> {
    let mut b = base.to_vec();
    for _ in 0..1 + rng.below(3) {
        let len = b.len();
        match rng.below(9) {
            0 => b.truncate(rng.below(len + 1)),
            1 if len > 0 => {
                let i = rng.below(len);
                b[i] ^= 1 << rng.below(8);
            }
            2 if len > 0 => {
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(len);
                    b[i] = rng.next() as u8;
                }
            }
            3 => {
                let i = rng.below(len + 1);
                let junk: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect();
                b.splice(i..i, junk);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below(16.min(len - i));
                b.drain(i..i + n);
            }
            5 => {
                // Splice: the head of this seed, the tail of another.
                let i = rng.below(len + 1);
                let j = rng.below(other.len() + 1);
                b.truncate(i);
                b.extend_from_slice(&other[j..]);
            }
            6 if len > 0 => {
                // Duplicate a chunk (repeated keys, repeated protobuf fields).
                let i = rng.below(len);
                let n = 1 + rng.below(64.min(len - i));
                let chunk = b[i..i + n].to_vec();
                let at = rng.below(len + 1);
                b.splice(at..at, chunk);
            }
            7 if len >= 8 => {
                // Rewrite the safetensors header length (or the ONNX file's first varint).
                let n = u64::from_le_bytes(b[..8].try_into().unwrap());
                let v = match rng.below(5) {
                    0 => n.wrapping_add(1 + rng.below(8) as u64),
                    1 => n.wrapping_sub(1 + rng.below(8) as u64),
                    2 => u64::MAX - rng.below(16) as u64,
                    3 => rng.below(len * 2) as u64,
                    _ => rng.next(),
                };
                b[..8].copy_from_slice(&v.to_le_bytes());
            }
            _ if len > 0 => {
                // Interesting values at a random place: 0, 0xff runs, digits, quotes, braces.
                let i = rng.below(len);
                let v = [0u8, 0xff, b'9', b'"', b'{', b'[', b'-', 0x80][rng.below(8)];
                let end = (i + 1 + rng.below(8)).min(len);
                b[i..end].fill(v);
            }
            _ => {}
        }
    }
    b
}

/// Everything a hostile file can reach.
fn exercise(b: &[u8]) {
    if let Ok(st) = safetensors::parse(b) {
        for t in &st.tensors {
            let _ = t.to_f32();
        }
    }
    let _ = WeightsFile::from_bytes(b);
    let _ = LoadSummary::check(b);
    let _ = onnx::initializers(b);
    let _ = convert::detect(b);
    let _ = convert::convert_report(b, None);
    let _ = convert::convert_report(b, Some(convert::Format::Onnx));
    let _ = convert::convert_report(b, Some(convert::Format::TimmSafetensors));
}

/// The full-size files: the loader and the converters (the readers alone
/// are exercised by the small seeds).
fn exercise_full(b: &[u8]) {
    let _ = WeightsFile::from_bytes(b);
    let _ = convert::convert_report(b, None);
}

fn hex(b: &[u8]) -> String {
    b.iter().take(256).map(|x| format!("{x:02x}")).collect::<Vec<_>>().join("")
}

/// Fuzz for `budget`; returns the number of inputs tried.
fn fuzz(seed: u64, budget: Duration) -> usize {
    let seeds = seeds();
    let mut rng = Rng(seed);
    let start = Instant::now();
    let mut count = 0usize;
    let (mut full_count, mut full_time) = (0usize, Duration::ZERO);
    // Silence the default hook's output for caught panics; report them ourselves.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failure = None;
    while start.elapsed() < budget {
        for _ in 0..64 {
            // Full-size files (those that stay valid convert all 14.7 M
            // parameters, about a second each) get at most a fifth of the time.
            let full = rng.below(64) == 0 && full_time < start.elapsed() / 5;
            let input = if full {
                // A full-size file, mutated in its first 4 KiB (header, protobuf framing).
                let s = &seeds.full[rng.below(seeds.full.len())];
                let cut = 4096.min(s.len());
                let o = &seeds.small[rng.below(seeds.small.len())];
                let mut m = mutate(&mut rng, &s[..cut], o);
                m.extend_from_slice(&s[cut..]);
                m
            } else {
                let s = &seeds.small[rng.below(seeds.small.len())];
                let o = &seeds.small[rng.below(seeds.small.len())];
                mutate(&mut rng, s, o)
            };
            count += 1;
            let t = Instant::now();
            let result = catch_unwind(AssertUnwindSafe(|| if full { exercise_full(&input) } else { exercise(&input) }));
            if full {
                full_count += 1;
                full_time += t.elapsed();
            }
            if let Err(e) = result {
                let msg = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
                failure = Some(format!(
                    "panic `{}` on input #{count} (seed {seed:#x}, {} bytes): {}",
                    msg.unwrap_or_default(),
                    input.len(),
                    hex(&input)
                ));
                break;
            }
        }
        if failure.is_some() {
            break;
        }
    }
    std::panic::set_hook(hook);
    if let Some(f) = failure {
        panic!("{f}");
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "fuzz_weights: {count} inputs in {secs:.1} s ({:.0} inputs/s; {full_count} of them full-size files, {:.1} s), seed {seed:#x}, no panic",
        count as f64 / secs,
        full_time.as_secs_f64()
    );
    count
}

fn budget() -> Option<Duration> {
    std::env::var("FEATVIS_FUZZ_SECS").ok().and_then(|s| s.parse::<f64>().ok()).map(Duration::from_secs_f64)
}

#[test]
fn fuzz_safetensors_and_onnx_readers() {
    let secs = budget().unwrap_or(Duration::from_secs(3));
    let n = fuzz(0x9e37_79b9_7f4a_7c15, secs);
    assert!(n >= 100, "only {n} inputs in {secs:?}");
}

/// The long run: a minute (or FEATVIS_FUZZ_SECS), another seed.
#[test]
#[ignore = "runs for a minute: cargo test --release --test fuzz_weights -- --ignored --nocapture"]
fn fuzz_long() {
    let secs = budget().unwrap_or(Duration::from_secs(60));
    fuzz(0x2545_f491_4f6c_dd1d, secs);
}

/// The seeds themselves are what the mutations start from: each must parse.
#[test]
fn seeds_are_valid() {
    let s = seeds();
    assert!(safetensors::parse(&s.small[0]).is_ok());
    assert!(safetensors::parse(&s.small[2]).is_ok());
    assert_eq!(onnx::initializers(&s.small[3]).unwrap().len(), 2);
    assert!(WeightsFile::from_bytes(&s.full[0]).is_ok());
    assert!(WeightsFile::from_bytes(&s.full[1]).is_ok());
    let c = convert::convert_report(&s.full[2], None).unwrap();
    assert!(c.file.weights.fcs.is_empty());
    assert!(c.notes.iter().any(|n| n.contains("dense_1")), "{:?}", c.notes);
}
