//! Checkpoints: a render's whole state in one file, so a killed render
//! continues to the same bits (`featvis render --checkpoint-every N`,
//! `--resume FILE`).
//!
//! The file is safetensors (version 1):
//! - tensors, all F32: `param`, `adam_m`, `adam_v` (the batch in progress:
//!   its spectrum or pixels and Adam's moments), `image.I` (each finished
//!   image, H·W·3 RGB in [0, 1]), `snapshot.K.I` (image I at the job's K-th
//!   snapshot, for the images that reached it);
//! - metadata: `format` = `featvis-checkpoint`, `version` = `1`, `request`
//!   (the render request as JSON, crate::job's keys), `weights_sha256`,
//!   `state` (JSON: batch, steps, step count, generator, objective values,
//!   timings), and `checksum`: the SHA-256 of `request`, `weights_sha256`,
//!   `state` and every tensor's bytes, so a flipped bit anywhere that
//!   parses is still refused.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::job::JobSpec;
use crate::pipeline::PipelineState;
use crate::render::{RenderState, Rendered, Snapshot};
use crate::weights::safetensors::{self, Dtype, TensorOut};

pub const FORMAT: &str = "featvis-checkpoint";
pub const VERSION: &str = "1";

/// A render's request, the weights it runs on, and where it stands.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub request: JobSpec,
    /// SHA-256 (hex) of the weights file.
    pub weights_sha256: String,
    pub state: RenderState,
}

#[derive(Serialize, Deserialize)]
struct ImageMeta {
    objective: String,
    initial: f32,
    last: f32,
}

#[derive(Serialize, Deserialize)]
struct StateMeta {
    batch_index: usize,
    steps_done: u32,
    next_snapshot: usize,
    step_ms: f64,
    done: u64,
    /// The batch in progress: its pipeline's step count and generator (as
    /// decimal strings: JSON numbers cannot hold every u64).
    pipeline: Option<(u32, [String; 5])>,
    initial: Vec<f32>,
    images: Vec<ImageMeta>,
    /// Per snapshot: its step and how many images reached it.
    snapshots: Vec<(u32, usize)>,
}

fn bad(msg: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("the checkpoint is damaged or not a featvis checkpoint: {msg}"))
}

fn checksum(request: &str, weights: &str, state: &str, tensors: &[(String, &[f32])]) -> String {
    let mut h = Sha256::new();
    for part in [request, weights, state] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    for (name, values) in tensors {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(bytemuck::cast_slice::<f32, u8>(values));
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `bytes` in hex (what `weights_sha256` holds).
pub use crate::weights::sha256_hex;

impl Checkpoint {
    pub fn to_bytes(&self) -> Vec<u8> {
        let s = &self.state;
        let meta = StateMeta {
            batch_index: s.batch_index,
            steps_done: s.steps_done,
            next_snapshot: s.next_snapshot,
            step_ms: s.step_ms,
            done: s.done,
            pipeline: s.pipeline.as_ref().map(|p| (p.step, p.rng.map(|v| v.to_string()))),
            initial: s.initial.clone(),
            images: s.images.iter().map(|i| ImageMeta { objective: i.objective.clone(), initial: i.initial, last: i.last }).collect(),
            snapshots: s.snapshots.iter().map(|k| (k.step, k.images.len())).collect(),
        };
        let mut tensors: Vec<(String, &[f32])> = Vec::new();
        if let Some(p) = &s.pipeline {
            tensors.extend([("param".to_string(), &p.param[..]), ("adam_m".to_string(), &p.m[..]), ("adam_v".to_string(), &p.v[..])]);
        }
        for (i, img) in s.images.iter().enumerate() {
            tensors.push((format!("image.{i}"), &img.pixels[..]));
        }
        for (k, snap) in s.snapshots.iter().enumerate() {
            for (i, img) in snap.images.iter().enumerate() {
                tensors.push((format!("snapshot.{k}.{i}"), &img[..]));
            }
        }
        // Plain data: serializing cannot fail.
        let request = serde_json::to_string(&self.request).unwrap_or_default();
        let state = serde_json::to_string(&meta).unwrap_or_default();
        let sum = checksum(&request, &self.weights_sha256, &state, &tensors);
        let metadata = vec![
            ("format".to_string(), FORMAT.to_string()),
            ("version".to_string(), VERSION.to_string()),
            ("request".to_string(), request),
            ("weights_sha256".to_string(), self.weights_sha256.clone()),
            ("state".to_string(), state),
            ("checksum".to_string(), sum),
        ];
        let outs: Vec<TensorOut> = tensors.iter().map(|(n, v)| TensorOut { name: n, shape: vec![v.len()], values: v }).collect();
        safetensors::write(&outs, &metadata, Dtype::F32)
    }

    /// Read a checkpoint; anything truncated, damaged or of another format
    /// or version is refused whole.
    pub fn from_bytes(bytes: &[u8]) -> Result<Checkpoint> {
        let st = safetensors::parse(bytes).map_err(bad)?;
        match (st.meta("format"), st.meta("version")) {
            (Some(FORMAT), Some(VERSION)) => {}
            (Some(FORMAT), Some(v)) => {
                return Err(Error::Invalid(format!("checkpoint format version {v} is not one this featvis reads ({VERSION})")))
            }
            _ => return Err(bad("no `format: featvis-checkpoint` in its metadata")),
        }
        let get = |k: &str| st.meta(k).ok_or_else(|| bad(format!("metadata `{k}` is missing")));
        let (request_text, weights, state_text, sum) = (get("request")?, get("weights_sha256")?, get("state")?, get("checksum")?);
        let meta: StateMeta = serde_json::from_str(state_text).map_err(|e| bad(format!("state: {e}")))?;
        let mut owned: Vec<(String, Vec<f32>)> = Vec::new();
        let mut take = |name: String| -> Result<Vec<f32>> {
            let t = st.tensor(&name).ok_or_else(|| bad(format!("tensor `{name}` is missing")))?;
            let v = t.to_f32().map_err(bad)?;
            owned.push((name, v.clone()));
            Ok(v)
        };
        let pipeline = match &meta.pipeline {
            Some((step, rng)) => {
                let mut words = [0u64; 5];
                for (w, text) in words.iter_mut().zip(rng) {
                    *w = text.parse().map_err(|_| bad("generator state"))?;
                }
                let (param, m, v) = (take("param".into())?, take("adam_m".into())?, take("adam_v".into())?);
                Some(PipelineState { step: *step, rng: words, param, m, v })
            }
            None => None,
        };
        let mut images = Vec::with_capacity(meta.images.len());
        for (i, im) in meta.images.iter().enumerate() {
            images.push(Rendered {
                objective: im.objective.clone(),
                initial: im.initial,
                last: im.last,
                pixels: take(format!("image.{i}"))?,
            });
        }
        let mut snapshots = Vec::with_capacity(meta.snapshots.len());
        for (k, &(step, n)) in meta.snapshots.iter().enumerate() {
            let mut imgs = Vec::with_capacity(n.min(4096));
            for i in 0..n {
                imgs.push(take(format!("snapshot.{k}.{i}"))?);
            }
            snapshots.push(Snapshot { step, images: imgs });
        }
        if st.tensors.len() != owned.len() {
            return Err(bad(format!("it holds {} tensors, its state names {}", st.tensors.len(), owned.len())));
        }
        let refs: Vec<(String, &[f32])> = owned.iter().map(|(n, v)| (n.clone(), &v[..])).collect();
        if checksum(request_text, weights, state_text, &refs) != sum {
            return Err(bad("its checksum does not match its contents (a changed or corrupted file)"));
        }
        let request: JobSpec = serde_json::from_str(request_text).map_err(|e| bad(format!("request: {e}")))?;
        Ok(Checkpoint {
            request,
            weights_sha256: weights.to_string(),
            state: RenderState {
                batch_index: meta.batch_index,
                steps_done: meta.steps_done,
                pipeline,
                initial: meta.initial,
                next_snapshot: meta.next_snapshot,
                images,
                snapshots,
                step_ms: meta.step_ms,
                done: meta.done,
            },
        })
    }

    /// Refuse a checkpoint made for another request or other weights, naming
    /// what differs. `request` is what the caller asks for now.
    pub fn check_matches(&self, request: &JobSpec, weights_sha256: &str) -> Result<()> {
        if self.weights_sha256 != weights_sha256 {
            return Err(Error::Invalid(format!(
                "the checkpoint was made with other weights (sha256 {}…, these are {}…); use the weights it was made with",
                &self.weights_sha256.get(..12).unwrap_or(&self.weights_sha256),
                weights_sha256.get(..12).unwrap_or(weights_sha256)
            )));
        }
        let resolve = |r: &JobSpec| r.resolved().unwrap_or_else(|_| r.clone());
        let (a, b) =
            (serde_json::to_value(resolve(&self.request)).unwrap_or_default(), serde_json::to_value(resolve(request)).unwrap_or_default());
        if let (Some(a), Some(b)) = (a.as_object(), b.as_object()) {
            for (k, va) in a {
                let vb = b.get(k).cloned().unwrap_or(serde_json::Value::Null);
                if *va != vb {
                    return Err(Error::Invalid(format!(
                        "the checkpoint's {k} is {} but this render asks for {}; resume with the same settings",
                        if va.is_null() { "not set".to_string() } else { va.to_string() },
                        if vb.is_null() { "not set".to_string() } else { vb.to_string() }
                    )));
                }
            }
        }
        Ok(())
    }
}
