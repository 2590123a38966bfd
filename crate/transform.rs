//! The random spatial transforms of Lucid and of the Distill article,
//! composed into one affine map per image and step (sampled bilinearly on
//! the GPU, padded area 0.5). All randomness comes from the caller's
//! [`Rng`], on the CPU: the same seed gives the same maps natively and in wasm.

use crate::error::{Error, Result};
use crate::rng::Rng;

/// A named transform recipe.
#[derive(Clone, Debug, PartialEq)]
pub struct Recipe {
    /// Constant padding (value 0.5) on every side.
    pub pad: usize,
    /// First jitter: a random crop of `jitter1` fewer pixels per axis.
    pub jitter1: usize,
    /// Scale factors to draw from (uniformly).
    pub scales: Vec<f64>,
    /// Rotation angles in degrees to draw from (uniformly).
    pub angles: Vec<f64>,
    /// Second jitter.
    pub jitter2: usize,
}

impl Recipe {
    /// The Distill article's footnote (the default): pad 16, jitter 16,
    /// scale {1, 0.975, 1.025, 0.95, 1.05}, rotate −5…5°, jitter 8.
    pub fn distill() -> Recipe {
        Recipe { pad: 16, jitter1: 16, scales: vec![1.0, 0.975, 1.025, 0.95, 1.05], angles: (-5..=5).map(f64::from).collect(), jitter2: 8 }
    }

    /// Lucid's `standard_transforms`: pad 12, jitter 8, scale 0.90…1.10 in
    /// steps of 0.02, rotate −10…10° plus five extra 0°, jitter 4.
    pub fn lucid() -> Recipe {
        let mut angles: Vec<f64> = (-10..=10).map(f64::from).collect();
        angles.extend([0.0; 5]);
        Recipe { pad: 12, jitter1: 8, scales: (0..11).map(|i| 1.0 + (i as f64 - 5.0) / 50.0).collect(), angles, jitter2: 4 }
    }

    /// No transform.
    pub fn none() -> Recipe {
        Recipe { pad: 0, jitter1: 0, scales: vec![1.0], angles: vec![0.0], jitter2: 0 }
    }

    /// The preset this recipe equals, or "custom".
    pub fn name(&self) -> &'static str {
        if *self == Self::distill() {
            "distill"
        } else if *self == Self::lucid() {
            "lucid"
        } else if *self == Self::none() {
            "none"
        } else {
            "custom"
        }
    }

    pub fn by_name(name: &str) -> Result<Recipe> {
        match name {
            "distill" => Ok(Self::distill()),
            "lucid" => Ok(Self::lucid()),
            "none" => Ok(Self::none()),
            _ => Err(Error::Invalid(format!("unknown transforms `{name}`: use distill, lucid or none"))),
        }
    }

    /// Draw one image's map for an H×W image: output pixel centre q (in the
    /// final H×W frame) samples the source at index coordinates `A q + t`.
    pub fn draw(&self, rng: &mut Rng, h: usize, w: usize) -> Affine {
        let o1 = (rng.below(self.jitter1 as u64 + 1) as f64, rng.below(self.jitter1 as u64 + 1) as f64);
        let s = self.scales[rng.below(self.scales.len() as u64) as usize];
        let deg = self.angles[rng.below(self.angles.len() as u64) as usize];
        let o2 = (rng.below(self.jitter2 as u64 + 1) as f64, rng.below(self.jitter2 as u64 + 1) as f64);
        Affine::compose(h, w, self.pad, o1, s, deg, self.jitter1, o2, self.jitter2)
    }
}

/// s = m · q + t, q a pixel centre of the output (u + ½, v + ½), s in the
/// source's index coordinates (pixel (x, y) sits at s = (x, y)).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine {
    /// Row-major 2×2: [a, b, c, d] → s.x = a q.x + b q.y, s.y = c q.x + d q.y.
    pub m: [f64; 4],
    pub t: [f64; 2],
}

impl Affine {
    pub fn identity() -> Affine {
        Affine { m: [1.0, 0.0, 0.0, 1.0], t: [-0.5, -0.5] }
    }

    /// Work backwards from the final frame through crop, jitter 2, rotation
    /// (about the centre), scale, jitter 1 and padding, in continuous
    /// coordinates with pixel centres at i + ½.
    #[allow(clippy::too_many_arguments)]
    pub fn compose(h: usize, w: usize, pad: usize, o1: (f64, f64), scale: f64, deg: f64, j1: usize, o2: (f64, f64), j2: usize) -> Affine {
        let size = |n: usize| {
            let n1 = n + 2 * pad; // padded
            let n2 = n1 - j1; // first jitter
            let n4 = ((n2 as f64) * scale).floor().max(1.0); // scaled (as TF: cast to int)
            let n5 = n4 - j2 as f64; // second jitter
            (n2 as f64, n4, n5)
        };
        let (w2, w4, w5) = size(w);
        let (h2, h4, h5) = size(h);
        // Final centre crop (or pad) offset, floor((n5 - n) / 2).
        let cx = ((w5 - w as f64) / 2.0).floor();
        let cy = ((h5 - h as f64) / 2.0).floor();
        // p4 = q + c + o2 (frame of the rotated, scaled image, size n4).
        let (tx4, ty4) = (cx + o2.0, cy + o2.1);
        // p3 = R(−θ)(p4 − ctr) + ctr.
        let th = deg.to_radians();
        let (cos, sin) = (th.cos(), th.sin());
        let (ctrx, ctry) = (w4 / 2.0, h4 / 2.0);
        // p2 = p3 · (n2 / n4); p0 = p2 + o1 − pad.
        let (kx, ky) = (w2 / w4, h2 / h4);
        // Linear part: diag(kx, ky) · R(−θ).
        let m = [kx * cos, kx * sin, -ky * sin, ky * cos];
        // Offset: diag(k) (R(−θ)((tx4, ty4) − ctr) + ctr) + o1 − pad − ½ (index coordinates).
        let (dx, dy) = (tx4 - ctrx, ty4 - ctry);
        let rx = cos * dx + sin * dy + ctrx;
        let ry = -sin * dx + cos * dy + ctry;
        let t = [kx * rx + o1.0 - pad as f64 - 0.5, ky * ry + o1.1 - pad as f64 - 0.5];
        Affine { m, t }
    }

    pub fn apply(&self, q: (f64, f64)) -> (f64, f64) {
        (self.m[0] * q.0 + self.m[1] * q.1 + self.t[0], self.m[2] * q.0 + self.m[3] * q.1 + self.t[1])
    }

    pub fn inverse(&self) -> Affine {
        let [a, b, c, d] = self.m;
        let det = a * d - b * c;
        let mi = [d / det, -b / det, -c / det, a / det];
        let t = [-(mi[0] * self.t[0] + mi[1] * self.t[1]), -(mi[2] * self.t[0] + mi[3] * self.t[1])];
        Affine { m: mi, t }
    }

    /// The GPU layout: four vec4s (m; t; inverse m; inverse t).
    pub fn to_gpu(&self) -> [f32; 16] {
        let inv = self.inverse();
        let f = |v: f64| v as f32;
        [
            f(self.m[0]),
            f(self.m[1]),
            f(self.m[2]),
            f(self.m[3]),
            f(self.t[0]),
            f(self.t[1]),
            0.0,
            0.0,
            f(inv.m[0]),
            f(inv.m[1]),
            f(inv.m[2]),
            f(inv.m[3]),
            f(inv.t[0]),
            f(inv.t[1]),
            0.0,
            0.0,
        ]
    }
}

/// Bilinear sample of one channel of an H×W image at index coordinates s,
/// reading 0.5 outside (the constant padding).
pub fn sample(img: &[f32], h: usize, w: usize, c: usize, s: (f64, f64)) -> f64 {
    let (x0, y0) = (s.0.floor(), s.1.floor());
    let mut acc = 0.0;
    for (yy, wy) in [(y0, 1.0 - (s.1 - y0)), (y0 + 1.0, s.1 - y0)] {
        for (xx, wx) in [(x0, 1.0 - (s.0 - x0)), (x0 + 1.0, s.0 - x0)] {
            let v = if xx >= 0.0 && yy >= 0.0 && (xx as usize) < w && (yy as usize) < h {
                img[((yy as usize) * w + xx as usize) * 3 + c] as f64
            } else {
                0.5
            };
            acc += wx * wy * v;
        }
    }
    acc
}
