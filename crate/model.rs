//! VGG16: the layer table, weights on the CPU and the GPU, and a [`Network`]
//! that runs forward up to any named layer and backward from it to the input
//! image, as dispatches prepared once and recorded per step.
//!
//! Storage: conv and fc outputs are kept before their ReLU (consumers apply
//! it on load, and the backward pass uses them as ReLU masks); pool outputs
//! are after it. All gradients are with respect to those stored values.

use crate::error::{Error, Result};
use crate::gpu::{ConvConfig, Dispatch, Gpu, Tensor};
use crate::ops::conv::{self, ConvWeights};
use crate::ops::fc::{self, FcWeights};
use crate::ops::objective::{self, ObjSpec, Target};
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
    let pools = nodes(has_fc)[..target.node]
        .iter()
        .filter(|(_, n)| matches!(n, Node::Pool(_)))
        .count();
    let pools_incl = pools + usize::from(matches!(nodes(has_fc)[target.node].1, Node::Pool(_)));
    1usize << pools_incl.max(0)
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
                return Err(Error::Invalid(format!("the classifier head has fc6, fc7, fc8; these weights have {} fc layers", self.fcs.len())));
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

/// VGG16 on a batch of B images of H×W, forward to `target` and backward
/// from it to the input, prepared once.
pub struct Network {
    pub config: ConvConfig,
    pub target: TargetLayer,
    /// Preprocessed input images (B, H, W, 4): channels 0–2, the fourth zero.
    pub input: Tensor,
    pub input_shape: Shape,
    /// Outputs of every node up to the target.
    pub acts: Vec<Activation>,
    /// Gradient of the summed objectives with respect to `input`.
    pub grad_input: Tensor,
    /// Per-image objective values, 4 words each (value in the first).
    pub values: Tensor,
    specs: Tensor,
    // Ping-pong gradient buffers, owned here (the dispatches bind them).
    _grads: [Tensor; 2],
    forward: Vec<Dispatch>,
    seed: Dispatch,
    value: Dispatch,
    backward: Vec<Dispatch>,
}

impl Network {
    /// Prepare a network. `target` is a layer name (see [`resolve`]).
    pub async fn new(gpu: &Gpu, model: &Vgg16, batch: usize, height: usize, width: usize, target: &str) -> Result<Network> {
        Self::with_config(gpu, model, gpu.conv_config, batch, height, width, target).await
    }

    pub async fn with_config(
        gpu: &Gpu,
        model: &Vgg16,
        config: ConvConfig,
        batch: usize,
        height: usize,
        width: usize,
        target: &str,
    ) -> Result<Network> {
        let has_fc = model.has_fc();
        let target = resolve(target, has_fc)?;
        if batch == 0 {
            return Err(Error::Invalid("batch must be at least 1".into()));
        }
        let need = min_size(&target, has_fc);
        if height < need || width < need {
            return Err(Error::Invalid(format!(
                "a {width}x{height} image is too small for layer `{}`: it needs at least {need}x{need} pixels",
                target.name
            )));
        }
        let list = nodes(has_fc);
        let all_shapes = shapes(batch, height, width, has_fc, model.classes());
        let input_shape = Shape::new(batch, height, width, 3);
        // Check every buffer against the device before computing any length
        // (on wasm32 the lengths themselves could overflow).
        gpu.check_binding(&format!("input image ({input_shape})"), input_shape.padded_bytes())?;
        for ((name, _), shape) in list.iter().zip(&all_shapes).take(target.node + 1) {
            gpu.check_binding(&format!("{name} output ({shape})"), shape.padded_bytes())?;
        }
        let input = gpu.tensor("input image", input_shape.padded_len())?;
        let grad_input = gpu.tensor("input gradient", input_shape.padded_len())?;

        let mut acts: Vec<Activation> = Vec::new();
        let mut forward = Vec::new();
        let mut max_len = input_shape.padded_len();
        for (i, (name, node)) in list.iter().enumerate().take(target.node + 1) {
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
                    forward.push(conv::forward(gpu, config, &model.convs[c], prev_shape, prev, &tensor, relu).await?);
                }
                Node::Pool(_) => forward.push(pool::maxpool_forward(gpu, name, prev_shape, prev, &tensor).await?),
                Node::AvgPool => forward.push(
                    pool::adaptive_avgpool_forward(gpu, prev_shape, FC_INPUT_HW, FC_INPUT_HW, prev, &tensor).await?,
                ),
                Node::Fc(f) => {
                    let relu = matches!(prev_node, Some(Node::Fc(_)));
                    forward.extend(fc::forward(gpu, &model.fcs[f], batch, prev, &tensor, relu).await?);
                }
            }
            acts.push(Activation { name: name.clone(), node: *node, shape, tensor });
        }

        let grads = [gpu.tensor("gradient A", max_len)?, gpu.tensor("gradient B", max_len)?];
        let tshape = acts[target.node].shape;
        let specs = gpu.tensor("objective specs", batch * 8)?;
        let values = gpu.tensor("objective values", batch * 4)?;
        let seed = objective::seed(gpu, tshape, &specs, &acts[target.node].tensor, &grads[0]).await?;
        let value = objective::value(gpu, tshape, &specs, &acts[target.node].tensor, &values).await?;

        let mut backward = Vec::new();
        let mut cur = 0;
        for i in (0..=target.node).rev() {
            let a = &acts[i];
            let (prev, prev_shape, prev_node) = if i == 0 {
                (&input, input_shape, None)
            } else {
                (&acts[i - 1].tensor, acts[i - 1].shape, Some(acts[i - 1].node))
            };
            let dst = if i == 0 { &grad_input } else { &grads[1 - cur] };
            let g = &grads[cur];
            match a.node {
                Node::Conv(c) => {
                    let mask = match prev_node {
                        Some(Node::Conv(_)) => Some(prev),
                        _ => None,
                    };
                    backward.push(conv::backward_input(gpu, config, &model.convs[c], prev_shape, g, dst, mask).await?);
                }
                Node::Pool(_) => backward.push(pool::maxpool_backward(gpu, &a.name, prev_shape, prev, g, dst).await?),
                Node::AvgPool => backward.push(
                    pool::adaptive_avgpool_backward(gpu, prev_shape, FC_INPUT_HW, FC_INPUT_HW, g, dst).await?,
                ),
                Node::Fc(f) => {
                    let mask = match prev_node {
                        Some(Node::Fc(_)) => Some(prev),
                        _ => None,
                    };
                    backward.extend(fc::backward_input(gpu, &model.fcs[f], batch, g, dst, mask).await?);
                }
            }
            cur = 1 - cur;
        }
        Ok(Network { config, target, input, input_shape, acts, grad_input, values, specs, _grads: grads, forward, seed, value, backward })
    }

    /// Shape of the target layer's output.
    pub fn target_shape(&self) -> Shape {
        self.acts[self.target.node].shape
    }

    /// Set each image's objective at the target layer (one per batch image).
    pub fn set_objectives(&self, gpu: &Gpu, targets: &[(Target, f32)]) -> Result<()> {
        let shape = self.target_shape();
        if targets.len() != shape.batch {
            return Err(Error::Invalid(format!("{} objectives for a batch of {}", targets.len(), shape.batch)));
        }
        let specs: Vec<ObjSpec> = targets
            .iter()
            .map(|(t, w)| t.spec(&self.target.name, shape, *w, self.target.post_relu))
            .collect::<Result<_>>()?;
        gpu.write(&self.specs, bytemuck::cast_slice(&specs))
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

    pub fn forward_dispatches(&self) -> impl Iterator<Item = &Dispatch> {
        self.forward.iter().chain(std::iter::once(&self.value))
    }

    pub fn backward_dispatches(&self) -> impl Iterator<Item = &Dispatch> {
        std::iter::once(&self.seed).chain(self.backward.iter())
    }

    /// Forward, objective values, seed and backward, in order.
    pub fn step_dispatches(&self) -> Vec<&Dispatch> {
        self.forward_dispatches().chain(self.backward_dispatches()).collect()
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

    /// The dispatches of one node's forward and backward (for the benchmark).
    pub fn node_dispatches(&self, name: &str) -> Option<(Vec<&Dispatch>, Vec<&Dispatch>)> {
        let i = self.acts.iter().position(|a| a.name == name)?;
        // Forward: conv and pool nodes have one dispatch each; fc nodes one per chunk.
        let count = |k: usize| -> usize {
            match self.acts[k].node {
                Node::Fc(_) => usize::MAX,
                _ => 1,
            }
        };
        if (0..=i).any(|k| count(k) != 1) {
            return None;
        }
        let fwd = vec![&self.forward[i]];
        let bwd = vec![&self.backward[self.target.node - i]];
        Some((fwd, bwd))
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

    pub async fn read_values(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        Ok(gpu.read(&self.values).await?.chunks(4).map(|c| c[0]).collect())
    }
}
