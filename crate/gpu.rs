//! The GPU context: adapter and device with the adapter's own limits and
//! optional features, a pipeline cache keyed by (shader, entry point, sorted
//! constants), labelled buffers checked against the device limits, prepared
//! dispatches, and GPU errors turned into typed errors.
//!
//! An op prepares its [`Dispatch`]es once (pipelines, uniforms, bind groups);
//! a step records them into one encoder and submits once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, LimitExceeded, Result};

/// How a binding of a kernel is used. Every kernel's bind-group layout is
/// written out explicitly from a list of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Binding {
    Uniform,
    Read,
    ReadWrite,
}

/// What the conv kernels are tuned for on this adapter (../DESIGN §7: the
/// software adapters want register blocking without workgroup memory, real
/// GPUs want workgroup-memory tiles). Every configuration is under the same
/// parity tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvConfig {
    /// One invocation computes `px` consecutive pixels of a row for `co4`×4
    /// output channels; `wg` invocations per workgroup; no workgroup memory.
    Register { px: u32, co4: u32, wg: u32 },
    /// Implicit GEMM with workgroup-memory tiles of 64 pixels × 64 channels,
    /// 16×16 invocations each computing 4×4, K step 16.
    Tiled,
    /// Generated per configuration (crate/ops/conv_gen.rs): the register
    /// tile fully unrolled into named accumulators, weights optionally
    /// broadcast across a subgroup.
    Unrolled(crate::ops::conv_gen::Unrolled),
    /// Generated implicit GEMM for GPUs (crate/ops/conv_gen.rs): tiles of
    /// 16–128 pixels × 16–128 channels per workgroup, double-buffered
    /// workgroup memory, a register tile of named accumulators.
    Gemm(crate::ops::conv_gen::Gemm),
    /// Generated 2-D register tiles with the workgroup's lanes over channel
    /// tiles (crate/ops/conv_gen.rs), for CPU adapters without subgroups.
    Patch(crate::ops::conv_gen::Patch),
    /// Generated per layer with its weights written in as constants
    /// (crate/ops/conv_gen.rs), for layers of at most 4 input channels
    /// (conv1_1); other layers keep the adapter's schedule.
    Baked(crate::ops::conv_gen::Baked),
}

/// The conv schedules [`ConvConfig::parse`] reads, for messages.
pub const CONV_SPECS: &str = "`tiled`, `register:PX,CO4,WG` (PX 1..=16, CO4 1..=32), `unrolled:PX,CO4,WG[,SG]`, \
     `gemm:BM,BN,BK,TM,TN`, `patch:TH,TW,CO4,WG` or `baked:PX,BPX` (PX 1..=8, BPX 1..=4; layers of at most 4 input channels) \
     (README: \"How it is built\")";

impl ConvConfig {
    /// llvmpipe: 4 pixels × 128 channels per invocation (8 × 64 on 64-channel
    /// layers), 8 per workgroup: the fastest of a sweep whose results pass
    /// the parity tests (wider rows run faster but llvmpipe computes them wrong).
    pub const LLVMPIPE: ConvConfig = ConvConfig::Register { px: 4, co4: 32, wg: 8 };
    /// SwiftShader (Chromium's software WebGPU): 8 pixels × 64 channels, 8
    /// per workgroup; measured fastest of the sweep in `tools/browser-bench.mjs`.
    pub const SWIFTSHADER: ConvConfig = ConvConfig::Register { px: 8, co4: 16, wg: 8 };
    pub const TILED: ConvConfig = ConvConfig::Tiled;
    /// SwiftShader (no subgroups through wgpu's WebGPU backend): 8 pixels ×
    /// 16 channels in named accumulators, 1.3–1.6× the register schedule at
    /// 64 px in `tools/browser-bench.mjs`; workgroups of 4, SwiftShader's
    /// SIMD width (workgroups of 2 or 1 run 2–4× slower), so that a layer of
    /// 4 rows fills every lane where workgroups of 8 left half of them idle.
    pub const SWIFTSHADER_UNROLLED: ConvConfig = ConvConfig::Unrolled(crate::ops::conv_gen::Unrolled { px: 8, co4: 4, wg: 4, sg: 0 });
    /// SwiftShader's layers 5–15 pixels wide ([`rows_for_width`]): 2-D tiles
    /// of 2×8 pixels × 8 channels, 4 lanes over channel tiles.
    pub const SWIFTSHADER_MID: ConvConfig = ConvConfig::Patch(crate::ops::conv_gen::Patch { th: 2, tw: 8, co4: 2, wg: 4 });
    /// llvmpipe with its subgroups of 8 (DESIGN §7): 8 pixels × 16 channels
    /// per invocation in named accumulators, weights broadcast.
    pub const LLVMPIPE_SUBGROUPS: ConvConfig = ConvConfig::Unrolled(crate::ops::conv_gen::Unrolled { px: 8, co4: 4, wg: 8, sg: 8 });
    /// CPU adapters' layers of at most 4 input channels (conv1_1), and the
    /// tuner's offer to GPUs for them: the weights written into the
    /// kernels, 4 pixels × every output channel per invocation forward, two
    /// pixels' taps backward. conv1_1 at 64 px on SwiftShader: 7.9 → 1.7–1.9
    /// ms forward, 4.3 → 2.4–2.5 backward (`tools/browser-bench.mjs`); on
    /// llvmpipe at 128 px, batch 16: 75–117 → 34 ms forward, 52–63 → 61
    /// backward (95–121 with one pixel's taps per invocation).
    pub const CPU_BAKED: ConvConfig = ConvConfig::Baked(crate::ops::conv_gen::Baked { px: 4, bpx: 2 });
    /// GPUs before tuning: the generated implicit GEMM with 64×64 tiles, 4×4
    /// per invocation, K steps of 16 (256 invocations and 16 KiB of
    /// workgroup memory: WebGPU's default limits).
    pub const GPU_GEMM: ConvConfig = ConvConfig::Gemm(crate::ops::conv_gen::Gemm { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4 });
    /// GPUs before tuning, layers of at most 28×28: 32×32 tiles, 64 invocations.
    pub const GPU_GEMM_SMALL: ConvConfig = ConvConfig::Gemm(crate::ops::conv_gen::Gemm { bm: 32, bn: 32, bk: 16, tm: 4, tn: 4 });

    pub fn name(&self) -> String {
        match self {
            ConvConfig::Register { px, co4, wg } => format!("register(px={px},co={},wg={wg})", co4 * 4),
            ConvConfig::Tiled => "tiled(64x64,4x4,k16)".to_string(),
            ConvConfig::Unrolled(u) => format!("unrolled(px={},co={},wg={},sg={})", u.px, u.co4 * 4, u.wg, u.sg),
            ConvConfig::Gemm(g) => format!("gemm({}x{},k{},{}x{})", g.bm, g.bn, g.bk, g.tm, g.tn),
            ConvConfig::Patch(t) => format!("patch({}x{},co={},wg={})", t.th, t.tw, t.co4 * 4, t.wg),
            ConvConfig::Baked(b) => format!("baked(px={},bpx={})", b.px, b.bpx),
        }
    }

    /// The text [`ConvConfig::parse`] reads back (`unrolled:8,4,8,8`).
    pub fn spec(&self) -> String {
        match self {
            ConvConfig::Register { px, co4, wg } => format!("register:{px},{co4},{wg}"),
            ConvConfig::Tiled => "tiled".to_string(),
            ConvConfig::Unrolled(u) => format!("unrolled:{},{},{},{}", u.px, u.co4, u.wg, u.sg),
            ConvConfig::Gemm(g) => format!("gemm:{},{},{},{},{}", g.bm, g.bn, g.bk, g.tm, g.tn),
            ConvConfig::Patch(t) => format!("patch:{},{},{},{}", t.th, t.tw, t.co4, t.wg),
            ConvConfig::Baked(b) => format!("baked:{},{}", b.px, b.bpx),
        }
    }

    /// Parse `tiled`, `register:PX,CO4,WG` (PX 1..=16, CO4 1..=32, WG
    /// 1..=256), `unrolled:PX,CO4,WG[,SG]` (SG 0 or absent: no subgroups)
    /// `gemm:BM,BN,BK,TM,TN` (see [`crate::ops::conv_gen::Gemm::is_valid`])
    /// `patch:TH,TW,CO4,WG` ([`crate::ops::conv_gen::Patch::is_valid`]) or
    /// `baked:PX,BPX` (PX 1..=8, BPX 1..=4): [`CONV_SPECS`] in words.
    pub fn parse(text: &str) -> Option<ConvConfig> {
        if text == "tiled" {
            return Some(ConvConfig::Tiled);
        }
        if let Some(rest) = text.strip_prefix("baked:") {
            let nums: Vec<u32> = rest.split(',').map(|n| n.trim().parse().ok()).collect::<Option<_>>()?;
            let [px, bpx] = nums[..] else { return None };
            let b = crate::ops::conv_gen::Baked { px, bpx };
            return b.is_valid().then_some(ConvConfig::Baked(b));
        }
        if let Some(rest) = text.strip_prefix("patch:") {
            let nums: Vec<u32> = rest.split(',').map(|n| n.trim().parse().ok()).collect::<Option<_>>()?;
            let [th, tw, co4, wg] = nums[..] else { return None };
            let t = crate::ops::conv_gen::Patch { th, tw, co4, wg };
            return t.is_valid().then_some(ConvConfig::Patch(t));
        }
        if let Some(rest) = text.strip_prefix("gemm:") {
            let nums: Vec<u32> = rest.split(',').map(|n| n.trim().parse().ok()).collect::<Option<_>>()?;
            let [bm, bn, bk, tm, tn] = nums[..] else { return None };
            let g = crate::ops::conv_gen::Gemm { bm, bn, bk, tm, tn };
            return g.is_valid().then_some(ConvConfig::Gemm(g));
        }
        if let Some(rest) = text.strip_prefix("unrolled:") {
            let nums: Vec<u32> = rest.split(',').map(|n| n.trim().parse().ok()).collect::<Option<_>>()?;
            let u = match nums[..] {
                [px, co4, wg] => crate::ops::conv_gen::Unrolled { px, co4, wg, sg: 0 },
                [px, co4, wg, sg] => crate::ops::conv_gen::Unrolled { px, co4, wg, sg },
                _ => return None,
            };
            return u.is_valid().then_some(ConvConfig::Unrolled(u));
        }
        let nums: Vec<u32> = text.strip_prefix("register:")?.split(',').map(|n| n.trim().parse().ok()).collect::<Option<_>>()?;
        match nums[..] {
            [px, co4, wg]
                if (1..=crate::ops::conv::MAX_PX).contains(&px)
                    && (1..=crate::ops::conv::MAX_CO4).contains(&co4)
                    && (1..=256).contains(&wg) =>
            {
                Some(ConvConfig::Register { px, co4, wg })
            }
            _ => None,
        }
    }
}

/// The schedule for layers at most 4 pixels wide in place of a generated
/// row tile `u`. With subgroup broadcast (llvmpipe): rows of 4 pixels, the
/// same channels. Without (SwiftShader): 2-D tiles of 4×4 pixels × 8
/// channels, 8 lanes over channel tiles ([`crate::ops::conv_gen::Patch`]):
/// each weight vec4 feeds 16 pixels, 4.3–5.4 GFLOP/s on the 4×4 conv5 layers
/// at 64 px against 2.6–3.0 for rows of 4 × 16 channels and 3.6–3.9 for 4 × 32.
pub fn narrow_rows(u: crate::ops::conv_gen::Unrolled) -> ConvConfig {
    if u.sg == 0 {
        ConvConfig::Patch(crate::ops::conv_gen::Patch { th: 4, tw: 4, co4: 2, wg: 8 })
    } else {
        ConvConfig::Unrolled(crate::ops::conv_gen::Unrolled { px: 4, ..u })
    }
}

/// The tile of a generated row tile `u` on a layer `width` pixels wide:
/// [`narrow_rows`] at most 4 wide. Without subgroups (SwiftShader), where
/// loads cost more than multiply-adds, so that what counts is how many
/// pixels each weight vec4 feeds: rows of 16 pixels instead of 8 on layers
/// at least 16 wide (at 64 px, conv1_2 … conv3_3 went from 5.2–5.8 to
/// 6.1–6.9 GFLOP/s forward and from 4.7–6.1 to 6.5–7.5 backward), and 2-D
/// tiles of 2×8 pixels × 8 channels on layers 5–15 wide (the 8-wide conv4
/// layers at 64 px: 4.0–5.8 → 4.5–6.0 forward, 4.6–5.8 → 6.2–6.3 backward,
/// where 16-pixel rows compute half in vain: 2.1–3.7). llvmpipe (subgroups
/// of 8) showed no difference with 16-pixel rows, so it keeps its own.
/// Other row tiles (one picked on the page, say) keep their rows there.
pub fn rows_for_width(u: crate::ops::conv_gen::Unrolled, width: usize) -> ConvConfig {
    if u.px > 4 && width <= 4 {
        narrow_rows(u)
    } else if ConvConfig::Unrolled(u) != ConvConfig::SWIFTSHADER_UNROLLED {
        ConvConfig::Unrolled(u)
    } else if width >= 16 {
        ConvConfig::Unrolled(crate::ops::conv_gen::Unrolled { px: 16, ..u })
    } else {
        ConvConfig::SWIFTSHADER_MID
    }
}

/// What we know of the adapter, in words.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = if self.name.is_empty() { "unnamed adapter" } else { self.name.as_str() };
        write!(f, "{name} ({}, {}", self.backend, self.device_type)?;
        if !self.driver.is_empty() {
            write!(f, ", {}", self.driver)?;
        }
        write!(f, ")")
    }
}

/// A compiled compute kernel: pipeline plus its explicit bind-group layout.
pub struct Kernel {
    pub name: String,
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub bindings: Vec<Binding>,
    /// Invocations per workgroup (the kernel's @workgroup_size, flattened).
    pub workgroup_size: u32,
}

/// What a kernel is made from.
pub struct KernelSpec<'a> {
    /// Shader file name, e.g. "conv.wgsl" (or a generated shader's name).
    pub shader: &'a str,
    pub source: &'a str,
    pub entry: &'a str,
    /// Values for the shader's `const NAME: u32 = ...;` declarations.
    pub constants: Vec<(&'static str, u32)>,
    pub bindings: &'a [Binding],
    pub workgroup_size: u32,
}

/// A dispatch prepared once and recorded many times.
pub struct Dispatch {
    pub kernel: Arc<Kernel>,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
    _uniform: Option<wgpu::Buffer>,
}

impl Dispatch {
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.kernel.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.workgroups[0], self.workgroups[1], self.workgroups[2]);
    }
    pub fn workgroups(&self) -> [u32; 3] {
        self.workgroups
    }
    /// The uniform buffer, for kernels whose uniform changes per step (Adam).
    pub fn uniform(&self) -> Option<&wgpu::Buffer> {
        self._uniform.as_ref()
    }
}

/// A GPU buffer of f32 values with the label it was created under.
pub struct Tensor {
    pub buffer: wgpu::Buffer,
    /// Number of f32 elements.
    pub len: usize,
    pub label: String,
}

impl Tensor {
    pub fn bytes(&self) -> u64 {
        self.buffer.size()
    }
}

/// Replace the value of each `const NAME: u32 = ...;` declaration in `source`.
/// The shader file stays valid WGSL on its own (with its default values).
pub fn specialize(shader: &str, source: &str, constants: &[(&str, u32)]) -> Result<String> {
    let mut out = source.to_string();
    for (name, value) in constants {
        let needle = format!("const {name}: u32 = ");
        let start = out.find(&needle).ok_or_else(|| Error::Specialize { shader: shader.to_string(), constant: name.to_string() })?;
        let value_start = start + needle.len();
        let end = out[value_start..]
            .find(';')
            .map(|e| value_start + e)
            .ok_or_else(|| Error::Specialize { shader: shader.to_string(), constant: name.to_string() })?;
        out.replace_range(value_start..end, &format!("{value}u"));
    }
    Ok(out)
}

/// A conv layer's shape as far as choosing its schedule goes: the input's
/// height and width and the channels in and out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct ConvShape {
    pub height: usize,
    pub width: usize,
    pub cin: usize,
    pub cout: usize,
}

impl std::fmt::Display for ConvShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}, {}→{}", self.height, self.width, self.cin, self.cout)
    }
}

pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// The conv schedule (changeable while the device is shared: [`Gpu::set_conv_config`]).
    conv_config: Mutex<ConvConfig>,
    /// Schedules chosen per layer shape by tuning on this device
    /// ([`crate::tune::tune_shapes`]); a shape not in it uses `conv_config`.
    conv_choices: Mutex<std::collections::BTreeMap<ConvShape, ConvConfig>>,
    /// FEATVIS_CONV forces one schedule everywhere: per-shape choices are not used.
    conv_forced: bool,
    /// The adapter's own schedule ([`Gpu::conv_config`] before tuning,
    /// forcing or the page changed it).
    conv_default: ConvConfig,
    /// Bytes of every tensor and uniform buffer created so far (never
    /// decremented): the difference around a constructor is what it allocated.
    allocated: std::sync::atomic::AtomicU64,
    /// The subgroup size when the device has subgroups of one fixed size
    /// (what a broadcast across lanes needs); 0 otherwise.
    pub subgroup_size: u32,
    kernels: Mutex<HashMap<String, Arc<Kernel>>>,
    uncaptured: Arc<Mutex<Vec<String>>>,
    /// Why the device was lost, once it was.
    lost: Arc<Mutex<Option<String>>>,
}

impl Gpu {
    /// Open the default adapter (on native, `WGPU_BACKEND` picks the backend;
    /// in a browser, WebGPU) with all of its limits and the optional features
    /// it has.
    pub async fn new() -> Result<Gpu> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::NoAdapter(e.to_string()))?;
        Self::from_adapter(adapter).await
    }

    pub async fn from_adapter(adapter: wgpu::Adapter) -> Result<Gpu> {
        let info = adapter.get_info();
        // TIMESTAMP_QUERY: the tuner times candidates on the GPU's own clock.
        let wanted = wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY;
        let features = adapter.features() & wanted;
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("featvis"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::RequestDevice(e.to_string()))?;
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        {
            let sink = uncaptured.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                log::error!("uncaptured GPU error: {e}");
                if let Ok(mut v) = sink.lock() {
                    v.push(e.to_string());
                }
            }));
        }
        let lost = Arc::new(Mutex::new(None));
        {
            let sink = lost.clone();
            device.set_device_lost_callback(move |reason, message| {
                let why = match reason {
                    wgpu::DeviceLostReason::Destroyed => "the device was destroyed".to_string(),
                    _ if message.is_empty() => "unknown reason".to_string(),
                    _ => message,
                };
                log::error!("GPU device lost: {why}");
                if let Ok(mut v) = sink.lock() {
                    *v = Some(why);
                }
            });
        }
        let adapter = AdapterSummary {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: [info.driver.as_str(), info.driver_info.as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join(" "),
        };
        let subgroup_size = if features.contains(wgpu::Features::SUBGROUP) && info.subgroup_min_size == info.subgroup_max_size {
            info.subgroup_min_size
        } else {
            0
        };
        let forced = Self::conv_config_from_env();
        let conv_forced = forced.is_some();
        let conv_default = Self::pick_conv_config(&info, &limits, subgroup_size);
        let conv_config = forced.unwrap_or(conv_default);
        Ok(Gpu {
            device,
            queue,
            adapter,
            limits,
            features,
            conv_config: Mutex::new(conv_config),
            conv_choices: Mutex::new(Default::default()),
            conv_forced,
            conv_default,
            allocated: std::sync::atomic::AtomicU64::new(0),
            subgroup_size,
            kernels: Mutex::new(HashMap::new()),
            uncaptured,
            lost,
        })
    }

    /// `FEATVIS_CONV=tiled` or `FEATVIS_CONV=register:PX,CO4,WG` overrides the
    /// schedule (for tuning on a new adapter; every schedule is tested).
    fn conv_config_from_env() -> Option<ConvConfig> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let v = std::env::var("FEATVIS_CONV").ok()?;
            let c = ConvConfig::parse(&v);
            if c.is_none() {
                eprintln!("featvis: FEATVIS_CONV={v} ignored; use {CONV_SPECS}");
            }
            c
        }
        #[cfg(target_arch = "wasm32")]
        None
    }

    fn pick_conv_config(info: &wgpu::AdapterInfo, limits: &wgpu::Limits, subgroup_size: u32) -> ConvConfig {
        let text = format!("{} {} {}", info.name, info.driver, info.driver_info).to_lowercase();
        // In a browser the adapter is not named; a CPU adapter there is SwiftShader.
        let browser_cpu = cfg!(target_arch = "wasm32") && info.device_type == wgpu::DeviceType::Cpu;
        if text.contains("swiftshader") || browser_cpu {
            ConvConfig::SWIFTSHADER_UNROLLED
        } else if text.contains("llvmpipe") && subgroup_size == 8 {
            ConvConfig::LLVMPIPE_SUBGROUPS
        } else if text.contains("llvmpipe") || info.device_type == wgpu::DeviceType::Cpu {
            ConvConfig::LLVMPIPE
        } else if limits.max_compute_invocations_per_workgroup >= 256 && limits.max_compute_workgroup_storage_size >= 16384 {
            ConvConfig::GPU_GEMM
        } else {
            ConvConfig::SWIFTSHADER
        }
    }

    /// The conv schedule new networks use.
    pub fn conv_config(&self) -> ConvConfig {
        self.conv_config.lock().map(|c| *c).unwrap_or(ConvConfig::LLVMPIPE)
    }

    /// Use another conv schedule for networks built from now on (see
    /// crate::tune for choosing one on this device).
    pub fn set_conv_config(&self, config: ConvConfig) {
        if let Ok(mut c) = self.conv_config.lock() {
            *c = config;
        }
    }

    /// The schedule of a conv layer of `shape` in networks built from now on:
    /// the one tuned for that shape on this device, else [`Gpu::conv_config`],
    /// with [`rows_for_width`] for generated rows ([`narrow_rows`] on layers
    /// at most 4 wide: a generated 8-pixel tile on a 4-pixel-wide layer
    /// computes half of it in vain, 1.5–1.8× slower on llvmpipe at 4×4 and
    /// 2×2; on SwiftShader 16-pixel rows at least 16 wide and 2×8 tiles
    /// 5–15 wide), and 32×32 GEMM tiles on GPUs' layers of at
    /// most 28×28. The parity tests cover each of these variants.
    pub fn conv_config_for(&self, shape: ConvShape) -> ConvConfig {
        if self.conv_forced {
            return self.conv_config();
        }
        if let Some(c) = self.conv_choices.lock().ok().and_then(|m| m.get(&shape).copied()) {
            return c;
        }
        match self.conv_config() {
            // CPU adapters, whatever schedule the page or tuning set: conv1_1
            // with its weights in the kernels (tuning per shape may choose otherwise).
            _ if [ConvConfig::SWIFTSHADER_UNROLLED, ConvConfig::LLVMPIPE_SUBGROUPS, ConvConfig::LLVMPIPE].contains(&self.conv_default)
                && crate::ops::conv_gen::Baked::fits(shape.cin, shape.cout) =>
            {
                ConvConfig::CPU_BAKED
            }
            c => Self::for_shape(c, shape),
        }
    }

    /// `config` on a layer of `shape`, as [`Gpu::conv_config_for`] adapts it.
    fn for_shape(config: ConvConfig, shape: ConvShape) -> ConvConfig {
        match config {
            ConvConfig::Unrolled(u) => rows_for_width(u, shape.width),
            // 64-pixel tiles give a 14×14 layer of 512 channels 32 workgroups
            // per image: too few to fill a GPU until tuning has timed it.
            ConvConfig::Gemm(g) if g.bm > 32 && shape.height * shape.width <= 28 * 28 => ConvConfig::GPU_GEMM_SMALL,
            c => c,
        }
    }

    /// The schedule of a layer of `shape` that a [`ConvConfig::Baked`]
    /// schedule does not fit (too many input channels): the adapter's own.
    pub fn unbaked_conv_config(&self, shape: ConvShape) -> ConvConfig {
        Self::for_shape(self.conv_default, shape)
    }

    /// Use `config` for conv layers of `shape` from now on.
    pub fn set_conv_choice(&self, shape: ConvShape, config: ConvConfig) {
        if let Ok(mut m) = self.conv_choices.lock() {
            m.insert(shape, config);
        }
    }

    /// The per-shape choices, in shape order.
    pub fn conv_choices(&self) -> Vec<(ConvShape, ConvConfig)> {
        self.conv_choices.lock().map(|m| m.iter().map(|(k, v)| (*k, *v)).collect()).unwrap_or_default()
    }

    /// Whether FEATVIS_CONV forces one schedule (tuning results are then not used).
    pub fn conv_forced(&self) -> bool {
        self.conv_forced
    }

    /// Why the device was lost (a driver reset, the browser reclaiming it,
    /// [`Gpu::lose`]), once it was: every later GPU call fails.
    pub fn lost(&self) -> Option<String> {
        self.lost.lock().ok().and_then(|v| v.clone())
    }

    /// Destroy the device, as a driver reset would (for testing what a
    /// caller does when the device is lost).
    pub fn lose(&self) {
        self.device.destroy();
    }

    /// Errors the device reported outside any error scope since the last call.
    pub fn take_uncaptured_errors(&self) -> Vec<String> {
        self.uncaptured.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }

    /// Largest buffer we may bind as one storage binding.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size)
    }

    /// Check that a storage buffer of `bytes` fits this device.
    pub fn check_binding(&self, what: &str, bytes: u64) -> Result<()> {
        let storage = self.limits.max_storage_buffer_binding_size;
        if bytes > storage {
            return Err(Error::Limit(LimitExceeded {
                what: what.to_string(),
                limit: "max_storage_buffer_binding_size",
                needed: bytes,
                allowed: storage,
            }));
        }
        if bytes > self.limits.max_buffer_size {
            return Err(Error::Limit(LimitExceeded {
                what: what.to_string(),
                limit: "max_buffer_size",
                needed: bytes,
                allowed: self.limits.max_buffer_size,
            }));
        }
        Ok(())
    }

    fn storage_usage() -> wgpu::BufferUsages {
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST
    }

    /// Bytes of every tensor and uniform buffer created on this device so
    /// far; buffers dropped since are still counted.
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count(&self, bytes: u64) {
        self.allocated.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// A zeroed tensor of `len` f32 values.
    pub fn tensor(&self, label: &str, len: usize) -> Result<Tensor> {
        let bytes = (len.max(1) * 4) as u64;
        self.check_binding(&format!("buffer `{label}` ({len} values)"), bytes)?;
        self.count(bytes);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: Self::storage_usage(),
            mapped_at_creation: false,
        });
        Ok(Tensor { buffer, len, label: label.to_string() })
    }

    /// A tensor holding `data`.
    pub fn tensor_from(&self, label: &str, data: &[f32]) -> Result<Tensor> {
        let bytes = (data.len().max(1) * 4) as u64;
        self.check_binding(&format!("buffer `{label}` ({} values)", data.len()), bytes)?;
        let contents: &[u8] = if data.is_empty() { &[0u8; 4] } else { bytemuck::cast_slice(data) };
        self.count(contents.len() as u64);
        // create_buffer + write_buffer, not a buffer mapped at creation: on a
        // lost device the browser throws from createBuffer(mappedAtCreation)
        // and wgpu would panic, where this way the loss is reported as an error.
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: contents.len() as u64,
            usage: Self::storage_usage(),
            mapped_at_creation: false,
        });
        self.queue.write_buffer(&buffer, 0, contents);
        Ok(Tensor { buffer, len: data.len(), label: label.to_string() })
    }

    /// A tensor with every value set to `value` (tests poison outputs with NaN).
    pub fn tensor_filled(&self, label: &str, len: usize, value: f32) -> Result<Tensor> {
        self.tensor_from(label, &vec![value; len])
    }

    pub fn write(&self, tensor: &Tensor, data: &[f32]) -> Result<()> {
        if data.len() > tensor.len {
            return Err(Error::Invalid(format!("writing {} values into `{}`, which holds {}", data.len(), tensor.label, tensor.len)));
        }
        self.queue.write_buffer(&tensor.buffer, 0, bytemuck::cast_slice(data));
        Ok(())
    }

    /// The compiled kernel for `spec`, from the cache or compiled now. A
    /// shader that fails validation gives [`Error::Validation`] naming it.
    pub async fn kernel(&self, spec: &KernelSpec<'_>) -> Result<Arc<Kernel>> {
        let mut constants = spec.constants.clone();
        constants.sort();
        let key =
            format!("{}::{}::{}", spec.shader, spec.entry, constants.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","));
        if let Some(k) = self.kernels.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(k);
        }
        let label = if constants.is_empty() {
            spec.entry.to_string()
        } else {
            format!("{} [{}]", spec.entry, constants.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
        };
        let source = specialize(spec.shader, spec.source, &constants)?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        // Bounds checks stay on; the loop-bounding counters naga adds to every
        // loop are dropped: every loop in shaders/ has a fixed or uniform trip
        // count, and the counters cost ~10% on llvmpipe.
        let checks = wgpu::ShaderRuntimeChecks { force_loop_bounding: false, ..wgpu::ShaderRuntimeChecks::checked() };
        // SAFETY: only the loop-bounding check is disabled (see above);
        // out-of-bounds indexing is still clamped.
        let module = unsafe {
            self.device.create_shader_module_trusted(
                wgpu::ShaderModuleDescriptor { label: Some(spec.shader), source: wgpu::ShaderSource::Wgsl(source.into()) },
                checks,
            )
        };
        let entries: Vec<wgpu::BindGroupLayoutEntry> = spec
            .bindings
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match b {
                    Binding::Uniform => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Binding::Read => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: true },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Binding::ReadWrite => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: false },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                },
                count: None,
            })
            .collect();
        let layout = self.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(&label), entries: &entries });
        let pipeline_layout = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(&label),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(spec.entry),
            compilation_options: wgpu::PipelineCompilationOptions { constants: &[], zero_initialize_workgroup_memory: false },
            cache: None,
        });
        if let Some(e) = scope.pop().await {
            return Err(Error::from_wgpu(&label, e));
        }
        let kernel =
            Arc::new(Kernel { name: label, pipeline, layout, bindings: spec.bindings.to_vec(), workgroup_size: spec.workgroup_size });
        if let Ok(mut m) = self.kernels.lock() {
            m.insert(key, kernel.clone());
        }
        Ok(kernel)
    }

    /// Workgroup counts for `groups` workgroups, split over x and y so that
    /// neither exceeds the per-dimension limit. Kernels linearize
    /// `wg.x + wg.y * num_workgroups.x` and skip ids past the end.
    pub fn split_workgroups(&self, groups: u64) -> Result<[u32; 3]> {
        let max = self.limits.max_compute_workgroups_per_dimension.max(1) as u64;
        let groups = groups.max(1);
        let x = groups.min(max);
        let y = groups.div_ceil(x);
        if y > max {
            return Err(Error::Limit(LimitExceeded {
                what: format!("a dispatch of {groups} workgroups"),
                limit: "max_compute_workgroups_per_dimension (squared)",
                needed: groups,
                allowed: max * max,
            }));
        }
        Ok([x as u32, y as u32, 1])
    }

    /// Prepare a dispatch of `kernel` over `invocations` invocations, with
    /// `uniform` (a bytemuck struct) at binding 0 when the kernel has one and
    /// `buffers` at the following bindings.
    pub async fn dispatch(
        &self,
        kernel: &Arc<Kernel>,
        uniform: Option<&[u8]>,
        buffers: &[&wgpu::Buffer],
        invocations: u64,
    ) -> Result<Dispatch> {
        let groups = invocations.div_ceil(kernel.workgroup_size.max(1) as u64);
        let workgroups = self.split_workgroups(groups)?;
        self.dispatch_groups(kernel, uniform, buffers, workgroups).await
    }

    /// Like [`Gpu::dispatch`] with explicit workgroup counts.
    pub async fn dispatch_groups(
        &self,
        kernel: &Arc<Kernel>,
        uniform: Option<&[u8]>,
        buffers: &[&wgpu::Buffer],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        let has_uniform = kernel.bindings.first() == Some(&Binding::Uniform);
        let expected = kernel.bindings.len() - usize::from(has_uniform);
        if buffers.len() != expected || has_uniform != uniform.is_some() {
            return Err(Error::Invalid(format!(
                "kernel `{}` takes {} buffers{}, given {}{}",
                kernel.name,
                expected,
                if has_uniform { " and a uniform" } else { "" },
                buffers.len(),
                if uniform.is_some() { " and a uniform" } else { "" }
            )));
        }
        for (i, (b, kind)) in buffers.iter().zip(kernel.bindings.iter().skip(usize::from(has_uniform))).enumerate() {
            if *kind != Binding::Uniform {
                self.check_binding(&format!("binding {i} of kernel `{}`", kernel.name), b.size())?;
            }
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let uniform_buffer = uniform.map(|u| {
            self.count(u.len() as u64);
            // Not mapped at creation: see tensor_from.
            let b = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(&kernel.name),
                size: u.len() as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            self.queue.write_buffer(&b, 0, u);
            b
        });
        let mut entries = Vec::new();
        if let Some(u) = &uniform_buffer {
            entries.push(wgpu::BindGroupEntry { binding: 0, resource: u.as_entire_binding() });
        }
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry { binding: (i + usize::from(has_uniform)) as u32, resource: b.as_entire_binding() });
        }
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&kernel.name),
            layout: &kernel.layout,
            entries: &entries,
        });
        if let Some(e) = scope.pop().await {
            return Err(Error::from_wgpu(&kernel.name, e));
        }
        Ok(Dispatch { kernel: kernel.clone(), bind_group, workgroups, _uniform: uniform_buffer })
    }

    /// Record `dispatches` into one compute pass of one encoder and submit
    /// once. Validation errors name the kernels involved.
    pub async fn run(&self, what: &str, dispatches: &[&Dispatch]) -> Result<()> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(what) });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(what), timestamp_writes: None });
            for d in dispatches {
                d.record(&mut pass);
            }
        }
        self.queue.submit([encoder.finish()]);
        let names = || dispatches.iter().map(|d| d.kernel.name.as_str()).collect::<Vec<_>>().join(", ");
        let validation = scope.pop().await;
        let memory = oom.pop().await;
        if let Some(e) = validation.or(memory) {
            return Err(Error::from_wgpu(&format!("{what} [{}]", names()), e));
        }
        Ok(())
    }

    /// Whether [`Gpu::time_on_device`] can time work on the GPU's own clock.
    pub fn has_timestamps(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Milliseconds the GPU spent on `dispatches` (one compute pass, one
    /// submit), from timestamp queries written at the pass's start and end:
    /// no submit, wait or readback cost in it. `None` where the device has
    /// no timestamp queries (time it with a wall clock instead).
    pub async fn time_on_device(&self, what: &str, dispatches: &[&Dispatch]) -> Result<Option<f64>> {
        if !self.has_timestamps() {
            return Ok(None);
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let queries = self.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some(&format!("{what} timestamps")),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let resolved = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(&format!("{what} timestamps")),
            size: 16,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(&format!("{what} timestamps readback")),
            size: 16,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(what) });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(what),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &queries,
                    beginning_of_pass_write_index: Some(0),
                    end_of_pass_write_index: Some(1),
                }),
            });
            for d in dispatches {
                d.record(&mut pass);
            }
        }
        encoder.resolve_query_set(&queries, 0..2, &resolved, 0);
        encoder.copy_buffer_to_buffer(&resolved, 0, &staging, 0, 16);
        self.queue.submit([encoder.finish()]);
        if let Some(e) = scope.pop().await {
            return Err(Error::from_wgpu(what, e));
        }
        let ticks: [u64; 2] = self.map_read(&staging, &format!("{what} timestamps"), bytemuck::pod_read_unaligned).await?;
        let ns = ticks[1].saturating_sub(ticks[0]) as f64 * self.queue.get_timestamp_period() as f64;
        Ok(Some(ns / 1e6))
    }

    /// Wait until the GPU has finished all submitted work.
    pub async fn finish(&self) -> Result<()> {
        let probe = self.tensor("finish probe", 1)?;
        self.read(&probe).await.map(|_| ())
    }

    /// Wait until the GPU has finished all submitted work, without a
    /// readback (natively: a blocking poll; in a browser: the queue's
    /// onSubmittedWorkDone promise). Errors the device raised meanwhile
    /// outside every scope are reported.
    pub async fn sync(&self) -> Result<()> {
        let (tx, rx) = futures_channel::oneshot::channel();
        self.queue.on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Readback { buffer: "(queue)".into(), message: e.to_string() })?;
        rx.await.map_err(|_| Error::Readback { buffer: "(queue)".into(), message: "the device was lost".into() })?;
        let uncaptured = self.take_uncaptured_errors();
        if !uncaptured.is_empty() {
            return Err(Error::Readback {
                buffer: "(queue)".into(),
                message: format!("the device reported an error: {}", uncaptured.join("; ")),
            });
        }
        Ok(())
    }

    /// Map `staging` (MAP_READ, its copy already submitted), wait for it and
    /// hand its bytes to `take`; `label` names it in errors.
    async fn map_read<T>(&self, staging: &wgpu::Buffer, label: &str, take: impl FnOnce(&[u8]) -> T) -> Result<T> {
        let err = |message: String| Error::Readback { buffer: label.to_string(), message };
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| err(e.to_string()))?;
        rx.await.map_err(|_| err("the device was lost".into()))?.map_err(|e| err(e.to_string()))?;
        let out = take(&staging.slice(..).get_mapped_range().map_err(|e| err(e.to_string()))?);
        staging.unmap();
        Ok(out)
    }

    /// Copy a tensor back to the CPU.
    pub async fn read(&self, tensor: &Tensor) -> Result<Vec<f32>> {
        let bytes = (tensor.len * 4) as u64;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(&format!("readback {}", tensor.label)),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder =
            self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(&format!("readback {}", tensor.label)) });
        encoder.copy_buffer_to_buffer(&tensor.buffer, 0, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        let data: Vec<f32> = self.map_read(&staging, &tensor.label, bytemuck::pod_collect_to_vec).await?;
        // An error the device raised outside every error scope (a buffer the
        // driver could not allocate, say) may have left this data stale:
        // report it instead of returning a picture that silently is wrong.
        let uncaptured = self.take_uncaptured_errors();
        if !uncaptured.is_empty() {
            return Err(Error::Readback {
                buffer: tensor.label.clone(),
                message: format!("the device reported an error earlier: {}", uncaptured.join("; ")),
            });
        }
        Ok(data)
    }
}
