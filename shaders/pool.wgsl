// Pooling layers of VGG16, NHWC with channels in vec4s.
//
// maxpool2x2: window 2, stride 2, floor (odd trailing rows/columns dropped).
// The input is a conv activation stored before its ReLU; the output is
// relu(max(window)) = max(relu(window)). Ties go to the first maximum in
// row-major window order (dy, dx) = (0,0), (0,1), (1,0), (1,1).
// The backward pass is a gather over 2x2 blocks of input positions: each one
// receives the gradient of its window's output if it is that window's first
// maximum, times the ReLU mask (input > 0) unless MASK_INPUT = 0 (the
// gradient with respect to the ReLU's output, for Lucid's redirected ReLU,
// applied after).
//
// adaptive_avgpool: torchvision's AdaptiveAvgPool2d to (OH, OW): output cell
// o averages input rows floor(o*H/OH) .. ceil((o+1)*H/OH) (and the same for
// columns). Its backward is a gather over the cells whose windows hold the input.

const WG: u32 = 64u;
const MASK_INPUT: u32 = 1u;

struct PoolParams {
    batch: u32,
    in_h: u32,
    in_w: u32,
    c4: u32,
    out_h: u32,
    out_w: u32,
    total: u32,   // invocations that do work
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: PoolParams;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;        // forward: (B, in_h, in_w, c4); backward: dy (B, out_h, out_w, c4)
@group(0) @binding(2) var<storage, read> aux: array<vec4<f32>>;        // backward: the forward input (B, in_h, in_w, c4); forward: unused
@group(0) @binding(3) var<storage, read_write> dst: array<vec4<f32>>;  // forward: (B, out_h, out_w, c4); backward: dx (B, in_h, in_w, c4)

fn in_index(b: u32, y: u32, x: u32, c: u32) -> u32 {
    return ((b * p.in_h + y) * p.in_w + x) * p.c4 + c;
}

fn out_index(b: u32, y: u32, x: u32, c: u32) -> u32 {
    return ((b * p.out_h + y) * p.out_w + x) * p.c4 + c;
}

@compute @workgroup_size(WG)
fn maxpool2x2_forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let gid = (wg.x + wg.y * nwg.x) * WG + li;
    if (gid >= p.total) {
        return;
    }
    let c = gid % p.c4;
    var r = gid / p.c4;
    let ox = r % p.out_w;
    r = r / p.out_w;
    let oy = r % p.out_h;
    let b = r / p.out_h;
    let v00 = src[in_index(b, 2u * oy, 2u * ox, c)];
    let v01 = src[in_index(b, 2u * oy, 2u * ox + 1u, c)];
    let v10 = src[in_index(b, 2u * oy + 1u, 2u * ox, c)];
    let v11 = src[in_index(b, 2u * oy + 1u, 2u * ox + 1u, c)];
    let m = max(max(v00, v01), max(v10, v11));
    dst[out_index(b, oy, ox, c)] = max(m, vec4<f32>(0.0));
}

@compute @workgroup_size(WG)
fn maxpool2x2_backward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    // One invocation per 2x2 block of input positions (a window, or the
    // dropped odd row/column past the last one) and channel vec4: the window's
    // first maximum is found once for its four positions.
    let gid = (wg.x + wg.y * nwg.x) * WG + li;
    if (gid >= p.total) {
        return;
    }
    let bw = (p.in_w + 1u) / 2u;
    let bh = (p.in_h + 1u) / 2u;
    let c = gid % p.c4;
    var r = gid / p.c4;
    let ox = r % bw;
    r = r / bw;
    let oy = r % bh;
    let b = r / bh;
    let y = 2u * oy;
    let x = 2u * ox;
    if (oy >= p.out_h || ox >= p.out_w) {
        // Past the last window: these positions get no gradient.
        for (var d = 0u; d < 4u; d++) {
            let yy = y + d / 2u;
            let xx = x + d % 2u;
            if (yy < p.in_h && xx < p.in_w) {
                dst[in_index(b, yy, xx, c)] = vec4<f32>(0.0);
            }
        }
        return;
    }
    let i00 = in_index(b, y, x, c);
    let i01 = i00 + p.c4;
    let i10 = in_index(b, y + 1u, x, c);
    let i11 = i10 + p.c4;
    let v00 = aux[i00];
    let v01 = aux[i01];
    let v10 = aux[i10];
    let v11 = aux[i11];
    var best = v00;
    var arg = vec4<u32>(0u);
    arg = select(arg, vec4<u32>(1u), v01 > best);
    best = max(best, v01);
    arg = select(arg, vec4<u32>(2u), v10 > best);
    best = max(best, v10);
    arg = select(arg, vec4<u32>(3u), v11 > best);
    let g = src[out_index(b, oy, ox, c)];
    let all = vec4<bool>(MASK_INPUT == 0u);
    let z = vec4<f32>(0.0);
    dst[i00] = select(z, g, (arg == vec4<u32>(0u)) & ((v00 > z) | all));
    dst[i01] = select(z, g, (arg == vec4<u32>(1u)) & ((v01 > z) | all));
    dst[i10] = select(z, g, (arg == vec4<u32>(2u)) & ((v10 > z) | all));
    dst[i11] = select(z, g, (arg == vec4<u32>(3u)) & ((v11 > z) | all));
}

@compute @workgroup_size(WG)
fn adaptive_avgpool_forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let gid = (wg.x + wg.y * nwg.x) * WG + li;
    if (gid >= p.total) {
        return;
    }
    let c = gid % p.c4;
    var r = gid / p.c4;
    let ox = r % p.out_w;
    r = r / p.out_w;
    let oy = r % p.out_h;
    let b = r / p.out_h;
    let y0 = (oy * p.in_h) / p.out_h;
    let y1 = ((oy + 1u) * p.in_h + p.out_h - 1u) / p.out_h;
    let x0 = (ox * p.in_w) / p.out_w;
    let x1 = ((ox + 1u) * p.in_w + p.out_w - 1u) / p.out_w;
    var s = vec4<f32>(0.0);
    for (var y = y0; y < y1; y++) {
        for (var x = x0; x < x1; x++) {
            s += src[in_index(b, y, x, c)];
        }
    }
    dst[out_index(b, oy, ox, c)] = s / f32((y1 - y0) * (x1 - x0));
}

@compute @workgroup_size(WG)
fn adaptive_avgpool_backward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let gid = (wg.x + wg.y * nwg.x) * WG + li;
    if (gid >= p.total) {
        return;
    }
    let c = gid % p.c4;
    var r = gid / p.c4;
    let x = r % p.in_w;
    r = r / p.in_w;
    let y = r % p.in_h;
    let b = r / p.in_h;
    var s = vec4<f32>(0.0);
    for (var oy = 0u; oy < p.out_h; oy++) {
        let y0 = (oy * p.in_h) / p.out_h;
        let y1 = ((oy + 1u) * p.in_h + p.out_h - 1u) / p.out_h;
        if (y < y0 || y >= y1) {
            continue;
        }
        for (var ox = 0u; ox < p.out_w; ox++) {
            let x0 = (ox * p.in_w) / p.out_w;
            let x1 = ((ox + 1u) * p.in_w + p.out_w - 1u) / p.out_w;
            if (x < x0 || x >= x1) {
                continue;
            }
            s += src[out_index(b, oy, ox, c)] / f32((y1 - y0) * (x1 - x0));
        }
    }
    dst[in_index(b, y, x, c)] = s;
}
