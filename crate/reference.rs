//! CPU reference of every kernel: plain Rust, f64 accumulation, unpadded NHWC.
//! The oracle of the tests; slow and obvious on purpose (index loops that
//! read like the formulas, the kernels' own argument lists).
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

use crate::ops::Shape;

pub fn relu(x: &[f32]) -> Vec<f32> {
    x.iter().map(|v| v.max(0.0)).collect()
}

/// conv3x3 stride 1 pad 1: `w` HWIO (3, 3, cin, cout).
pub fn conv3x3_forward(x: &[f32], s: Shape, w: &[f32], bias: &[f32], cout: usize) -> Vec<f32> {
    let (b, h, wd, cin) = (s.batch, s.height, s.width, s.channels);
    let mut y = vec![0.0f32; b * h * wd * cout];
    let mut acc = vec![0.0f64; cout];
    for n in 0..b {
        for oy in 0..h {
            for ox in 0..wd {
                for (co, a) in acc.iter_mut().enumerate() {
                    *a = bias.get(co).copied().unwrap_or(0.0) as f64;
                }
                for ky in 0..3 {
                    let iy = oy as isize + ky as isize - 1;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    for kx in 0..3 {
                        let ix = ox as isize + kx as isize - 1;
                        if ix < 0 || ix >= wd as isize {
                            continue;
                        }
                        let xi = ((n * h + iy as usize) * wd + ix as usize) * cin;
                        for ci in 0..cin {
                            let xv = x[xi + ci] as f64;
                            if xv == 0.0 {
                                continue;
                            }
                            let wi = ((ky * 3 + kx) * cin + ci) * cout;
                            for co in 0..cout {
                                acc[co] += xv * w[wi + co] as f64;
                            }
                        }
                    }
                }
                let yi = ((n * h + oy) * wd + ox) * cout;
                for co in 0..cout {
                    y[yi + co] = acc[co] as f32;
                }
            }
        }
    }
    y
}

/// Gradient of conv3x3 with respect to its input, given dy (B, H, W, cout).
pub fn conv3x3_backward_input(dy: &[f32], s: Shape, w: &[f32], cout: usize) -> Vec<f32> {
    let (b, h, wd, cin) = (s.batch, s.height, s.width, s.channels);
    let mut dx = vec![0.0f32; b * h * wd * cin];
    let mut acc = vec![0.0f64; cin];
    for n in 0..b {
        for iy in 0..h {
            for ix in 0..wd {
                acc.iter_mut().for_each(|a| *a = 0.0);
                for ky in 0..3 {
                    // output oy = iy - ky + 1 used input iy through tap ky
                    let oy = iy as isize - ky as isize + 1;
                    if oy < 0 || oy >= h as isize {
                        continue;
                    }
                    for kx in 0..3 {
                        let ox = ix as isize - kx as isize + 1;
                        if ox < 0 || ox >= wd as isize {
                            continue;
                        }
                        let gi = ((n * h + oy as usize) * wd + ox as usize) * cout;
                        for ci in 0..cin {
                            let wi = ((ky * 3 + kx) * cin + ci) * cout;
                            let mut s = 0.0f64;
                            for co in 0..cout {
                                s += dy[gi + co] as f64 * w[wi + co] as f64;
                            }
                            acc[ci] += s;
                        }
                    }
                }
                let xi = ((n * h + iy) * wd + ix) * cin;
                for ci in 0..cin {
                    dx[xi + ci] = acc[ci] as f32;
                }
            }
        }
    }
    dx
}

/// Multiply `g` by the ReLU mask (x > 0).
pub fn relu_backward(g: &[f32], x: &[f32]) -> Vec<f32> {
    g.iter().zip(x).map(|(g, x)| if *x > 0.0 { *g } else { 0.0 }).collect()
}

/// relu(maxpool2x2(x)), floor.
pub fn maxpool_forward(x: &[f32], s: Shape) -> Vec<f32> {
    let (oh, ow, c) = (s.height / 2, s.width / 2, s.channels);
    let mut y = vec![0.0; s.batch * oh * ow * c];
    for n in 0..s.batch {
        for oy in 0..oh {
            for ox in 0..ow {
                for ch in 0..c {
                    let mut m = f32::NEG_INFINITY;
                    for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        m = m.max(x[((n * s.height + 2 * oy + dy) * s.width + 2 * ox + dx) * c + ch]);
                    }
                    y[((n * oh + oy) * ow + ox) * c + ch] = m.max(0.0);
                }
            }
        }
    }
    y
}

/// Gradient of relu(maxpool2x2(x)) with respect to x: to the first maximum
/// of each window in row-major order, where x > 0 (without `mask`: the
/// gradient with respect to relu(x), everywhere).
pub fn maxpool_backward(x: &[f32], s: Shape, dy: &[f32], mask: bool) -> Vec<f32> {
    let (oh, ow, c) = (s.height / 2, s.width / 2, s.channels);
    let mut dx = vec![0.0; x.len()];
    for n in 0..s.batch {
        for oy in 0..oh {
            for ox in 0..ow {
                for ch in 0..c {
                    let mut best = f32::NEG_INFINITY;
                    let mut arg = 0;
                    for (dy_, dx_) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        let i = ((n * s.height + 2 * oy + dy_) * s.width + 2 * ox + dx_) * c + ch;
                        if x[i] > best {
                            best = x[i];
                            arg = i;
                        }
                    }
                    if best > 0.0 || !mask {
                        dx[arg] = dy[((n * oh + oy) * ow + ox) * c + ch];
                    }
                }
            }
        }
    }
    dx
}

fn window(o: usize, input: usize, output: usize) -> (usize, usize) {
    ((o * input) / output, ((o + 1) * input).div_ceil(output))
}

/// torchvision's AdaptiveAvgPool2d to (oh, ow).
pub fn adaptive_avgpool_forward(x: &[f32], s: Shape, oh: usize, ow: usize) -> Vec<f32> {
    let c = s.channels;
    let mut y = vec![0.0; s.batch * oh * ow * c];
    for n in 0..s.batch {
        for oy in 0..oh {
            let (y0, y1) = window(oy, s.height, oh);
            for ox in 0..ow {
                let (x0, x1) = window(ox, s.width, ow);
                for ch in 0..c {
                    let mut acc = 0.0f64;
                    for iy in y0..y1 {
                        for ix in x0..x1 {
                            acc += x[((n * s.height + iy) * s.width + ix) * c + ch] as f64;
                        }
                    }
                    y[((n * oh + oy) * ow + ox) * c + ch] = (acc / ((y1 - y0) * (x1 - x0)) as f64) as f32;
                }
            }
        }
    }
    y
}

pub fn adaptive_avgpool_backward(dy: &[f32], s: Shape, oh: usize, ow: usize) -> Vec<f32> {
    let c = s.channels;
    let mut dx = vec![0.0f64; s.batch * s.height * s.width * c];
    for n in 0..s.batch {
        for oy in 0..oh {
            let (y0, y1) = window(oy, s.height, oh);
            for ox in 0..ow {
                let (x0, x1) = window(ox, s.width, ow);
                let area = ((y1 - y0) * (x1 - x0)) as f64;
                for ch in 0..c {
                    let g = dy[((n * oh + oy) * ow + ox) * c + ch] as f64 / area;
                    for iy in y0..y1 {
                        for ix in x0..x1 {
                            dx[((n * s.height + iy) * s.width + ix) * c + ch] += g;
                        }
                    }
                }
            }
        }
    }
    dx.into_iter().map(|v| v as f32).collect()
}

/// y (B, out) = x (B, in) · w (in, out) + bias.
pub fn fc_forward(x: &[f32], batch: usize, inputs: usize, w: &[f32], bias: &[f32], outputs: usize) -> Vec<f32> {
    let mut y = vec![0.0; batch * outputs];
    for n in 0..batch {
        for o in 0..outputs {
            let mut acc = bias[o] as f64;
            for i in 0..inputs {
                acc += x[n * inputs + i] as f64 * w[i * outputs + o] as f64;
            }
            y[n * outputs + o] = acc as f32;
        }
    }
    y
}

/// dx (B, in) = dy (B, out) · wᵀ.
pub fn fc_backward_input(dy: &[f32], batch: usize, inputs: usize, w: &[f32], outputs: usize) -> Vec<f32> {
    let mut dx = vec![0.0; batch * inputs];
    for n in 0..batch {
        for i in 0..inputs {
            let mut acc = 0.0f64;
            for o in 0..outputs {
                acc += dy[n * outputs + o] as f64 * w[i * outputs + o] as f64;
            }
            dx[n * inputs + i] = acc as f32;
        }
    }
    dx
}

/// Objective value of one image: mean over space of channel `c` (or the
/// value at (x, y) for a neuron), of relu(z) when `post_relu`.
pub fn objective_value(z: &[f32], s: Shape, b: usize, channel: usize, neuron: Option<(usize, usize)>, post_relu: bool) -> f64 {
    let f = |v: f32| if post_relu { v.max(0.0) as f64 } else { v as f64 };
    let at = |y: usize, x: usize| z[((b * s.height + y) * s.width + x) * s.channels + channel];
    match neuron {
        Some((x, y)) => f(at(y, x)),
        None => {
            let mut acc = 0.0;
            for y in 0..s.height {
                for x in 0..s.width {
                    acc += f(at(y, x));
                }
            }
            acc / (s.height * s.width) as f64
        }
    }
}

/// VGG16 forward on the CPU: the output of every node up to `upto` (index
/// into [`crate::model::nodes`]), stored as the GPU stores them (conv and fc
/// before their ReLU, pools after). `images`: unpadded NHWC (B, H, W, 3).
pub fn vgg16_forward(
    w: &crate::model::Vgg16Weights,
    images: &[f32],
    batch: usize,
    height: usize,
    width: usize,
    upto: usize,
) -> Vec<(Shape, Vec<f32>)> {
    use crate::model::{nodes, Node, CONVS, FC_INPUT_HW};
    let list = nodes(!w.fcs.is_empty());
    let mut s = Shape::new(batch, height, width, 3);
    let mut cur = images.to_vec();
    let mut prev_node: Option<Node> = None;
    let mut out = Vec::new();
    for (_, node) in list.iter().take(upto + 1) {
        let (ns, nv) = match *node {
            Node::Conv(i) => {
                let x = if matches!(prev_node, Some(Node::Conv(_))) { relu(&cur) } else { cur.clone() };
                let cout = CONVS[i].2;
                (Shape { channels: cout, ..s }, conv3x3_forward(&x, s, &w.convs[i].w_hwio, &w.convs[i].bias, cout))
            }
            Node::Pool(_) => (Shape { height: s.height / 2, width: s.width / 2, ..s }, maxpool_forward(&cur, s)),
            Node::AvgPool => {
                (Shape { height: FC_INPUT_HW, width: FC_INPUT_HW, ..s }, adaptive_avgpool_forward(&cur, s, FC_INPUT_HW, FC_INPUT_HW))
            }
            Node::Fc(i) => {
                let f = &w.fcs[i];
                let x = if matches!(prev_node, Some(Node::Fc(_))) { relu(&cur) } else { cur.clone() };
                (Shape::new(batch, 1, 1, f.outputs), fc_forward(&x, batch, f.inputs, &f.w_io, &f.bias, f.outputs))
            }
        };
        s = ns;
        cur = nv;
        prev_node = Some(*node);
        out.push((s, cur.clone()));
    }
    out
}

/// VGG16 backward on the CPU from `seed` (the gradient w.r.t. the stored
/// output of the last node of `acts`) to the input images.
pub fn vgg16_backward(w: &crate::model::Vgg16Weights, input_shape: Shape, acts: &[(Shape, Vec<f32>)], seed: &[f32]) -> Vec<f32> {
    use crate::model::{nodes, Node, FC_INPUT_HW};
    let list = nodes(!w.fcs.is_empty());
    let mut g = seed.to_vec();
    for i in (0..acts.len()).rev() {
        let (prev_shape, prev, prev_node) =
            if i == 0 { (input_shape, None, None) } else { (acts[i - 1].0, Some(&acts[i - 1].1), Some(list[i - 1].1)) };
        g = match list[i].1 {
            Node::Conv(c) => {
                let cout = acts[i].0.channels;
                let dx = conv3x3_backward_input(&g, prev_shape, &w.convs[c].w_hwio, cout);
                match (prev_node, prev) {
                    (Some(Node::Conv(_)), Some(p)) => relu_backward(&dx, p),
                    _ => dx,
                }
            }
            Node::Pool(_) => maxpool_backward(prev.expect("a pool has an input"), prev_shape, &g, true),
            Node::AvgPool => adaptive_avgpool_backward(&g, prev_shape, FC_INPUT_HW, FC_INPUT_HW),
            Node::Fc(f) => {
                let fc = &w.fcs[f];
                let dx = fc_backward_input(&g, input_shape.batch, fc.inputs, &fc.w_io, fc.outputs);
                match (prev_node, prev) {
                    (Some(Node::Fc(_)), Some(p)) => relu_backward(&dx, p),
                    _ => dx,
                }
            }
        };
    }
    g
}

/// The objective seed on the CPU: d(weight · objective)/dz over the target tensor.
pub fn objective_seed(
    z: &[f32],
    s: Shape,
    b: usize,
    channel: usize,
    neuron: Option<(usize, usize)>,
    post_relu: bool,
    weight: f32,
    out: &mut [f32],
) {
    for y in 0..s.height {
        for x in 0..s.width {
            let i = ((b * s.height + y) * s.width + x) * s.channels + channel;
            let g = match neuron {
                None => weight / (s.height * s.width) as f32,
                Some((nx, ny)) if nx == x && ny == y => weight,
                Some(_) => 0.0,
            };
            out[i] = if post_relu && z[i] <= 0.0 { 0.0 } else { g };
        }
    }
}

/// Lucid's colour decorrelation then sigmoid, per pixel: img = σ(C t) with
/// C = color_correlation_svd_sqrt / 0.4619524 (or σ(t) without decorrelation).
pub fn color_sigmoid_forward(t: &[f32], decorrelate: bool) -> Vec<f32> {
    use crate::ops::image::{COLOR_CORRELATION_SQRT as M, MAX_NORM};
    let mut out = vec![0.0; t.len()];
    for (o, px) in out.chunks_exact_mut(3).zip(t.chunks_exact(3)) {
        for i in 0..3 {
            let z: f64 = if decorrelate { (0..3).map(|j| M[i][j] as f64 / MAX_NORM as f64 * px[j] as f64).sum() } else { px[i] as f64 };
            o[i] = (1.0 / (1.0 + (-z).exp())) as f32;
        }
    }
    out
}

/// Its adjoint (Jacobian transpose) given the forward output `img`.
pub fn color_sigmoid_backward(dimg: &[f32], img: &[f32], decorrelate: bool) -> Vec<f32> {
    use crate::ops::image::{COLOR_CORRELATION_SQRT as M, MAX_NORM};
    let mut out = vec![0.0; dimg.len()];
    for ((o, d), s) in out.chunks_exact_mut(3).zip(dimg.chunks_exact(3)).zip(img.chunks_exact(3)) {
        let dz: Vec<f64> = (0..3).map(|i| d[i] as f64 * s[i] as f64 * (1.0 - s[i] as f64)).collect();
        for j in 0..3 {
            o[j] = if decorrelate { (0..3).map(|i| M[i][j] as f64 / MAX_NORM as f64 * dz[i]).sum::<f64>() as f32 } else { dz[j] as f32 };
        }
    }
    out
}

/// The weights' preprocessing of [0, 1] RGB pixels.
pub fn preprocess_forward(img: &[f32], pre: &crate::weights::Preprocessing) -> Vec<f32> {
    let perm = pre.perm();
    let mut out = vec![0.0; img.len()];
    for (o, px) in out.chunks_exact_mut(3).zip(img.chunks_exact(3)) {
        for c in 0..3 {
            o[c] = ((px[perm[c]] as f64 * pre.scale as f64 - pre.mean[c] as f64) / pre.std[c] as f64) as f32;
        }
    }
    out
}

pub fn preprocess_backward(dx: &[f32], pre: &crate::weights::Preprocessing) -> Vec<f32> {
    let perm = pre.perm();
    let mut out = vec![0.0; dx.len()];
    for (o, d) in out.chunks_exact_mut(3).zip(dx.chunks_exact(3)) {
        for c in 0..3 {
            o[perm[c]] += (d[c] as f64 * pre.scale as f64 / pre.std[c] as f64) as f32;
        }
    }
    out
}

/// Lucid's fft_image on the CPU, by the direct 2-D sum (f64): spectrum
/// (B, 3, H, FW, 2) → image (B, H, W, 3), unpadded.
pub fn fourier_image(spec: &[f32], batch: usize, h: usize, w: usize, decay_power: f64) -> Vec<f32> {
    use crate::ops::fourier::{inverse_width, spectrum_scale, spectrum_width};
    use std::f64::consts::TAU;
    let (fw, nx) = (spectrum_width(w), inverse_width(w));
    let mut out = vec![0.0f32; batch * h * w * 3];
    for b in 0..batch {
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    let mut acc = 0.0f64;
                    for ky in 0..h {
                        for kx in 0..fw {
                            let i = (((b * 3 + c) * h + ky) * fw + kx) * 2;
                            let s = spectrum_scale(ky, kx, h, w, decay_power);
                            let (re, im) = (spec[i] as f64 * s, spec[i + 1] as f64 * s);
                            let a = TAU * (ky as f64 * y as f64 / h as f64 + kx as f64 * x as f64 / nx as f64);
                            let wk = if kx == 0 || 2 * kx == nx { 1.0 } else { 2.0 };
                            acc += wk * (re * a.cos() - im * a.sin());
                        }
                    }
                    out[((b * h + y) * w + x) * 3 + c] = (acc / (h * nx) as f64 / 4.0) as f32;
                }
            }
        }
    }
    out
}

// ------------------------------------------------------------ objectives

/// One layer's objective gradient: with respect to relu(z) for the terms
/// after the ReLU (`post`, unmasked) and with respect to z (`pre`).
#[derive(Clone, Debug)]
pub struct LayerSeed {
    pub node: usize,
    pub post: Vec<f32>,
    pub pre: Vec<f32>,
}

/// An objective's value on the CPU, straight from Lucid's formulas.
#[derive(Clone, Debug)]
pub struct ObjectiveRef {
    /// The whole objective.
    pub total: f64,
    /// Each image's own value (batch-wide means taken over that image alone;
    /// image b's share of diversity).
    pub per_image: Vec<f64>,
    pub seeds: Vec<LayerSeed>,
}

/// Lucid's diversity on F (B, P, C) unpadded: D and dD/dF, and image b's share.
pub fn diversity(f: &[f32], batch: usize, pixels: usize, channels: usize) -> (f64, Vec<f64>, Vec<f32>) {
    let c = channels;
    let grams: Vec<Vec<f64>> = (0..batch)
        .map(|b| {
            let mut g = vec![0.0f64; c * c];
            for q in 0..pixels {
                let row = &f[(b * pixels + q) * c..(b * pixels + q + 1) * c];
                for i in 0..c {
                    for j in 0..c {
                        g[i * c + j] += row[i] as f64 * row[j] as f64;
                    }
                }
            }
            g
        })
        .collect();
    let sq: Vec<f64> = grams.iter().map(|g| g.iter().map(|v| v * v).sum()).collect();
    let r: Vec<f64> = sq.iter().map(|s| s.max(1e-10).sqrt()).collect();
    let n: Vec<Vec<f64>> = grams.iter().zip(&r).map(|(g, r)| g.iter().map(|v| v / r).collect()).collect();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let bf = batch as f64;
    let mut share = vec![0.0; batch];
    for i in 0..batch {
        for j in 0..batch {
            if j != i {
                share[i] += dot(&n[i], &n[j]) / bf;
            }
        }
    }
    let total = share.iter().sum();
    // dD/dN_b = (2/B) sum_{j != b} N_j; through the normalization; dG/dF.
    let mut grad = vec![0.0f32; f.len()];
    for b in 0..batch {
        let mut q = vec![0.0f64; c * c];
        for (j, nj) in n.iter().enumerate() {
            if j != b {
                for (qq, v) in q.iter_mut().zip(nj) {
                    *qq += 2.0 / bf * v;
                }
            }
        }
        let nq = dot(&n[b], &q);
        let p: Vec<f64> = (0..c * c).map(|k| if sq[b] >= 1e-10 { (q[k] - n[b][k] * nq) / r[b] } else { q[k] / r[b] }).collect();
        for qx in 0..pixels {
            let base = (b * pixels + qx) * c;
            for ch in 0..c {
                let mut acc = 0.0f64;
                for c2 in 0..c {
                    acc += f[base + c2] as f64 * (p[c2 * c + ch] + p[ch * c + c2]);
                }
                grad[base + ch] = acc as f32;
            }
        }
    }
    (total, share, grad)
}

/// Lucid's `_tf_blur` (3x3, 0.5 around 1, zero padding, normalized) of one
/// image (H, W, 3).
pub fn blur3(img: &[f32], h: usize, w: usize) -> Vec<f64> {
    let mut out = vec![0.0f64; img.len()];
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let (mut s, mut n) = (0.0f64, 0.0f64);
                for dy in -1i64..=1 {
                    for dx in -1i64..=1 {
                        let (yy, xx) = (y as i64 + dy, x as i64 + dx);
                        if yy >= 0 && yy < h as i64 && xx >= 0 && xx < w as i64 {
                            let k = if dy == 0 && dx == 0 { 1.0 } else { 0.5 };
                            s += k * img[((yy as usize) * w + xx as usize) * 3 + c] as f64;
                            n += k;
                        }
                    }
                }
                out[(y * w + x) * 3 + c] = s / n;
            }
        }
    }
    out
}

/// The image regularizers of one image (H, W, 3): value and gradient.
pub fn image_regularizers(img: &[f32], h: usize, w: usize, reg: &crate::objective::ImageReg) -> (f64, Vec<f32>) {
    let sign = |v: f64| {
        if v > 0.0 {
            1.0
        } else if v < 0.0 {
            -1.0
        } else {
            0.0
        }
    };
    let at = |y: usize, x: usize, c: usize| img[(y * w + x) * 3 + c] as f64;
    let blurred = blur3(img, h, w);
    let mut value = 0.0f64;
    let mut grad = vec![0.0f32; img.len()];
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let v = at(y, x, c);
                let i = (y * w + x) * 3 + c;
                let mut g = 0.0f64;
                value += reg.l1 as f64 * (v - reg.l1_constant as f64).abs();
                g += reg.l1 as f64 * sign(v - reg.l1_constant as f64);
                if y + 1 < h {
                    let d = at(y + 1, x, c) - v;
                    value += reg.tv as f64 * d.abs();
                    g -= reg.tv as f64 * sign(d);
                }
                if y > 0 {
                    g += reg.tv as f64 * sign(v - at(y - 1, x, c));
                }
                if x + 1 < w {
                    let d = at(y, x + 1, c) - v;
                    value += reg.tv as f64 * d.abs();
                    g -= reg.tv as f64 * sign(d);
                }
                if x > 0 {
                    g += reg.tv as f64 * sign(v - at(y, x - 1, c));
                }
                let e = v - blurred[i];
                value += reg.blur as f64 * 0.5 * e * e;
                g += reg.blur as f64 * e;
                grad[i] = g as f32;
            }
        }
    }
    (value, grad)
}

/// A plan's layer terms on the CPU: `acts[node]` as [`vgg16_forward`] gives them.
pub fn plan_objective(plan: &crate::objective::Plan, acts: &[(Shape, Vec<f32>)]) -> ObjectiveRef {
    use crate::objective::{ALL_IMAGES, KIND_CHANNEL, KIND_DEEPDREAM, KIND_DIRECTION, KIND_NEURON};
    let batch = plan.batch;
    let mut total = 0.0f64;
    let mut per_image = vec![0.0f64; batch];
    let mut seeds = Vec::new();
    for l in &plan.layers {
        let (s, z) = &acts[l.node];
        let c = s.channels;
        let hw = s.height * s.width;
        let mut post = vec![0.0f32; z.len()];
        let mut pre = vec![0.0f32; z.len()];
        for (k, spec) in l.specs.iter().enumerate() {
            let is_post = spec.post_relu != 0;
            let a = |i: usize| if is_post { z[i].max(0.0) } else { z[i] } as f64;
            let out = if is_post { &mut post } else { &mut pre };
            let ch = spec.channel as usize;
            for b in 0..batch {
                if spec.batch != ALL_IMAGES && spec.batch as usize != b {
                    continue;
                }
                let mut sb = 0.0f64;
                for q in 0..hw {
                    for cc in 0..c {
                        let i = (b * hw + q) * c + cc;
                        let (v, d) = match spec.kind {
                            KIND_CHANNEL if cc == ch => (a(i), spec.scale as f64),
                            KIND_NEURON if cc == ch && q == spec.y as usize * s.width + spec.x as usize => (a(i), spec.scale as f64),
                            KIND_DEEPDREAM => (a(i) * a(i), 2.0 * spec.scale as f64 * a(i)),
                            KIND_DIRECTION => {
                                let v = l.vectors[spec.vec_offset as usize + cc] as f64;
                                (a(i) * v, spec.scale as f64 * v)
                            }
                            _ => (0.0, 0.0),
                        };
                        sb += v;
                        out[i] += d as f32;
                    }
                }
                let contribution = spec.scale as f64 * sb;
                total += contribution;
                per_image[b] += contribution * l.per_image[k] as f64;
            }
        }
        if let Some((w, is_post)) = l.diversity {
            let f: Vec<f32> = z.iter().map(|v| if is_post { v.max(0.0) } else { *v }).collect();
            let (d, share, grad) = diversity(&f, batch, hw, c);
            total += w as f64 * d;
            for (p, sh) in per_image.iter_mut().zip(&share) {
                *p += w as f64 * sh;
            }
            let out = if is_post { &mut post } else { &mut pre };
            for (o, g) in out.iter_mut().zip(&grad) {
                *o += w * g;
            }
        }
        seeds.push(LayerSeed { node: l.node, post, pre });
    }
    ObjectiveRef { total, per_image, seeds }
}

/// Lucid's redirected ReLU gradient (see shaders/relu.wgsl) on the CPU.
pub fn relu_redirect(g: &[f32], z: &[f32], batch: usize) -> Vec<f32> {
    let per = g.len() / batch;
    let mut out = vec![0.0; g.len()];
    for b in 0..batch {
        let r = b * per..(b + 1) * per;
        let passes = g[r.clone()].iter().zip(&z[r.clone()]).any(|(g, z)| *z >= 0.0 && *g != 0.0);
        for i in r {
            out[i] = if z[i] < 0.0 && (passes || g[i] < 0.0) { 0.0 } else { g[i] };
        }
    }
    out
}

/// Backward through VGG16 from seeds at several layers, with the plain or
/// Lucid's redirected ReLU gradient: d(objective)/d(input image).
pub fn vgg16_backward_seeds(
    w: &crate::model::Vgg16Weights,
    input_shape: Shape,
    acts: &[(Shape, Vec<f32>)],
    seeds: &[LayerSeed],
    redirect: bool,
) -> Vec<f32> {
    use crate::model::{nodes, Node, FC_INPUT_HW};
    let list = nodes(!w.fcs.is_empty());
    let deepest = acts.len() - 1;
    let mut g = vec![0.0f32; acts[deepest].1.len()];
    for i in (0..=deepest).rev() {
        let seed = seeds.iter().find(|s| s.node == i);
        if let Some(s) = seed {
            g.iter_mut().zip(&s.post).for_each(|(g, v)| *g += v);
        }
        if crate::objective::has_relu(list[i].1) {
            g = if redirect { relu_redirect(&g, &acts[i].1, input_shape.batch) } else { relu_backward(&g, &acts[i].1) };
        }
        if let Some(s) = seed {
            g.iter_mut().zip(&s.pre).for_each(|(g, v)| *g += v);
        }
        let prev_shape = if i == 0 { input_shape } else { acts[i - 1].0 };
        g = match list[i].1 {
            Node::Conv(c) => conv3x3_backward_input(&g, prev_shape, &w.convs[c].w_hwio, acts[i].0.channels),
            Node::Pool(_) => maxpool_backward(&acts[i - 1].1, prev_shape, &g, false),
            Node::AvgPool => adaptive_avgpool_backward(&g, prev_shape, FC_INPUT_HW, FC_INPUT_HW),
            Node::Fc(f) => {
                let fc = &w.fcs[f];
                fc_backward_input(&g, input_shape.batch, fc.inputs, &fc.w_io, fc.outputs)
            }
        };
    }
    g
}
