// Lucid's regularizers on the input image (the [0, 1] image before the
// random transforms, Lucid's T("input")), per batch image b with weights
// reg[b] = (l1, l1_constant, tv, blur):
//   L1    = sum |x - constant|
//   TV    = tf.image.total_variation: sum |x[y+1,x] - x[y,x]| + |x[y,x+1] - x[y,x]|
//   blur  = 0.5 sum (x - stop_gradient(blur3(x)))^2, blur3 Lucid's _tf_blur:
//           3x3 weights 0.5 around a centre 1, zero padding, divided by the
//           sum of the weights inside the image
// over the 3 colour channels. regularize_grad ADDS the gradient of
// l1*L1 + tv*TV + blur*blur to `d` in place (d(abs)/dx = sign, 0 at 0, as
// TensorFlow's); regularize_value writes each image's value to
// out[offset + b].x.

const WG: u32 = 64u;

struct RegParams {
    batch: u32,
    height: u32,
    width: u32,
    offset: u32,
}

struct Reg {
    l1: f32,
    l1_constant: f32,
    tv: f32,
    blur: f32,
}

@group(0) @binding(0) var<uniform> p: RegParams;
@group(0) @binding(1) var<storage, read> reg: array<Reg>;             // (B)
@group(0) @binding(2) var<storage, read> img: array<vec4<f32>>;       // (B, H, W, 4), the 4th zero
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>; // grad: d (B, H, W, 4); value: slots

const RGB: vec4<f32> = vec4<f32>(1.0, 1.0, 1.0, 0.0);

fn at(b: u32, y: u32, x: u32) -> vec4<f32> {
    return img[(b * p.height + y) * p.width + x];
}

fn blur3(b: u32, y: u32, x: u32) -> vec4<f32> {
    var s = vec4<f32>(0.0);
    var n = 0.0;
    for (var dy = -1; dy <= 1; dy++) {
        for (var dx = -1; dx <= 1; dx++) {
            let yy = i32(y) + dy;
            let xx = i32(x) + dx;
            if (yy >= 0 && yy < i32(p.height) && xx >= 0 && xx < i32(p.width)) {
                let k = select(0.5, 1.0, dy == 0 && dx == 0);
                s += k * at(b, u32(yy), u32(xx));
                n += k;
            }
        }
    }
    return s / n;
}

fn tv_grad(b: u32, y: u32, x: u32) -> vec4<f32> {
    let v = at(b, y, x);
    var d = vec4<f32>(0.0);
    if (y + 1u < p.height) {
        d -= sign(at(b, y + 1u, x) - v);
    }
    if (y > 0u) {
        d += sign(v - at(b, y - 1u, x));
    }
    if (x + 1u < p.width) {
        d -= sign(at(b, y, x + 1u) - v);
    }
    if (x > 0u) {
        d += sign(v - at(b, y, x - 1u));
    }
    return d;
}

@compute @workgroup_size(WG)
fn regularize_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wg.x + wg.y * nwg.x) * WG + li;
    let hw = p.height * p.width;
    if (i >= p.batch * hw) {
        return;
    }
    let b = i / hw;
    let y = (i % hw) / p.width;
    let x = i % p.width;
    let r = reg[b];
    let v = img[i];
    var d = vec4<f32>(0.0);
    if (r.l1 != 0.0) {
        d += r.l1 * sign(v - vec4<f32>(r.l1_constant));
    }
    if (r.tv != 0.0) {
        d += r.tv * tv_grad(b, y, x);
    }
    if (r.blur != 0.0) {
        d += r.blur * (v - blur3(b, y, x));
    }
    out[i] += d * RGB;
}

var<workgroup> partial: array<f32, WG>;

// One workgroup per image.
@compute @workgroup_size(WG)
fn regularize_value(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let b = wg.x + wg.y * nwg.x;
    let valid = b < p.batch;
    var acc = 0.0;
    if (valid) {
        let r = reg[b];
        let hw = p.height * p.width;
        for (var i = li; i < hw; i += WG) {
            let y = i / p.width;
            let x = i % p.width;
            let v = at(b, y, x);
            if (r.l1 != 0.0) {
                acc += r.l1 * dot(abs(v - vec4<f32>(r.l1_constant)), RGB);
            }
            if (r.tv != 0.0) {
                if (y + 1u < p.height) {
                    acc += r.tv * dot(abs(at(b, y + 1u, x) - v), RGB);
                }
                if (x + 1u < p.width) {
                    acc += r.tv * dot(abs(at(b, y, x + 1u) - v), RGB);
                }
            }
            if (r.blur != 0.0) {
                let e = (v - blur3(b, y, x)) * RGB;
                acc += r.blur * 0.5 * dot(e, e);
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
        out[p.offset + b] = vec4<f32>(partial[0], 0.0, 0.0, 0.0);
    }
}
