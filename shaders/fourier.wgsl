// Lucid's Fourier image parameterization (fft_image), forward and adjoint.
//
// spectrum S: (B, 3, H, FW) complex (vec2: re, im), FW = W/2 + 1 for even W,
// W/2 + 2 for odd W (Lucid keeps one more column; the inverse transform then
// has NX = 2 (FW − 1) = W + 1 columns and is cropped to W).
//   X[ky, kx] = S[ky, kx] · scale[ky, kx],
//   scale = sqrt(W H) / max(sqrt(fx² + fy²), 1 / max(W, H))^decay_power,
//   fy = fftfreq(H)[ky], fx = fftfreq(W)[kx]  (numpy's fftfreq)
//   image[b, y, x, c] = irfft2d(X)[y, x] / 4,  x < W
// irfft2d as two separable DFTs (matrix products):
//   columns: A[y, kx] = Σ_ky X[ky, kx] e^{2πi ky y / H}
//   rows:    img[y, x] = 1/(H NX) Σ_kx w_kx Re(A[y, kx] e^{2πi kx x / NX}),
//            w = 1 for kx = 0 and kx = NX/2, else 2
// (imaginary parts of the DC and Nyquist columns drop out, as in TF's irfft2d).
// Why a DFT and not an FFT: the two passes cost H·FW·(H + W) complex
// multiply-adds per channel, 0.3 % of a VGG16 step's FLOPs at 224 px; they
// work for every H and W (227, 65, primes) with one code path, have no
// bit-reversal or radix stages to synchronize, and their adjoints are the
// same loops transposed. What matters is loads per multiply-add: one output
// per invocation with its twiddle index taken modulo H spent three loads
// and an integer division per complex multiply-add, and the four passes
// took 18 % of a 224 px step on llvmpipe (340 ms); register tiles with
// running twiddle indices take 56 ms. Twiddles and scales come from a table
// computed once on the CPU in f64 (SwiftShader's sin, cos and pow are only
// good to ~1e-4).

const WG: u32 = 64u;

struct FourierParams {
    batch: u32,
    height: u32,
    width: u32,
    fw: u32,          // spectrum columns
    nx: u32,          // inverse transform length along x: 2 (fw − 1)
    total: u32,       // invocations that do work (one per output tile)
    decay_power: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: FourierParams;
@group(0) @binding(1) var<storage, read> src: array<vec2<f32>>;        // see each entry point
@group(0) @binding(2) var<storage, read_write> dst: array<vec2<f32>>;  // see each entry point
@group(0) @binding(3) var<storage, read_write> img: array<vec4<f32>>;  // (B, H, W, 4): rows output / rows_adjoint input
@group(0) @binding(4) var<storage, read> table: array<vec2<f32>>;      // [e^{2πi m/H}, m < H] ++ [e^{2πi m/NX}, m < NX] ++ [(scale[ky, kx], 0)]

fn spectrum_scale(ky: u32, kx: u32) -> f32 {
    return table[p.height + p.nx + ky * p.fw + kx].x;
}

fn cmul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}

// conj(t) · d.
fn cmul_conj(t: vec2<f32>, d: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(d.x * t.x + d.y * t.y, d.y * t.x - d.x * t.y);
}

// (m + d) mod n for m < n and d < n: the next twiddle index of a row whose
// index grows by d per step (no integer division in the inner loops).
fn advance(m: u32, d: u32, n: u32) -> u32 {
    let s = m + d;
    return select(s, s - n, s >= n);
}

fn linear_id(wg: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
    return (wg.x + wg.y * nwg.x) * WG + li;
}

// Weight of spectrum column kx in the real inverse transform, times the
// transform's 1/(H NX) and Lucid's 1/4.
fn column_weight(kx: u32) -> f32 {
    return select(2.0, 1.0, kx == 0u || 2u * kx == p.nx) * 0.25 / f32(p.height * p.nx);
}

// Each pass is a small complex matrix product; an invocation computes a
// register tile of its outputs (4 × 4, or 2 rows × 4 columns × 3 channels),
// so every value it loads feeds 4–12 multiply-adds. Loads of rows and
// columns past the edge are clamped (in bounds, never used); only the
// stores are guarded.

fn put_a(v: vec2<f32>, bc: u32, y: u32, kx: u32) {
    if (y < p.height && kx < p.fw) {
        dst[(bc * p.height + y) * p.fw + kx] = v;
    }
}

// src: spectrum S (B, 3, H, FW); dst: A (B, 3, H, FW), indexed [b, c, y, kx]:
//   A[y, kx] = Σ_ky e^{2πi ky y / H} scale[ky, kx] S[ky, kx].
// One invocation: rows yb..yb+3 × columns kb..kb+3.
@compute @workgroup_size(WG)
fn fourier_columns(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = linear_id(wg, nwg, li);
    if (i >= p.total) {
        return;
    }
    let tk = (p.fw + 3u) / 4u;
    let ty = (p.height + 3u) / 4u;
    let kb = (i % tk) * 4u;
    let yb = ((i / tk) % ty) * 4u;
    let bc = i / (tk * ty);
    let k0 = min(kb + 0u, p.fw - 1u);
    let k1 = min(kb + 1u, p.fw - 1u);
    let k2 = min(kb + 2u, p.fw - 1u);
    let k3 = min(kb + 3u, p.fw - 1u);
    let y0 = min(yb + 0u, p.height - 1u);
    let y1 = min(yb + 1u, p.height - 1u);
    let y2 = min(yb + 2u, p.height - 1u);
    let y3 = min(yb + 3u, p.height - 1u);
    // (ky · y_r) mod H, one per row.
    var m0 = 0u;
    var m1 = 0u;
    var m2 = 0u;
    var m3 = 0u;
    var a00 = vec2<f32>(0.0); var a01 = vec2<f32>(0.0); var a02 = vec2<f32>(0.0); var a03 = vec2<f32>(0.0);
    var a10 = vec2<f32>(0.0); var a11 = vec2<f32>(0.0); var a12 = vec2<f32>(0.0); var a13 = vec2<f32>(0.0);
    var a20 = vec2<f32>(0.0); var a21 = vec2<f32>(0.0); var a22 = vec2<f32>(0.0); var a23 = vec2<f32>(0.0);
    var a30 = vec2<f32>(0.0); var a31 = vec2<f32>(0.0); var a32 = vec2<f32>(0.0); var a33 = vec2<f32>(0.0);
    for (var ky = 0u; ky < p.height; ky++) {
        let row = (bc * p.height + ky) * p.fw;
        let srow = p.height + p.nx + ky * p.fw;
        let s0 = src[row + k0] * table[srow + k0].x;
        let s1 = src[row + k1] * table[srow + k1].x;
        let s2 = src[row + k2] * table[srow + k2].x;
        let s3 = src[row + k3] * table[srow + k3].x;
        let t0 = table[m0];
        let t1 = table[m1];
        let t2 = table[m2];
        let t3 = table[m3];
        a00 += cmul(s0, t0);
        a01 += cmul(s1, t0);
        a02 += cmul(s2, t0);
        a03 += cmul(s3, t0);
        a10 += cmul(s0, t1);
        a11 += cmul(s1, t1);
        a12 += cmul(s2, t1);
        a13 += cmul(s3, t1);
        a20 += cmul(s0, t2);
        a21 += cmul(s1, t2);
        a22 += cmul(s2, t2);
        a23 += cmul(s3, t2);
        a30 += cmul(s0, t3);
        a31 += cmul(s1, t3);
        a32 += cmul(s2, t3);
        a33 += cmul(s3, t3);
        m0 = advance(m0, y0, p.height);
        m1 = advance(m1, y1, p.height);
        m2 = advance(m2, y2, p.height);
        m3 = advance(m3, y3, p.height);
    }
    put_a(a00, bc, yb + 0u, kb + 0u);
    put_a(a01, bc, yb + 0u, kb + 1u);
    put_a(a02, bc, yb + 0u, kb + 2u);
    put_a(a03, bc, yb + 0u, kb + 3u);
    put_a(a10, bc, yb + 1u, kb + 0u);
    put_a(a11, bc, yb + 1u, kb + 1u);
    put_a(a12, bc, yb + 1u, kb + 2u);
    put_a(a13, bc, yb + 1u, kb + 3u);
    put_a(a20, bc, yb + 2u, kb + 0u);
    put_a(a21, bc, yb + 2u, kb + 1u);
    put_a(a22, bc, yb + 2u, kb + 2u);
    put_a(a23, bc, yb + 2u, kb + 3u);
    put_a(a30, bc, yb + 3u, kb + 0u);
    put_a(a31, bc, yb + 3u, kb + 1u);
    put_a(a32, bc, yb + 3u, kb + 2u);
    put_a(a33, bc, yb + 3u, kb + 3u);
}

fn put_img(v: vec3<f32>, b: u32, y: u32, x: u32) {
    if (y < p.height && x < p.width) {
        img[(b * p.height + y) * p.width + x] = vec4<f32>(v, 0.0);
    }
}

// src: A (B, 3, H, FW); img: (B, H, W, 4) written, channels 0–2 (3 is 0):
//   img[y, x, c] = Σ_kx w_kx Re(A[c, y, kx] e^{2πi kx x / NX}) / (4 H NX).
// One invocation: rows yb, yb+1 × pixels xb..xb+3 × the 3 channels.
@compute @workgroup_size(WG)
fn fourier_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = linear_id(wg, nwg, li);
    if (i >= p.total) {
        return;
    }
    let tx = (p.width + 3u) / 4u;
    let ty = (p.height + 1u) / 2u;
    let xb = (i % tx) * 4u;
    let yb = ((i / tx) % ty) * 2u;
    let b = i / (tx * ty);
    let x0 = min(xb + 0u, p.width - 1u);
    let x1 = min(xb + 1u, p.width - 1u);
    let x2 = min(xb + 2u, p.width - 1u);
    let x3 = min(xb + 3u, p.width - 1u);
    let y0 = min(yb + 0u, p.height - 1u);
    let y1 = min(yb + 1u, p.height - 1u);
    // (kx · x_j) mod NX, one per pixel.
    var m0 = 0u;
    var m1 = 0u;
    var m2 = 0u;
    var m3 = 0u;
    var o00 = vec3<f32>(0.0); var o01 = vec3<f32>(0.0); var o02 = vec3<f32>(0.0); var o03 = vec3<f32>(0.0);
    var o10 = vec3<f32>(0.0); var o11 = vec3<f32>(0.0); var o12 = vec3<f32>(0.0); var o13 = vec3<f32>(0.0);
    let plane = p.height * p.fw;
    for (var kx = 0u; kx < p.fw; kx++) {
        let w = select(2.0, 1.0, kx == 0u || 2u * kx == p.nx);
        let base0 = (b * 3u * p.height + y0) * p.fw + kx;
        let r0c0 = src[base0];
        let r0c1 = src[base0 + plane];
        let r0c2 = src[base0 + 2u * plane];
        let re0 = w * vec3<f32>(r0c0.x, r0c1.x, r0c2.x);
        let im0 = w * vec3<f32>(r0c0.y, r0c1.y, r0c2.y);
        let base1 = (b * 3u * p.height + y1) * p.fw + kx;
        let r1c0 = src[base1];
        let r1c1 = src[base1 + plane];
        let r1c2 = src[base1 + 2u * plane];
        let re1 = w * vec3<f32>(r1c0.x, r1c1.x, r1c2.x);
        let im1 = w * vec3<f32>(r1c0.y, r1c1.y, r1c2.y);
        let t0 = table[p.height + m0];
        let t1 = table[p.height + m1];
        let t2 = table[p.height + m2];
        let t3 = table[p.height + m3];
        o00 += re0 * t0.x - im0 * t0.y;
        o01 += re0 * t1.x - im0 * t1.y;
        o02 += re0 * t2.x - im0 * t2.y;
        o03 += re0 * t3.x - im0 * t3.y;
        o10 += re1 * t0.x - im1 * t0.y;
        o11 += re1 * t1.x - im1 * t1.y;
        o12 += re1 * t2.x - im1 * t2.y;
        o13 += re1 * t3.x - im1 * t3.y;
        m0 = advance(m0, x0, p.nx);
        m1 = advance(m1, x1, p.nx);
        m2 = advance(m2, x2, p.nx);
        m3 = advance(m3, x3, p.nx);
    }
    let k = 0.25 / f32(p.height * p.nx);
    put_img(o00 * k, b, yb + 0u, xb + 0u);
    put_img(o01 * k, b, yb + 0u, xb + 1u);
    put_img(o02 * k, b, yb + 0u, xb + 2u);
    put_img(o03 * k, b, yb + 0u, xb + 3u);
    put_img(o10 * k, b, yb + 1u, xb + 0u);
    put_img(o11 * k, b, yb + 1u, xb + 1u);
    put_img(o12 * k, b, yb + 1u, xb + 2u);
    put_img(o13 * k, b, yb + 1u, xb + 3u);
}

fn put_da(re: vec3<f32>, im: vec3<f32>, b: u32, y: u32, kx: u32) {
    if (y < p.height && kx < p.fw) {
        let w = column_weight(kx);
        let plane = p.height * p.fw;
        let o = (b * 3u * p.height + y) * p.fw + kx;
        dst[o] = w * vec2<f32>(re.x, im.x);
        dst[o + plane] = w * vec2<f32>(re.y, im.y);
        dst[o + 2u * plane] = w * vec2<f32>(re.z, im.z);
    }
}

// Adjoint of fourier_rows. img: d image (B, H, W, 4); dst: dA (B, 3, H, FW):
//   dA[c, y, kx] = w_kx / (4 H NX) Σ_x g[y, x, c] e^{−2πi kx x / NX}.
// One invocation: rows yb, yb+1 × columns kb..kb+3 × the 3 channels.
@compute @workgroup_size(WG)
fn fourier_rows_adjoint(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = linear_id(wg, nwg, li);
    if (i >= p.total) {
        return;
    }
    let tk = (p.fw + 3u) / 4u;
    let ty = (p.height + 1u) / 2u;
    let kb = (i % tk) * 4u;
    let yb = ((i / tk) % ty) * 2u;
    let b = i / (tk * ty);
    let k0 = min(kb + 0u, p.fw - 1u);
    let k1 = min(kb + 1u, p.fw - 1u);
    let k2 = min(kb + 2u, p.fw - 1u);
    let k3 = min(kb + 3u, p.fw - 1u);
    let y0 = min(yb + 0u, p.height - 1u);
    let y1 = min(yb + 1u, p.height - 1u);
    // (x · kx_j) mod NX, one per column.
    var m0 = 0u;
    var m1 = 0u;
    var m2 = 0u;
    var m3 = 0u;
    var re00 = vec3<f32>(0.0); var re01 = vec3<f32>(0.0); var re02 = vec3<f32>(0.0); var re03 = vec3<f32>(0.0);
    var im00 = vec3<f32>(0.0); var im01 = vec3<f32>(0.0); var im02 = vec3<f32>(0.0); var im03 = vec3<f32>(0.0);
    var re10 = vec3<f32>(0.0); var re11 = vec3<f32>(0.0); var re12 = vec3<f32>(0.0); var re13 = vec3<f32>(0.0);
    var im10 = vec3<f32>(0.0); var im11 = vec3<f32>(0.0); var im12 = vec3<f32>(0.0); var im13 = vec3<f32>(0.0);
    for (var x = 0u; x < p.width; x++) {
        let g0 = img[(b * p.height + y0) * p.width + x].xyz;
        let g1 = img[(b * p.height + y1) * p.width + x].xyz;
        let t0 = table[p.height + m0];
        let t1 = table[p.height + m1];
        let t2 = table[p.height + m2];
        let t3 = table[p.height + m3];
        re00 += g0 * t0.x;
        im00 -= g0 * t0.y;
        re01 += g0 * t1.x;
        im01 -= g0 * t1.y;
        re02 += g0 * t2.x;
        im02 -= g0 * t2.y;
        re03 += g0 * t3.x;
        im03 -= g0 * t3.y;
        re10 += g1 * t0.x;
        im10 -= g1 * t0.y;
        re11 += g1 * t1.x;
        im11 -= g1 * t1.y;
        re12 += g1 * t2.x;
        im12 -= g1 * t2.y;
        re13 += g1 * t3.x;
        im13 -= g1 * t3.y;
        m0 = advance(m0, k0, p.nx);
        m1 = advance(m1, k1, p.nx);
        m2 = advance(m2, k2, p.nx);
        m3 = advance(m3, k3, p.nx);
    }
    put_da(re00, im00, b, yb + 0u, kb + 0u);
    put_da(re01, im01, b, yb + 0u, kb + 1u);
    put_da(re02, im02, b, yb + 0u, kb + 2u);
    put_da(re03, im03, b, yb + 0u, kb + 3u);
    put_da(re10, im10, b, yb + 1u, kb + 0u);
    put_da(re11, im11, b, yb + 1u, kb + 1u);
    put_da(re12, im12, b, yb + 1u, kb + 2u);
    put_da(re13, im13, b, yb + 1u, kb + 3u);
}

fn put_ds(v: vec2<f32>, bc: u32, ky: u32, kx: u32) {
    if (ky < p.height && kx < p.fw) {
        dst[(bc * p.height + ky) * p.fw + kx] = v * spectrum_scale(ky, kx);
    }
}

// Adjoint of fourier_columns, with the spectrum scale. src: dA; dst: dS:
//   dS[ky, kx] = scale[ky, kx] Σ_y e^{−2πi ky y / H} dA[y, kx].
// One invocation: rows qb..qb+3 × columns kb..kb+3.
@compute @workgroup_size(WG)
fn fourier_columns_adjoint(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = linear_id(wg, nwg, li);
    if (i >= p.total) {
        return;
    }
    let tk = (p.fw + 3u) / 4u;
    let ty = (p.height + 3u) / 4u;
    let kb = (i % tk) * 4u;
    let qb = ((i / tk) % ty) * 4u;
    let bc = i / (tk * ty);
    let k0 = min(kb + 0u, p.fw - 1u);
    let k1 = min(kb + 1u, p.fw - 1u);
    let k2 = min(kb + 2u, p.fw - 1u);
    let k3 = min(kb + 3u, p.fw - 1u);
    let q0 = min(qb + 0u, p.height - 1u);
    let q1 = min(qb + 1u, p.height - 1u);
    let q2 = min(qb + 2u, p.height - 1u);
    let q3 = min(qb + 3u, p.height - 1u);
    // (y · ky_r) mod H, one per row.
    var m0 = 0u;
    var m1 = 0u;
    var m2 = 0u;
    var m3 = 0u;
    var a00 = vec2<f32>(0.0); var a01 = vec2<f32>(0.0); var a02 = vec2<f32>(0.0); var a03 = vec2<f32>(0.0);
    var a10 = vec2<f32>(0.0); var a11 = vec2<f32>(0.0); var a12 = vec2<f32>(0.0); var a13 = vec2<f32>(0.0);
    var a20 = vec2<f32>(0.0); var a21 = vec2<f32>(0.0); var a22 = vec2<f32>(0.0); var a23 = vec2<f32>(0.0);
    var a30 = vec2<f32>(0.0); var a31 = vec2<f32>(0.0); var a32 = vec2<f32>(0.0); var a33 = vec2<f32>(0.0);
    for (var y = 0u; y < p.height; y++) {
        let row = (bc * p.height + y) * p.fw;
        let d0 = src[row + k0];
        let d1 = src[row + k1];
        let d2 = src[row + k2];
        let d3 = src[row + k3];
        let t0 = table[m0];
        let t1 = table[m1];
        let t2 = table[m2];
        let t3 = table[m3];
        a00 += cmul_conj(t0, d0);
        a01 += cmul_conj(t0, d1);
        a02 += cmul_conj(t0, d2);
        a03 += cmul_conj(t0, d3);
        a10 += cmul_conj(t1, d0);
        a11 += cmul_conj(t1, d1);
        a12 += cmul_conj(t1, d2);
        a13 += cmul_conj(t1, d3);
        a20 += cmul_conj(t2, d0);
        a21 += cmul_conj(t2, d1);
        a22 += cmul_conj(t2, d2);
        a23 += cmul_conj(t2, d3);
        a30 += cmul_conj(t3, d0);
        a31 += cmul_conj(t3, d1);
        a32 += cmul_conj(t3, d2);
        a33 += cmul_conj(t3, d3);
        m0 = advance(m0, q0, p.height);
        m1 = advance(m1, q1, p.height);
        m2 = advance(m2, q2, p.height);
        m3 = advance(m3, q3, p.height);
    }
    put_ds(a00, bc, qb + 0u, kb + 0u);
    put_ds(a01, bc, qb + 0u, kb + 1u);
    put_ds(a02, bc, qb + 0u, kb + 2u);
    put_ds(a03, bc, qb + 0u, kb + 3u);
    put_ds(a10, bc, qb + 1u, kb + 0u);
    put_ds(a11, bc, qb + 1u, kb + 1u);
    put_ds(a12, bc, qb + 1u, kb + 2u);
    put_ds(a13, bc, qb + 1u, kb + 3u);
    put_ds(a20, bc, qb + 2u, kb + 0u);
    put_ds(a21, bc, qb + 2u, kb + 1u);
    put_ds(a22, bc, qb + 2u, kb + 2u);
    put_ds(a23, bc, qb + 2u, kb + 3u);
    put_ds(a30, bc, qb + 3u, kb + 0u);
    put_ds(a31, bc, qb + 3u, kb + 1u);
    put_ds(a32, bc, qb + 3u, kb + 2u);
    put_ds(a33, bc, qb + 3u, kb + 3u);
}
