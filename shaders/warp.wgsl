// One affine warp per image, bilinear, the area outside the source reads 0.5
// (Lucid's constant padding). NHWC, 3 channels in a vec4.
//
// Forward:  out[b, v, u] = Σ_taps w · (inside ? img[b, tap] : 0.5),
//           at s = M_b (u + ½, v + ½) + t_b (source index coordinates),
//           taps floor(s) and floor(s) + 1 per axis, w = 1 − |s − tap|.
// Adjoint (gather): d img[b, y, x] = Σ_{(u, v)} d out[b, v, u] · w(s(u, v) − (x, y)),
//           over the output pixels whose sample lies within one pixel of
//           (x, y): the inverse map of that square, bounding box enumerated.
//           The 0.5 fill is a constant: it has no gradient.

const WG: u32 = 64u;

struct WarpParams {
    batch: u32,
    height: u32,   // source and output are both H × W
    width: u32,
    total: u32,
}

@group(0) @binding(0) var<uniform> p: WarpParams;
@group(0) @binding(1) var<storage, read> maps: array<vec4<f32>>;      // (B, 4): m, t, inverse m, inverse t
@group(0) @binding(2) var<storage, read> src: array<vec4<f32>>;       // forward: image; adjoint: d out (B, H, W, 4)
@group(0) @binding(3) var<storage, read_write> dst: array<vec4<f32>>; // forward: out; adjoint: d image (B, H, W, 4)

fn linear_id(wg: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
    return (wg.x + wg.y * nwg.x) * WG + li;
}

fn map(m: vec4<f32>, t: vec2<f32>, q: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(m.x * q.x + m.y * q.y, m.z * q.x + m.w * q.y) + t;
}

@compute @workgroup_size(WG)
fn warp_bilinear(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = linear_id(wg, nwg, li);
    if (i >= p.total) {
        return;
    }
    let u = i % p.width;
    let v = (i / p.width) % p.height;
    let b = i / (p.width * p.height);
    let s = map(maps[b * 4u], maps[b * 4u + 1u].xy, vec2<f32>(f32(u) + 0.5, f32(v) + 0.5));
    let f = floor(s);
    let fr = s - f;
    var acc = vec4<f32>(0.0);
    for (var dy = 0; dy < 2; dy++) {
        for (var dx = 0; dx < 2; dx++) {
            let tx = i32(f.x) + dx;
            let ty = i32(f.y) + dy;
            let wx = select(1.0 - fr.x, fr.x, dx == 1);
            let wy = select(1.0 - fr.y, fr.y, dy == 1);
            var val = vec4<f32>(0.5, 0.5, 0.5, 0.0);
            if (tx >= 0 && ty >= 0 && u32(tx) < p.width && u32(ty) < p.height) {
                val = src[(b * p.height + u32(ty)) * p.width + u32(tx)];
            }
            acc += wx * wy * val;
        }
    }
    dst[i] = vec4<f32>(acc.xyz, 0.0);
}

@compute @workgroup_size(WG)
fn warp_bilinear_adjoint(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = linear_id(wg, nwg, li);
    if (i >= p.total) {
        return;
    }
    let x = i % p.width;
    let y = (i / p.width) % p.height;
    let b = i / (p.width * p.height);
    let m = maps[b * 4u];
    let t = maps[b * 4u + 1u].xy;
    let mi = maps[b * 4u + 2u];
    let ti = maps[b * 4u + 3u].xy;
    // Output pixel centres q whose sample s lies in (x − 1, x + 1) × (y − 1, y + 1).
    let c0 = map(mi, ti, vec2<f32>(f32(x) - 1.0, f32(y) - 1.0));
    let c1 = map(mi, ti, vec2<f32>(f32(x) + 1.0, f32(y) - 1.0));
    let c2 = map(mi, ti, vec2<f32>(f32(x) - 1.0, f32(y) + 1.0));
    let c3 = map(mi, ti, vec2<f32>(f32(x) + 1.0, f32(y) + 1.0));
    let lo = min(min(c0, c1), min(c2, c3)) - vec2<f32>(0.5);
    let hi = max(max(c0, c1), max(c2, c3)) - vec2<f32>(0.5);
    let u0 = u32(clamp(floor(lo.x), 0.0, f32(p.width)));
    let u1 = u32(clamp(ceil(hi.x) + 1.0, 0.0, f32(p.width)));
    let v0 = u32(clamp(floor(lo.y), 0.0, f32(p.height)));
    let v1 = u32(clamp(ceil(hi.y) + 1.0, 0.0, f32(p.height)));
    var acc = vec4<f32>(0.0);
    for (var v = v0; v < v1; v++) {
        for (var u = u0; u < u1; u++) {
            let s = map(m, t, vec2<f32>(f32(u) + 0.5, f32(v) + 0.5));
            let d = abs(s - vec2<f32>(f32(x), f32(y)));
            let w = max(1.0 - d.x, 0.0) * max(1.0 - d.y, 0.0);
            if (w > 0.0) {
                acc += w * src[(b * p.height + v) * p.width + u];
            }
        }
    }
    dst[i] = vec4<f32>(acc.xyz, 0.0);
}
