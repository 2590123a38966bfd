//! VGG16: the layer table, weights on the CPU and the GPU, and a [`Network`]
//! that runs forward up to any named layer and backward from it to the input
//! image, as dispatches prepared once and recorded per step.
//!
//! Storage: conv and fc outputs are kept before their ReLU (consumers apply
//! it on load, and the backward pass uses them as ReLU masks); pool outputs
//! are after it. All gradients are with respect to those stored values.

use crate::error::{Error, Result};
use crate::gpu::{ConvConfig, ConvShape, Dispatch, Gpu, Tensor};
use crate::objective::{Objective, Plan};
use crate::ops::conv::{self, ConvWeights};
use crate::ops::fc::{self, FcWeights};
use crate::ops::objective::{self, Diversity, ObjSpec, Phase, Specs, Target};
use crate::ops::pool;
use crate::ops::Shape;
use crate::rng::Rng;

/// (name, input channels, output channels) of the 13 conv layers.
pub const CONVS: [(&str, usize, usize); 13] = [
    ("conv1_1", 3, 64),
    ("conv1_2", 64, 64),
    ("conv2_1", 64, 128),
    ("conv2_2", 128, 128),
    ("conv3_1", 128, 256),
    ("conv3_2", 256, 256),
    ("conv3_3", 256, 256),
    ("conv4_1", 256, 512),
    ("conv4_2", 512, 512),
    ("conv4_3", 512, 512),
    ("conv5_1", 512, 512),
    ("conv5_2", 512, 512),
    ("conv5_3", 512, 512),
];

/// Conv layers followed by a 2×2 max pool (pool1 … pool5).
const POOLED: [usize; 5] = [1, 3, 6, 9, 12];

/// fc6 sees pool5 (resized to 7×7 by adaptive average pooling when the image is not 224).
pub const FC_INPUT_HW: usize = 7;
pub const FC6_INPUTS: usize = FC_INPUT_HW * FC_INPUT_HW * 512;

/// One step of the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    /// Index into [`CONVS`].
    Conv(usize),
    /// pool1 … pool5 (1-based).
    Pool(usize),
    /// torchvision's adaptive average pool of pool5 to 7×7 (only for fc inputs).
    AvgPool,
    /// fc6, fc7, fc8 (0, 1, 2).
    Fc(usize),
}

/// The nodes in order, with their names.
pub fn nodes(has_fc: bool) -> Vec<(String, Node)> {
    let mut out = Vec::new();
    for (i, (name, _, _)) in CONVS.iter().enumerate() {
        out.push((name.to_string(), Node::Conv(i)));
        if let Some(p) = POOLED.iter().position(|&c| c == i) {
            out.push((format!("pool{}", p + 1), Node::Pool(p + 1)));
        }
    }
    if has_fc {
        out.push(("avgpool".to_string(), Node::AvgPool));
        for i in 0..3 {
            out.push((format!("fc{}", i + 6), Node::Fc(i)));
        }
    }
    out
}

/// A layer an objective can target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetLayer {
    /// The name as given (`conv4_3`, `conv4_3_pre_relu`, `pool4`, `fc8`).
    pub name: String,
    /// Index into [`nodes`].
    pub node: usize,
    /// Whether the objective sees the value after the ReLU.
    pub post_relu: bool,
}

/// Every name [`resolve`] accepts.
pub fn layer_names(has_fc: bool) -> Vec<String> {
    let mut out = Vec::new();
    for (name, node) in nodes(has_fc) {
        match node {
            Node::Conv(_) => {
                out.push(name.clone());
                out.push(format!("{name}_pre_relu"));
            }
            Node::Pool(_) => out.push(name),
            Node::AvgPool => {}
            Node::Fc(i) => {
                out.push(name.clone());
                if i < 2 {
                    out.push(format!("{name}_pre_relu"));
                }
            }
        }
    }
    out
}

/// Resolve a layer name. A plain name means the activation after the ReLU
/// (as Keras's layer output); `_pre_relu` the value before it. fc8 is the logits.
pub fn resolve(name: &str, has_fc: bool) -> Result<TargetLayer> {
    let (base, pre) = match name.strip_suffix("_pre_relu") {
        Some(b) => (b, true),
        None => (name, false),
    };
    let list = nodes(has_fc);
    let found = list.iter().position(|(n, node)| n == base && *node != Node::AvgPool);
    let unknown = || {
        let mut msg = layer_names(has_fc).join(", ");
        if !has_fc && base.starts_with("fc") {
            msg.push_str(" (fc6–fc8 need weights that include the classifier head)");
        }
        Error::UnknownLayer { name: name.to_string(), known: msg }
    };
    let node = found.ok_or_else(unknown)?;
    let post_relu = match list[node].1 {
        Node::Conv(_) => !pre,
        Node::Pool(_) if pre => return Err(unknown()),
        Node::Pool(_) => false, // already after the ReLU
        Node::Fc(2) if pre => return Err(unknown()),
        Node::Fc(i) => i < 2 && !pre,
        Node::AvgPool => return Err(unknown()),
    };
    Ok(TargetLayer { name: name.to_string(), node, post_relu })
}

/// The smallest image side that reaches `target` (each 2×2 pool needs at least 2 pixels).
pub fn min_size(target: &TargetLayer, has_fc: bool) -> usize {
    let pools = nodes(has_fc)[..target.node].iter().filter(|(_, n)| matches!(n, Node::Pool(_))).count();
    let pools_incl = pools + usize::from(matches!(nodes(has_fc)[target.node].1, Node::Pool(_)));
    1usize << pools_incl
}

/// Output shape of every node for an input of (B, H, W, 3), up to `last`.
pub fn shapes(batch: usize, height: usize, width: usize, has_fc: bool, classes: usize) -> Vec<Shape> {
    let mut s = Shape::new(batch, height, width, 3);
    let mut out = Vec::new();
    for (_, node) in nodes(has_fc) {
        s = match node {
            Node::Conv(i) => Shape { channels: CONVS[i].2, ..s },
            Node::Pool(_) => pool::maxpool_shape(s),
            Node::AvgPool => Shape { height: FC_INPUT_HW, width: FC_INPUT_HW, ..s },
            Node::Fc(i) => Shape::new(batch, 1, 1, [4096, 4096, classes][i]),
        };
        out.push(s);
    }
    out
}

/// One conv layer's weights on the CPU: HWIO (3, 3, cin, cout) and bias.
#[derive(Clone, Debug)]
pub struct ConvTensor {
    pub w_hwio: Vec<f32>,
    pub bias: Vec<f32>,
}

/// One fc layer's weights on the CPU: (inputs, outputs) and bias. fc6's
/// inputs are ordered as the NHWC flattening of pool5: (y, x, channel).
#[derive(Clone, Debug)]
pub struct FcTensor {
    pub inputs: usize,
    pub outputs: usize,
    pub w_io: Vec<f32>,
    pub bias: Vec<f32>,
}

/// VGG16's weights on the CPU.
#[derive(Clone, Debug)]
pub struct Vgg16Weights {
    pub convs: Vec<ConvTensor>,
    /// Empty, or fc6, fc7, fc8.
    pub fcs: Vec<FcTensor>,
}

impl Vgg16Weights {
    /// Random weights with He scaling (activations stay finite through all
    /// 13 layers); small random biases. `classes` adds fc6–fc8.
    pub fn random(seed: u64, classes: Option<usize>) -> Self {
        let mut rng = Rng::new(seed);
        let convs = CONVS
            .iter()
            .map(|&(_, cin, cout)| ConvTensor {
                w_hwio: rng.normal_vec(9 * cin * cout, (2.0 / (9 * cin) as f64).sqrt()),
                bias: rng.normal_vec(cout, 0.01),
            })
            .collect();
        let fcs = match classes {
            None => Vec::new(),
            Some(k) => [(FC6_INPUTS, 4096), (4096, 4096), (4096, k)]
                .iter()
                .map(|&(i, o)| FcTensor {
                    inputs: i,
                    outputs: o,
                    w_io: rng.normal_vec(i * o, (2.0 / i as f64).sqrt()),
                    bias: rng.normal_vec(o, 0.01),
                })
                .collect(),
        };
        Vgg16Weights { convs, fcs }
    }

    pub fn classes(&self) -> Option<usize> {
        self.fcs.get(2).map(|f| f.outputs)
    }

    /// Check layer count and shapes.
    pub fn validate(&self) -> Result<()> {
        if self.convs.len() != CONVS.len() {
            return Err(Error::Invalid(format!("VGG16 has 13 conv layers, these weights have {}", self.convs.len())));
        }
        for (t, &(name, cin, cout)) in self.convs.iter().zip(CONVS.iter()) {
            if t.w_hwio.len() != 9 * cin * cout || t.bias.len() != cout {
                return Err(Error::Invalid(format!(
                    "{name}: expected a 3x3x{cin}x{cout} kernel and {cout} biases, got {} and {} values",
                    t.w_hwio.len(),
                    t.bias.len()
                )));
            }
        }
        if !self.fcs.is_empty() {
            let expect = [(FC6_INPUTS, 4096), (4096, 4096)];
            if self.fcs.len() != 3 {
                return Err(Error::Invalid(format!(
                    "the classifier head has fc6, fc7, fc8; these weights have {} fc layers",
                    self.fcs.len()
                )));
            }
            for (i, f) in self.fcs.iter().enumerate() {
                let ok_shape = if i < 2 { (f.inputs, f.outputs) == expect[i] } else { f.inputs == 4096 && f.outputs > 0 };
                if !ok_shape || f.w_io.len() != f.inputs * f.outputs || f.bias.len() != f.outputs {
                    return Err(Error::Invalid(format!("fc{}: unexpected shape {}x{}", i + 6, f.inputs, f.outputs)));
                }
            }
        }
        Ok(())
    }
}

/// VGG16's weights on the GPU, shared by every network built from them.
pub struct Vgg16 {
    pub convs: Vec<ConvWeights>,
    pub fcs: Vec<FcWeights>,
}

impl Vgg16 {
    pub fn upload(gpu: &Gpu, w: &Vgg16Weights) -> Result<Vgg16> {
        w.validate()?;
        let convs = w
            .convs
            .iter()
            .zip(CONVS.iter())
            .map(|(t, &(name, cin, cout))| ConvWeights::new(gpu, name, cin, cout, &t.w_hwio, &t.bias))
            .collect::<Result<Vec<_>>>()?;
        let fcs = w
            .fcs
            .iter()
            .enumerate()
            .map(|(i, f)| FcWeights::new(gpu, &format!("fc{}", i + 6), f.inputs, f.outputs, &f.w_io, &f.bias, None))
            .collect::<Result<Vec<_>>>()?;
        Ok(Vgg16 { convs, fcs })
    }

    /// [`Vgg16::upload`], one layer at a time, awaiting `pause()` between
    /// layers: in a browser `pause` yields to the event loop, so loading the
    /// weights never holds the page's main thread for more than one layer.
    pub async fn upload_paced<F, Fut>(gpu: &Gpu, w: &Vgg16Weights, mut pause: F) -> Result<Vgg16>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        w.validate()?;
        pause().await;
        let mut convs = Vec::with_capacity(w.convs.len());
        for (t, &(name, cin, cout)) in w.convs.iter().zip(CONVS.iter()) {
            convs.push(ConvWeights::new(gpu, name, cin, cout, &t.w_hwio, &t.bias)?);
            pause().await;
        }
        let mut fcs = Vec::with_capacity(w.fcs.len());
        for (i, f) in w.fcs.iter().enumerate() {
            fcs.push(FcWeights::new(gpu, &format!("fc{}", i + 6), f.inputs, f.outputs, &f.w_io, &f.bias, None)?);
            pause().await;
        }
        Ok(Vgg16 { convs, fcs })
    }

    pub fn has_fc(&self) -> bool {
        !self.fcs.is_empty()
    }

    pub fn classes(&self) -> usize {
        self.fcs.get(2).map(|f| f.outputs).unwrap_or(0)
    }
}

/// One node's output on the GPU.
pub struct Activation {
    pub name: String,
    pub node: Node,
    pub shape: Shape,
    pub tensor: Tensor,
}

/// Where each term's value lands in the values buffer (4 floats per slot).
#[derive(Clone, Debug, Default)]
pub struct ValueLayout {
    /// Per plan layer: first slot (spec k, image b at `first + k * B + b`)
    /// and each spec's per-image factor.
    pub layers: Vec<(usize, Vec<f32>)>,
    /// First slot of each diversity term's per-image shares.
    pub diversity: Vec<usize>,
    /// First slot of the image regularizers' per-image values.
    pub image: usize,
    /// Slots in all.
    pub slots: usize,
}

/// An objective's value as the GPU computed it.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectiveValues {
    pub total: f64,
    /// Each image's own value (see [`crate::reference::ObjectiveRef`]).
    pub per_image: Vec<f64>,
}

impl ValueLayout {
    pub fn decode(&self, batch: usize, raw: &[f32]) -> ObjectiveValues {
        let slot = |i: usize| raw.get(4 * i).copied().unwrap_or(0.0) as f64;
        let mut total = 0.0;
        let mut per_image = vec![0.0; batch];
        for (first, factors) in &self.layers {
            for (k, f) in factors.iter().enumerate() {
                for (b, p) in per_image.iter_mut().enumerate() {
                    let v = slot(first + k * batch + b);
                    total += v;
                    *p += v * *f as f64;
                }
            }
        }
        for first in self.diversity.iter().chain(std::iter::once(&self.image)) {
            for (b, p) in per_image.iter_mut().enumerate() {
                let v = slot(first + b);
                total += v;
                *p += v;
            }
        }
        ObjectiveValues { total, per_image }
    }
}

/// VGG16 on a batch of B images of H×W, forward to the deepest layer an
/// objective reads, the objective's values, and backward from every layer
/// it reads to the input, prepared once. Two backward passes are prepared:
/// the plain one and the one with Lucid's redirected ReLU gradient.
pub struct Network {
    /// Each conv layer's schedule, in network order.
    pub schedules: Vec<(String, ConvConfig)>,
    /// The deepest layer the objective reads.
    pub target: TargetLayer,
    pub plan: Plan,
    /// Preprocessed input images (B, H, W, 4): channels 0–2, the fourth zero.
    pub input: Tensor,
    pub input_shape: Shape,
    /// Outputs of every node up to the target.
    pub acts: Vec<Activation>,
    /// Gradient of the objective with respect to `input`.
    pub grad_input: Tensor,
    /// Objective values (see [`ValueLayout`]); room after the slots for the
    /// diversity coefficients.
    pub values: Tensor,
    pub layout: ValueLayout,
    specs: Vec<Specs>,
    // Buffers the dispatches bind.
    _grads: [Tensor; 2],
    _flags: Tensor,
    _diversity: Vec<Option<Diversity>>,
    forward: Vec<Dispatch>,
    value: Vec<Dispatch>,
    backward: Vec<Dispatch>,
    backward_redirect: Vec<Dispatch>,
    /// Index in `backward` of each node's own backward dispatch.
    node_backward: Vec<std::ops::Range<usize>>,
}

impl Network {
    /// A network whose objective is one term per image at layer `target`
    /// (see [`resolve`]), set with [`Network::set_objectives`].
    pub async fn new(gpu: &Gpu, model: &Vgg16, batch: usize, height: usize, width: usize, target: &str) -> Result<Network> {
        Self::with_config(gpu, model, None, batch, height, width, target).await
    }

    /// As [`Network::new`]; `config`: one schedule for every conv layer, or
    /// None for the device's choice per layer shape ([`Gpu::conv_config_for`]).
    pub async fn with_config(
        gpu: &Gpu,
        model: &Vgg16,
        config: Option<ConvConfig>,
        batch: usize,
        height: usize,
        width: usize,
        target: &str,
    ) -> Result<Network> {
        let has_fc = model.has_fc();
        let objective = Objective::per_image((0..batch.max(1)).map(|_| Objective::channel(target, 0)).collect())?;
        let plan = crate::objective::plan(&objective, batch, height, width, has_fc, model.classes())?;
        let mut net = Self::with_plan(gpu, model, config, height, width, plan).await?;
        net.target = resolve(target, has_fc)?;
        Ok(net)
    }

    /// The schedule of `layer` (a conv layer of the network).
    pub fn schedule(&self, layer: &str) -> Option<ConvConfig> {
        self.schedules.iter().find(|(n, _)| n == layer).map(|(_, c)| *c)
    }

    /// A network for an objective resolved with [`crate::objective::plan`];
    /// `config` as in [`Network::with_config`].
    pub async fn with_plan(
        gpu: &Gpu,
        model: &Vgg16,
        config: Option<ConvConfig>,
        height: usize,
        width: usize,
        plan: Plan,
    ) -> Result<Network> {
        let has_fc = model.has_fc();
        let batch = plan.batch;
        if batch == 0 {
            return Err(Error::Invalid("batch must be at least 1".into()));
        }
        let deepest = plan
            .deepest()
            .ok_or_else(|| Error::Invalid("the objective reads no layer of the network: add a term such as `conv4_3:12`".into()))?;
        let list = nodes(has_fc);
        let target = resolve(&list[deepest].0, has_fc)?;
        let need = min_size(&target, has_fc);
        if height < need || width < need {
            return Err(Error::Invalid(format!(
                "a {width}x{height} image is too small for layer `{}`: it needs at least {need}x{need} pixels",
                target.name
            )));
        }
        let all_shapes = shapes(batch, height, width, has_fc, model.classes());
        let input_shape = Shape::new(batch, height, width, 3);
        // Check every buffer against the device before computing any length
        // (on wasm32 the lengths themselves could overflow).
        gpu.check_binding(&format!("input image ({input_shape})"), input_shape.padded_bytes())?;
        for ((name, _), shape) in list.iter().zip(&all_shapes).take(deepest + 1) {
            gpu.check_binding(&format!("{name} output ({shape})"), shape.padded_bytes())?;
        }
        let input = gpu.tensor("input image", input_shape.padded_len())?;
        let grad_input = gpu.tensor("input gradient", input_shape.padded_len())?;

        let mut acts: Vec<Activation> = Vec::new();
        let mut forward = Vec::new();
        let mut schedules: Vec<(String, ConvConfig)> = Vec::new();
        let mut max_len = input_shape.padded_len();
        for (i, (name, node)) in list.iter().enumerate().take(deepest + 1) {
            let shape = all_shapes[i];
            let tensor = gpu.tensor(&format!("{name} output ({shape})"), shape.padded_len())?;
            max_len = max_len.max(shape.padded_len());
            let (prev, prev_shape, prev_node) = match acts.last() {
                Some(a) => (&a.tensor, a.shape, Some(a.node)),
                None => (&input, input_shape, None),
            };
            match *node {
                Node::Conv(c) => {
                    // A conv reads relu(previous conv); pool outputs and the image as they are.
                    let relu = matches!(prev_node, Some(Node::Conv(_)));
                    let w = &model.convs[c];
                    let cs = ConvShape { height: prev_shape.height, width: prev_shape.width, cin: w.cin, cout: w.cout };
                    let config = config.unwrap_or_else(|| gpu.conv_config_for(cs));
                    schedules.push((name.to_string(), config));
                    forward.push(conv::forward(gpu, config, w, prev_shape, prev, &tensor, relu).await?);
                }
                Node::Pool(_) => forward.push(pool::maxpool_forward(gpu, name, prev_shape, prev, &tensor).await?),
                Node::AvgPool => {
                    forward.push(pool::adaptive_avgpool_forward(gpu, prev_shape, FC_INPUT_HW, FC_INPUT_HW, prev, &tensor).await?)
                }
                Node::Fc(f) => {
                    let relu = matches!(prev_node, Some(Node::Fc(_)));
                    forward.extend(fc::forward(gpu, &model.fcs[f], batch, prev, &tensor, relu).await?);
                }
            }
            acts.push(Activation { name: name.clone(), node: *node, shape, tensor });
        }

        // The values buffer: per-spec slots, diversity shares, image
        // regularizers, then the diversity coefficients.
        let mut layout = ValueLayout::default();
        let mut slots = 0;
        for l in &plan.layers {
            layout.layers.push((slots, l.per_image.clone()));
            slots += l.specs.len() * batch;
        }
        for l in &plan.layers {
            if l.diversity.is_some() {
                layout.diversity.push(slots);
                slots += batch;
            }
        }
        layout.image = slots;
        slots += batch;
        layout.slots = slots;
        let n_div = layout.diversity.len();
        let values = gpu.tensor("objective values", slots * 4 + n_div * Diversity::coef_len(batch))?;

        let grads = [gpu.tensor("gradient A", max_len)?, gpu.tensor("gradient B", max_len)?];
        let mut specs = Vec::new();
        let mut value = Vec::new();
        let mut diversity = Vec::new();
        for (li, l) in plan.layers.iter().enumerate() {
            let sp = Specs::new(gpu, &l.name, l.specs.len(), l.vectors.len())?;
            sp.write(gpu, &l.specs, &l.vectors)?;
            let z = &acts[l.node].tensor;
            if !l.specs.is_empty() {
                value.push(objective::value(gpu, l.shape, &sp, z, &values, layout.layers[li].0).await?);
            }
            specs.push(sp);
        }
        // Which gradient buffer holds node i's gradient (ping-pong from the deepest).
        let buf = |i: usize| (deepest - i) % 2;
        let mut div_slot = 0;
        for l in &plan.layers {
            if let Some((w, post)) = l.diversity {
                let coef = slots * 4 + div_slot * Diversity::coef_len(batch);
                let mut d = Diversity::new(
                    gpu,
                    l.shape,
                    w,
                    post,
                    &acts[l.node].tensor,
                    &grads[buf(l.node)],
                    &values,
                    layout.diversity[div_slot],
                    coef,
                )
                .await?;
                value.append(&mut d.value);
                diversity.push(Some(d));
                div_slot += 1;
            } else {
                diversity.push(None);
            }
        }

        let sites: Vec<usize> = (0..=deepest).filter(|&i| crate::objective::has_relu(acts[i].node)).collect();
        let flags = gpu.tensor("redirected ReLU flags", (sites.len() * batch).max(4))?;
        let mut backward = Vec::new();
        let mut redirect = vec![objective::relu_flags_clear(gpu, &flags, (sites.len() * batch).max(1)).await?];
        let mut node_backward = vec![0..0; deepest + 1];
        for i in (0..=deepest).rev() {
            let a = &acts[i];
            let g = &grads[buf(i)];
            let first = i == deepest;
            let li = plan.layers.iter().position(|l| l.node == i);
            let relu = crate::objective::has_relu(a.node);
            let site = sites.iter().position(|&s| s == i).unwrap_or(0) * batch;
            if let Some(li) = li {
                let l = &plan.layers[li];
                let sp = &specs[li];
                let (mut dgrad, mut dunmasked) = match diversity[li].as_mut() {
                    Some(d) => (std::mem::take(&mut d.grad), std::mem::take(&mut d.grad_unmasked)),
                    None => (Vec::new(), Vec::new()),
                };
                let div_post = l.diversity.is_some_and(|d| d.1);
                let post_terms = div_post || l.specs.iter().any(|s| s.post_relu != 0);
                backward.push(objective::seed(gpu, a.shape, sp, &a.tensor, g, Phase::All, !first).await?);
                backward.append(&mut dgrad);
                if relu && (post_terms || !first) {
                    // Gradient with respect to relu(z): what comes from above
                    // and the after-ReLU terms; then the redirected ReLU; then
                    // the before-ReLU terms.
                    redirect.push(objective::seed(gpu, a.shape, sp, &a.tensor, g, Phase::PostUnmasked, !first).await?);
                    if div_post {
                        redirect.append(&mut dunmasked);
                    }
                    redirect.extend(objective::relu_redirect(gpu, a.shape, &a.tensor, &flags, site, g).await?);
                    redirect.push(objective::seed(gpu, a.shape, sp, &a.tensor, g, Phase::Pre, true).await?);
                    redirect.append(&mut dunmasked);
                } else {
                    redirect.push(objective::seed(gpu, a.shape, sp, &a.tensor, g, Phase::All, !first).await?);
                    redirect.append(&mut dunmasked);
                }
            } else if relu {
                redirect.extend(objective::relu_redirect(gpu, a.shape, &a.tensor, &flags, site, g).await?);
            }
            // Node i's own backward, to node i - 1 (or the input).
            let (prev, prev_shape, prev_node) =
                if i == 0 { (&input, input_shape, None) } else { (&acts[i - 1].tensor, acts[i - 1].shape, Some(acts[i - 1].node)) };
            let prev_relu = prev_node.is_some_and(crate::objective::has_relu);
            let dst = if i == 0 { &grad_input } else { &grads[buf(i - 1)] };
            let start = backward.len();
            for masked in [true, false] {
                let mask = masked && prev_relu;
                let out = if masked { &mut backward } else { &mut redirect };
                match a.node {
                    Node::Conv(c) => {
                        let config = schedules.iter().find(|(n, _)| *n == a.name).map(|(_, c)| *c).unwrap_or_else(|| gpu.conv_config());
                        out.extend(conv::backward_input(gpu, config, &model.convs[c], prev_shape, g, dst, mask.then_some(prev)).await?)
                    }
                    Node::Pool(_) => out.push(pool::maxpool_backward(gpu, &a.name, prev_shape, prev, g, dst, mask).await?),
                    Node::AvgPool => out.push(pool::adaptive_avgpool_backward(gpu, prev_shape, FC_INPUT_HW, FC_INPUT_HW, g, dst).await?),
                    Node::Fc(f) => out.extend(fc::backward_input(gpu, &model.fcs[f], batch, g, dst, mask.then_some(prev)).await?),
                }
            }
            node_backward[i] = start..backward.len();
        }
        Ok(Network {
            schedules,
            target,
            plan,
            input,
            input_shape,
            acts,
            grad_input,
            values,
            layout,
            specs,
            _grads: grads,
            _flags: flags,
            _diversity: diversity,
            forward,
            value,
            backward,
            backward_redirect: redirect,
            node_backward,
        })
    }

    /// Shape of the target layer's output.
    pub fn target_shape(&self) -> Shape {
        self.acts[self.target.node].shape
    }

    /// Set each image's objective at the deepest layer, one term per batch
    /// image (for networks made with [`Network::new`]).
    pub fn set_objectives(&self, gpu: &Gpu, targets: &[(Target, f32)]) -> Result<()> {
        let shape = self.target_shape();
        if targets.len() != shape.batch {
            return Err(Error::Invalid(format!("{} objectives for a batch of {}", targets.len(), shape.batch)));
        }
        let li = self.plan.layers.len() - 1;
        let l = &self.plan.layers[li];
        if l.specs.len() != shape.batch || l.diversity.is_some() || l.specs.iter().enumerate().any(|(b, s)| s.batch as usize != b) {
            return Err(Error::Invalid("set_objectives needs a network made for one term per image (Network::new)".into()));
        }
        let specs: Vec<ObjSpec> = targets
            .iter()
            .enumerate()
            .map(|(b, (t, w))| t.spec(&self.target.name, shape, b, *w, self.target.post_relu))
            .collect::<Result<_>>()?;
        self.specs[li].write(gpu, &specs, &[])
    }

    /// Upload preprocessed images, unpadded NHWC (B, H, W, 3).
    pub fn set_input(&self, gpu: &Gpu, images: &[f32]) -> Result<()> {
        if images.len() != self.input_shape.pixels() * 3 {
            return Err(Error::Invalid(format!(
                "{} values given for {} images of {}x{}x3",
                images.len(),
                self.input_shape.batch,
                self.input_shape.height,
                self.input_shape.width
            )));
        }
        gpu.write(&self.input, &crate::ops::pad_channels(images, self.input_shape))
    }

    /// Forward to the deepest layer, then the objective's values.
    pub fn forward_dispatches(&self) -> impl Iterator<Item = &Dispatch> {
        self.forward.iter().chain(self.value.iter())
    }

    /// Seeds and backward to the input; `redirect`: Lucid's redirected ReLU gradient.
    pub fn backward_dispatches(&self, redirect: bool) -> impl Iterator<Item = &Dispatch> {
        if redirect {
            self.backward_redirect.iter()
        } else {
            self.backward.iter()
        }
    }

    /// Forward, objective values, seeds and backward, in order (plain ReLU gradient).
    pub fn step_dispatches(&self) -> Vec<&Dispatch> {
        self.step_dispatches_with(false)
    }

    pub fn step_dispatches_with(&self, redirect: bool) -> Vec<&Dispatch> {
        self.forward_dispatches().chain(self.backward_dispatches(redirect)).collect()
    }

    /// Record forward, values and backward into `pass`.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        for d in self.step_dispatches() {
            d.record(pass);
        }
    }

    pub fn activation(&self, name: &str) -> Option<&Activation> {
        self.acts.iter().find(|a| a.name == name)
    }

    /// The dispatches of one conv or pool node's forward and backward (for
    /// the benchmark); None for fc nodes (one dispatch per chunk).
    pub fn node_dispatches(&self, name: &str) -> Option<(Vec<&Dispatch>, Vec<&Dispatch>)> {
        let i = self.acts.iter().position(|a| a.name == name)?;
        if self.acts[..=i].iter().any(|a| matches!(a.node, Node::Fc(_))) {
            return None;
        }
        Some((vec![&self.forward[i]], self.backward[self.node_backward[i].clone()].iter().collect()))
    }

    /// Gradient of the objectives w.r.t. the input, unpadded (B, H, W, 3).
    pub async fn read_grad_input(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        Ok(crate::ops::unpad_channels(&gpu.read(&self.grad_input).await?, self.input_shape))
    }

    /// One node's output, unpadded.
    pub async fn read_activation(&self, gpu: &Gpu, name: &str) -> Result<Vec<f32>> {
        let a = self.activation(name).ok_or_else(|| Error::UnknownLayer {
            name: name.to_string(),
            known: self.acts.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", "),
        })?;
        Ok(crate::ops::unpad_channels(&gpu.read(&a.tensor).await?, a.shape))
    }

    /// Each image's objective value (after a forward pass).
    pub async fn read_values(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        Ok(self.read_objective(gpu).await?.per_image.iter().map(|v| *v as f32).collect())
    }

    /// The objective's value, whole and per image.
    pub async fn read_objective(&self, gpu: &Gpu) -> Result<ObjectiveValues> {
        let raw = gpu.read(&self.values).await?;
        Ok(self.layout.decode(self.input_shape.batch, &raw[..self.layout.slots * 4]))
    }
}
