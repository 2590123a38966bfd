// conv3x3, stride 1, zero padding 1, NHWC with channels in vec4s.
//
// Forward:  y[b,oy,ox,co] = bias[co] + sum_{ky,kx,ci} x'[b,oy+ky-1,ox+kx-1,ci] * w[ky,kx,ci,co]
//           where x' = relu(x) when RELU_INPUT (activations are stored before
//           their ReLU; the consumer applies it).
// Backward to the input is the same convolution of the output gradient with
// the weights flipped in space and transposed in channels (prepared once on
// the CPU), with no bias, and the ReLU mask of the input layer fused into the
// store: dx = conv(dy, w_flipped) * (mask > 0).
//
// Two schedules share these bindings (the host picks one per adapter, both
// are under the same parity tests):
//   *_register: one invocation computes PX pixels of a row × CO4 vec4s of output
//               channels, no workgroup memory (fast on llvmpipe / SwiftShader);
//   *_tiled:    implicit GEMM, 64 pixels × 64 channels per workgroup of 256,
//               staged through workgroup memory.
// crate/ops/conv_gen.rs generates two more families on the same bindings:
// unrolled register tiles (with subgroup broadcast) and the implicit-GEMM
// family for GPUs (double-buffered tiles of 16–128 × 16–128).

const PX: u32 = 16u;        // pixels per invocation (register schedule)
const CO4: u32 = 4u;        // output-channel vec4s per invocation (register schedule)
const WG: u32 = 16u;        // invocations per workgroup (register schedule)
const RELU_INPUT: u32 = 0u; // forward: apply ReLU to the input on load
const HAS_BIAS: u32 = 1u;   // forward: add the bias
const MASK_OUTPUT: u32 = 0u; // backward: multiply the result by (mask > 0)

struct ConvParams {
    batch: u32,
    height: u32,
    width: u32,
    cin4: u32,       // input channels / 4 (padded)
    cout4: u32,      // output channels / 4 (padded), the stride of y
    co4_stride: u32, // output-channel vec4s per weight row (padded to 16)
    tiles_x: u32,    // register: ceil(width / PX); tiled: ceil(B*H*W / 64)
    tiles_co: u32,   // register: ceil(cout4 / CO4); tiled: ceil(cout4 / 16)
    total: u32,      // register: pixel tiles (tiles_x * H * B); tiled: invocations that do work
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;       // (B, H, W, cin4)
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;       // (3, 3, cin4*4, co4_stride)
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;    // (co4_stride)
@group(0) @binding(4) var<storage, read> mask: array<vec4<f32>>;    // (B, H, W, cout4) or a dummy
@group(0) @binding(5) var<storage, read_write> y: array<vec4<f32>>; // (B, H, W, cout4)

fn finish(v: vec4<f32>, co: u32, oi: u32, has_bias: bool, mask_output: bool) -> vec4<f32> {
    var r = v;
    if (has_bias) {
        r += bias[co];
    }
    if (mask_output) {
        r = select(vec4<f32>(0.0), r, mask[oi] > vec4<f32>(0.0));
    }
    return r;
}

// Workgroup w takes output-channel tile (w % tiles_co) for WG consecutive
// pixel tiles; its lanes differ only in pixels, so every weight address is
// the same across the workgroup (uniform loads, one per workgroup on CPU
// adapters) and only input loads diverge.
fn register_body(wid: u32, li: u32, relu_input: bool, has_bias: bool, mask_output: bool) {
    let ct = wid % p.tiles_co;
    let pt = (wid / p.tiles_co) * WG + li;
    if (pt >= p.total) {
        return;
    }
    let xt = pt % p.tiles_x;
    let r = pt / p.tiles_x;
    let oy = r % p.height;
    let b = r / p.height;
    let x0 = xt * PX;
    let c0 = ct * CO4;
    let cs = p.co4_stride;

    var acc: array<vec4<f32>, PX * CO4>;
    for (var i = 0u; i < PX * CO4; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    for (var ky = 0u; ky < 3u; ky++) {
        let iy = oy + ky - 1u; // wraps past height when oy = 0, ky = 0
        if (iy >= p.height) {
            continue;
        }
        let row = (b * p.height + iy) * p.width;
        for (var ci4 = 0u; ci4 < p.cin4; ci4++) {
            var xin: array<vec4<f32>, PX + 2u>;
            for (var q = 0u; q < PX + 2u; q++) {
                let ix = x0 + q - 1u;
                var v = x[(row + min(ix, p.width - 1u)) * p.cin4 + ci4];
                if (relu_input) {
                    v = max(v, vec4<f32>(0.0));
                }
                xin[q] = select(vec4<f32>(0.0), v, ix < p.width);
            }
            for (var kx = 0u; kx < 3u; kx++) {
                let wb = ((ky * 3u + kx) * p.cin4 + ci4) * 4u * cs + c0;
                for (var j = 0u; j < CO4; j++) {
                    let w0 = w[wb + j];
                    let w1 = w[wb + cs + j];
                    let w2 = w[wb + 2u * cs + j];
                    let w3 = w[wb + 3u * cs + j];
                    for (var q = 0u; q < PX; q++) {
                        let v = xin[q + kx];
                        acc[q * CO4 + j] += v.x * w0 + v.y * w1 + v.z * w2 + v.w * w3;
                    }
                }
            }
        }
    }
    for (var q = 0u; q < PX; q++) {
        let ox = x0 + q;
        if (ox >= p.width) {
            break;
        }
        for (var j = 0u; j < CO4; j++) {
            let co = c0 + j;
            if (co >= p.cout4) {
                break;
            }
            let oi = ((b * p.height + oy) * p.width + ox) * p.cout4 + co;
            y[oi] = finish(acc[q * CO4 + j], co, oi, has_bias, mask_output);
        }
    }
}

@compute @workgroup_size(WG)
fn conv3x3_forward_register(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    register_body(wg.x + wg.y * nwg.x, li, RELU_INPUT != 0u, HAS_BIAS != 0u, false);
}

@compute @workgroup_size(WG)
fn conv3x3_backward_input_register(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    register_body(wg.x + wg.y * nwg.x, li, false, false, MASK_OUTPUT != 0u);
}

// ---- tiled schedule -------------------------------------------------------
// Workgroup (16, 16): tx picks one of 16 output vec4s (64 channels), ty one of
// 16 groups of 4 pixels (64 pixels). Per (ky, kx, ci4) the workgroup stages 64
// input vec4s and 4×16 weight vec4s in workgroup memory.

var<workgroup> a_tile: array<vec4<f32>, 64>;     // [pixel] → 4 input channels
var<workgroup> b_tile: array<vec4<f32>, 64>;     // [ci (4) * 16 + co4]

fn tiled_body(wid: u32, tx: u32, ty: u32, li: u32, relu_input: bool, has_bias: bool, mask_output: bool) {
    // Uniform control flow: every invocation reaches every barrier.
    let mt = wid % p.tiles_x;
    let nt = wid / p.tiles_x;
    let valid_wg = nt < p.tiles_co;
    let hw = p.height * p.width;
    let m_total = p.batch * hw;
    let cs = p.co4_stride;

    // The pixel this invocation stages into a_tile (li < 64).
    let lm = mt * 64u + li;
    let lb = lm / hw;
    let lrem = lm % hw;
    let ly = lrem / p.width;
    let lx = lrem % p.width;

    var acc: array<vec4<f32>, 4>;
    for (var i = 0u; i < 4u; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    let k_steps = 9u * p.cin4;
    for (var ks = 0u; ks < k_steps; ks++) {
        let kk = ks / p.cin4;
        let ci4 = ks % p.cin4;
        let ky = kk / 3u;
        let kx = kk % 3u;
        if (li < 64u) {
            let iy = ly + ky - 1u;
            let ix = lx + kx - 1u;
            let inside = valid_wg && lm < m_total && iy < p.height && ix < p.width;
            var v = vec4<f32>(0.0);
            if (inside) {
                v = x[((lb * p.height + iy) * p.width + ix) * p.cin4 + ci4];
                if (relu_input) {
                    v = max(v, vec4<f32>(0.0));
                }
            }
            a_tile[li] = v;
        } else if (li < 128u) {
            let e = li - 64u;
            let ci = e / 16u;
            let co4 = nt * 16u + e % 16u;
            var v = vec4<f32>(0.0);
            if (valid_wg && co4 < cs) {
                v = w[(kk * p.cin4 * 4u + ci4 * 4u + ci) * cs + co4];
            }
            b_tile[e] = v;
        }
        workgroupBarrier();
        let b0 = b_tile[tx];
        let b1 = b_tile[16u + tx];
        let b2 = b_tile[32u + tx];
        let b3 = b_tile[48u + tx];
        for (var i = 0u; i < 4u; i++) {
            let a = a_tile[ty * 4u + i];
            acc[i] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3;
        }
        workgroupBarrier();
    }
    if (!valid_wg) {
        return;
    }
    let co = nt * 16u + tx;
    if (co >= p.cout4) {
        return;
    }
    for (var i = 0u; i < 4u; i++) {
        let m = mt * 64u + ty * 4u + i;
        if (m < m_total) {
            let oi = m * p.cout4 + co;
            y[oi] = finish(acc[i], co, oi, has_bias, mask_output);
        }
    }
}

@compute @workgroup_size(16, 16)
fn conv3x3_forward_tiled(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    tiled_body(wg.x + wg.y * nwg.x, lid.x, lid.y, li, RELU_INPUT != 0u, HAS_BIAS != 0u, false);
}

@compute @workgroup_size(16, 16)
fn conv3x3_backward_input_tiled(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    tiled_body(wg.x + wg.y * nwg.x, lid.x, lid.y, li, false, false, MASK_OUTPUT != 0u);
}
