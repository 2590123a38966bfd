//! A render request in the command line's terms — `layer` + `channels`, or
//! `objective` + `batch`, `size`, `steps`, `preset`, `transforms`, `param`,
//! `lr`, `seed`, `snapshots` — turned into a [`Job`]. The CLI fills a
//! [`JobSpec`] from its options; the page sends the same keys as JSON (and
//! puts them in its links), so one set of names, defaults and error
//! messages serves both.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::objective::Objective;
use crate::pipeline::Param;
use crate::render::{lucid_thresholds, Job, Objectives};
use crate::transform::Recipe;

/// The keys of a request; every one optional (the defaults are the CLI's).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobSpec {
    /// The layer whose channels are rendered, one image each (default conv4_3).
    pub layer: Option<String>,
    /// `0-7,12` (default 0-7), or `all`.
    pub channels: Option<String>,
    /// One objective over `batch` images, instead of layer + channels.
    pub objective: Option<String>,
    /// With `objective`: the images (default 1). With `layer`: the most
    /// images per batch (default 16; 0: as many as the device allows).
    pub batch: Option<usize>,
    /// Image side in pixels (default 128).
    pub size: Option<usize>,
    /// Optimization steps (default 512, or the preset's).
    pub steps: Option<u32>,
    /// `distill` (2560 steps, the article's transforms) or `lucid` (512
    /// steps, Lucid's standard transforms); other keys override it.
    pub preset: Option<String>,
    /// `distill`, `lucid` or `none`.
    pub transforms: Option<String>,
    /// `fft` or `pixel`.
    pub param: Option<String>,
    /// Adam's learning rate (default 0.05).
    pub lr: Option<f32>,
    /// The seed of the initial image and the random transforms (default 1).
    pub seed: Option<u64>,
    /// Lucid's redirected ReLU gradient for the first 17 steps (default on).
    pub redirect: Option<bool>,
    /// Steps at which every image is kept: `32,128,512`, or `lucid` for
    /// Lucid's thresholds (32, 64, 128, … and the last step).
    pub snapshots: Option<String>,
    /// Read the images every this many steps for a live preview (0: never).
    pub preview_every: Option<u32>,
}

/// A checked job and what labels its images.
#[derive(Clone, Debug)]
pub struct Built {
    pub job: Job,
    /// Each image's label: its channel (layer + channels) or its index.
    pub labels: Vec<usize>,
}

/// `0-7,12` → [0, …, 7, 12]; `all` → every channel of a layer with `count`.
pub fn parse_channels(text: &str, count: Option<usize>) -> Result<Vec<usize>> {
    let bad = || Error::Invalid(format!("channels expects a list like 0-7,12 or `all`, got `{text}`"));
    if text.trim() == "all" {
        return match count {
            Some(n) if n > 0 => Ok((0..n).collect()),
            _ => Err(Error::Invalid("channels `all` needs a layer with channels (a conv or fc layer)".into())),
        };
    }
    let mut out = Vec::new();
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
                if b < a || b - a > 1 << 16 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.trim().parse().map_err(|_| bad())?),
        }
    }
    Ok(out)
}

/// `32,128,512` → sorted, without repeats; `lucid` → Lucid's thresholds.
pub fn parse_snapshots(text: &str, steps: u32) -> Result<Vec<u32>> {
    if text.trim() == "lucid" {
        return Ok(lucid_thresholds(steps));
    }
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for part in text.split(',') {
        let s: u32 = part
            .trim()
            .parse()
            .map_err(|_| Error::Invalid(format!("snapshots expects steps like 32,128,512 (or `lucid`), got `{text}`")))?;
        if s == 0 || s > steps {
            return Err(Error::Invalid(format!("snapshots: step {s} is outside 1..={steps}")));
        }
        out.push(s);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Channels of a layer name (`conv4_3`, `conv4_3_pre_relu`, `pool4`, `fc8`)
/// for `all`; None for unknown names (the job's check names those).
fn channel_count(layer: &str, classes: Option<usize>) -> Option<usize> {
    let base = layer.strip_suffix("_pre_relu").unwrap_or(layer);
    if let Some(c) = crate::model::CONVS.iter().find(|c| c.0 == base) {
        return Some(c.2);
    }
    if let Some(p) = base.strip_prefix("pool").and_then(|p| p.parse::<usize>().ok()) {
        return [64, 128, 256, 512, 512].get(p.wrapping_sub(1)).copied();
    }
    match base {
        "fc6" | "fc7" => Some(4096),
        "fc8" => classes,
        _ => None,
    }
}

impl JobSpec {
    /// The same request with every default and the preset written out
    /// (channels as a plain list, objectives in canonical text): two
    /// requests that render the same thing resolve to equal specs.
    pub fn resolved(&self) -> Result<JobSpec> {
        let Built { job, labels } = self.build(None)?;
        let (layer, channels, objective, batch) = match &job.objectives {
            Objectives::PerImage(_) => (
                Some(self.layer.clone().unwrap_or_else(|| "conv4_3".into())),
                Some(labels.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")),
                None,
                job.max_batch,
            ),
            Objectives::Batch { objective, batch } => (None, None, Some(objective.to_string()), *batch),
        };
        Ok(JobSpec {
            layer,
            channels,
            objective,
            batch: Some(batch),
            size: Some(job.height),
            steps: Some(job.steps),
            preset: None,
            transforms: Some(job.transforms.name().to_string()),
            param: Some(job.param.name().to_string()),
            lr: Some(job.adam.lr),
            seed: Some(job.seed),
            redirect: Some(job.redirect_relu),
            snapshots: Some(job.snapshots.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(",")),
            preview_every: None,
        })
    }

    /// Parse the page's JSON request.
    pub fn from_json(text: &str) -> Result<JobSpec> {
        serde_json::from_str(text).map_err(|e| Error::Invalid(format!("render request: {e}")))
    }

    /// Apply the preset and the defaults and check every value that needs
    /// no weights (layers, channels and sizes are checked against the
    /// model by [`crate::render::check`]). `classes`: the classifier head's
    /// outputs, for `channels: all` of fc8.
    pub fn build(&self, classes: Option<usize>) -> Result<Built> {
        let (mut steps, mut transforms, mut lr) = (512u32, "distill", 0.05f32);
        match self.preset.as_deref() {
            None | Some("") | Some("none") => {}
            Some("distill") => (steps, transforms, lr) = (2560, "distill", 0.05),
            Some("lucid") => (steps, transforms, lr) = (512, "lucid", 0.05),
            Some(other) => return Err(Error::Invalid(format!("unknown preset `{other}`: use distill or lucid"))),
        }
        let steps = self.steps.unwrap_or(steps);
        if steps == 0 {
            return Err(Error::Invalid("steps must be at least 1".into()));
        }
        if let Some(l) = self.lr {
            if !(l.is_finite() && l > 0.0) {
                return Err(Error::Invalid(format!("lr must be a positive number, got {l}")));
            }
            lr = l;
        }
        let transforms = Recipe::by_name(self.transforms.as_deref().unwrap_or(transforms))?;
        let param = Param::by_name(self.param.as_deref().unwrap_or("fft"))?;
        let size = self.size.unwrap_or(128);
        if size == 0 {
            return Err(Error::Invalid("size must be at least 1".into()));
        }
        let snapshots = match &self.snapshots {
            Some(t) => parse_snapshots(t, steps)?,
            None => Vec::new(),
        };
        let (objectives, labels, max_batch) = match self.objective.as_deref().map(str::trim) {
            Some(text) if !text.is_empty() => {
                if self.layer.is_some() || self.channels.is_some() {
                    return Err(Error::Invalid("give either an objective or a layer and channels, not both".into()));
                }
                let objective = Objective::parse(text)?;
                let batch = self.batch.unwrap_or(1);
                if batch == 0 {
                    return Err(Error::Invalid("batch must be at least 1".into()));
                }
                (Objectives::Batch { objective, batch }, (0..batch).collect::<Vec<_>>(), 0)
            }
            _ => {
                let layer = self.layer.as_deref().unwrap_or("conv4_3");
                let channels = parse_channels(self.channels.as_deref().unwrap_or("0-7"), channel_count(layer, classes))?;
                let objectives = channels.iter().map(|&c| Objective::channel(layer, c)).collect();
                (Objectives::PerImage(objectives), channels, self.batch.unwrap_or(16))
            }
        };
        let mut job = Job::new(objectives, size, steps);
        job.snapshots = snapshots;
        job.param = param;
        job.transforms = transforms;
        job.adam.lr = lr;
        job.seed = self.seed.unwrap_or(1);
        job.redirect_relu = self.redirect.unwrap_or(true);
        job.max_batch = max_batch;
        job.preview_every = self.preview_every.unwrap_or(0);
        Ok(Built { job, labels })
    }
}
