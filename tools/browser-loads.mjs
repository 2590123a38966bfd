// What a load costs on this browser's WebGPU (SwiftShader here): the inner
// loop of a generated row tile (crate/ops/conv_gen.rs, 8 pixels × 16 channels
// per invocation, workgroups of 4) with its weights read
//   - from a storage buffer, a uniform buffer or a texture at a computed index,
//   - at constant indices (the loop unrolled, one index per weight) into a
//     fixed-size storage or uniform array, or into a runtime-sized one (whose
//     indices the browser's shader compiler clamps to its length, at run time),
//   - at a constant plus a computed channel offset (unrolled, like the constant
//     variants, to tell unrolling from the constant),
//   - or written into the code (no load at all),
// or with its input rows from a texture, and the same loop unrolled 2, 4 and 8
// times (what the code size alone costs). Each variant's fastest of six runs,
// in interleaved rounds; the values are not checked, only timed. The figures
// are in the README ("Speed", SwiftShader).
//   node tools/browser-loads.mjs [--rounds 2]
import { launchChromium, parseArgs } from "./browser.mjs";
import { serve } from "./serve.mjs";

const args = parseArgs();
const server = await serve(0);
const browser = await launchChromium();
try {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  const report = await page.evaluate(async (rounds) => {
    const adapter = await navigator.gpu?.requestAdapter();
    if (!adapter) return { error: "no WebGPU adapter in this browser" };
    const device = await adapter.requestDevice();
    // pixel tiles, K steps, vec4s per weight row, pixels per tile, channel vec4s per tile, channel tiles
    const [TILES, K, CS, PX, CO4, GROUPS] = [2048, 16, 32, 8, 4, 8];
    const ROWS = K * 4;
    const UNIFORM_LEN = 4096; // vec4s: 64 KiB, WebGPU's uniform binding limit
    const runtime = "@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;";
    const fixed = `@group(0) @binding(2) var<storage, read> w: array<vec4<f32>, ${ROWS * CS}>;`;
    const uniform = `@group(0) @binding(2) var<uniform> w: array<vec4<f32>, ${UNIFORM_LEN}>;`;
    // Constant indices: a distinct weight per (K step, tap, row, channel vec4).
    const at = (r, j, t) => (t * 4 + r) * CO4 + j;
    // mode → [weight expression (row r, channel vec4 j, K step × 3 + tap t), declaration, times the loop body is repeated]
    const modes = {
      buffer: [(r, j) => `w[(k * 4u + ${r}u) * ${CS}u + c0 + ${j}u]`, runtime, 1],
      "input texture": [(r, j) => `w[(k * 4u + ${r}u) * ${CS}u + c0 + ${j}u]`, `${runtime}\n@group(0) @binding(3) var xt: texture_2d<f32>;`, 1],
      uniform: [(r, j) => `w[((k * 4u + ${r}u) * ${CS}u + c0 + ${j}u) % ${UNIFORM_LEN}u]`, uniform, 1],
      texture: [(r, j) => `textureLoad(wt, vec2<u32>(c0 + ${j}u, k * 4u + ${r}u), 0)`, "@group(0) @binding(2) var wt: texture_2d<f32>;", 1],
      none: [(r, j) => `vec4<f32>(f32(k * 4u + ${r}u + c0 + ${j}u))`, "", 1],
      "buffer, loop x2": [(r, j, t) => `w[(k * 4u + ${r}u) * ${CS}u + c0 + ${j}u + ${t}u]`, runtime, 2],
      "buffer, loop x4": [(r, j, t) => `w[(k * 4u + ${r}u) * ${CS}u + c0 + ${j}u + ${t}u]`, runtime, 4],
      "buffer, loop x8": [(r, j, t) => `w[(k * 4u + ${r}u) * ${CS}u + c0 + ${j}u + ${t}u]`, runtime, 8],
      "offset + constant": [(r, j, t) => `w[c0 + ${at(r, j, t)}u]`, runtime, K],
      "constant, runtime-sized": [(r, j, t) => `w[${at(r, j, t)}u]`, runtime, K],
      "constant, fixed-size": [(r, j, t) => `w[${at(r, j, t)}u]`, fixed, K],
      "constant, uniform": [(r, j, t) => `w[${at(r, j, t)}u]`, uniform, K],
      "written in": [(r, j, t) => `vec4<f32>(${at(r, j, t)}.0, 0.5, -0.25, 1.0)`, "", K],
    };
    function wgsl(mode) {
      const [weight, decl, repeat] = modes[mode];
      const input = (q) =>
        mode === "input texture"
          ? `textureLoad(xt, vec2<u32>(k, (t * ${PX}u + ${q}u) % 4096u), 0)`
          : `x[(t * ${PX}u + ${q}u) * ${K}u % arrayLength(&x) + k]`;
      let s = `@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> y: array<vec4<f32>>;
${decl}
@compute @workgroup_size(4)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.x;
  let c0 = gid.y * ${CO4}u;
`;
      for (let q = 0; q < PX; q++) for (let j = 0; j < CO4; j++) s += `  var a${q}_${j} = vec4<f32>(0.0);\n`;
      // One K step: the input row, then 3 taps of 4 × CO4 weight vec4s each.
      const body = (i) => {
        let b = "";
        for (let q = 0; q < PX + 2; q++) b += `    let v${q} = ${input(q)};\n`;
        for (let kx = 0; kx < 3; kx++) {
          b += "    {\n";
          for (let r = 0; r < 4; r++) for (let j = 0; j < CO4; j++) b += `      let w${r}_${j} = ${weight(r, j, i * 3 + kx)};\n`;
          for (let q = 0; q < PX; q++) {
            for (let j = 0; j < CO4; j++) {
              const v = `v${q + kx}`;
              b += `      a${q}_${j} += ${v}.x * w0_${j} + ${v}.y * w1_${j} + ${v}.z * w2_${j} + ${v}.w * w3_${j};\n`;
            }
          }
          b += "    }\n";
        }
        return b;
      };
      if (repeat === K) {
        for (let i = 0; i < K; i++) s += `  {\n    let k = ${i}u;\n${body(i)}  }\n`;
      } else {
        s += `  for (var kk = 0u; kk < ${K}u; kk += ${repeat}u) {\n`;
        for (let i = 0; i < repeat; i++) s += `  {\n    let k = kk + ${i}u;\n${body(i)}  }\n`;
        s += "  }\n";
      }
      for (let q = 0; q < PX; q++) for (let j = 0; j < CO4; j++) s += `  y[(t * ${PX}u + ${q}u) * ${CS}u + c0 + ${j}u] = a${q}_${j};\n`;
      return s + "}\n";
    }
    const storage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
    const x = device.createBuffer({ size: TILES * PX * K * 16, usage: storage });
    const y = device.createBuffer({ size: TILES * PX * CS * 16, usage: GPUBufferUsage.STORAGE });
    const wb = device.createBuffer({ size: ROWS * CS * 16, usage: storage });
    const wu = device.createBuffer({ size: UNIFORM_LEN * 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    const texture = (w, h) => device.createTexture({ size: [w, h], format: "rgba32float", usage: GPUTextureUsage.TEXTURE_BINDING });
    const [wt, xt] = [texture(CS, ROWS), texture(K, 4096)];
    const flop = TILES * GROUPS * PX * CO4 * 4 * 3 * K * 4 * 2;
    const best = {};
    for (let round = 0; round < rounds; round++) {
      for (const mode of Object.keys(modes)) {
        const code = wgsl(mode);
        const module = device.createShaderModule({ code });
        const errors = (await module.getCompilationInfo()).messages.filter((m) => m.type === "error");
        if (errors.length) return { error: `${mode}: ${errors[0].message}` };
        const pipe = device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
        // "auto" layouts leave out what the shader does not use.
        const entries = [{ binding: 1, resource: { buffer: y } }];
        if (mode !== "input texture") entries.push({ binding: 0, resource: { buffer: x } });
        if (code.includes("var<storage, read> w")) entries.push({ binding: 2, resource: { buffer: wb } });
        if (code.includes("var<uniform> w")) entries.push({ binding: 2, resource: { buffer: wu } });
        if (mode === "texture") entries.push({ binding: 2, resource: wt.createView() });
        if (mode === "input texture") entries.push({ binding: 3, resource: xt.createView() });
        const bind = device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries });
        for (let run = 0; run < 6; run++) {
          const t0 = performance.now();
          const enc = device.createCommandEncoder();
          const pass = enc.beginComputePass();
          pass.setPipeline(pipe);
          pass.setBindGroup(0, bind);
          pass.dispatchWorkgroups(TILES / 4, GROUPS);
          pass.end();
          device.queue.submit([enc.finish()]);
          await device.queue.onSubmittedWorkDone();
          const ms = performance.now() - t0;
          best[mode] = Math.min(best[mode] ?? Infinity, ms);
        }
      }
    }
    return Object.fromEntries(Object.entries(best).map(([m, ms]) => [m, { ms: +ms.toFixed(1), gflops: +(flop / ms / 1e6).toFixed(2) }]));
  }, Number(args.rounds ?? 2));
  if (report.error) throw new Error(report.error);
  for (const [mode, r] of Object.entries(report)) console.log(`${mode.padEnd(24)} ${String(r.ms).padStart(7)} ms ${String(r.gflops).padStart(7)} GFLOP/s`);
} finally {
  await browser.close();
  server.close();
}
