// From the parameterization's output to the network's input, per pixel,
// NHWC with the 3 colour channels in a vec4 (the fourth is zero).
//
// color_sigmoid:  img = sigmoid(C · t), C = Lucid's colour correlation square
//                 root divided by its largest column norm (0.4619524); with
//                 DECORRELATE = 0, img = sigmoid(t) (plain pixel parameterization).
//                 Backward: dt = Cᵀ (dimg ⊙ img ⊙ (1 − img)).
// preprocess:     x[c] = (img[perm[c]] · scale − mean[c]) · inv_std[c], the
//                 weights' preprocessing (RGB→BGR is perm = (2, 1, 0)).
//                 Backward (its adjoint): dimg[perm[c]] = dx[c] · scale · inv_std[c].

const WG: u32 = 64u;
const DECORRELATE: u32 = 1u;

struct ImageParams {
    pixels: u32,   // B * H * W
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    mean: vec4<f32>,     // per network channel
    inv_std: vec4<f32>,  // per network channel
    perm: vec4<u32>,     // network channel c reads image channel perm[c]
    scale: vec4<f32>,    // .x: factor applied to [0, 1] pixels (255 or 1)
}

@group(0) @binding(0) var<uniform> p: ImageParams;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;        // (B, H, W, 4)
@group(0) @binding(2) var<storage, read> aux: array<vec4<f32>>;        // color_sigmoid_backward: img; else unused
@group(0) @binding(3) var<storage, read_write> dst: array<vec4<f32>>;  // (B, H, W, 4)

// Lucid's color_correlation_svd_sqrt / max column norm, as columns (WGSL mat3x3 is column-major).
const MAX_NORM: f32 = 0.4619524;
const COLOR: mat3x3<f32> = mat3x3<f32>(
    vec3<f32>(0.26, 0.27, 0.27) / MAX_NORM,
    vec3<f32>(0.09, 0.00, -0.09) / MAX_NORM,
    vec3<f32>(0.02, -0.05, 0.03) / MAX_NORM,
);

fn pixel(wg: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
    return (wg.x + wg.y * nwg.x) * WG + li;
}

@compute @workgroup_size(WG)
fn color_sigmoid_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = pixel(wg, nwg, li);
    if (i >= p.pixels) {
        return;
    }
    var t = src[i].xyz;
    if (DECORRELATE != 0u) {
        t = COLOR * t;
    }
    dst[i] = vec4<f32>(1.0 / (1.0 + exp(-t)), 0.0);
}

@compute @workgroup_size(WG)
fn color_sigmoid_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = pixel(wg, nwg, li);
    if (i >= p.pixels) {
        return;
    }
    let s = aux[i].xyz;
    var d = src[i].xyz * s * (1.0 - s);
    if (DECORRELATE != 0u) {
        d = transpose(COLOR) * d;
    }
    dst[i] = vec4<f32>(d, 0.0);
}

@compute @workgroup_size(WG)
fn preprocess_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = pixel(wg, nwg, li);
    if (i >= p.pixels) {
        return;
    }
    let img = src[i];
    var x = vec4<f32>(0.0);
    for (var c = 0u; c < 3u; c++) {
        x[c] = (img[p.perm[c]] * p.scale.x - p.mean[c]) * p.inv_std[c];
    }
    dst[i] = x;
}

@compute @workgroup_size(WG)
fn preprocess_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = pixel(wg, nwg, li);
    if (i >= p.pixels) {
        return;
    }
    let dx = src[i];
    var d = vec4<f32>(0.0);
    for (var c = 0u; c < 3u; c++) {
        d[p.perm[c]] += dx[c] * p.scale.x * p.inv_std[c];
    }
    dst[i] = d;
}
