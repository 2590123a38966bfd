//! The wasm facade: a thin newtype over the Rust API. Async constructors,
//! typed arrays in and out, every export returns Result<_, JsError>.
//!
//! One [`Engine`] per page holds the WebGPU device and the weights; each
//! render is a [`RenderTask`] that JS advances one step at a time
//! (`await task.step()`), so the page's event loop runs between steps and
//! pause, resume and stop need no callback into a running loop.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;

use crate::error::Error;
use crate::gpu::Gpu;
use crate::job::JobSpec;
use crate::model::{self, Node};
use crate::render::{Job, Render};
use crate::report::RenderReport;

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// Is WebGPU available in this browser at all?
fn has_webgpu() -> bool {
    let global = js_sys::global();
    let navigator = js_sys::Reflect::get(&global, &JsValue::from_str("navigator")).unwrap_or(JsValue::UNDEFINED);
    if navigator.is_undefined() {
        return false;
    }
    js_sys::Reflect::get(&navigator, &JsValue::from_str("gpu")).map(|g| !g.is_undefined()).unwrap_or(false)
}

/// Weights on the GPU and what the page shows about them.
pub struct LoadedWeights {
    pub model: crate::model::Vgg16,
    pub preprocessing: crate::weights::Preprocessing,
    pub summary: crate::weights::LoadSummary,
}

/// Resolves on a later turn of the event loop (a `setTimeout(0)`), letting
/// the page paint and run its timers.
async fn next_turn() {
    let promise = js_sys::Promise::new(&mut |resolve, _reject| {
        let set_timeout = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("setTimeout"))
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        match set_timeout {
            Some(f) => {
                let _ = f.call2(&JsValue::NULL, &resolve, &JsValue::from(0));
            }
            None => {
                let _ = resolve.call0(&JsValue::NULL);
            }
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// What the engine and its renders share.
struct Shared {
    gpu: Gpu,
    weights: RefCell<Option<Rc<LoadedWeights>>>,
}

impl Shared {
    /// A library error as a JS Error; once the device is lost every error
    /// says so (the message the page shows with its restart button).
    fn error(&self, e: Error) -> JsError {
        match self.gpu.lost() {
            Some(why) if !matches!(e, Error::DeviceLost(_)) => JsError::new(&Error::DeviceLost(why).to_string()),
            _ => JsError::new(&e.to_string()),
        }
    }

    fn check_alive(&self) -> Result<(), JsError> {
        match self.gpu.lost() {
            Some(why) => Err(JsError::new(&Error::DeviceLost(why).to_string())),
            None => Ok(()),
        }
    }
}

/// The GPU engine behind the page and the widget.
#[wasm_bindgen]
pub struct Engine {
    shared: Rc<Shared>,
}

#[wasm_bindgen]
impl Engine {
    /// Open the WebGPU device. Fails with a message a user can act on when
    /// the browser has no WebGPU.
    pub async fn create() -> Result<Engine, JsError> {
        if !has_webgpu() {
            return Err(JsError::new(
                "this browser has no WebGPU (navigator.gpu is missing): use a recent Chrome or Edge, \
                 or Firefox/Safari with WebGPU enabled",
            ));
        }
        let gpu = Gpu::new().await.map_err(|e| JsError::new(&e.to_string()))?;
        Ok(Engine { shared: Rc::new(Shared { gpu, weights: RefCell::new(None) }) })
    }

    /// The adapter, in words.
    pub fn adapter(&self) -> String {
        self.shared.gpu.adapter.to_string()
    }

    /// The conv schedule chosen for this adapter.
    #[wasm_bindgen(js_name = convSchedule)]
    pub fn conv_schedule(&self) -> String {
        self.shared.gpu.conv_config().name()
    }

    /// Largest storage binding, in bytes.
    #[wasm_bindgen(js_name = maxBindingBytes)]
    pub fn max_binding_bytes(&self) -> f64 {
        self.shared.gpu.max_binding_bytes() as f64
    }

    /// Why the device was lost, once it was (undefined while it works).
    pub fn lost(&self) -> Option<String> {
        self.shared.gpu.lost()
    }

    /// Destroy the device, as a driver reset would: for testing the page's
    /// device-lost path.
    #[wasm_bindgen(js_name = loseDevice)]
    pub fn lose_device(&self) {
        self.shared.gpu.lose();
    }
}

impl Engine {
    pub fn gpu(&self) -> &Gpu {
        &self.shared.gpu
    }

    /// The weights last loaded, if any.
    pub fn weights(&self) -> Option<Rc<LoadedWeights>> {
        self.shared.weights.borrow().clone()
    }
}

/// The layers a job can name on these weights: conv layers, pools and
/// (with the head) fc6–fc8, with their channels and smallest image side.
fn layers_json(has_fc: bool, classes: usize) -> serde_json::Value {
    let list: Vec<serde_json::Value> = model::nodes(has_fc)
        .into_iter()
        .filter_map(|(name, node)| {
            let (kind, channels) = match node {
                Node::Conv(i) => ("conv", model::CONVS[i].2),
                Node::Pool(p) => ("pool", [64, 128, 256, 512, 512][p - 1]),
                Node::Fc(2) => ("fc", classes),
                Node::Fc(_) => ("fc", 4096),
                Node::AvgPool => return None,
            };
            let min_size = model::resolve(&name, has_fc).map(|t| model::min_size(&t, has_fc)).unwrap_or(1);
            Some(serde_json::json!({ "name": name, "kind": kind, "channels": channels, "min_size": min_size }))
        })
        .collect();
    serde_json::Value::Array(list)
}

#[wasm_bindgen]
impl Engine {
    /// Load a weights file (the bytes of a featvis .safetensors, F32 or F16):
    /// parse and check it, then upload it to the GPU. Returns a JSON summary
    /// `{bytes, dtype, conv_layers, classes, parameters, preprocessing, source, text, layers}`.
    /// A file that fails a check is refused with the check's message and the
    /// previously loaded weights stay. The upload yields to the event loop
    /// between layers, so the page keeps scrolling while it runs.
    #[wasm_bindgen(js_name = loadWeights)]
    pub async fn load_weights(&self, bytes: Vec<u8>) -> Result<String, JsError> {
        self.shared.check_alive()?;
        let (file, summary) = crate::weights::LoadSummary::check(&bytes).map_err(|e| {
            let msg = e.to_string();
            JsError::new(&if msg.starts_with("weights file") { msg } else { format!("weights file: {msg}") })
        })?;
        drop(bytes);
        next_turn().await;
        let model =
            crate::model::Vgg16::upload_paced(&self.shared.gpu, &file.weights, next_turn).await.map_err(|e| self.shared.error(e))?;
        let mut json: serde_json::Value = serde_json::from_str(&summary.to_json()).map_err(|e| JsError::new(&e.to_string()))?;
        json["layers"] = layers_json(model.has_fc(), model.classes());
        *self.shared.weights.borrow_mut() = Some(Rc::new(LoadedWeights { model, preprocessing: file.preprocessing, summary }));
        Ok(json.to_string())
    }

    /// Are weights loaded?
    #[wasm_bindgen(js_name = hasWeights)]
    pub fn has_weights(&self) -> bool {
        self.shared.weights.borrow().is_some()
    }

    /// The layers of the loaded weights, as in [`Engine::load_weights`] (`[]` without weights).
    pub fn layers(&self) -> String {
        match self.weights() {
            Some(w) => layers_json(w.model.has_fc(), w.model.classes()).to_string(),
            None => "[]".into(),
        }
    }

    /// Check a render request (JSON with the CLI's option names) against
    /// the loaded weights and this device without rendering: returns
    /// `{images, labels, size, steps, batch, batches}` or throws the
    /// message a user needs (unknown layer, channel out of range, image too
    /// small, objective syntax, too large for the device).
    #[wasm_bindgen(js_name = checkJob)]
    pub fn check_job(&self, json: &str) -> Result<String, JsError> {
        let (job, weights) = self.job(json)?;
        let out = match weights {
            Some(w) => {
                let r = Render::new(&self.shared.gpu, &w.model, &w.preprocessing, &job).map_err(|e| self.shared.error(e))?;
                let (batch, batches) = r.batches();
                serde_json::json!({ "images": job.objectives.len(), "labels": r.labels(), "size": job.height,
                                    "steps": job.steps, "batch": batch, "batches": batches })
            }
            None => {
                crate::render::check(&job, None).map_err(|e| JsError::new(&e.to_string()))?;
                serde_json::json!({ "images": job.objectives.len(), "size": job.height, "steps": job.steps })
            }
        };
        Ok(out.to_string())
    }

    /// Start a render (JSON with the CLI's option names; see crate::job).
    /// Nothing runs until the first `step()`.
    pub fn start(&self, json: &str) -> Result<RenderTask, JsError> {
        self.shared.check_alive()?;
        let (job, weights, request) = self.job_spec(json)?;
        let weights = weights.ok_or_else(|| JsError::new("no weights are loaded: load a weights file first"))?;
        let render = Render::new(&self.shared.gpu, &weights.model, &weights.preprocessing, &job).map_err(|e| self.shared.error(e))?;
        Ok(self.task(job, weights, request, render))
    }

    /// Continue a render from a checkpoint (`task.checkpoint()`'s bytes):
    /// `json` is the same request, `weights_sha256` the loaded weights'
    /// SHA-256 (hex); a checkpoint of other settings or weights, or a
    /// damaged one, is refused with what differs.
    pub async fn resume(&self, json: String, checkpoint: Vec<u8>, weights_sha256: String) -> Result<RenderTask, JsError> {
        self.shared.check_alive()?;
        let (job, weights, request) = self.job_spec(&json)?;
        let weights = weights.ok_or_else(|| JsError::new("no weights are loaded: load a weights file first"))?;
        let ck = crate::checkpoint::Checkpoint::from_bytes(&checkpoint).map_err(|e| JsError::new(&e.to_string()))?;
        ck.check_matches(&request, &weights_sha256).map_err(|e| JsError::new(&e.to_string()))?;
        let render = Render::resume(&self.shared.gpu, &weights.model, &weights.preprocessing, &job, &ck.state)
            .await
            .map_err(|e| self.shared.error(e))?;
        let task = self.task(job, weights, request, render);
        // The finished images come back with the state: show them at once.
        if let Some(r) = task.render.borrow().as_ref() {
            let mut rgba = task.rgba.borrow_mut();
            for (i, img) in r.rendered().iter().enumerate() {
                rgba[i] = Some(to_rgba(&img.pixels));
            }
        }
        Ok(task)
    }

    fn task(&self, job: Job, weights: Rc<LoadedWeights>, request: JobSpec, render: Render) -> RenderTask {
        let n = job.objectives.len();
        RenderTask {
            request,
            shared: self.shared.clone(),
            weights,
            size: (job.height, job.width),
            labels: render.labels(),
            render: RefCell::new(Some(render)),
            rgba: RefCell::new(vec![None; n]),
            failed: RefCell::new(None),
        }
    }

    /// Parse a request and apply the page's defaults: snapshots at Lucid's
    /// thresholds, a preview every 4 steps, each step's values read.
    fn job(&self, json: &str) -> Result<(Job, Option<Rc<LoadedWeights>>), JsError> {
        let (job, weights, _) = self.job_spec(json)?;
        Ok((job, weights))
    }

    /// [`Engine::job`], and the request with the page's defaults written in
    /// (what a checkpoint records).
    fn job_spec(&self, json: &str) -> Result<(Job, Option<Rc<LoadedWeights>>, JobSpec), JsError> {
        let mut spec = JobSpec::from_json(json).map_err(|e| JsError::new(&e.to_string()))?;
        if spec.snapshots.is_none() {
            spec.snapshots = Some("lucid".into());
        }
        if spec.preview_every.is_none() {
            spec.preview_every = Some(4);
        }
        let weights = self.weights();
        let classes = weights.as_ref().and_then(|w| w.model.has_fc().then(|| w.model.classes()));
        let mut built = spec.build(classes).map_err(|e| JsError::new(&e.to_string()))?;
        built.job.loss_every = 1;
        Ok((built.job, weights, spec))
    }

    /// Use another conv schedule for renders started from now on (any of
    /// [`crate::gpu::CONV_SPECS`]). A schedule is
    /// checked against the CPU reference on this device before it is taken.
    #[wasm_bindgen(js_name = setConvSchedule)]
    pub async fn set_conv_schedule(&self, text: String) -> Result<(), JsError> {
        let config = crate::gpu::ConvConfig::parse(&text)
            .ok_or_else(|| JsError::new(&format!("unknown conv schedule `{text}`: use {}", crate::gpu::CONV_SPECS)))?;
        let err = crate::tune::check(&self.shared.gpu, config).await.map_err(|e| self.shared.error(e))?;
        if err > crate::tune::TOLERANCE {
            return Err(JsError::new(&format!(
                "conv schedule {} computes wrong results on this device (relative error {err:.1e}); keeping {}",
                config.name(),
                self.shared.gpu.conv_config().name()
            )));
        }
        self.shared.gpu.set_conv_config(config);
        Ok(())
    }

    /// Check and time the conv schedules worth trying on this device (see
    /// crate::tune) and use the fastest correct one. `progress` hears each
    /// candidate's schedule name. Returns the report as JSON
    /// `{adapter, shape, chosen, candidates: [{schedule, max_rel_error, correct, gflops, error}]}`.
    pub async fn tune(&self, progress: Option<js_sys::Function>) -> Result<String, JsError> {
        let now = crate::render::now_ms;
        let mut report = |c: &crate::tune::Candidate| {
            if let Some(f) = &progress {
                let _ = f.call1(&JsValue::NULL, &JsValue::from_str(&c.schedule));
            }
        };
        let t = crate::tune::tune(&self.shared.gpu, &now, &mut report).await.map_err(|e| self.shared.error(e))?;
        self.shared.gpu.set_conv_config(t.chosen_config);
        Ok(t.to_json())
    }

    /// Benchmark the conv kernels (see `featvis bench`); `layers` is a comma
    /// list or empty for all; `progress` is called with each layer's name.
    /// Returns the report as a JSON string.
    pub async fn bench(&self, size: usize, batch: usize, layers: String, progress: Option<js_sys::Function>) -> Result<String, JsError> {
        let layers: Vec<String> = layers.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        let now = crate::render::now_ms;
        let mut report = |l: &crate::bench::LayerFigures| {
            if let Some(f) = &progress {
                let _ = f.call1(&JsValue::NULL, &JsValue::from_str(l.name));
            }
        };
        let r = crate::bench::run(&self.shared.gpu, size, batch, &layers, Some("conv3_3"), 300.0, &now, &mut report)
            .await
            .map_err(|e| self.shared.error(e))?;
        Ok(r.to_json())
    }
}

/// (H, W, 3) floats in [0, 1] → (H, W, 4) RGBA bytes, rounded as the PNG encoder does.
fn to_rgba(rgb: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rgb.len() / 3 * 4);
    for px in rgb.chunks_exact(3) {
        out.extend(px.iter().map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8));
        out.push(255);
    }
    out
}

/// One render, advanced by JS one step at a time.
#[wasm_bindgen]
pub struct RenderTask {
    /// The request as started (with the page's defaults): what a checkpoint records.
    request: JobSpec,
    shared: Rc<Shared>,
    weights: Rc<LoadedWeights>,
    /// Taken out while a step runs (so no borrow is held across an await).
    render: RefCell<Option<Render>>,
    /// Each image's latest pixels as RGBA (a preview or its final image).
    rgba: RefCell<Vec<Option<Vec<u8>>>>,
    /// The error that ended the render, if one did.
    failed: RefCell<Option<String>>,
    /// Image height and width, and each image's objective (readable while a step runs).
    size: (usize, usize),
    labels: Vec<String>,
}

impl RenderTask {
    fn take(&self) -> Result<Render, JsError> {
        if let Some(msg) = self.failed.borrow().as_ref() {
            return Err(JsError::new(&format!("this render failed earlier: {msg}")));
        }
        self.render.borrow_mut().take().ok_or_else(|| JsError::new("a step of this render is still running: await it first"))
    }

    fn with<T>(&self, f: impl FnOnce(&Render) -> T) -> Result<T, JsError> {
        match self.render.borrow().as_ref() {
            Some(r) => Ok(f(r)),
            None => Err(JsError::new("a step of this render is still running: await it first")),
        }
    }

    fn fail(&self, e: Error) -> JsError {
        let err = self.shared.error(e);
        let msg: JsValue = err.into();
        let text = js_sys::Error::from(msg.clone()).message().as_string().unwrap_or_default();
        *self.failed.borrow_mut() = Some(text.clone());
        JsError::new(&text)
    }

    fn job(&self) -> Result<Job, JsError> {
        self.with(|r| r.job().clone())
    }
}

#[wasm_bindgen]
impl RenderTask {
    /// One optimization step; resolves to a JSON object `{step, steps,
    /// batch_index, batches, first, count, done, total, elapsed_ms, values,
    /// preview, snapshot, finished}` (values: each image's objective on this
    /// step's transformed image).
    pub async fn step(&self) -> Result<String, JsError> {
        self.shared.check_alive()?;
        let mut render = self.take()?;
        let result = render.step(&self.shared.gpu, &self.weights.model).await;
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                let err = self.fail(e);
                *self.render.borrow_mut() = Some(render);
                return Err(err);
            }
        };
        {
            let mut rgba = self.rgba.borrow_mut();
            if report.batch_done {
                for (i, img) in render.rendered().iter().enumerate().skip(report.images.start) {
                    rgba[i] = Some(to_rgba(&img.pixels));
                }
            } else if let Some(preview) = &report.preview {
                let each = preview.len() / report.images.len().max(1);
                for (k, i) in report.images.clone().enumerate() {
                    rgba[i] = Some(to_rgba(&preview[k * each..(k + 1) * each]));
                }
            }
        }
        let json = serde_json::json!({
            "step": report.step,
            "steps": report.steps,
            "batch_index": report.batch_index,
            "batches": report.batches,
            "first": report.images.start,
            "count": report.images.len(),
            "done": report.done,
            "total": report.total,
            "elapsed_ms": report.step_ms,
            "values": report.losses,
            "preview": report.preview.is_some() || report.batch_done,
            "snapshot": report.snapshot,
            "finished": report.finished,
        });
        *self.render.borrow_mut() = Some(render);
        Ok(json.to_string())
    }

    /// End the render now; the images of the batch in progress are kept as
    /// they are (batches not started have none).
    pub async fn stop(&self) -> Result<(), JsError> {
        let mut render = self.take()?;
        if render.is_finished() {
            *self.render.borrow_mut() = Some(render);
            return Ok(());
        }
        let result = render.stop(&self.shared.gpu).await;
        {
            let mut rgba = self.rgba.borrow_mut();
            for (i, img) in render.rendered().iter().enumerate() {
                rgba[i] = Some(to_rgba(&img.pixels));
            }
        }
        *self.render.borrow_mut() = Some(render);
        result.map_err(|e| self.fail(e))
    }

    pub fn finished(&self) -> bool {
        self.render.borrow().as_ref().is_some_and(Render::is_finished)
    }

    pub fn images(&self) -> usize {
        self.rgba.borrow().len()
    }

    pub fn height(&self) -> usize {
        self.size.0
    }

    pub fn width(&self) -> usize {
        self.size.1
    }

    /// Each image's objective in the text syntax, as a JSON array.
    pub fn labels(&self) -> String {
        serde_json::Value::from(self.labels.clone()).to_string()
    }

    /// Image `i` as RGBA bytes (H·W·4) as of its latest preview or its
    /// final image; undefined before it has either.
    #[wasm_bindgen(js_name = previewRGBA)]
    pub fn preview_rgba(&self, i: usize) -> JsValue {
        match self.rgba.borrow().get(i) {
            Some(Some(v)) => js_sys::Uint8ClampedArray::from(&v[..]).into(),
            _ => JsValue::UNDEFINED,
        }
    }

    /// The snapshot steps that every image has reached so far.
    #[wasm_bindgen(js_name = snapshotSteps)]
    pub fn snapshot_steps(&self) -> Result<Vec<u32>, JsError> {
        let n = self.images();
        self.with(|r| r.snapshots().iter().filter(|s| s.images.len() == n).map(|s| s.step).collect())
    }

    /// Image `i` at snapshot `step` as RGBA bytes; undefined when it has not reached it.
    #[wasm_bindgen(js_name = snapshotRGBA)]
    pub fn snapshot_rgba(&self, step: u32, i: usize) -> Result<JsValue, JsError> {
        self.with(|r| {
            r.snapshots()
                .iter()
                .find(|s| s.step == step)
                .and_then(|s| s.images.get(i))
                .map_or(JsValue::UNDEFINED, |img| js_sys::Uint8ClampedArray::from(&to_rgba(img)[..]).into())
        })
    }

    /// A PNG made by the CLI's encoder: `i` = -1 for the grid of all images
    /// (8 columns, 4 px margins, as `featvis render --out`), else image `i`
    /// alone; `step` = 0 for the final images (those of the batches done so
    /// far), else that snapshot.
    pub fn png(&self, i: i32, step: u32) -> Result<Vec<u8>, JsError> {
        self.with(|r| {
            let (h, w) = (r.job().height, r.job().width);
            let images: Vec<Vec<f32>> = if step == 0 {
                r.rendered().iter().map(|img| img.pixels.clone()).collect()
            } else {
                let snap = r.snapshots().iter().find(|s| s.step == step);
                snap.ok_or_else(|| JsError::new(&format!("no snapshot at step {step}")))?.images.clone()
            };
            let chosen: Vec<Vec<f32>> = if i < 0 {
                images
            } else {
                vec![images.get(i as usize).cloned().ok_or_else(|| JsError::new(&format!("image {i} has no pixels yet")))?]
            };
            if chosen.is_empty() {
                return Err(JsError::new("no image has finished yet"));
            }
            let (gw, gh, rgb) = if i < 0 { crate::png::grid(&chosen, h, w, 8, 4) } else { crate::png::grid(&chosen, h, w, 1, 0) };
            Ok(crate::png::encode_rgb(gw, gh, &rgb))
        })?
    }

    /// The render's whole state as a checkpoint file (crate::checkpoint),
    /// for `Engine.resume` in a later visit. `weights_sha256`: the loaded
    /// weights' SHA-256 (hex). Between steps only.
    pub async fn checkpoint(&self, weights_sha256: String) -> Result<Vec<u8>, JsError> {
        let render = self.take()?;
        let state = render.state(&self.shared.gpu).await;
        *self.render.borrow_mut() = Some(render);
        let state = state.map_err(|e| self.shared.error(e))?;
        Ok(crate::checkpoint::Checkpoint { request: self.request.clone(), weights_sha256, state }.to_bytes())
    }

    /// The render's report: the object `featvis render --json` prints
    /// (`files` empty), as JSON.
    pub fn result(&self) -> Result<String, JsError> {
        let job = self.job()?;
        let out = self.with(|r| r.output())?;
        Ok(RenderReport::new(&self.shared.gpu.adapter.to_string(), &job, &out, Vec::new()).to_json())
    }
}
