// Lucid's redirected ReLU gradient (lucid/misc/redirected_relu_grad.py),
// applied in place to the gradient g with respect to a ReLU's output, given
// the ReLU's input z. With the objective's gradient (Lucid's is its negative,
// as its optimizer descends):
//   relu_grad  = g where z >= 0, else 0
//   redirected = g, except 0 where z < 0 and g < 0 (it would push z lower)
//   result     = relu_grad if relu_grad has any non-zero value in this batch
//                image, else redirected
// Lucid uses it for the first steps only (global step <= 16).
//
// relu_redirect_flags sets flags[offset + b] when image b's relu_grad has a
// non-zero value; relu_redirect_apply then picks per image. relu_flags_clear
// zeroes `total` flags from `offset` (once per step, before the first use).

const WG: u32 = 64u;

struct ReluParams {
    batch: u32,
    per_image: u32,  // vec4s per batch image
    total: u32,      // invocations
    offset: u32,     // first flag of this site
}

@group(0) @binding(0) var<uniform> p: ReluParams;
@group(0) @binding(1) var<storage, read> z: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> flags: array<atomic<u32>>;
@group(0) @binding(3) var<storage, read_write> g: array<vec4<f32>>;

fn index(wg: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
    return (wg.x + wg.y * nwg.x) * WG + li;
}

@compute @workgroup_size(WG)
fn relu_flags_clear(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = index(wg, nwg, li);
    if (i < p.total) {
        atomicStore(&flags[p.offset + i], 0u);
    }
}

@compute @workgroup_size(WG)
fn relu_redirect_flags(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = index(wg, nwg, li);
    if (i >= p.total) {
        return;
    }
    let passes = (z[i] >= vec4<f32>(0.0)) & (g[i] != vec4<f32>(0.0));
    if (any(passes)) {
        atomicOr(&flags[p.offset + i / p.per_image], 1u);
    }
}

@compute @workgroup_size(WG)
fn relu_redirect_apply(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = index(wg, nwg, li);
    if (i >= p.total) {
        return;
    }
    let zi = z[i];
    let gi = g[i];
    let neg = zi < vec4<f32>(0.0);
    if (atomicLoad(&flags[p.offset + i / p.per_image]) != 0u) {
        g[i] = select(gi, vec4<f32>(0.0), neg);
    } else {
        g[i] = select(gi, vec4<f32>(0.0), neg & (gi < vec4<f32>(0.0)));
    }
}
