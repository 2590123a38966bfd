//! The render loop: a set of images with one objective each (or one
//! objective over a whole batch), N optimization steps, snapshots at chosen
//! steps, a progress callback that can cancel, seeds.
//!
//! One command encoder per step ([`Pipeline::run`]); the images are read
//! back only at snapshot steps (and for a preview when one is asked for).
//! When the images do not fit the device's limits in one batch, the render
//! splits them into several batches itself; an objective over the whole
//! batch (diversity) cannot be split and gets an error that says so.
//!
//! ```no_run
//! # async fn demo(gpu: &featvis::Gpu, model: &featvis::model::Vgg16) -> featvis::Result<()> {
//! use featvis::objective::Objective;
//! use featvis::weights::Preprocessing;
//! use featvis::render::{render, Control, Job, Objectives};
//! let objectives = (0..8).map(|c| Objective::channel("conv4_3", c)).collect();
//! let job = Job::new(Objectives::PerImage(objectives), 128, 512);
//! let out = render(gpu, model, &Preprocessing::keras(), &job, &mut |p| {
//!     println!("step {}/{}", p.step, p.steps);
//!     Control::Continue
//! })
//! .await?;
//! println!("{} images, {:.1} ms per step", out.images.len(), out.ms_per_step);
//! # Ok(()) }
//! ```

use crate::error::{Error, LimitExceeded, Result};
use crate::gpu::Gpu;
use crate::model::{self, Vgg16};
use crate::objective::Objective;
use crate::ops::adam::Adam;
use crate::weights::Preprocessing;
use crate::pipeline::{Param, Pipeline, Settings};
use crate::transform::Recipe;

/// Lucid's `render_vis` thresholds for a run of `steps` steps: the powers
/// of two from 32 up (the article's figures show 32, 64, …, 512), and the
/// last step.
pub fn lucid_thresholds(steps: u32) -> Vec<u32> {
    let mut out: Vec<u32> = std::iter::successors(Some(32u32), |s| s.checked_mul(2)).take_while(|&s| s < steps).collect();
    out.push(steps);
    out
}

/// What the images optimize.
#[derive(Clone, Debug)]
pub enum Objectives {
    /// Image i optimizes objective i alone (a grid of channels). The render
    /// may split these images into several batches.
    PerImage(Vec<Objective>),
    /// One objective over a batch of `batch` images, e.g. with a diversity
    /// term: rendered as one batch, never split.
    Batch { objective: Objective, batch: usize },
}

impl Objectives {
    /// How many images.
    pub fn len(&self) -> usize {
        match self {
            Objectives::PerImage(v) => v.len(),
            Objectives::Batch { batch, .. } => *batch,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A render request.
#[derive(Clone, Debug)]
pub struct Job {
    pub objectives: Objectives,
    pub height: usize,
    pub width: usize,
    pub steps: u32,
    /// Steps after which all images are read back (each in 1..=steps,
    /// ascending). The final images are always returned as well.
    pub snapshots: Vec<u32>,
    pub param: Param,
    pub transforms: Recipe,
    pub adam: Adam,
    pub seed: u64,
    pub redirect_relu: bool,
    /// The most images per batch (0: as many as the device's limits allow).
    pub max_batch: usize,
    /// Read each image's objective value every this many steps and pass it
    /// to the progress callback (0: never; each read waits for the GPU).
    pub values_every: u32,
    /// Read the images every this many steps for a preview (0: never).
    pub preview_every: u32,
}

impl Job {
    /// The defaults: Fourier parameterization with decorrelated colour,
    /// the Distill transforms, Adam at 0.05, redirected ReLU on, seed 0,
    /// one snapshot at the end.
    pub fn new(objectives: Objectives, size: usize, steps: u32) -> Job {
        Job {
            objectives,
            height: size,
            width: size,
            steps,
            snapshots: Vec::new(),
            param: Param::Fourier { decay_power: 1.0 },
            transforms: Recipe::distill(),
            adam: Adam::default(),
            seed: 0,
            redirect_relu: true,
            max_batch: 0,
            values_every: 0,
            preview_every: 0,
        }
    }
}

/// What the progress callback sees after every step.
#[derive(Debug)]
pub struct Progress<'a> {
    /// Steps done in the current batch (1..=steps).
    pub step: u32,
    pub steps: u32,
    /// Which batch (0-based) of how many, and its images' range.
    pub batch_index: usize,
    pub batches: usize,
    pub images: std::ops::Range<usize>,
    /// Steps done over all batches, of how many in all.
    pub done: u64,
    pub total: u64,
    /// Milliseconds spent in optimization steps so far (all batches).
    pub step_ms: f64,
    /// Each image's objective value on the untransformed image (this batch),
    /// when [`Job::values_every`] asked for it at this step.
    pub values: Option<&'a [f32]>,
    /// This batch's images in [0, 1] (B, H, W, 3), when
    /// [`Job::preview_every`] asked for them at this step.
    pub preview: Option<&'a [f32]>,
}

/// What the progress callback answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// Stop now: no further step is submitted.
    Cancel,
}

/// All images at one snapshot step, in image order.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub step: u32,
    /// One (H, W, 3) RGB image in [0, 1] per image.
    pub images: Vec<Vec<f32>>,
}

/// One rendered image.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// Its objective in the text syntax.
    pub objective: String,
    /// The objective's value on the untransformed image before the first
    /// step and after the last (for a channel objective: the channel's mean
    /// activation).
    pub initial: f32,
    pub last: f32,
    /// (H, W, 3) RGB in [0, 1].
    pub pixels: Vec<f32>,
}

#[derive(Clone, Debug)]
pub struct Output {
    pub images: Vec<Rendered>,
    pub snapshots: Vec<Snapshot>,
    /// Images per batch and the number of batches.
    pub batch: usize,
    pub batches: usize,
    /// Steps taken in the last batch (less than `steps` when cancelled).
    pub steps_done: u32,
    pub cancelled: bool,
    /// Milliseconds per optimization step of one batch (GPU time waited on,
    /// pipeline set-up and readbacks excluded).
    pub ms_per_step: f64,
}

/// The most images of `height`×`width` that fit in one batch on this device:
/// the largest activation of one image, times B, must fit one storage binding.
pub fn max_batch(gpu: &Gpu, model: &Vgg16, height: usize, width: usize) -> usize {
    let per_image = model::shapes(1, height, width, model.has_fc(), model.classes())
        .iter()
        .map(|s| (s.padded_len() * 4) as u64)
        .chain(std::iter::once((height * width * 4 * 4) as u64))
        .max()
        .unwrap_or(1)
        .max(1);
    (gpu.max_binding_bytes() / per_image) as usize
}

/// Check a job before any GPU work: steps, snapshots, layers, channels,
/// image size. `classes`: the classifier head's outputs (None: no head).
pub fn check(job: &Job, classes: Option<usize>) -> Result<()> {
    if job.steps == 0 {
        return Err(Error::Invalid("steps must be at least 1".into()));
    }
    if job.objectives.is_empty() {
        return Err(Error::Invalid("nothing to render: give at least one objective or channel".into()));
    }
    if let Objectives::Batch { batch: 0, .. } = job.objectives {
        return Err(Error::Invalid("the batch must hold at least one image".into()));
    }
    let mut last = 0;
    for &s in &job.snapshots {
        if s == 0 || s > job.steps {
            return Err(Error::Invalid(format!("snapshot step {s} is outside 1..={} (the steps of this render)", job.steps)));
        }
        if s <= last {
            return Err(Error::Invalid(format!("snapshot steps must ascend without repeats (got {s} after {last})")));
        }
        last = s;
    }
    // Channels in range, objectives valid for this batch (CPU only).
    let (objective, batch) = match &job.objectives {
        Objectives::PerImage(list) => (Objective::per_image(list.clone())?, list.len()),
        Objectives::Batch { objective, batch } => (objective.clone(), *batch),
    };
    crate::objective::plan(&objective, batch, job.height, job.width, classes.is_some(), classes.unwrap_or(0))?;
    Ok(())
}

fn now_ms() -> f64 {
    #[cfg(target_arch = "wasm32")]
    {
        js_sys::Date::now()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::sync::OnceLock;
        use std::time::Instant;
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3
    }
}

/// Run `job`. `on_progress` is called after every step; returning
/// [`Control::Cancel`] stops before the next step, and the output holds the
/// images as they are then.
pub async fn render(
    gpu: &Gpu,
    model: &Vgg16,
    preprocess: &Preprocessing,
    job: &Job,
    on_progress: &mut dyn FnMut(&Progress) -> Control,
) -> Result<Output> {
    check(job, model.has_fc().then(|| model.classes()))?;
    let (h, w) = (job.height, job.width);
    let fit = max_batch(gpu, model, h, w);
    let limit = |needed: usize| {
        Error::Limit(LimitExceeded {
            what: format!("one {h}x{w} image's largest activation ({needed} images)"),
            limit: "max_storage_buffer_binding_size",
            needed: needed as u64,
            allowed: fit as u64,
        })
    };
    // Each batch: its images and its objective.
    let groups: Vec<(std::ops::Range<usize>, Objective, Vec<String>)> = match &job.objectives {
        Objectives::PerImage(list) => {
            if fit == 0 {
                return Err(limit(1));
            }
            let size = if job.max_batch == 0 { fit } else { job.max_batch.min(fit) };
            let mut groups = Vec::new();
            for start in (0..list.len()).step_by(size) {
                let end = (start + size).min(list.len());
                let objective = Objective::per_image(list[start..end].to_vec())?;
                groups.push((start..end, objective, list[start..end].iter().map(|o| o.to_string()).collect()));
            }
            groups
        }
        Objectives::Batch { objective, batch } => {
            if *batch > fit {
                return Err(Error::Invalid(format!(
                    "{batch} images of {h}x{w} do not fit this device in one batch (at most {fit}), and `{objective}` \
                     needs them together; use a smaller batch or image size"
                )));
            }
            vec![(0..*batch, objective.clone(), (0..*batch).map(|b| objective.for_image(b).to_string()).collect())]
        }
    };
    let batches = groups.len();
    let total = job.steps as u64 * batches as u64;
    let batch = groups.first().map(|g| g.0.len()).unwrap_or(0);
    let n = job.objectives.len();
    let mut images: Vec<Rendered> = Vec::with_capacity(n);
    let mut snapshots: Vec<Snapshot> = job.snapshots.iter().map(|&step| Snapshot { step, images: Vec::with_capacity(n) }).collect();
    let mut step_ms = 0.0;
    let mut done: u64 = 0;
    let mut cancelled = false;
    let mut steps_done = 0;
    let split = |all: Vec<f32>, count: usize| -> Vec<Vec<f32>> {
        let each = all.len() / count.max(1);
        all.chunks(each.max(1)).map(<[f32]>::to_vec).collect()
    };

    for (index, (range, objective, texts)) in groups.into_iter().enumerate() {
        let settings = Settings {
            batch: range.len(),
            height: h,
            width: w,
            param: job.param,
            transforms: job.transforms.clone(),
            adam: job.adam,
            preprocess: *preprocess,
            seed: job.seed.wrapping_add(index as u64),
            redirect_relu: job.redirect_relu,
        };
        let mut p = Pipeline::new(gpu, model, settings, &objective).await?;
        let initial = p.evaluate(gpu).await?;
        let mut snap = 0;
        steps_done = 0;
        while steps_done < job.steps {
            let t0 = now_ms();
            p.run(gpu, 1).await?;
            gpu.sync().await?;
            step_ms += now_ms() - t0;
            steps_done += 1;
            done += 1;
            let values = if job.values_every > 0 && steps_done % job.values_every == 0 { Some(p.evaluate(gpu).await?) } else { None };
            let preview =
                if job.preview_every > 0 && steps_done % job.preview_every == 0 { Some(p.read_images(gpu).await?) } else { None };
            if snap < job.snapshots.len() && job.snapshots[snap] == steps_done {
                let imgs = p.read_images(gpu).await?;
                snapshots[snap].images.extend(split(imgs, range.len()));
                snap += 1;
            }
            let progress = Progress {
                step: steps_done,
                steps: job.steps,
                batch_index: index,
                batches,
                images: range.clone(),
                done,
                total,
                step_ms,
                values: values.as_deref(),
                preview: preview.as_deref(),
            };
            if on_progress(&progress) == Control::Cancel {
                cancelled = true;
                break;
            }
        }
        let last = p.evaluate(gpu).await?;
        let pixels = split(p.read_images(gpu).await?, range.len());
        for (i, px) in pixels.into_iter().enumerate() {
            images.push(Rendered { objective: texts[i].clone(), initial: initial[i], last: last[i], pixels: px });
        }
        if cancelled {
            break;
        }
    }
    // Snapshots that a cancelled render never reached are not returned.
    snapshots.retain(|s| s.images.len() == n);
    let ms_per_step = if done > 0 { step_ms / done as f64 } else { 0.0 };
    Ok(Output { images, snapshots, batch, batches, steps_done, cancelled, ms_per_step })
}
