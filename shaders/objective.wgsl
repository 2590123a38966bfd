// Objective seeds and values, one objective per batch image.
//
// channel(c):          value = mean_{y,x} a[b,y,x,c]
// neuron(c, x0, y0):   value = a[b,y0,x0,c]
// a = relu(z) when the target is a post-ReLU layer (activations are stored
// before their ReLU), else z. Each value is multiplied by the spec's weight.
// The seed is d(value)/dz: the gradient that starts the backward pass,
// written over the whole target tensor (zeros outside the target channel).

const WG: u32 = 64u;

const KIND_CHANNEL: u32 = 0u;
const KIND_NEURON: u32 = 1u;

struct ObjParams {
    batch: u32,
    height: u32,
    width: u32,
    c4: u32,
    total: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

struct ObjSpec {
    kind: u32,
    channel: u32,
    x: u32,
    y: u32,
    weight: f32,
    post_relu: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: ObjParams;
@group(0) @binding(1) var<storage, read> specs: array<ObjSpec>;       // (B)
@group(0) @binding(2) var<storage, read> z: array<vec4<f32>>;         // (B, H, W, c4) target, before ReLU
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>; // seed: (B, H, W, c4); value: (B) in .x

@compute @workgroup_size(WG)
fn objective_seed(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let gid = (wg.x + wg.y * nwg.x) * WG + li;
    if (gid >= p.total) {
        return;
    }
    let c4 = gid % p.c4;
    var r = gid / p.c4;
    let x = r % p.width;
    r = r / p.width;
    let y = r % p.height;
    let b = r / p.height;
    let s = specs[b];
    var g = 0.0;
    if (s.kind == KIND_CHANNEL) {
        g = s.weight / f32(p.height * p.width);
    } else if (s.x == x && s.y == y) {
        g = s.weight;
    }
    var v = vec4<f32>(0.0);
    if (c4 == s.channel / 4u) {
        let lane = s.channel % 4u;
        v = select(vec4<f32>(0.0), vec4<f32>(g), vec4<u32>(0u, 1u, 2u, 3u) == vec4<u32>(lane));
        if (s.post_relu != 0u) {
            v = select(vec4<f32>(0.0), v, z[gid] > vec4<f32>(0.0));
        }
    }
    out[gid] = v;
}

var<workgroup> partial: array<f32, WG>;

// One workgroup per image (workgroup index = batch image).
@compute @workgroup_size(WG)
fn objective_value(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let b = wg.x + wg.y * nwg.x;
    let valid = b < p.batch;
    var s = 0.0;
    var spec: ObjSpec;
    if (valid) {
        spec = specs[b];
        let c4 = spec.channel / 4u;
        let lane = spec.channel % 4u;
        let hw = p.height * p.width;
        if (spec.kind == KIND_CHANNEL) {
            for (var i = li; i < hw; i += WG) {
                var v = z[(b * hw + i) * p.c4 + c4][lane];
                if (spec.post_relu != 0u) {
                    v = max(v, 0.0);
                }
                s += v;
            }
            s = s / f32(hw);
        } else if (li == 0u) {
            var v = z[(b * hw + spec.y * p.width + spec.x) * p.c4 + c4][lane];
            if (spec.post_relu != 0u) {
                v = max(v, 0.0);
            }
            s = v;
        }
    }
    partial[li] = s;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (li < stride) {
            partial[li] += partial[li + stride];
        }
        workgroupBarrier();
    }
    if (valid && li == 0u) {
        out[b] = vec4<f32>(partial[0] * spec.weight, 0.0, 0.0, 0.0);
    }
}
