//! The wasm facade: a thin newtype over the Rust API. Async constructors,
//! typed arrays in and out, every export returns Result<_, JsError>.

use wasm_bindgen::prelude::*;

use crate::gpu::Gpu;

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

/// The GPU engine behind the page and the widget.
#[wasm_bindgen]
pub struct Engine {
    gpu: Gpu,
    /// The weights last loaded with [`Engine::load_weights`], on the GPU.
    model: Option<LoadedWeights>,
}

/// Weights on the GPU and what the page shows about them.
pub struct LoadedWeights {
    pub model: crate::model::Vgg16,
    pub preprocessing: crate::weights::Preprocessing,
    pub summary: crate::weights::LoadSummary,
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
        Ok(Engine { gpu, model: None })
    }

    /// The adapter, in words.
    pub fn adapter(&self) -> String {
        self.gpu.adapter.to_string()
    }

    /// The conv schedule chosen for this adapter.
    #[wasm_bindgen(js_name = convSchedule)]
    pub fn conv_schedule(&self) -> String {
        self.gpu.conv_config.name()
    }

    /// Largest storage binding, in bytes.
    #[wasm_bindgen(js_name = maxBindingBytes)]
    pub fn max_binding_bytes(&self) -> f64 {
        self.gpu.max_binding_bytes() as f64
    }
}

impl Engine {
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The weights last loaded, if any.
    pub fn weights(&self) -> Option<&LoadedWeights> {
        self.model.as_ref()
    }
}

#[wasm_bindgen]
impl Engine {
    /// Load a weights file (the bytes of a featvis .safetensors, F32 or F16):
    /// parse and check it, then upload it to the GPU. Returns a JSON summary
    /// `{bytes, dtype, conv_layers, classes, parameters, preprocessing, source, text}`.
    /// A file that fails a check is refused with the check's message and the
    /// previously loaded weights stay.
    #[wasm_bindgen(js_name = loadWeights)]
    pub fn load_weights(&mut self, bytes: &[u8]) -> Result<String, JsError> {
        let (file, summary) = crate::weights::LoadSummary::check(bytes).map_err(|e| JsError::new(&format!("weights file: {e}")))?;
        let model = crate::model::Vgg16::upload(&self.gpu, &file.weights).map_err(|e| JsError::new(&e.to_string()))?;
        let json = summary.to_json();
        self.model = Some(LoadedWeights { model, preprocessing: file.preprocessing, summary });
        Ok(json)
    }

    /// Are weights loaded?
    #[wasm_bindgen(js_name = hasWeights)]
    pub fn has_weights(&self) -> bool {
        self.model.is_some()
    }
}

#[wasm_bindgen]
impl Engine {
    /// Use another conv schedule: `tiled` or `register:PX,CO4,WG`.
    #[wasm_bindgen(js_name = setConvSchedule)]
    pub fn set_conv_schedule(&mut self, text: &str) -> Result<(), JsError> {
        self.gpu.conv_config = crate::gpu::ConvConfig::parse(text)
            .ok_or_else(|| JsError::new(&format!("unknown conv schedule `{text}`: use `tiled` or `register:PX,CO4,WG`")))?;
        Ok(())
    }

    /// Benchmark the conv kernels (see `featvis bench`); `layers` is a comma
    /// list or empty for all; `progress` is called with each layer's name.
    /// Returns the report as a JSON string.
    pub async fn bench(&self, size: usize, batch: usize, layers: String, progress: Option<js_sys::Function>) -> Result<String, JsError> {
        let layers: Vec<String> = layers.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        let now = || js_sys::Date::now();
        let mut report = |l: &crate::bench::LayerFigures| {
            if let Some(f) = &progress {
                let _ = f.call1(&JsValue::NULL, &JsValue::from_str(l.name));
            }
        };
        let r = crate::bench::run(&self.gpu, size, batch, &layers, Some("conv3_3"), 300.0, &now, &mut report)
            .await
            .map_err(|e| JsError::new(&e.to_string()))?;
        Ok(r.to_json())
    }
}
