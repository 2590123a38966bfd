// Fully connected layers (fc6, fc7, fc8) on one chunk of output features.
// A layer's weights are split by output feature into chunks that each fit one
// storage binding (fc6 alone is 102 M weights, over 128 MiB).
//
// Forward:  y[b, o] = bias[o] + sum_i x'[b, i] * w[i, o - o_start], for o in the chunk,
//           x' = relu(x) when RELU_INPUT (inputs are stored before their ReLU).
// Backward: dx[b, i] = (ACCUMULATE ? dx[b, i] : 0) + sum_{o in chunk} w[i, o - o_start] * dy[b, o],
//           times (mask[b, i] > 0) when MASK_OUTPUT. Applying the mask to each
//           chunk's share is the same as applying it to the sum.

const WG: u32 = 64u;
const RELU_INPUT: u32 = 0u;
const ACCUMULATE: u32 = 0u;
const MASK_OUTPUT: u32 = 0u;

struct FcParams {
    batch: u32,
    in4: u32,         // input features / 4
    out4: u32,        // output features / 4 (padded): the stride of y / dy
    chunk_out4: u32,  // output vec4s in this chunk: the stride of w's rows
    o4_start: u32,    // first output vec4 of this chunk
    total: u32,       // invocations that do work
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: FcParams;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;        // forward: x (B, in4); backward: dy (B, out4)
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;          // (in4 * 4, chunk_out4)
@group(0) @binding(3) var<storage, read> bias_or_mask: array<vec4<f32>>; // forward: bias (out4); backward: mask (B, in4) or a dummy
@group(0) @binding(4) var<storage, read_write> dst: array<vec4<f32>>;  // forward: y (B, out4); backward: dx (B, in4)

@compute @workgroup_size(WG)
fn fc_forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let gid = (wg.x + wg.y * nwg.x) * WG + li;
    if (gid >= p.total) {
        return;
    }
    let o = gid % p.chunk_out4;
    let b = gid / p.chunk_out4;
    let n = p.chunk_out4;
    var acc = vec4<f32>(0.0);
    for (var i4 = 0u; i4 < p.in4; i4++) {
        var v = src[b * p.in4 + i4];
        if (RELU_INPUT != 0u) {
            v = max(v, vec4<f32>(0.0));
        }
        let r = i4 * 4u * n + o;
        acc += v.x * w[r] + v.y * w[r + n] + v.z * w[r + 2u * n] + v.w * w[r + 3u * n];
    }
    let og = p.o4_start + o;
    dst[b * p.out4 + og] = acc + bias_or_mask[og];
}

@compute @workgroup_size(WG)
fn fc_backward_input(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let gid = (wg.x + wg.y * nwg.x) * WG + li;
    if (gid >= p.total) {
        return;
    }
    let i4 = gid % p.in4;
    let b = gid / p.in4;
    let n = p.chunk_out4;
    var acc = vec4<f32>(0.0);
    for (var o = 0u; o < n; o++) {
        let g = src[b * p.out4 + p.o4_start + o];
        let r = i4 * 4u * n + o;
        acc += vec4<f32>(dot(w[r], g), dot(w[r + n], g), dot(w[r + 2u * n], g), dot(w[r + 3u * n], g));
    }
    let di = b * p.in4 + i4;
    if (ACCUMULATE != 0u) {
        acc += dst[di];
    }
    if (MASK_OUTPUT != 0u) {
        acc = select(vec4<f32>(0.0), acc, bias_or_mask[di] > vec4<f32>(0.0));
    }
    dst[di] = acc;
}
