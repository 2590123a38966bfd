//! The CPU reference's backward passes against central finite differences
//! of its own forward passes, on a tiny net: conv → relu → maxpool → conv →
//! relu → adaptive avgpool → fc → relu → fc, objective = weighted sum.
#![cfg(not(target_arch = "wasm32"))]

use featvis::ops::Shape;
use featvis::reference as r;
use featvis::rng::Rng;

struct Net {
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: Vec<f32>,
    f1: Vec<f32>,
    fb1: Vec<f32>,
    f2: Vec<f32>,
    fb2: Vec<f32>,
    out_w: Vec<f32>,
}

const B: usize = 2;
const H: usize = 7;
const W: usize = 6;
const C0: usize = 3;
const C1: usize = 5;
const C2: usize = 6;
const P: usize = 2; // adaptive pool output side
const F1: usize = 8;
const F2: usize = 4;

impl Net {
    fn new(seed: u64) -> Net {
        let mut g = Rng::new(seed);
        Net {
            w1: g.normal_vec(9 * C0 * C1, 0.4),
            b1: g.normal_vec(C1, 0.3),
            w2: g.normal_vec(9 * C1 * C2, 0.3),
            b2: g.normal_vec(C2, 0.3),
            f1: g.normal_vec(P * P * C2 * F1, 0.3),
            fb1: g.normal_vec(F1, 0.3),
            f2: g.normal_vec(F1 * F2, 0.3),
            fb2: g.normal_vec(F2, 0.3),
            out_w: g.normal_vec(B * F2, 1.0),
        }
    }

    /// Returns the objective and, if asked, the gradient w.r.t. x.
    fn run(&self, x: &[f32], grad: bool) -> (f64, Option<Vec<f32>>) {
        let s0 = Shape::new(B, H, W, C0);
        let z1 = r::conv3x3_forward(x, s0, &self.w1, &self.b1, C1);
        let s1 = Shape::new(B, H, W, C1);
        let p1 = r::maxpool_forward(&z1, s1);
        let sp = Shape::new(B, H / 2, W / 2, C1);
        let z2 = r::conv3x3_forward(&p1, sp, &self.w2, &self.b2, C2);
        let s2 = Shape::new(B, H / 2, W / 2, C2);
        let a2 = r::relu(&z2);
        let q = r::adaptive_avgpool_forward(&a2, s2, P, P);
        let y1 = r::fc_forward(&q, B, P * P * C2, &self.f1, &self.fb1, F1);
        let y2 = r::fc_forward(&r::relu(&y1), B, F1, &self.f2, &self.fb2, F2);
        let obj: f64 = y2.iter().zip(&self.out_w).map(|(a, b)| *a as f64 * *b as f64).sum();
        if !grad {
            return (obj, None);
        }
        let g_y2 = self.out_w.clone();
        let g_y1 = r::relu_backward(&r::fc_backward_input(&g_y2, B, F1, &self.f2, F2), &y1);
        let g_q = r::fc_backward_input(&g_y1, B, P * P * C2, &self.f1, F1);
        let g_a2 = r::adaptive_avgpool_backward(&g_q, s2, P, P);
        let g_z2 = r::relu_backward(&g_a2, &z2);
        let g_p1 = r::conv3x3_backward_input(&g_z2, sp, &self.w2, C2);
        let g_z1 = r::maxpool_backward(&z1, s1, &g_p1, true);
        let g_x = r::conv3x3_backward_input(&g_z1, s0, &self.w1, C1);
        (obj, Some(g_x))
    }
}

#[test]
fn reference_backward_matches_finite_differences() {
    let net = Net::new(3);
    let mut rng = Rng::new(4);
    let x = rng.normal_vec(B * H * W * C0, 1.0);
    let (_, g) = net.run(&x, true);
    let g = g.unwrap();
    assert!(g.iter().filter(|v| v.abs() > 1e-4).count() > g.len() / 4, "gradient mostly zero: the check would be weak");
    let eps = 1e-2f32;
    let gmax = g.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
    let mut checked = 0;
    for i in 0..x.len() {
        let mut xp = x.clone();
        let mut xm = x.clone();
        xp[i] += eps;
        xm[i] -= eps;
        let (fp, _) = net.run(&xp, false);
        let (fm, _) = net.run(&xm, false);
        let (f0, _) = net.run(&x, false);
        let fd = (fp - fm) / (2.0 * eps as f64);
        // Skip coordinates where a ReLU or max-pool kink lies within ±eps:
        // the one-sided slopes disagree there.
        let right = (fp - f0) / eps as f64;
        let left = (f0 - fm) / eps as f64;
        if (right - left).abs() > 1e-2 * (1.0 + fd.abs()) {
            continue;
        }
        checked += 1;
        let err = (fd - g[i] as f64).abs();
        let tol = 2e-2 * fd.abs() + 2e-3 * gmax;
        assert!(err <= tol, "index {i}: finite difference {fd}, backward {}, error {err:.2e} > {tol:.2e}", g[i]);
    }
    assert!(checked > x.len() * 3 / 4, "only {checked} of {} coordinates were smooth enough to check", x.len());
}

#[test]
fn conv_backward_is_the_adjoint_of_forward() {
    // <conv(x), y> = <x, conv_backward(y)> for the bias-free conv.
    let mut rng = Rng::new(9);
    let s = Shape::new(2, 5, 7, 3);
    let cout = 4;
    let x = rng.normal_vec(s.pixels() * 3, 1.0);
    let y = rng.normal_vec(s.pixels() * cout, 1.0);
    let w = rng.normal_vec(9 * 3 * cout, 1.0);
    let ax = r::conv3x3_forward(&x, s, &w, &[0.0; 4], cout);
    let aty = r::conv3x3_backward_input(&y, s, &w, cout);
    let lhs: f64 = ax.iter().zip(&y).map(|(a, b)| *a as f64 * *b as f64).sum();
    let rhs: f64 = x.iter().zip(&aty).map(|(a, b)| *a as f64 * *b as f64).sum();
    assert!((lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0), "{lhs} vs {rhs}");
}

#[test]
fn color_sigmoid_backward_matches_finite_differences() {
    let mut rng = Rng::new(21);
    let t = rng.normal_vec(5 * 3, 1.0);
    let w = rng.normal_vec(5 * 3, 1.0);
    for decorrelate in [true, false] {
        let f = |t: &[f32]| -> f64 { r::color_sigmoid_forward(t, decorrelate).iter().zip(&w).map(|(a, b)| *a as f64 * *b as f64).sum() };
        let img = r::color_sigmoid_forward(&t, decorrelate);
        let g = r::color_sigmoid_backward(&w, &img, decorrelate);
        for i in 0..t.len() {
            let eps = 1e-2f32;
            let (mut tp, mut tm) = (t.clone(), t.clone());
            tp[i] += eps;
            tm[i] -= eps;
            let fd = (f(&tp) - f(&tm)) / (2.0 * eps as f64);
            assert!((fd - g[i] as f64).abs() < 1e-3 * (1.0 + fd.abs()), "index {i}: fd {fd} vs {}", g[i]);
        }
    }
}

/// Central difference of `f` at coordinate `i` of `x`.
fn central(f: &dyn Fn(&[f32]) -> f64, x: &[f32], i: usize, h: f32) -> f64 {
    let mut p = x.to_vec();
    p[i] = x[i] + h;
    let up = f(&p);
    p[i] = x[i] - h;
    let down = f(&p);
    (up - down) / (2.0 * h as f64)
}

fn check_fd(what: &str, f: &dyn Fn(&[f32]) -> f64, x: &[f32], grad: &[f32], coords: &[usize], h: f32, tol: f64) {
    let scale = grad.iter().map(|v| v.abs() as f64).fold(0.0, f64::max).max(1e-9);
    let mut nonzero = 0;
    for &i in coords {
        let fd = central(f, x, i, h);
        let err = (fd - grad[i] as f64).abs() / (fd.abs() + 0.05 * scale);
        assert!(err < tol, "{what}: coordinate {i}: analytic {} vs finite difference {fd} (relative error {err:.2e})", grad[i]);
        nonzero += usize::from(fd.abs() > 1e-6 * scale);
    }
    assert!(nonzero * 2 >= coords.len(), "{what}: most checked derivatives are zero; the check proves little");
}

#[test]
fn diversity_gradient_matches_finite_differences() {
    let (b, p, c) = (3, 5, 4);
    let mut rng = Rng::new(12);
    let f = rng.normal_vec(b * p * c, 1.0);
    let (_, _, grad) = r::diversity(&f, b, p, c);
    let value = |x: &[f32]| r::diversity(x, b, p, c).0;
    let coords: Vec<usize> = (0..f.len()).collect();
    check_fd("diversity", &value, &f, &grad, &coords, 1e-2, 2e-3);
    // The shares add up to the value.
    let (d, shares, _) = r::diversity(&f, b, p, c);
    assert!((shares.iter().sum::<f64>() - d).abs() < 1e-12);
}

#[test]
fn composed_objective_chain_matches_finite_differences() {
    use featvis::model::{nodes, Vgg16Weights};
    use featvis::objective::{plan, Objective};
    use featvis::weights::Preprocessing;
    // t (pre-sigmoid image) → colour decorrelation + sigmoid → Keras
    // preprocessing → VGG16 to conv2_1 → a weighted sum of channel, neuron,
    // pre-ReLU channel, deepdream, direction and diversity terms at three
    // layers, minus L1 and TV on the image. (Blur is left out: its
    // blurred copy is held constant, as Lucid's stop_gradient, so it has no
    // finite-difference counterpart.)
    let (b, h, w) = (2, 8, 8);
    let text = "conv1_2:3 + 2*conv1_2:5@3,4[1] + 0.5*conv2_1_pre_relu:7 + 0.01*deepdream(pool1) \
                + direction(conv2_1, 3=1, 9=-2) - 10*diversity(conv1_2) - 0.05*l1(0.5) - 0.02*tv()";
    let objective = Objective::parse(text).unwrap();
    let weights = Vgg16Weights::random(5, None);
    let pl = plan(&objective, b, h, w, false, 0).unwrap();
    let deepest = pl.deepest().unwrap();
    assert_eq!(nodes(false)[deepest].0, "conv2_1");
    let pre = Preprocessing::keras();
    let mut rng = Rng::new(3);
    let t = rng.normal_vec(b * h * w * 3, 0.5);
    let regs = pl.image.clone();
    let n = h * w * 3;
    let total = |t: &[f32]| -> f64 {
        let img = r::color_sigmoid_forward(t, true);
        let x = r::preprocess_forward(&img, &pre);
        let acts = r::vgg16_forward(&weights, &x, b, h, w, deepest);
        let mut v = r::plan_objective(&pl, &acts).total;
        for (i, reg) in regs.iter().enumerate() {
            v += r::image_regularizers(&img[i * n..(i + 1) * n], h, w, reg).0;
        }
        v
    };
    let img = r::color_sigmoid_forward(&t, true);
    let x = r::preprocess_forward(&img, &pre);
    let acts = r::vgg16_forward(&weights, &x, b, h, w, deepest);
    let o = r::plan_objective(&pl, &acts);
    let dx = r::vgg16_backward_seeds(&weights, Shape::new(b, h, w, 3), &acts, &o.seeds, false);
    let mut dimg = r::preprocess_backward(&dx, &pre);
    for (i, reg) in regs.iter().enumerate() {
        let (_, g) = r::image_regularizers(&img[i * n..(i + 1) * n], h, w, reg);
        dimg[i * n..(i + 1) * n].iter_mut().zip(&g).for_each(|(a, g)| *a += g);
    }
    let dt = r::color_sigmoid_backward(&dimg, &img, true);
    let coords: Vec<usize> = (0..t.len()).step_by(7).collect();
    check_fd("composed chain", &total, &t, &dt, &coords, 1e-3, 2e-2);
}
