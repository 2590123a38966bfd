//! Checkpoint files (crate::checkpoint): a round trip keeps every bit, and a
//! truncated, bit-flipped, other-format or mismatched file is refused whole
//! with its own message. CPU only; both lanes.

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

use featvis::checkpoint::{sha256_hex, Checkpoint};
use featvis::job::JobSpec;
use featvis::pipeline::PipelineState;
use featvis::render::{RenderState, Rendered, Snapshot};
use featvis::rng::Rng;

fn sample() -> Checkpoint {
    let mut rng = Rng::new(3);
    let img = |rng: &mut Rng| rng.uniform_vec(5 * 4 * 3, 0.0, 1.0);
    let request = JobSpec {
        layer: Some("conv2_2".into()),
        channels: Some("0-2".into()),
        size: Some(5),
        steps: Some(40),
        seed: Some(9),
        ..Default::default()
    };
    Checkpoint {
        request,
        weights_sha256: sha256_hex(b"weights"),
        state: RenderState {
            batch_index: 1,
            steps_done: 12,
            pipeline: Some(PipelineState {
                step: 12,
                rng: [1, u64::MAX - 1, 1 << 63, 7, u64::MAX],
                param: rng.normal_vec(36, 1.0),
                m: rng.normal_vec(36, 1.0),
                v: rng.uniform_vec(36, 0.0, 1.0),
            }),
            initial: vec![0.5],
            next_snapshot: 1,
            images: vec![
                Rendered { objective: "conv2_2:0".into(), initial: 1.0, last: 90.5, pixels: img(&mut rng) },
                Rendered { objective: "conv2_2:1".into(), initial: f32::MIN_POSITIVE, last: -0.0, pixels: img(&mut rng) },
            ],
            snapshots: vec![
                Snapshot { step: 10, images: vec![img(&mut rng), img(&mut rng), img(&mut rng)] },
                Snapshot { step: 40, images: vec![img(&mut rng), img(&mut rng)] },
            ],
            step_ms: 12.25,
            done: 52,
        },
    }
}

fn same(a: &Checkpoint, b: &Checkpoint) {
    assert_eq!(a.request, b.request);
    assert_eq!(a.weights_sha256, b.weights_sha256);
    let (s, t) = (&a.state, &b.state);
    assert_eq!((s.batch_index, s.steps_done, s.next_snapshot, s.done), (t.batch_index, t.steps_done, t.next_snapshot, t.done));
    assert_eq!(s.step_ms.to_bits(), t.step_ms.to_bits());
    assert_eq!(s.pipeline, t.pipeline);
    assert_eq!(s.initial, t.initial);
    assert_eq!(s.images.len(), t.images.len());
    for (x, y) in s.images.iter().zip(&t.images) {
        assert!(
            x.objective == y.objective
                && x.pixels == y.pixels
                && x.initial.to_bits() == y.initial.to_bits()
                && x.last.to_bits() == y.last.to_bits()
        );
    }
    assert_eq!(s.snapshots.len(), t.snapshots.len());
    for (x, y) in s.snapshots.iter().zip(&t.snapshots) {
        assert!(x.step == y.step && x.images == y.images);
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_checkpoint_reads_back_bit_for_bit() {
    let c = sample();
    let bytes = c.to_bytes();
    same(&c, &Checkpoint::from_bytes(&bytes).unwrap());
    // Between batches: no pipeline tensors.
    let mut d = sample();
    d.state.pipeline = None;
    d.state.initial.clear();
    same(&d, &Checkpoint::from_bytes(&d.to_bytes()).unwrap());
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn truncated_flipped_and_foreign_files_are_refused_whole() {
    let bytes = sample().to_bytes();
    for cut in [0, 7, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        let e = Checkpoint::from_bytes(&bytes[..cut]).err().unwrap_or_else(|| panic!("cut at {cut} accepted")).to_string();
        assert!(e.contains("damaged"), "cut at {cut}: {e}");
    }
    // A flipped bit anywhere: refused (never read back as something else).
    let mut rng = Rng::new(11);
    for _ in 0..400 {
        let i = rng.below(bytes.len() as u64) as usize;
        let mut b = bytes.clone();
        b[i] ^= 1 << rng.below(8);
        if let Ok(c) = Checkpoint::from_bytes(&b) {
            // Only a flip in the header's padding or in insignificant JSON can parse; then it must be the same checkpoint.
            same(&c, &sample());
        }
    }
    // A flipped bit in the tensor data is caught by the checksum.
    let mut b = bytes.clone();
    let last = b.len() - 3;
    b[last] ^= 0x10;
    let e = Checkpoint::from_bytes(&b).unwrap_err().to_string();
    assert!(e.contains("checksum"), "{e}");
    // Weights files and other safetensors are not checkpoints.
    let other = featvis::weights::safetensors::write(&[], &[("format".into(), "pt".into())], featvis::weights::safetensors::Dtype::F32);
    assert!(Checkpoint::from_bytes(&other).unwrap_err().to_string().contains("not a featvis checkpoint"));
    // Version 9 in the header, the data left as it is (safetensors data has no slack).
    let at = bytes.windows(13).position(|w| w == b"\"version\":\"1\"").unwrap();
    let mut later = bytes.clone();
    later[at + 11] = b'9';
    let e = Checkpoint::from_bytes(&later).unwrap_err().to_string();
    assert!(e.contains("version 9"), "{e}");
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn other_weights_or_settings_are_named() {
    let c = sample();
    c.check_matches(&c.request, &c.weights_sha256).unwrap();
    let e = c.check_matches(&c.request, &sha256_hex(b"other")).unwrap_err().to_string();
    assert!(e.contains("other weights"), "{e}");
    let mut r = c.request.clone();
    r.seed = Some(2);
    let e = c.check_matches(&r, &c.weights_sha256).unwrap_err().to_string();
    assert!(e.contains("seed is 9 but this render asks for 2"), "{e}");
    let mut r = c.request.clone();
    r.param = Some("pixel".into());
    let e = c.check_matches(&r, &c.weights_sha256).unwrap_err().to_string();
    assert!(e.contains("param is \"fft\" but this render asks for \"pixel\""), "{e}");
    // Defaults written out or left to the defaults are the same request.
    let mut r = c.request.clone();
    r.param = Some("fft".into());
    r.lr = Some(0.05);
    r.channels = Some("0,1,2".into());
    c.check_matches(&r, &c.weights_sha256).unwrap();
}
