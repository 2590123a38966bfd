// Adam on a flat parameter buffer, exactly as TensorFlow's AdamOptimizer
// (which Lucid uses) computes it:
//   lr_t = lr · sqrt(1 − β2^t) / (1 − β1^t)          (on the CPU, per step)
//   g    = grad_sign · grad                           (−1: maximize the objective)
//   m    = β1 m + (1 − β1) g
//   v    = β2 v + (1 − β2) g²
//   p    = p − lr_t · m / (sqrt(v) + ε)

const WG: u32 = 64u;

struct AdamParams {
    n4: u32,        // vec4s in each buffer
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    lr_t: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    grad_sign: f32,
    _pad3: f32,
    _pad4: f32,
    _pad5: f32,
}

@group(0) @binding(0) var<uniform> p: AdamParams;
@group(0) @binding(1) var<storage, read> grad: array<vec4<f32>>;        // (n4)
@group(0) @binding(2) var<storage, read_write> param: array<vec4<f32>>; // (n4)
@group(0) @binding(3) var<storage, read_write> m: array<vec4<f32>>;     // (n4)
@group(0) @binding(4) var<storage, read_write> v: array<vec4<f32>>;     // (n4)

@compute @workgroup_size(WG)
fn adam_step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wg.x + wg.y * nwg.x) * WG + li;
    if (i >= p.n4) {
        return;
    }
    let g = p.grad_sign * grad[i];
    let mi = p.beta1 * m[i] + (1.0 - p.beta1) * g;
    let vi = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = param[i] - p.lr_t * mi / (sqrt(vi) + vec4<f32>(p.eps));
}
