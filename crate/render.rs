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
use crate::pipeline::{Param, Pipeline, PipelineState, Settings};
use crate::transform::Recipe;
use crate::weights::Preprocessing;

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
    /// Read the images every this many steps, and after each batch's first
    /// step, for a preview (0: never).
    pub preview_every: u32,
    /// Read each image's objective value as the step computed it (on that
    /// step's transformed image, as Lucid's loop reports its loss) every
    /// this many steps (0: never). Cheap: a few floats, read where the step
    /// is waited on anyway.
    pub loss_every: u32,
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
            loss_every: 0,
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
    /// Each image's objective on this step's transformed image, when
    /// [`Job::loss_every`] asked for it at this step.
    pub losses: Option<&'a [f32]>,
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
    /// The median step of this process (steps before a resume not counted):
    /// on a machine shared with other work the mean carries every
    /// interruption, the median is the step's own cost.
    pub ms_per_step_median: f64,
}

/// The most images of `height`×`width` that fit in one batch on this device:
/// the largest activation of one image, times B, must fit one storage binding.
pub fn max_batch(gpu: &Gpu, model: &Vgg16, height: usize, width: usize) -> usize {
    (gpu.max_binding_bytes() / image_bytes(model, height, width)) as usize
}

/// Bytes of one image's largest buffer (an activation, or the image itself).
fn image_bytes(model: &Vgg16, height: usize, width: usize) -> u64 {
    model::shapes(1, height, width, model.has_fc(), model.classes())
        .iter()
        .map(|s| (s.padded_len() as u64).saturating_mul(4))
        .chain(std::iter::once((height as u64).saturating_mul(width as u64).saturating_mul(16)))
        .max()
        .unwrap_or(1)
        .max(1)
}

/// `1536` → "1.5 KiB", in binary units.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} bytes")
    } else if v >= 100.0 || v.fract() < 0.05 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The largest image side a render accepts (a 4096² image's conv1
/// activation is already 4 GiB: beyond every device's buffers).
pub const MAX_SIDE: usize = 4096;

/// Check a job before any GPU work: steps, snapshots, layers, channels,
/// image size. `classes`: the classifier head's outputs (None: no head).
pub fn check(job: &Job, classes: Option<usize>) -> Result<()> {
    if job.steps == 0 {
        return Err(Error::Invalid("steps must be at least 1".into()));
    }
    if job.height == 0 || job.width == 0 {
        return Err(Error::Invalid("the image size must be at least 1 pixel".into()));
    }
    if job.height > MAX_SIDE || job.width > MAX_SIDE {
        return Err(Error::Invalid(format!(
            "a {}x{} image is larger than featvis renders (at most {MAX_SIDE} pixels a side); use a smaller size",
            job.height, job.width
        )));
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

/// A clock in milliseconds: `performance.now()` in a browser (Date.now()
/// has whole milliseconds only, too coarse for one kernel), a monotonic
/// clock natively.
pub fn now_ms() -> f64 {
    #[cfg(target_arch = "wasm32")]
    {
        web_sys::window().and_then(|w| w.performance()).map_or_else(js_sys::Date::now, |p| p.now())
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::sync::OnceLock;
        use std::time::Instant;
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3
    }
}

/// One step's report (owned; [`Progress`] borrows from it).
#[derive(Clone, Debug)]
pub struct StepReport {
    /// Steps done in the current batch (1..=steps).
    pub step: u32,
    pub steps: u32,
    pub batch_index: usize,
    pub batches: usize,
    /// The images of this batch.
    pub images: std::ops::Range<usize>,
    pub done: u64,
    pub total: u64,
    pub step_ms: f64,
    /// Values on the untransformed images ([`Job::values_every`]).
    pub values: Option<Vec<f32>>,
    /// Values as the step computed them ([`Job::loss_every`]).
    pub losses: Option<Vec<f32>>,
    /// This batch's images (B, H, W, 3) in [0, 1] ([`Job::preview_every`]).
    pub preview: Option<Vec<f32>>,
    /// The snapshot step this step reached, if any.
    pub snapshot: Option<u32>,
    /// This step ended its batch: the batch's images are in [`Render::rendered`].
    pub batch_done: bool,
    /// This step ended the render.
    pub finished: bool,
}

impl StepReport {
    pub fn progress(&self) -> Progress<'_> {
        Progress {
            step: self.step,
            steps: self.steps,
            batch_index: self.batch_index,
            batches: self.batches,
            images: self.images.clone(),
            done: self.done,
            total: self.total,
            step_ms: self.step_ms,
            values: self.values.as_deref(),
            preview: self.preview.as_deref(),
            losses: self.losses.as_deref(),
        }
    }
}

/// Where a render stands, to continue it later ([`Render::state`],
/// [`Render::resume`]): the batch in progress with its optimization state,
/// and what the finished batches and snapshots hold so far.
#[derive(Clone, Debug)]
pub struct RenderState {
    /// The batch the next step works on, and its steps done.
    pub batch_index: usize,
    pub steps_done: u32,
    /// The batch in progress (None between batches).
    pub pipeline: Option<PipelineState>,
    /// Its images' objective values before their first step.
    pub initial: Vec<f32>,
    /// Its next snapshot (index into the job's snapshots).
    pub next_snapshot: usize,
    pub images: Vec<Rendered>,
    pub snapshots: Vec<Snapshot>,
    pub step_ms: f64,
    pub done: u64,
}

/// One batch of a render: its images and its objective.
struct Group {
    range: std::ops::Range<usize>,
    objective: Objective,
    texts: Vec<String>,
}

/// The batch being optimized.
struct Active {
    pipeline: Pipeline,
    initial: Vec<f32>,
    /// Next snapshot (index into the job's snapshots).
    snap: usize,
}

/// A render taken one step at a time: what [`render`] loops over, and what
/// the page drives between two turns of the browser's event loop (so it can
/// pause, resume and stop without a callback that blocks).
///
/// Holds no reference to the GPU or the model: each call is handed them, so
/// a caller (the wasm facade) can keep both behind its own handles.
pub struct Render {
    job: Job,
    preprocess: Preprocessing,
    groups: Vec<Group>,
    /// The batch the next step works on.
    index: usize,
    active: Option<Active>,
    images: Vec<Rendered>,
    snapshots: Vec<Snapshot>,
    batch: usize,
    step_ms: f64,
    /// Each step's milliseconds, in this process.
    step_times: Vec<f32>,
    done: u64,
    total: u64,
    steps_done: u32,
    cancelled: bool,
    finished: bool,
}

impl Render {
    /// Check `job` against the model and the device and split it into
    /// batches. No GPU work yet: the first [`Render::step`] of each batch
    /// builds its pipeline.
    pub fn new(gpu: &Gpu, model: &Vgg16, preprocess: &Preprocessing, job: &Job) -> Result<Render> {
        check(job, model.has_fc().then(|| model.classes()))?;
        let (h, w) = (job.height, job.width);
        let fit = max_batch(gpu, model, h, w);
        let groups: Vec<Group> = match &job.objectives {
            Objectives::PerImage(list) => {
                if fit == 0 {
                    return Err(Error::Limit(LimitExceeded {
                        what: format!("one {h}x{w} image's largest activation"),
                        limit: "max_storage_buffer_binding_size",
                        needed: image_bytes(model, h, w),
                        allowed: gpu.max_binding_bytes(),
                    }));
                }
                let size = if job.max_batch == 0 { fit } else { job.max_batch.min(fit) };
                let mut groups = Vec::new();
                for start in (0..list.len()).step_by(size) {
                    let end = (start + size).min(list.len());
                    let objective = Objective::per_image(list[start..end].to_vec())?;
                    groups.push(Group { range: start..end, objective, texts: list[start..end].iter().map(|o| o.to_string()).collect() });
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
                vec![Group {
                    range: 0..*batch,
                    objective: objective.clone(),
                    texts: (0..*batch).map(|b| objective.for_image(b).to_string()).collect(),
                }]
            }
        };
        let n = job.objectives.len();
        Ok(Render {
            total: job.steps as u64 * groups.len() as u64,
            batch: groups.first().map(|g| g.range.len()).unwrap_or(0),
            groups,
            job: job.clone(),
            preprocess: *preprocess,
            index: 0,
            active: None,
            images: Vec::with_capacity(n),
            snapshots: job.snapshots.iter().map(|&step| Snapshot { step, images: Vec::with_capacity(n) }).collect(),
            step_ms: 0.0,
            step_times: Vec::new(),
            done: 0,
            steps_done: 0,
            cancelled: false,
            finished: false,
        })
    }

    pub fn job(&self) -> &Job {
        &self.job
    }

    /// Every image's objective in the text syntax, in image order.
    pub fn labels(&self) -> Vec<String> {
        self.groups.iter().flat_map(|g| g.texts.iter().cloned()).collect()
    }

    /// Images per batch and the number of batches.
    pub fn batches(&self) -> (usize, usize) {
        (self.batch, self.groups.len())
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The images of the batches finished so far, in image order.
    pub fn rendered(&self) -> &[Rendered] {
        &self.images
    }

    /// The snapshots, each with the images of the batches that reached it so far.
    pub fn snapshots(&self) -> &[Snapshot] {
        &self.snapshots
    }

    /// One optimization step of the current batch (building the batch's
    /// pipeline first when it is new). The step that ends a batch also
    /// reads its final images.
    pub async fn step(&mut self, gpu: &Gpu, model: &Vgg16) -> Result<StepReport> {
        if self.finished {
            return Err(Error::Invalid("this render has already finished".into()));
        }
        if self.active.is_none() {
            let pipeline = self.build(gpu, model).await?;
            let initial = pipeline.evaluate(gpu).await?;
            self.active = Some(Active { pipeline, initial, snap: 0 });
            self.steps_done = 0;
        }
        let job = &self.job;
        let group = &self.groups[self.index];
        let Some(active) = self.active.as_mut() else { unreachable!("set above") };
        let p = &mut active.pipeline;
        let t0 = now_ms();
        p.run(gpu, 1).await?;
        let step = self.steps_done + 1;
        let every = |n: u32| n > 0 && step.is_multiple_of(n);
        let losses = if every(job.loss_every) {
            Some(p.read_losses(gpu).await?)
        } else {
            gpu.sync().await?;
            None
        };
        let ms = now_ms() - t0;
        self.step_ms += ms;
        self.step_times.push(ms as f32);
        self.steps_done = step;
        self.done += 1;
        let values = if every(job.values_every) { Some(p.evaluate(gpu).await?) } else { None };
        // The first step of a batch is previewed too: the page shows pixels
        // as soon as there are any.
        let wants_preview = job.preview_every > 0;
        let mut preview = if every(job.preview_every) || (wants_preview && step == 1) { Some(p.read_images(gpu).await?) } else { None };
        let mut snapshot = None;
        if active.snap < job.snapshots.len() && job.snapshots[active.snap] == step {
            let imgs = match &preview {
                Some(v) => v.clone(),
                None => p.read_images(gpu).await?,
            };
            self.snapshots[active.snap].images.extend(split(&imgs, group.range.len()));
            snapshot = Some(step);
            active.snap += 1;
        }
        let range = group.range.clone();
        let batch_done = step == job.steps;
        if batch_done {
            let pixels = self.finish_batch(gpu).await?;
            if preview.is_none() && wants_preview {
                preview = Some(pixels);
            }
            self.index += 1;
            self.finished = self.index == self.groups.len();
        }
        Ok(StepReport {
            step,
            steps: self.job.steps,
            batch_index: self.index - usize::from(batch_done),
            batches: self.groups.len(),
            images: range,
            done: self.done,
            total: self.total,
            step_ms: self.step_ms,
            values,
            losses,
            preview,
            snapshot,
            batch_done,
            finished: self.finished,
        })
    }

    /// The pipeline of the current batch, fresh (its seed is the job's plus the batch's index).
    async fn build(&self, gpu: &Gpu, model: &Vgg16) -> Result<Pipeline> {
        let job = &self.job;
        let group = &self.groups[self.index];
        let settings = Settings {
            batch: group.range.len(),
            height: job.height,
            width: job.width,
            param: job.param,
            transforms: job.transforms.clone(),
            adam: job.adam,
            preprocess: self.preprocess,
            seed: job.seed.wrapping_add(self.index as u64),
            redirect_relu: job.redirect_relu,
        };
        Pipeline::new(gpu, model, settings, &group.objective).await
    }

    /// Where the render stands now (reads the batch in progress back from
    /// the GPU): [`Render::resume`] continues from it, step for step as if
    /// never stopped.
    pub async fn state(&self, gpu: &Gpu) -> Result<RenderState> {
        let (pipeline, initial, next_snapshot) = match &self.active {
            Some(a) => (Some(a.pipeline.state(gpu).await?), a.initial.clone(), a.snap),
            None => (None, Vec::new(), 0),
        };
        Ok(RenderState {
            batch_index: self.index,
            steps_done: if self.active.is_some() { self.steps_done } else { 0 },
            pipeline,
            initial,
            next_snapshot,
            images: self.images.clone(),
            snapshots: self.snapshots.clone(),
            step_ms: self.step_ms,
            done: self.done,
        })
    }

    /// Continue `job` from `state` (taken by [`Render::state`] of a render
    /// of the same job on the same weights; the caller checks that).
    pub async fn resume(gpu: &Gpu, model: &Vgg16, preprocess: &Preprocessing, job: &Job, state: &RenderState) -> Result<Render> {
        let mut r = Render::new(gpu, model, preprocess, job)?;
        let bad = |what: &str| Error::Invalid(format!("the saved render state does not fit this job: {what}"));
        if state.batch_index > r.groups.len() || state.steps_done > job.steps || state.snapshots.len() != r.snapshots.len() {
            return Err(bad("batch, step or snapshot count"));
        }
        let before: usize = r.groups[..state.batch_index].iter().map(|g| g.range.len()).sum();
        if state.images.len() != before {
            return Err(bad("images of the finished batches"));
        }
        r.index = state.batch_index;
        r.images = state.images.clone();
        r.snapshots = state.snapshots.clone();
        r.step_ms = state.step_ms;
        r.done = state.done;
        r.finished = r.index == r.groups.len();
        if let Some(ps) = &state.pipeline {
            if r.finished || state.initial.len() != r.groups[r.index].range.len() || state.next_snapshot > job.snapshots.len() {
                return Err(bad("the batch in progress"));
            }
            let mut pipeline = r.build(gpu, model).await?;
            pipeline.restore(gpu, ps)?;
            r.active = Some(Active { pipeline, initial: state.initial.clone(), snap: state.next_snapshot });
            r.steps_done = state.steps_done;
        }
        Ok(r)
    }

    /// Read the active batch's final values and images into
    /// [`Render::rendered`] and drop its pipeline. Returns its pixels.
    async fn finish_batch(&mut self, gpu: &Gpu) -> Result<Vec<f32>> {
        let Some(active) = self.active.take() else { return Ok(Vec::new()) };
        let group = &self.groups[self.index];
        let last = active.pipeline.evaluate(gpu).await?;
        let all = active.pipeline.read_images(gpu).await?;
        for (i, px) in split(&all, group.range.len()).into_iter().enumerate() {
            self.images.push(Rendered { objective: group.texts[i].clone(), initial: active.initial[i], last: last[i], pixels: px });
        }
        Ok(all)
    }

    /// End the render now: the batch in progress keeps its images as they
    /// are (read back here); batches not started have none.
    pub async fn stop(&mut self, gpu: &Gpu) -> Result<()> {
        self.cancelled = true;
        if !self.finished {
            self.finish_batch(gpu).await?;
            self.finished = true;
        }
        Ok(())
    }

    /// What the render made (snapshots that not every image reached are left out).
    pub fn output(&self) -> Output {
        let n = self.job.objectives.len();
        let ms_per_step = if self.done > 0 { self.step_ms / self.done as f64 } else { 0.0 };
        let mut times = self.step_times.clone();
        times.sort_by(f32::total_cmp);
        let ms_per_step_median = match times.len() {
            0 => 0.0,
            n if n % 2 == 1 => times[n / 2] as f64,
            n => (times[n / 2 - 1] as f64 + times[n / 2] as f64) / 2.0,
        };
        Output {
            images: self.images.clone(),
            snapshots: self.snapshots.iter().filter(|s| s.images.len() == n).cloned().collect(),
            batch: self.batch,
            batches: self.groups.len(),
            steps_done: self.steps_done,
            cancelled: self.cancelled,
            ms_per_step,
            ms_per_step_median,
        }
    }
}

/// (B, H, W, 3) → B images.
fn split(all: &[f32], count: usize) -> Vec<Vec<f32>> {
    let each = all.len() / count.max(1);
    all.chunks(each.max(1)).map(<[f32]>::to_vec).collect()
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
    let mut r = Render::new(gpu, model, preprocess, job)?;
    while !r.is_finished() {
        let report = r.step(gpu, model).await?;
        if on_progress(&report.progress()) == Control::Cancel {
            r.stop(gpu).await?;
        }
    }
    Ok(r.output())
}
