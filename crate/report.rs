//! The render report: the object `featvis render --json` prints and the
//! page hands its scripts as `window.featvis.result` — one type, one
//! serializer, so a link's result and the CLI's agree key for key.

use serde::{Deserialize, Serialize};

use crate::render::{Job, Output};

/// One image of a render.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageReport {
    /// Its objective in the text syntax (`conv2_2:3`).
    pub objective: String,
    /// The objective on the untransformed image before the first step and
    /// after the last (for a channel: its mean activation). Not-a-number
    /// is written as null.
    pub initial_activation: f32,
    pub final_activation: f32,
}

/// A whole render.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RenderReport {
    /// The GPU adapter, in words.
    pub adapter: String,
    /// Image side in pixels.
    pub size: usize,
    /// Steps asked for, and steps taken in the last batch (fewer when stopped).
    pub steps: u32,
    pub steps_done: u32,
    pub cancelled: bool,
    /// Milliseconds per optimization step of one batch: the mean, and the
    /// median step (the step's own cost on a machine shared with other work).
    pub ms_per_step: f64,
    #[serde(default)]
    pub ms_per_step_median: f64,
    /// Images per batch and the number of batches.
    pub batch: usize,
    pub batches: usize,
    pub transforms: String,
    pub param: String,
    pub lr: f32,
    pub seed: u64,
    pub redirect: bool,
    /// Files written (natively: the grid and its snapshots; in the page: none).
    pub files: Vec<String>,
    pub images: Vec<ImageReport>,
}

impl RenderReport {
    pub fn new(adapter: &str, job: &Job, out: &Output, files: Vec<String>) -> RenderReport {
        RenderReport {
            adapter: adapter.to_string(),
            size: job.height,
            steps: job.steps,
            steps_done: out.steps_done,
            cancelled: out.cancelled,
            ms_per_step: out.ms_per_step,
            ms_per_step_median: out.ms_per_step_median,
            batch: out.batch,
            batches: out.batches,
            transforms: job.transforms.name().to_string(),
            param: job.param.name().to_string(),
            lr: job.adam.lr,
            seed: job.seed,
            redirect: job.redirect_relu,
            files,
            images: out
                .images
                .iter()
                .map(|i| ImageReport { objective: i.objective.clone(), initial_activation: i.initial, final_activation: i.last })
                .collect(),
        }
    }

    /// One line of JSON.
    pub fn to_json(&self) -> String {
        // Every field is a string, a number or a list of those: this cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}
