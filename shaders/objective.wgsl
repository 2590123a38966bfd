// Objective values and seeds at one layer: a list of specs (ObjSpec), each
// a term of Lucid's with its weight and normalization folded into `scale`,
// restricted to one batch image or applied to all of them.
//
// Let a = relu(z) for a spec after the ReLU (activations are stored before
// it), else a = z. Per image b the spec's value is scale * S_b with
//   channel(c):            S_b = sum_{y,x} a[b,y,x,c]
//   neuron(c, x0, y0):     S_b = a[b,y0,x0,c]
//   deepdream:             S_b = sum_{y,x,c} a[b,y,x,c]^2
//   direction(v):          S_b = sum_{y,x,c} a[b,y,x,c] v[c]
// The seed is d(sum of values)/d(stored value), written over the whole
// layer tensor. PHASE (a uniform field) selects the specs and the ReLU mask:
//   0: every spec; after-ReLU specs are masked by z > 0 (the plain gradient)
//   1: only after-ReLU specs, unmasked (the gradient with respect to a, for
//      Lucid's redirected ReLU, which a later kernel applies)
//   2: only before-ReLU specs
// ACCUMULATE adds the seed to what `out` holds (an intermediate layer, whose
// gradient from the layers above is already there).

const WG: u32 = 64u;

const KIND_CHANNEL: u32 = 0u;
const KIND_NEURON: u32 = 1u;
const KIND_DEEPDREAM: u32 = 2u;
const KIND_DIRECTION: u32 = 3u;
const ALL_IMAGES: u32 = 0xffffffffu;

struct ObjParams {
    batch: u32,
    height: u32,
    width: u32,
    c4: u32,
    channels: u32,
    total: u32,
    nspec: u32,
    phase: u32,
    accumulate: u32,
    value_offset: u32,  // objective_value: first slot in `out`
    _pad0: u32,
    _pad1: u32,
}

struct ObjSpec {
    kind: u32,
    batch: u32,
    channel: u32,
    x: u32,
    y: u32,
    post_relu: u32,
    vec_offset: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: ObjParams;
@group(0) @binding(1) var<storage, read> specs: array<ObjSpec>;       // (nspec)
@group(0) @binding(2) var<storage, read> vectors: array<f32>;         // direction vectors, `channels` each
@group(0) @binding(3) var<storage, read> z: array<vec4<f32>>;         // (B, H, W, c4) stored before the ReLU
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>; // seed: (B, H, W, c4); value: slots in .x

fn lanes(c4: u32) -> vec4<u32> {
    return vec4<u32>(c4 * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
}

fn direction4(off: u32, c4: u32) -> vec4<f32> {
    let ch = lanes(c4);
    var v = vec4<f32>(0.0);
    for (var l = 0u; l < 4u; l++) {
        if (ch[l] < p.channels) {
            v[l] = vectors[off + ch[l]];
        }
    }
    return v;
}

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
    let zv = z[gid];
    let ch = lanes(c4);
    let live = ch < vec4<u32>(p.channels);
    var g = vec4<f32>(0.0);
    for (var i = 0u; i < p.nspec; i++) {
        let s = specs[i];
        if (s.batch != ALL_IMAGES && s.batch != b) {
            continue;
        }
        let post = s.post_relu != 0u;
        if ((p.phase == 1u && !post) || (p.phase == 2u && post)) {
            continue;
        }
        let a = select(zv, max(zv, vec4<f32>(0.0)), post);
        var d = vec4<f32>(0.0);
        if (s.kind == KIND_CHANNEL) {
            d = select(vec4<f32>(0.0), vec4<f32>(s.scale), ch == vec4<u32>(s.channel));
        } else if (s.kind == KIND_NEURON) {
            if (s.x == x && s.y == y) {
                d = select(vec4<f32>(0.0), vec4<f32>(s.scale), ch == vec4<u32>(s.channel));
            }
        } else if (s.kind == KIND_DEEPDREAM) {
            d = 2.0 * s.scale * a;
        } else {
            d = s.scale * direction4(s.vec_offset, c4);
        }
        if (post && p.phase == 0u) {
            d = select(vec4<f32>(0.0), d, zv > vec4<f32>(0.0));
        }
        g += d;
    }
    g = select(vec4<f32>(0.0), g, live);
    if (p.accumulate != 0u) {
        g += out[gid];
    }
    out[gid] = g;
}

var<workgroup> partial: array<f32, WG>;

// One workgroup per (spec, image): slot value_offset + spec * B + b gets
// scale * S_b, or 0 when the spec does not apply to image b.
@compute @workgroup_size(WG)
fn objective_value(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let k = wg.x + wg.y * nwg.x;
    let valid = k < p.nspec * p.batch;
    var acc = 0.0;
    var spec: ObjSpec;
    var applies = false;
    if (valid) {
        let b = k % p.batch;
        spec = specs[k / p.batch];
        applies = spec.batch == ALL_IMAGES || spec.batch == b;
        let post = spec.post_relu != 0u;
        let hw = p.height * p.width;
        if (applies) {
            if (spec.kind == KIND_CHANNEL) {
                let c4 = spec.channel / 4u;
                let lane = spec.channel % 4u;
                for (var i = li; i < hw; i += WG) {
                    var v = z[(b * hw + i) * p.c4 + c4][lane];
                    if (post) {
                        v = max(v, 0.0);
                    }
                    acc += v;
                }
            } else if (spec.kind == KIND_NEURON) {
                if (li == 0u) {
                    var v = z[(b * hw + spec.y * p.width + spec.x) * p.c4 + spec.channel / 4u][spec.channel % 4u];
                    if (post) {
                        v = max(v, 0.0);
                    }
                    acc = v;
                }
            } else {
                let n = hw * p.c4;
                for (var i = li; i < n; i += WG) {
                    let c4 = i % p.c4;
                    var a = z[b * n + i];
                    if (post) {
                        a = max(a, vec4<f32>(0.0));
                    }
                    a = select(vec4<f32>(0.0), a, lanes(c4) < vec4<u32>(p.channels));
                    if (spec.kind == KIND_DEEPDREAM) {
                        acc += dot(a, a);
                    } else {
                        acc += dot(a, direction4(spec.vec_offset, c4));
                    }
                }
            }
        }
    }
    partial[li] = acc;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (li < stride) {
            partial[li] += partial[li + stride];
        }
        workgroupBarrier();
    }
    if (valid && li == 0u) {
        out[p.value_offset + k] = vec4<f32>(select(0.0, partial[0] * spec.scale, applies), 0.0, 0.0, 0.0);
    }
}
