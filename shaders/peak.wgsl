// The adapter's peak f32 throughput, for `featvis bench`: an FMA-bound
// kernel whose FLOP count is exact. Each invocation runs two independent
// vec4 chains c ← fma(c, a, b), 16 rounds per loop iteration (2 × 4 × 2 ×
// 16 = 256 FLOP an iteration), and writes the sum of its 8 lanes, so that
// nothing is dead code. The chains are named variables, not an array
// (llvmpipe puts arrays in scratch memory); `a`, `b`, `seed` and the
// iteration count come from the uniform, so the compiler can neither fold
// nor shorten the loop. With 0 < a < 1 every chain converges to
// b / (1 − a): the values stay finite for any iteration count, and the CPU
// reference (crate/bench.rs) follows them.
//
// Measured on llvmpipe (2 cores, 256-bit): two chains unrolled 16 times run
// fastest (8 × 8 lanes of fma in flight fill its registers); more chains
// spill, and a loop of one round pays llvmpipe's masked loop-carried stores
// every round.

const WG: u32 = 64u;

struct PeakParams {
    n: u32,          // invocations that write (the output's length)
    iterations: u32, // loop iterations per invocation, 16 rounds each
    _pad0: u32,
    _pad1: u32,
    a: f32,          // multiplier, in (0, 1)
    b: f32,          // addend
    seed: f32,       // start of invocation 0's first lane
    step: f32,       // start offset from one invocation to the next
}

@group(0) @binding(0) var<uniform> p: PeakParams;
@group(0) @binding(1) var<storage, read_write> out: array<f32>; // (n)

@compute @workgroup_size(WG)
fn peak_fma(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wg.x + wg.y * nwg.x) * WG + li;
    if (i >= p.n) {
        return;
    }
    let a = vec4<f32>(p.a);
    let b = vec4<f32>(p.b);
    // Lane j of the two chains (j = 0 … 7) starts at seed + i · step + j / 8.
    let x = vec4<f32>(p.seed + f32(i) * p.step);
    var c0 = x + vec4<f32>(0.0, 1.0, 2.0, 3.0) / 8.0;
    var c1 = x + vec4<f32>(4.0, 5.0, 6.0, 7.0) / 8.0;
    for (var r = 0u; r < p.iterations; r++) {
        c0 = fma(c0, a, b);
        c1 = fma(c1, a, b);
        c0 = fma(c0, a, b);
        c1 = fma(c1, a, b);
        c0 = fma(c0, a, b);
        c1 = fma(c1, a, b);
        c0 = fma(c0, a, b);
        c1 = fma(c1, a, b);
        c0 = fma(c0, a, b);
        c1 = fma(c1, a, b);
        c0 = fma(c0, a, b);
        c1 = fma(c1, a, b);
        c0 = fma(c0, a, b);
        c1 = fma(c1, a, b);
        c0 = fma(c0, a, b);
        c1 = fma(c1, a, b);
        c0 = fma(c0, a, b);
        c1 = fma(c1, a, b);
        c0 = fma(c0, a, b);
        c1 = fma(c1, a, b);
        c0 = fma(c0, a, b);
        c1 = fma(c1, a, b);
        c0 = fma(c0, a, b);
        c1 = fma(c1, a, b);
        c0 = fma(c0, a, b);
        c1 = fma(c1, a, b);
        c0 = fma(c0, a, b);
        c1 = fma(c1, a, b);
        c0 = fma(c0, a, b);
        c1 = fma(c1, a, b);
        c0 = fma(c0, a, b);
        c1 = fma(c1, a, b);
    }
    let s = c0 + c1;
    out[i] = (s.x + s.y) + (s.z + s.w);
}
