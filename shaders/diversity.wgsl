// Lucid's diversity objective at one layer (lucid/optvis/objectives.py):
//   F_b  = a[b] as an (H*W) x C matrix, a = relu(z) after the ReLU, else z
//   G_b  = F_bᵀ F_b,  N_b = G_b / sqrt(max(|G_b|², 1e-10))   (tf.nn.l2_normalize)
//   D    = (1/B) sum_i sum_{j != i} <N_i, N_j>
// times `weight` (the Distill recipe uses -100). Its gradient, with
// r_b = sqrt(max(|G_b|², eps)) and M_ij = <G_i, G_j>:
//   dD/dG_b = sum_j coef[b,j] G_j,
//   coef[b,j] = (2/B) / (r_b r_j)                          for j != b
//   coef[b,b] = -(2/B) / r_b³ * sum_{j != b} M_bj / r_j    (0 when |G_b|² < eps)
//   dD/dF_b  = 2 F_b P_b,  P_b = dD/dG_b (symmetric)
// Kernels, in order: gram (G), dots (M), coef (coef and per-image values),
// pmat (P), grad (adds weight * dD/da to the layer's gradient; with MASK,
// times (z > 0): the plain ReLU gradient).
// Every buffer is viewed as scalars; z and the gradient are NHWC with the
// channels padded to CP (a multiple of 4).

const WG: u32 = 64u;
const EPS: f32 = 1e-10;

struct DivParams {
    batch: u32,
    hw: u32,
    channels: u32,
    cp: u32,
    total: u32,
    post_relu: u32,
    mask: u32,
    value_offset: u32,  // coef: the first value slot (vec4 slots) in dst
    coef_offset: u32,   // coef, pmat: where coef (B*B floats) lives in the values buffer
    weight: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: DivParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> aux: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

fn act(i: u32) -> f32 {
    let v = src[i];
    return select(v, max(v, 0.0), p.post_relu != 0u);
}

fn gid(wg: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
    return (wg.x + wg.y * nwg.x) * WG + li;
}

// src = z, dst = G (B, C, C).
@compute @workgroup_size(WG)
fn diversity_gram(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = gid(wg, nwg, li);
    if (i >= p.total) {
        return;
    }
    let c2 = i % p.channels;
    let c1 = (i / p.channels) % p.channels;
    let b = i / (p.channels * p.channels);
    var s = 0.0;
    for (var q = 0u; q < p.hw; q++) {
        let base = (b * p.hw + q) * p.cp;
        s += act(base + c1) * act(base + c2);
    }
    dst[i] = s;
}

var<workgroup> partial: array<f32, WG>;

fn reduce(li: u32) -> f32 {
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (li < stride) {
            partial[li] += partial[li + stride];
        }
        workgroupBarrier();
    }
    return partial[0];
}

// One workgroup per (i, j): src = G, dst = M (B, B).
@compute @workgroup_size(WG)
fn diversity_dots(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let k = wg.x + wg.y * nwg.x;
    let valid = k < p.batch * p.batch;
    var s = 0.0;
    if (valid) {
        let n = p.channels * p.channels;
        let gi = (k / p.batch) * n;
        let gj = (k % p.batch) * n;
        for (var t = li; t < n; t += WG) {
            s += src[gi + t] * src[gj + t];
        }
    }
    partial[li] = s;
    let total = reduce(li);
    if (valid && li == 0u) {
        dst[k] = total;
    }
}

fn norm(b: u32) -> f32 {
    return sqrt(max(src[b * p.batch + b], EPS));
}

// One workgroup; invocation b < B: src = M, dst = the values buffer.
@compute @workgroup_size(WG)
fn diversity_coef(@builtin(local_invocation_index) li: u32) {
    for (var b = li; b < p.batch; b += WG) {
        let rb = norm(b);
        let scale = 2.0 / f32(p.batch);
        var cross = 0.0;  // sum_{j != b} M_bj / r_j
        for (var j = 0u; j < p.batch; j++) {
            if (j != b) {
                let rj = norm(j);
                cross += src[b * p.batch + j] / rj;
                dst[p.coef_offset + b * p.batch + j] = p.weight * scale / (rb * rj);
            }
        }
        let live = src[b * p.batch + b] >= EPS;
        dst[p.coef_offset + b * p.batch + b] = select(0.0, -p.weight * scale * cross / (rb * rb * rb), live);
        // Image b's share of D: (1/B) sum_{j != b} <N_b, N_j>.
        let v = 4u * (p.value_offset + b);
        dst[v] = p.weight * cross / (rb * f32(p.batch));
        dst[v + 1u] = 0.0;
        dst[v + 2u] = 0.0;
        dst[v + 3u] = 0.0;
    }
}

// src = G, aux = the values buffer (coef), dst = P (B, C, C).
@compute @workgroup_size(WG)
fn diversity_pmat(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = gid(wg, nwg, li);
    if (i >= p.total) {
        return;
    }
    let n = p.channels * p.channels;
    let b = i / n;
    let e = i % n;
    var s = 0.0;
    for (var j = 0u; j < p.batch; j++) {
        s += aux[p.coef_offset + b * p.batch + j] * src[j * n + e];
    }
    dst[i] = s;
}

// src = z, aux = P, dst = the layer's gradient (B, H*W, CP): dst += 2 F P.
@compute @workgroup_size(WG)
fn diversity_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = gid(wg, nwg, li);
    if (i >= p.total) {
        return;
    }
    let c = i % p.cp;
    if (c >= p.channels) {
        return;
    }
    let row = i - c;
    let b = i / (p.hw * p.cp);
    let pb = b * p.channels * p.channels;
    var s = 0.0;
    for (var c2 = 0u; c2 < p.channels; c2++) {
        s += act(row + c2) * aux[pb + c2 * p.channels + c];
    }
    var g = 2.0 * s;
    if (p.mask != 0u && src[i] <= 0.0) {
        g = 0.0;
    }
    dst[i] += g;
}
