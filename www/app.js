// The page: opens the WebGPU engine (wasm), loads the VGG16 weights (f16,
// falling back to f32) and runs the kernel benchmark.
import init, { Engine } from "./pkg/featvis.js";

const $ = (id) => document.getElementById(id);
window.featvis = { ready: false, error: null, weights: null, weightsError: null };

// The weights files written by `featvis fetch-weights`, smallest first.
const WEIGHTS = [
  { url: "weights/vgg16-imagenet-f16.safetensors", dtype: "f16" },
  { url: "weights/vgg16-imagenet.safetensors", dtype: "f32" },
];

// Fetch the first weights file that exists; null when none does.
async function fetchWeights() {
  for (const w of WEIGHTS) {
    let res;
    try {
      res = await fetch(w.url);
    } catch (e) {
      continue;
    }
    if (res.ok) return { ...w, bytes: new Uint8Array(await res.arrayBuffer()) };
  }
  return null;
}

async function loadWeights(engine) {
  const el = $("weights-status");
  el.textContent = "Downloading the weights…";
  const got = await fetchWeights();
  if (!got) {
    const msg = "No weights: www/weights/ has neither vgg16-imagenet-f16.safetensors nor vgg16-imagenet.safetensors. " +
      "Run `featvis fetch-weights` (tools/run does) and reload.";
    window.featvis.weightsError = msg;
    el.textContent = msg;
    el.className = "error";
    return;
  }
  el.textContent = `Checking and uploading ${got.url} (${(got.bytes.length / 1e6).toFixed(1)} MB)…`;
  try {
    const summary = JSON.parse(engine.loadWeights(got.bytes));
    summary.url = got.url;
    window.featvis.weights = summary;
    el.textContent = `weights: ${summary.text}`;
    el.className = "";
  } catch (e) {
    const msg = `${got.url}: ${e.message ?? String(e)}`;
    window.featvis.weightsError = msg;
    el.textContent = msg;
    el.className = "error";
  }
}

function fail(message) {
  window.featvis.error = message;
  $("status").textContent = message;
  $("status").className = "error";
}

async function main() {
  try {
    await init();
  } catch (e) {
    fail(`Could not load the wasm module (www/pkg): ${e}. Build it with tools/build-web.`);
    return;
  }
  let engine;
  try {
    engine = await Engine.create();
  } catch (e) {
    fail(e.message ?? String(e));
    $("weights-status").textContent = "Weights need WebGPU (see above).";
    return;
  }
  $("status").textContent = "WebGPU is ready.";
  $("adapter").textContent = engine.adapter() || "(the browser does not name it)";
  $("schedule").textContent = engine.convSchedule();
  $("binding").textContent = `${Math.round(engine.maxBindingBytes() / 2 ** 20)} MiB per storage binding`;
  $("info").hidden = false;
  $("bench-run").disabled = false;
  window.featvis.weightsLoaded = loadWeights(engine);

  async function bench(size, batch, layers = "", schedule = "") {
    if (schedule) engine.setConvSchedule(schedule);
    $("schedule").textContent = engine.convSchedule();
    $("bench-run").disabled = true;
    $("bench-step").textContent = "";
    const body = $("bench-table").querySelector("tbody");
    body.innerHTML = "";
    try {
      const json = await engine.bench(size, batch, layers, (name) => {
        $("bench-progress").textContent = `timed ${name}…`;
      });
      const r = JSON.parse(json);
      for (const l of r.layers) {
        const tr = document.createElement("tr");
        tr.innerHTML = `<td>${l.name}</td><td>${l.gflop.toFixed(3)}</td><td>${l.fwd_gflops.toFixed(2)}</td><td>${l.bwd_gflops.toFixed(2)}</td>`;
        body.appendChild(tr);
      }
      $("bench-table").hidden = false;
      $("bench-progress").textContent = `${r.size}×${r.size}, batch ${r.batch}, schedule ${r.conv_schedule}`;
      $("bench-step").textContent = `Forward + backward to conv5_3: ${r.step_ms.toFixed(1)} ms per step (${r.step_gflops.toFixed(2)} GFLOP/s).`;
      return json;
    } catch (e) {
      $("bench-progress").textContent = e.message ?? String(e);
      $("bench-progress").className = "error";
      throw e;
    } finally {
      $("bench-run").disabled = false;
    }
  }
  window.featvis.bench = bench;
  $("bench-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    bench(Number($("bench-size").value), Number($("bench-batch").value)).catch(() => {});
  });
  window.featvis.ready = true;
}

main();
