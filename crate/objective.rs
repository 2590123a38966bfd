//! Objectives: what the optimization maximizes, as Lucid defines it
//! (lucid/optvis/objectives.py), and the text syntax the CLI and the page
//! share.
//!
//! ```text
//! conv4_3:12                          channel 12 of conv4_3 (after its ReLU), mean over space and batch
//! conv4_3_pre_relu:12                 the same channel before the ReLU
//! conv4_3:12@3,5                      neuron at x = 3 (column), y = 5 (row); `conv4_3:12@` is the center
//! conv4_3:12 - 100*diversity(conv4_3) a weighted sum (the Distill article's diversity recipe)
//! conv2_2:5[3]                        restricted to batch image 3 (Lucid's `batch=3`)
//! deepdream(conv4_3)                  mean of squared activations (also `layer(conv4_3)`)
//! direction(conv4_3, 3=1, 7=-0.5)     mean over space of <activation, v>; v sparse, or every component listed
//! channel_interpolate(conv4_3, 1, conv5_1, 7)   image b weights the second by b/(B-1)
//! class(281)                          fc8 logit 281 (weights with the classifier head); also `fc8:281`
//! l1(0.5), tv(), blur()               Lucid's L1, total_variation and blur_input_each_step on the input image
//! ```
//!
//! Scales are Lucid's, so weights mean the same as in its notebooks: a
//! channel is a mean over batch and space; a neuron, a class logit, L1, total
//! variation and blur are sums over the batch; diversity is Lucid's sum of
//! Gram cosine similarities over pairs, divided by the batch size.

use std::fmt;

use crate::error::{Error, Result};
use crate::model::{self, Node};
use crate::ops::Shape;

/// One objective function of Lucid's, not yet weighted.
#[derive(Clone, Debug, PartialEq)]
pub enum Term {
    Channel {
        layer: String,
        channel: usize,
    },
    /// `x` is the column, `y` the row; None means the center (W/2, H/2).
    Neuron {
        layer: String,
        channel: usize,
        x: Option<usize>,
        y: Option<usize>,
    },
    DeepDream {
        layer: String,
    },
    Direction {
        layer: String,
        vector: Direction,
    },
    ChannelInterpolate {
        layer1: String,
        channel1: usize,
        layer2: String,
        channel2: usize,
    },
    Diversity {
        layer: String,
    },
    /// A logit of fc8 (needs the classifier head).
    Class {
        class: usize,
    },
    L1 {
        constant: f32,
    },
    TotalVariation,
    Blur,
}

/// A direction in a layer's channel space.
#[derive(Clone, Debug, PartialEq)]
pub enum Direction {
    /// Every component, in channel order.
    Dense(Vec<f32>),
    /// (channel, component); the others are zero.
    Sparse(Vec<(usize, f32)>),
}

/// One weighted term, optionally restricted to one batch image.
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    pub weight: f32,
    pub term: Term,
    /// Lucid's `batch=` argument: only this image. None: the whole batch.
    pub batch: Option<usize>,
}

/// A weighted sum of terms.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Objective {
    pub parts: Vec<Part>,
}

impl Objective {
    pub fn term(term: Term) -> Objective {
        Objective { parts: vec![Part { weight: 1.0, term, batch: None }] }
    }

    /// Lucid's `channel(layer, c)`.
    pub fn channel(layer: &str, channel: usize) -> Objective {
        Self::term(Term::Channel { layer: layer.to_string(), channel })
    }

    /// Image b optimizes `objectives[b]` alone (each restricted to its image):
    /// how a grid renders one channel per image in one batch. Batch-wide terms
    /// (diversity, channel_interpolate) cannot be restricted and give an error.
    pub fn per_image(objectives: Vec<Objective>) -> Result<Objective> {
        let mut parts = Vec::new();
        for (b, o) in objectives.into_iter().enumerate() {
            for p in o.parts {
                if matches!(p.term, Term::Diversity { .. } | Term::ChannelInterpolate { .. }) {
                    return Err(Error::Invalid(format!(
                        "`{}` is a property of the whole batch; it cannot be one image's objective",
                        Part { batch: None, ..p.clone() }
                    )));
                }
                if p.batch.is_some_and(|pb| pb != b) {
                    return Err(Error::Invalid(format!("`{p}` is restricted to another image than image {b}")));
                }
                parts.push(Part { batch: Some(b), ..p });
            }
        }
        Ok(Objective { parts })
    }

    /// Parse the text syntax (see the module documentation).
    pub fn parse(text: &str) -> Result<Objective> {
        if text.trim().is_empty() {
            return Err(Error::Invalid("the objective is empty: give e.g. `conv4_3:12`".into()));
        }
        let mut p = Parser { text, pos: 0 };
        let o = p.expr()?;
        p.skip_ws();
        if p.pos < text.len() {
            return Err(p.error("expected `+`, `-` or the end of the objective"));
        }
        if o.parts.is_empty() {
            return Err(Error::Invalid("the objective is empty: give e.g. `conv4_3:12`".into()));
        }
        Ok(o)
    }

    /// The parts restricted to image `b` or to no image: what image b's own
    /// objective is (for reporting).
    pub fn for_image(&self, b: usize) -> Objective {
        Objective {
            parts: self.parts.iter().filter(|p| p.batch.is_none_or(|pb| pb == b)).map(|p| Part { batch: None, ..p.clone() }).collect(),
        }
    }

    /// The layers this objective reads (resolved names), deepest last.
    pub fn layers(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in &self.parts {
            for l in p.term.layers() {
                if !out.contains(&l) {
                    out.push(l);
                }
            }
        }
        out
    }
}

impl Term {
    fn layers(&self) -> Vec<String> {
        match self {
            Term::Channel { layer, .. }
            | Term::Neuron { layer, .. }
            | Term::DeepDream { layer }
            | Term::Direction { layer, .. }
            | Term::Diversity { layer } => {
                vec![layer.clone()]
            }
            Term::ChannelInterpolate { layer1, layer2, .. } => vec![layer1.clone(), layer2.clone()],
            Term::Class { .. } => vec!["fc8".to_string()],
            Term::L1 { .. } | Term::TotalVariation | Term::Blur => Vec::new(),
        }
    }
}

fn num(x: f32) -> String {
    if x == x.trunc() && x.abs() < 1e9 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Term::Channel { layer, channel } => write!(f, "{layer}:{channel}"),
            Term::Neuron { layer, channel, x: Some(x), y: Some(y) } => write!(f, "{layer}:{channel}@{x},{y}"),
            Term::Neuron { layer, channel, .. } => write!(f, "{layer}:{channel}@"),
            Term::DeepDream { layer } => write!(f, "deepdream({layer})"),
            Term::Direction { layer, vector } => {
                write!(f, "direction({layer}")?;
                match vector {
                    Direction::Dense(v) => v.iter().try_for_each(|x| write!(f, ", {}", num(*x)))?,
                    Direction::Sparse(v) => v.iter().try_for_each(|(c, x)| write!(f, ", {c}={}", num(*x)))?,
                }
                write!(f, ")")
            }
            Term::ChannelInterpolate { layer1, channel1, layer2, channel2 } => {
                write!(f, "channel_interpolate({layer1}, {channel1}, {layer2}, {channel2})")
            }
            Term::Diversity { layer } => write!(f, "diversity({layer})"),
            Term::Class { class } => write!(f, "class({class})"),
            Term::L1 { constant } if *constant == 0.0 => write!(f, "l1()"),
            Term::L1 { constant } => write!(f, "l1({})", num(*constant)),
            Term::TotalVariation => write!(f, "tv()"),
            Term::Blur => write!(f, "blur()"),
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.weight.abs();
        if w != 1.0 {
            write!(f, "{}*", num(w))?;
        }
        write!(f, "{}", self.term)?;
        if let Some(b) = self.batch {
            write!(f, "[{b}]")?;
        }
        Ok(())
    }
}

impl fmt::Display for Objective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.parts.iter().enumerate() {
            match (i, p.weight < 0.0) {
                (0, false) => {}
                (0, true) => write!(f, "-")?,
                (_, false) => write!(f, " + ")?,
                (_, true) => write!(f, " - ")?,
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- parser

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, msg: &str) -> Error {
        let shown: String = self.text[self.pos..].chars().take(20).collect();
        let at = if shown.is_empty() { "at the end".to_string() } else { format!("at `{shown}`") };
        Error::Invalid(format!("objective `{}`: {msg} ({at}, character {})", self.text, self.pos + 1))
    }

    fn skip_ws(&mut self) {
        while self.text[self.pos..].starts_with(|c: char| c.is_whitespace()) {
            self.pos += self.text[self.pos..].chars().next().map_or(1, char::len_utf8);
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.text[self.pos..].chars().next()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<()> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.error(&format!("expected `{c}`")))
        }
    }

    fn ident(&mut self) -> Option<String> {
        self.skip_ws();
        let rest = &self.text[self.pos..];
        let n = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        if n == 0 || rest.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        self.pos += n;
        Some(rest[..n].to_string())
    }

    fn number(&mut self) -> Option<f32> {
        self.skip_ws();
        let rest = &self.text[self.pos..];
        let mut n = 0;
        let b = rest.as_bytes();
        if n < b.len() && (b[n] == b'-' || b[n] == b'+') {
            n += 1;
        }
        let digits_start = n;
        while n < b.len() && (b[n].is_ascii_digit() || b[n] == b'.') {
            n += 1;
        }
        if n == digits_start {
            return None;
        }
        if n < b.len() && (b[n] == b'e' || b[n] == b'E') {
            let mut m = n + 1;
            if m < b.len() && (b[m] == b'-' || b[m] == b'+') {
                m += 1;
            }
            if m < b.len() && b[m].is_ascii_digit() {
                while m < b.len() && b[m].is_ascii_digit() {
                    m += 1;
                }
                n = m;
            }
        }
        let v: f32 = rest[..n].parse().ok()?;
        self.pos += n;
        Some(v)
    }

    fn index(&mut self, what: &str) -> Result<usize> {
        self.skip_ws();
        let rest = &self.text[self.pos..];
        let n = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let v = rest[..n].parse::<usize>().map_err(|_| self.error(&format!("expected {what} (a whole number ≥ 0)")))?;
        self.pos += n;
        Ok(v)
    }

    /// expr := ['+'|'-'] product (('+'|'-') product)*
    fn expr(&mut self) -> Result<Objective> {
        let mut out = Objective::default();
        let mut sign = if self.eat('-') {
            -1.0
        } else {
            self.eat('+');
            1.0
        };
        loop {
            let o = self.product()?;
            out.parts.extend(o.parts.into_iter().map(|p| Part { weight: p.weight * sign, ..p }));
            if self.eat('+') {
                sign = 1.0;
            } else if self.eat('-') {
                sign = -1.0;
            } else {
                return Ok(out);
            }
        }
    }

    /// product := factor ('*' factor)*, exactly one factor not a number.
    fn product(&mut self) -> Result<Objective> {
        let mut scale = 1.0f32;
        let mut obj: Option<Objective> = None;
        loop {
            let start = self.pos;
            if let Some(v) = self.number() {
                scale *= v;
            } else if self.eat('(') {
                let inner = self.expr()?;
                self.expect(')')?;
                if obj.is_some() {
                    self.pos = start;
                    return Err(self.error("a product of two objectives is not supported (objectives are weighted sums)"));
                }
                obj = Some(inner);
            } else {
                let a = self.atom()?;
                if obj.is_some() {
                    self.pos = start;
                    return Err(self.error("a product of two objectives is not supported (objectives are weighted sums)"));
                }
                obj = Some(a);
            }
            if !self.eat('*') {
                break;
            }
        }
        let obj = obj.ok_or_else(|| self.error("a number alone is not an objective"))?;
        if !scale.is_finite() {
            return Err(self.error("the weight is not a finite number"));
        }
        Ok(Objective { parts: obj.parts.into_iter().map(|p| Part { weight: p.weight * scale, ..p }).collect() })
    }

    fn atom(&mut self) -> Result<Objective> {
        let start = self.pos;
        let name = self.ident().ok_or_else(|| self.error("expected a layer (`conv4_3:12`) or a function (`diversity(conv4_3)`)"))?;
        let term = if self.eat(':') {
            let channel = self.index("a channel number")?;
            if self.eat('@') {
                if matches!(self.peek(), Some(c) if c.is_ascii_digit()) {
                    let x = self.index("the neuron's x")?;
                    self.expect(',')?;
                    let y = self.index("the neuron's y")?;
                    Term::Neuron { layer: name, channel, x: Some(x), y: Some(y) }
                } else {
                    Term::Neuron { layer: name, channel, x: None, y: None }
                }
            } else {
                Term::Channel { layer: name, channel }
            }
        } else if self.eat('(') {
            let t = self.call(&name, start)?;
            self.expect(')')?;
            t
        } else {
            return Err(self.error(&format!("`{name}` needs a channel (`{name}:12`) or arguments (`{name}(…)`)")));
        };
        let mut batch = None;
        if self.eat('[') {
            batch = Some(self.index("a batch image")?);
            self.expect(']')?;
        }
        Ok(Objective { parts: vec![Part { weight: 1.0, term, batch }] })
    }

    fn layer_arg(&mut self) -> Result<String> {
        self.ident().ok_or_else(|| self.error("expected a layer name"))
    }

    fn comma(&mut self) -> Result<()> {
        self.expect(',')
    }

    fn call(&mut self, name: &str, start: usize) -> Result<Term> {
        Ok(match name {
            "channel" => {
                let layer = self.layer_arg()?;
                self.comma()?;
                Term::Channel { layer, channel: self.index("a channel number")? }
            }
            "neuron" => {
                let layer = self.layer_arg()?;
                self.comma()?;
                let channel = self.index("a channel number")?;
                let (x, y) = if self.eat(',') {
                    let x = self.index("the neuron's x")?;
                    self.comma()?;
                    (Some(x), Some(self.index("the neuron's y")?))
                } else {
                    (None, None)
                };
                Term::Neuron { layer, channel, x, y }
            }
            "deepdream" | "layer" => Term::DeepDream { layer: self.layer_arg()? },
            "diversity" => Term::Diversity { layer: self.layer_arg()? },
            "class" | "class_logit" => Term::Class { class: self.index("a class number")? },
            "channel_interpolate" => {
                let layer1 = self.layer_arg()?;
                self.comma()?;
                let channel1 = self.index("a channel number")?;
                self.comma()?;
                let layer2 = self.layer_arg()?;
                self.comma()?;
                let channel2 = self.index("a channel number")?;
                Term::ChannelInterpolate { layer1, channel1, layer2, channel2 }
            }
            "direction" => {
                let layer = self.layer_arg()?;
                let mut dense = Vec::new();
                let mut sparse = Vec::new();
                while self.eat(',') {
                    let at = self.pos;
                    let v = self.number().ok_or_else(|| self.error("expected a number"))?;
                    if self.eat('=') {
                        if v < 0.0 || v.fract() != 0.0 {
                            self.pos = at;
                            return Err(self.error("a sparse direction is written `channel=value`"));
                        }
                        let x = self.number().ok_or_else(|| self.error("expected the component after `=`"))?;
                        sparse.push((v as usize, x));
                    } else {
                        dense.push(v);
                    }
                }
                let vector = match (dense.is_empty(), sparse.is_empty()) {
                    (false, true) => Direction::Dense(dense),
                    (true, false) => Direction::Sparse(sparse),
                    (true, true) => return Err(self.error("direction needs components: `direction(conv4_3, 3=1, 7=-0.5)` or all of them")),
                    (false, false) => return Err(self.error("a direction is either all `channel=value` pairs or all components, not both")),
                };
                Term::Direction { layer, vector }
            }
            "l1" | "L1" => {
                let constant = self.number().unwrap_or(0.0);
                Term::L1 { constant }
            }
            "tv" | "total_variation" => Term::TotalVariation,
            "blur" | "blur_input_each_step" => Term::Blur,
            _ => {
                self.pos = start;
                return Err(self.error(&format!(
                    "unknown function `{name}`: use channel, neuron, deepdream, direction, channel_interpolate, diversity, class, l1, tv or blur"
                )));
            }
        })
    }
}

// ---------------------------------------------------------------- plan

/// Spec kinds; mirror the constants in shaders/objective.wgsl.
pub const KIND_CHANNEL: u32 = 0;
pub const KIND_NEURON: u32 = 1;
pub const KIND_DEEPDREAM: u32 = 2;
pub const KIND_DIRECTION: u32 = 3;
/// `ObjSpec::batch` for "every image".
pub const ALL_IMAGES: u32 = u32::MAX;

/// One term at one layer, as the GPU evaluates it; mirrors `ObjSpec` in
/// objective.wgsl. `scale` already holds the weight and Lucid's
/// normalization: the objective is `scale * sum(selected elements)` (for
/// deepdream, of squares).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable, PartialEq)]
pub struct ObjSpec {
    pub kind: u32,
    pub batch: u32,
    pub channel: u32,
    pub x: u32,
    pub y: u32,
    pub post_relu: u32,
    pub vec_offset: u32,
    pub scale: f32,
}

/// Everything the objective asks of one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerPlan {
    /// The node's name (`conv4_3`, `pool4`, `fc8`) and index in [`model::nodes`].
    pub name: String,
    pub node: usize,
    pub shape: Shape,
    pub specs: Vec<ObjSpec>,
    /// Direction vectors, `shape.channels` floats each, at `vec_offset`.
    pub vectors: Vec<f32>,
    /// For each spec, the factor that turns its summed value into the value
    /// Lucid's formula gives on one image alone (for reports).
    pub per_image: Vec<f32>,
    /// Diversity on this layer: (weight, after the ReLU).
    pub diversity: Option<(f32, bool)>,
}

/// Per-image weights of the regularizers on the input image.
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct ImageReg {
    pub l1: f32,
    pub l1_constant: f32,
    pub tv: f32,
    pub blur: f32,
}

impl ImageReg {
    pub fn is_zero(&self) -> bool {
        self.l1 == 0.0 && self.tv == 0.0 && self.blur == 0.0
    }
}

/// An objective resolved against a network's shapes.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub batch: usize,
    /// Ordered by node, deepest last.
    pub layers: Vec<LayerPlan>,
    /// One per image.
    pub image: Vec<ImageReg>,
}

impl Plan {
    /// The deepest node the objective reads (None: only image regularizers).
    pub fn deepest(&self) -> Option<usize> {
        self.layers.last().map(|l| l.node)
    }

    pub fn has_image_terms(&self) -> bool {
        self.image.iter().any(|r| !r.is_zero())
    }
}

/// Resolve `objective` for a batch of `batch` images of `height`×`width`.
pub fn plan(objective: &Objective, batch: usize, height: usize, width: usize, has_fc: bool, classes: usize) -> Result<Plan> {
    if objective.parts.is_empty() {
        return Err(Error::Invalid("the objective is empty".into()));
    }
    if batch == 0 {
        return Err(Error::Invalid("batch must be at least 1".into()));
    }
    let nodes = model::nodes(has_fc);
    let shapes = model::shapes(batch, height, width, has_fc, classes);
    let mut layers: Vec<LayerPlan> = Vec::new();
    let mut image = vec![ImageReg::default(); batch];

    let mut layer = |name: &str| -> Result<(usize, bool)> {
        let t = model::resolve(name, has_fc)?;
        let need = model::min_size(&t, has_fc);
        if height < need || width < need {
            return Err(Error::Invalid(format!(
                "a {width}x{height} image is too small for layer `{name}`: it needs at least {need}x{need} pixels"
            )));
        }
        if !layers.iter().any(|l| l.node == t.node) {
            layers.push(LayerPlan {
                name: nodes[t.node].0.clone(),
                node: t.node,
                shape: shapes[t.node],
                specs: Vec::new(),
                vectors: Vec::new(),
                per_image: Vec::new(),
                diversity: None,
            });
        }
        Ok((layers.iter().position(|l| l.node == t.node).unwrap_or(0), t.post_relu))
    };
    // Resolve every layer first, so errors come in the order written.
    let mut resolved = Vec::new();
    for p in &objective.parts {
        if let Some(b) = p.batch {
            if b >= batch {
                return Err(Error::Invalid(format!("`{p}` names image {b}, but the batch has images 0..{}", batch - 1)));
            }
        }
        let mut ls = Vec::new();
        for l in p.term.layers() {
            if l == "fc8" && !has_fc {
                return Err(Error::Invalid(format!(
                    "`{p}` needs the classifier head (fc6–fc8), and these weights have only the conv layers"
                )));
            }
            ls.push(layer(&l)?);
        }
        resolved.push(ls);
    }
    let check_channel = |layer: &str, c: usize, shape: Shape| -> Result<()> {
        if c >= shape.channels {
            return Err(Error::Invalid(format!(
                "channel {c} is out of range for layer `{layer}`, which has channels 0..{}",
                shape.channels - 1
            )));
        }
        Ok(())
    };
    for (p, ls) in objective.parts.iter().zip(&resolved) {
        let (sel, nb) = match p.batch {
            Some(b) => (b as u32, 1usize),
            None => (ALL_IMAGES, batch),
        };
        let w = p.weight;
        match &p.term {
            Term::Channel { layer: name, channel } | Term::Neuron { layer: name, channel, .. } => {
                let (li, post) = ls[0];
                let l = &mut layers[li];
                check_channel(name, *channel, l.shape)?;
                let hw = (l.shape.height * l.shape.width) as f32;
                let mut spec = ObjSpec { batch: sel, channel: *channel as u32, post_relu: u32::from(post), ..Default::default() };
                if let Term::Neuron { x, y, .. } = &p.term {
                    // Lucid: the center is (H//2, W//2).
                    let x = x.unwrap_or(l.shape.width / 2);
                    let y = y.unwrap_or(l.shape.height / 2);
                    if x >= l.shape.width || y >= l.shape.height {
                        return Err(Error::Invalid(format!(
                            "neuron position ({x}, {y}) is outside layer `{name}`, which is {}x{} at this image size (x < {}, y < {})",
                            l.shape.width, l.shape.height, l.shape.width, l.shape.height
                        )));
                    }
                    spec.kind = KIND_NEURON;
                    spec.x = x as u32;
                    spec.y = y as u32;
                    spec.scale = w; // a sum over the batch, as Lucid's neuron
                    l.per_image.push(1.0);
                } else {
                    spec.kind = KIND_CHANNEL;
                    spec.scale = w / (nb as f32 * hw);
                    l.per_image.push(nb as f32);
                }
                l.specs.push(spec);
            }
            Term::Class { class } => {
                let (li, _) = ls[0];
                let l = &mut layers[li];
                if *class >= l.shape.channels {
                    return Err(Error::Invalid(format!("class {class} is out of range: fc8 has classes 0..{}", l.shape.channels - 1)));
                }
                l.specs.push(ObjSpec { kind: KIND_NEURON, batch: sel, channel: *class as u32, scale: w, ..Default::default() });
                l.per_image.push(1.0);
            }
            Term::DeepDream { .. } => {
                let (li, post) = ls[0];
                let l = &mut layers[li];
                let n = (l.shape.height * l.shape.width * l.shape.channels) as f32;
                l.specs.push(ObjSpec {
                    kind: KIND_DEEPDREAM,
                    batch: sel,
                    post_relu: u32::from(post),
                    scale: w / (nb as f32 * n),
                    ..Default::default()
                });
                l.per_image.push(nb as f32);
            }
            Term::Direction { layer: name, vector } => {
                let (li, post) = ls[0];
                let l = &mut layers[li];
                let c = l.shape.channels;
                let v = match vector {
                    Direction::Dense(v) => {
                        if v.len() != c {
                            return Err(Error::Invalid(format!(
                                "direction on `{name}` has {} components; the layer has {c} channels (or write `channel=value` pairs)",
                                v.len()
                            )));
                        }
                        v.clone()
                    }
                    Direction::Sparse(pairs) => {
                        let mut v = vec![0.0; c];
                        for &(ch, x) in pairs {
                            check_channel(name, ch, l.shape)?;
                            v[ch] += x;
                        }
                        v
                    }
                };
                let hw = (l.shape.height * l.shape.width) as f32;
                let offset = l.vectors.len() as u32;
                l.vectors.extend(v);
                l.specs.push(ObjSpec {
                    kind: KIND_DIRECTION,
                    batch: sel,
                    post_relu: u32::from(post),
                    vec_offset: offset,
                    scale: w / (nb as f32 * hw),
                    ..Default::default()
                });
                l.per_image.push(nb as f32);
            }
            Term::ChannelInterpolate { layer1, channel1, layer2, channel2 } => {
                if batch < 2 {
                    return Err(Error::Invalid(format!("`{p}` interpolates across the batch: it needs a batch of at least 2 images")));
                }
                if p.batch.is_some() {
                    return Err(Error::Invalid(format!("`{p}` interpolates across the batch; it cannot be restricted to one image")));
                }
                for (k, (name, ch)) in [(layer1, *channel1), (layer2, *channel2)].into_iter().enumerate() {
                    let (li, post) = ls[k];
                    let l = &mut layers[li];
                    check_channel(name, ch, l.shape)?;
                    let hw = (l.shape.height * l.shape.width) as f32;
                    for b in 0..batch {
                        let t = b as f32 / (batch - 1) as f32;
                        let f = if k == 0 { 1.0 - t } else { t };
                        l.specs.push(ObjSpec {
                            kind: KIND_CHANNEL,
                            batch: b as u32,
                            channel: ch as u32,
                            post_relu: u32::from(post),
                            scale: w * f / hw,
                            ..Default::default()
                        });
                        l.per_image.push(1.0);
                    }
                }
            }
            Term::Diversity { .. } => {
                if p.batch.is_some() {
                    return Err(Error::Invalid(format!("`{p}` compares the images of the batch; it cannot be restricted to one image")));
                }
                let (li, post) = ls[0];
                let l = &mut layers[li];
                l.diversity = match l.diversity {
                    None => Some((w, post)),
                    Some((w0, p0)) if p0 == post => Some((w0 + w, post)),
                    Some(_) => return Err(Error::Invalid(format!("diversity on `{}` both before and after its ReLU: choose one", l.name))),
                };
            }
            Term::L1 { constant } => {
                for (b, r) in image.iter_mut().enumerate() {
                    if sel == ALL_IMAGES || sel as usize == b {
                        if r.l1 != 0.0 && r.l1_constant != *constant {
                            return Err(Error::Invalid(format!("two L1 terms with different constants on image {b}: combine them")));
                        }
                        r.l1 += w;
                        r.l1_constant = *constant;
                    }
                }
            }
            Term::TotalVariation | Term::Blur => {
                for (b, r) in image.iter_mut().enumerate() {
                    if sel == ALL_IMAGES || sel as usize == b {
                        if p.term == Term::Blur {
                            r.blur += w;
                        } else {
                            r.tv += w;
                        }
                    }
                }
            }
        }
    }
    layers.sort_by_key(|l| l.node);
    Ok(Plan { batch, layers, image })
}

/// Whether node `node` ends in a ReLU whose output the next node reads.
pub fn has_relu(node: Node) -> bool {
    matches!(node, Node::Conv(_) | Node::Fc(0) | Node::Fc(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for text in [
            "conv4_3:12",
            "conv4_3_pre_relu:12",
            "conv4_3:12@3,5",
            "conv4_3:12@",
            "conv4_3:12 - 100*diversity(conv4_3)",
            "0.5*conv2_2:5[3] + deepdream(conv3_3)",
            "direction(conv1_1, 3=1, 7=-0.5)",
            "channel_interpolate(conv4_3, 1, conv5_1, 7)",
            "class(281) - 0.01*tv() - l1(0.5) + blur()",
        ] {
            let o = Objective::parse(text).unwrap();
            assert_eq!(o.to_string(), text);
            assert_eq!(Objective::parse(&o.to_string()).unwrap(), o);
        }
    }
}
