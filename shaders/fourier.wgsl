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
// multiply-adds per channel, 0.3 % of a VGG16 step at 224 px; they work for
// every H and W (227, 65, primes) with one code path, have no bit-reversal
// or radix stages to synchronize, and their adjoints are the same loops
// transposed. Twiddles and scales come from a table computed once on the
// CPU in f64 (SwiftShader's sin, cos and pow are only good to ~1e-4).

const WG: u32 = 64u;

struct FourierParams {
    batch: u32,
    height: u32,
    width: u32,
    fw: u32,          // spectrum columns
    nx: u32,          // inverse transform length along x: 2 (fw − 1)
    total: u32,       // invocations that do work
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

// e^{2πi k n / len} for len = H (columns) or NX (rows).
fn twiddle_y(k: u32, n: u32) -> vec2<f32> {
    return table[(k * n) % p.height];
}

fn twiddle_x(k: u32, n: u32) -> vec2<f32> {
    return table[p.height + (k * n) % p.nx];
}

fn cmul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}

fn linear_id(wg: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
    return (wg.x + wg.y * nwg.x) * WG + li;
}

// src: spectrum S (B, 3, H, FW); dst: A (B, 3, H, FW), indexed [b, c, y, kx].
@compute @workgroup_size(WG)
fn fourier_columns(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = linear_id(wg, nwg, li);
    if (i >= p.total) {
        return;
    }
    let kx = i % p.fw;
    let y = (i / p.fw) % p.height;
    let bc = i / (p.fw * p.height);
    var acc = vec2<f32>(0.0);
    for (var ky = 0u; ky < p.height; ky++) {
        let s = src[(bc * p.height + ky) * p.fw + kx] * spectrum_scale(ky, kx);
        acc += cmul(s, twiddle_y(ky, y));
    }
    dst[i] = acc;
}

// src: A (B, 3, H, FW); img: (B, H, W, 4) written, channels 0–2.
@compute @workgroup_size(WG)
fn fourier_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = linear_id(wg, nwg, li);
    if (i >= p.total) {
        return;
    }
    let x = i % p.width;
    let y = (i / p.width) % p.height;
    let b = i / (p.width * p.height);
    let k = 0.25 / f32(p.height * p.nx);
    var out = vec4<f32>(0.0);
    for (var c = 0u; c < 3u; c++) {
        let base = ((b * 3u + c) * p.height + y) * p.fw;
        var acc = 0.0;
        for (var kx = 0u; kx < p.fw; kx++) {
            let w = select(2.0, 1.0, kx == 0u || 2u * kx == p.nx);
            let t = twiddle_x(kx, x);
            let a = src[base + kx];
            acc += w * (a.x * t.x - a.y * t.y);
        }
        out[c] = acc * k;
    }
    img[i] = out;
}

// Adjoint of fourier_rows. img: d image (B, H, W, 4); dst: dA (B, 3, H, FW).
@compute @workgroup_size(WG)
fn fourier_rows_adjoint(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = linear_id(wg, nwg, li);
    if (i >= p.total) {
        return;
    }
    let kx = i % p.fw;
    let y = (i / p.fw) % p.height;
    let bc = i / (p.fw * p.height);
    let b = bc / 3u;
    let c = bc % 3u;
    let w = select(2.0, 1.0, kx == 0u || 2u * kx == p.nx) * 0.25 / f32(p.height * p.nx);
    var acc = vec2<f32>(0.0);
    for (var x = 0u; x < p.width; x++) {
        let g = img[(b * p.height + y) * p.width + x][c];
        let t = twiddle_x(kx, x);
        acc += g * vec2<f32>(t.x, -t.y);
    }
    dst[i] = acc * w;
}

// Adjoint of fourier_columns, with the spectrum scale. src: dA; dst: dS.
@compute @workgroup_size(WG)
fn fourier_columns_adjoint(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = linear_id(wg, nwg, li);
    if (i >= p.total) {
        return;
    }
    let kx = i % p.fw;
    let ky = (i / p.fw) % p.height;
    let bc = i / (p.fw * p.height);
    var acc = vec2<f32>(0.0);
    for (var y = 0u; y < p.height; y++) {
        let d = src[(bc * p.height + y) * p.fw + kx];
        let t = twiddle_y(ky, y);
        // conj(e^{iφ}) · d, with the roles of re/im as the transpose of cmul.
        acc += vec2<f32>(d.x * t.x + d.y * t.y, -d.x * t.y + d.y * t.x);
    }
    dst[i] = acc * spectrum_scale(ky, kx);
}
