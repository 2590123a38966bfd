// The page: settings ↔ URL query, the weights (default download, cache, or a
// dropped .safetensors), a render with live tiles, a plot of the objectives,
// snapshots, PNG downloads and links — on top of featvis.js (spec-web.md §2).
//
// For scripts and tests: document.documentElement.dataset.state is
// "loading" | "ready" | "running" | "done" | "error", and window.featvis holds
// weights, weightsError, error, result (the CLI's --json object), progress
// (the last step), stepMs, stopMs, firstPreviewMs, engine and bench().

import { atlasView } from "./atlas.js";

const $ = (id) => document.getElementById(id);
const fv = (window.featvis = {
  ready: false,
  state: "loading",
  error: null,
  weights: null,
  weightsError: null,
  result: null,
  progress: null,
  stepMs: null,
  stopMs: null,
  firstPreviewMs: null,
  engine: null,
  bench: null,
});

// ---------------------------------------------------------------- defaults

const DEFAULTS = { size: 128, steps: 512, transforms: "distill", param: "fft", lr: 0.05, seed: 1 };
const PRESETS = {
  distill: { steps: 2560, transforms: "distill", lr: 0.05 },
  lucid: { steps: 512, transforms: "lucid", lr: 0.05 },
};
const NUMBER_KEYS = ["size", "steps", "lr", "seed"];
const DEFAULT_LAYER = "conv4_3";
const DEFAULT_CHANNELS = "0-7";

const WEBGPU_HELP =
  "WebGPU runs in Chrome and Edge 113 or newer, Safari 26 or newer, and Firefox 141 or newer on Windows. " +
  "On Linux, Chrome needs it switched on: start it with --enable-unsafe-webgpu, or enable " +
  "chrome://flags/#enable-unsafe-webgpu and restart it.";

// Line colours of the plot, repeated for the tiles' dots.
const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
const colour = (i) => PALETTE[i % PALETTE.length];

// ---------------------------------------------------------------- helpers

const message = (e) => (e && e.message) || String(e);

function setState(s) {
  document.documentElement.dataset.state = s;
  fv.state = s;
}

let alertKind = null; // "job" alerts go away once the box is valid again
function showAlert(text, { help = "", restart = false, kind = "other" } = {}) {
  $("alert-text").textContent = text;
  $("alert-help").textContent = help;
  $("alert-help").hidden = !help;
  $("restart").hidden = !restart;
  $("alert").hidden = false;
  alertKind = kind;
}
function clearAlert() {
  $("alert").hidden = true;
  $("alert-text").textContent = "";
  alertKind = null;
}
function fail(text, opts) {
  fv.error = text;
  showAlert(text, opts);
  setState("error");
}

function fmtNum(v) {
  if (v == null || !Number.isFinite(v)) return "–";
  const a = Math.abs(v);
  if (a >= 1000) return Math.round(v).toLocaleString("en-US");
  if (a >= 1) return v.toFixed(a >= 100 ? 0 : a >= 10 ? 1 : 2);
  if (a === 0) return "0";
  return v.toPrecision(2);
}

function fmtSecs(s) {
  if (!Number.isFinite(s)) return "–";
  s = Math.max(0, Math.round(s));
  if (s >= 3600) return `${Math.floor(s / 3600)} h ${String(Math.floor(s / 60) % 60).padStart(2, "0")} min`;
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

const mb = (bytes) => (bytes / 1e6).toFixed(1);

// `0-7,12` → [0, …, 7, 12]; null when malformed (the engine then says why).
function parseChannels(text) {
  const out = [];
  for (const part of String(text).split(",")) {
    const m = part.trim().match(/^(\d+)(?:\s*-\s*(\d+))?$/);
    if (!m) return null;
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a || b - a > 65536) return null;
    for (let c = a; c <= b; c++) out.push(c);
  }
  return out;
}

// A file-name-safe form of an objective or a channel list.
const slug = (text) =>
  String(text)
    .replace(/\s+/g, "")
    .replace(/[^A-Za-z0-9_.@-]+/g, "_")
    .replace(/_+/g, "_")
    .replace(/^_|_$/g, "")
    .slice(0, 60) || "objective";

function downloadBytes(bytes, name) {
  const url = URL.createObjectURL(new Blob([bytes], { type: "image/png" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 30_000);
}

// ---------------------------------------------------------------- the form

let featvis = null; // the module, once imported
let engine = null;
let layerInfo = new Map(); // name → {channels, kind, min_size}
let layerBatch = null; // `batch` of a layer grid from a link (caps a GPU batch; no control of its own)

function mode() {
  return document.querySelector('input[name="mode"]:checked').value;
}
function setMode(m) {
  document.querySelector(`input[name="mode"][value="${m}"]`).checked = true;
  $("layer-row").hidden = m !== "layer";
  $("objective-row").hidden = m !== "objective";
}

// What the form says, as strings (as a link would carry them).
function readForm() {
  return {
    mode: mode(),
    layer: $("layer").value,
    channels: $("channels").value.trim(),
    objective: $("objective").value.trim(),
    batch: $("batch").value.trim(),
    preset: $("preset").value,
    size: $("size").value.trim(),
    steps: $("steps").value.trim(),
    transforms: $("transforms").value,
    param: $("param").value,
    lr: $("lr").value.trim(),
    seed: $("seed").value.trim(),
    redirect: $("redirect").checked,
  };
}

// The defaults a preset implies (what a link leaves out).
const defaultsFor = (preset) => ({ ...DEFAULTS, ...(PRESETS[preset] ?? {}) });

function applyPreset(preset) {
  const d = defaultsFor(preset);
  $("steps").value = d.steps;
  $("transforms").value = d.transforms;
  $("lr").value = d.lr;
}

// Make sure <select> can show `value` (an unknown layer from a link stays
// visible, and the engine says what is wrong with it).
function selectValue(select, value) {
  if (![...select.options].some((o) => o.value === value)) {
    const o = document.createElement("option");
    o.value = value;
    o.textContent = `${value} (unknown)`;
    o.dataset.unknown = "1";
    select.appendChild(o);
  }
  select.value = value;
}

// The job JSON object (spec-web.md §1) from the form; throws Error(message)
// for what the engine cannot be asked (a number box that holds no number).
function jobFromForm(f = readForm()) {
  const job = {};
  if (f.mode === "objective") {
    if (!f.objective) throw new Error("Type an objective, or pick one of the examples.");
    job.objective = f.objective;
    const b = Number(f.batch || "1");
    if (!Number.isInteger(b) || b < 1) throw new Error(`Images must be a whole number ≥ 1, not “${f.batch}”.`);
    job.batch = b;
  } else {
    job.layer = f.layer;
    let ch = f.channels || "0";
    if (/^all$/i.test(ch)) {
      const info = layerInfo.get(f.layer);
      ch = info ? `0-${info.channels - 1}` : ch;
    }
    job.channels = ch.replace(/\s+/g, "");
    if (layerBatch != null) job.batch = layerBatch;
  }
  if (f.preset) job.preset = f.preset;
  for (const k of NUMBER_KEYS) {
    const v = Number(f[k]);
    if (f[k] === "" || !Number.isFinite(v)) throw new Error(`${labelOf(k)} must be a number, not “${f[k]}”.`);
    job[k] = v;
  }
  job.transforms = f.transforms;
  job.param = f.param;
  if (!f.redirect) job.redirect = false;
  return job;
}

const labelOf = (k) => ({ size: "Size", steps: "Steps", lr: "Learning rate", seed: "Seed" })[k] ?? k;

// The page's query for the form's settings: only what differs from the
// defaults (the preset's when one is picked).
function queryFromForm(f = readForm(), { run = false } = {}) {
  const q = new URLSearchParams();
  if (f.mode === "objective") {
    q.set("objective", f.objective);
    if (f.batch && f.batch !== "1") q.set("batch", f.batch);
  } else {
    q.set("layer", f.layer);
    q.set("channels", f.channels);
    if (layerBatch != null) q.set("batch", String(layerBatch));
  }
  if (f.preset) q.set("preset", f.preset);
  const d = defaultsFor(f.preset);
  for (const k of ["size", "steps", "transforms", "param", "lr", "seed"]) {
    if (String(f[k]) !== String(d[k])) q.set(k, f[k]);
  }
  if (!f.redirect) q.set("redirect", "0");
  if (weightsLink) q.set("weights", weightsLink);
  for (const [k, v] of Object.entries(atlas?.query() ?? {})) q.set(k, v);
  if (run) q.set("run", "1");
  return q;
}

function linkFor(opts) {
  const url = new URL(location.href);
  url.search = queryFromForm(readForm(), opts).toString();
  url.hash = "";
  return url.toString();
}

// A link's settings → the form. The layer waits for the weights (it selects
// from their layers); everything else is set at once.
function settingsFromQuery(q) {
  const s = {};
  for (const k of ["layer", "channels", "objective", "batch", "preset", "size", "steps", "transforms", "param", "lr", "seed", "redirect"]) {
    if (q.has(k)) s[k] = q.get(k);
  }
  return {
    settings: s,
    weights: q.get("weights") || null,
    run: q.get("run") === "1" || q.get("run") === "true",
    atlas: q.get("atlas") ? { url: q.get("atlas"), layer: q.get("atlas_layer"), channel: q.get("atlas_channel") } : null,
  };
}

function applySettings(s) {
  if (s.preset !== undefined) {
    $("preset").value = PRESETS[s.preset] ? s.preset : "";
    applyPreset($("preset").value);
  }
  for (const k of ["size", "steps", "lr", "seed"]) if (s[k] !== undefined) $(k).value = s[k];
  for (const k of ["transforms", "param"]) if (s[k] !== undefined) selectValue($(k), s[k]);
  if (s.redirect !== undefined) $("redirect").checked = !["0", "false", "off", "no"].includes(s.redirect.toLowerCase());
  if (s.objective !== undefined) {
    setMode("objective");
    $("objective").value = s.objective;
    if (s.batch !== undefined) $("batch").value = s.batch;
  } else {
    setMode("layer");
    if (s.channels !== undefined) $("channels").value = s.channels;
    if (s.batch !== undefined) layerBatch = Number(s.batch);
  }
}

// ---------------------------------------------------------------- checking as one types

let checkTimer = 0;
function scheduleCheck() {
  clearTimeout(checkTimer);
  checkTimer = setTimeout(checkForm, 250);
}

// Ask the engine whether the form's job is valid; shows its message under
// the box. Returns {job, info} or null.
function checkForm() {
  clearTimeout(checkTimer);
  if (!engine || !fv.weights) return null;
  let job;
  try {
    job = jobFromForm();
    const info = JSON.parse(engine.checkJob(JSON.stringify(job)));
    $("job-error").textContent = "";
    if (alertKind === "job") {
      clearAlert();
      if (fv.state === "error") setState(fv.result ? "done" : "ready");
    }
    return { job, info };
  } catch (e) {
    $("job-error").textContent = message(e);
    return null;
  }
}

// ---------------------------------------------------------------- weights

let weightsLink = null; // the `weights` query of a link (a URL; null = the default)
let weightsFromFile = false; // the weights in use came from a dropped or picked file
let pending = null; // a link's settings, applied once the weights are in

function showWeightsStatus(text, isError = false) {
  $("weights-status").textContent = text;
  $("weights-status").classList.toggle("error", isError);
}

async function loadWeightsFrom(source) {
  const wasRunning = current != null;
  if (!wasRunning) setState("loading");
  $("render").disabled = true;
  $("weights-cached").hidden = true;
  const name = source == null ? "the default weights" : typeof source === "string" ? source : source.name;
  showWeightsStatus(`Loading ${name}…`);
  const bar = $("weights-progress");
  bar.removeAttribute("value");
  $("weights-bytes").textContent = "";
  $("weights-download").hidden = false;
  try {
    const summary = await featvis.loadWeights(source, {
      onBytes(loaded, total) {
        if (total > 0) {
          bar.max = total;
          bar.value = loaded;
          $("weights-bytes").textContent = `${mb(loaded)} of ${mb(total)} MB`;
        } else {
          $("weights-bytes").textContent = `${mb(loaded)} MB`;
        }
        if (total > 0 && loaded >= total) showWeightsStatus(`Checking ${name} and uploading it to the GPU…`);
      },
    });
    $("weights-download").hidden = true;
    weightsReady(summary, source);
  } catch (e) {
    $("weights-download").hidden = true;
    const text = message(e);
    fv.weightsError = text;
    showWeightsStatus(text, true);
    if (fv.weights) {
      // The previous weights stay in use.
      showAlert(`${text} (the previous weights stay in use)`, { kind: "weights" });
      $("render").disabled = current != null;
      showWeightsStatus(`${fv.weights.text}`);
    } else {
      fail(text, { kind: "weights" });
    }
  }
}

function weightsReady(summary, source) {
  fv.weights = summary;
  fv.weightsError = null;
  weightsLink = typeof source === "string" ? source : null;
  weightsFromFile = source != null && typeof source !== "string";
  const from = source && typeof source !== "string" ? ` — ${source.name}` : "";
  showWeightsStatus(`${summary.text}${from}`);
  $("weights-cached").hidden = !summary.cached;

  // Layers: conv (and fc when the file has the head).
  const keep = $("layer").value;
  layerInfo = new Map();
  const select = $("layer");
  select.innerHTML = "";
  for (const l of summary.layers ?? []) {
    if (l.kind !== "conv" && l.kind !== "fc") continue;
    layerInfo.set(l.name, l);
    const o = document.createElement("option");
    o.value = l.name;
    o.textContent = `${l.name} · ${l.channels}`;
    select.appendChild(o);
  }
  selectValue(select, layerInfo.has(keep) ? keep : layerInfo.has(DEFAULT_LAYER) ? DEFAULT_LAYER : select.options[0]?.value ?? DEFAULT_LAYER);
  document.querySelector('[data-example="class"]').hidden = summary.classes == null;

  if (alertKind === "weights") clearAlert();
  atlas?.weightsChanged();
  $("render").disabled = current != null;
  if (current == null) setState(fv.result ? "done" : "ready");

  if (pending) {
    const { settings, run } = pending;
    pending = null;
    if (settings.layer !== undefined) selectValue(select, settings.layer);
    updateChannelsHint();
    const ok = checkForm();
    if (run) {
      startRender();
    } else {
      if (!ok && (settings.layer !== undefined || settings.channels !== undefined || settings.objective !== undefined)) {
        showAlert(`This link's settings: ${$("job-error").textContent}`, { kind: "job" });
      }
      offerResume();
    }
  } else {
    updateChannelsHint();
    scheduleCheck();
    offerResume();
  }
}

function updateChannelsHint() {
  const info = layerInfo.get($("layer").value);
  const base = "one (<code>12</code>), a range (<code>0-7</code>), a list (<code>0-7,12</code>) or <code>all</code>: one image per channel";
  $("channels-hint").innerHTML = info ? `${base}; ${info.name} has ${info.channels}` : base;
}

// ---------------------------------------------------------------- the render

let current = null; // the RenderHandle while a render runs
let run = null; // what the tiles, plot and downloads of the latest render need

function setupRun(job, info) {
  const n = info.images;
  const size = info.size;
  const channels = job.layer ? parseChannels(job.channels) ?? [] : [];
  run = {
    job,
    info,
    channels,
    series: Array.from({ length: n }, () => []),
    snapshots: new Set(),
    stepsPerBatch: info.steps,
    times: [],
    handle: null,
    previewed: new Array(n).fill(false),
  };
  $("run").hidden = false;
  $("stage-empty").hidden = true;
  $("numbers").hidden = true;
  $("run-what").textContent = describe(job, info);
  $("download-grid").disabled = true;
  $("result-text").textContent = "";
  $("run-progress").value = 0;
  $("run-text").textContent = `Building the pipelines for ${n} image${n === 1 ? "" : "s"} of ${size}×${size}…`;

  // Tiles shown at least ~96 px, at a whole multiple of small images.
  const shown = size < 96 ? size * Math.ceil(96 / size) : Math.min(size, 160);
  const tiles = $("tiles");
  tiles.style.setProperty("--tile", `${shown}px`);
  tiles.classList.toggle("pixelated", shown > size);
  tiles.innerHTML = "";
  for (let i = 0; i < n; i++) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "tile";
    b.dataset.index = String(i);
    const label = tileLabel(i);
    b.setAttribute("aria-label", `${info.labels[i] ?? label}: enlarge`);
    b.title = info.labels[i] ?? label;
    const c = document.createElement("canvas");
    c.width = size;
    c.height = size;
    const cap = document.createElement("span");
    cap.className = "tile-label";
    cap.innerHTML = `<i class="dot" style="background:${colour(i)}"></i>`;
    cap.append(label);
    b.append(c, cap);
    b.addEventListener("click", () => openViewer(i));
    tiles.appendChild(b);
  }
  drawPlot();
}

// One line on what is being rendered: "conv2_2, channels 0-3: 4 images of 48×48 px, …".
function describe(job, info) {
  const what = job.layer ? `${job.layer}, channel${info.images === 1 ? "" : "s"} ${job.channels}` : job.objective;
  const n = `${info.images} image${info.images === 1 ? "" : "s"} of ${info.size}×${info.size} px`;
  const batches = info.batches > 1 ? ` in ${info.batches} batches` : "";
  const how = `${job.transforms} transforms, ${job.param === "fft" ? "Fourier" : "pixel"} parameterization, lr ${job.lr}, seed ${job.seed}`;
  return `${what} — ${n}${batches}, ${info.steps} steps; ${how}${job.redirect === false ? ", no redirected ReLU" : ""}`;
}

// Under a tile: its channel for a layer grid, else the objective (and image).
function tileLabel(i) {
  if (run.job.layer) return String(run.channels[i] ?? run.info.labels[i] ?? i);
  const text = String(run.info.labels[i] ?? run.job.objective);
  return run.info.images > 1 ? `image ${i}` : text;
}

function drawTile(i) {
  const px = run.handle?.task?.previewRGBA(i);
  if (!px) return false;
  const canvas = $("tiles").children[i]?.querySelector("canvas");
  if (!canvas) return false;
  const w = run.info.size;
  const h = run.info.size;
  if (px.length !== w * h * 4) return false;
  if (canvas.width !== w || canvas.height !== h) [canvas.width, canvas.height] = [w, h];
  canvas.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(px), w, h), 0, 0);
  run.onTile?.(i, px);
  if (!run.previewed[i]) {
    run.previewed[i] = true;
    canvas.parentElement.classList.add("has-image");
  }
  if (fv.firstPreviewMs == null) fv.firstPreviewMs = Math.round(performance.now());
  if (viewer.index === i && viewer.step === 0) drawViewer();
  return true;
}

function onProgress(p) {
  fv.progress = p;
  const now = performance.now();
  run.times.push(now);
  if (run.times.length > 17) run.times.shift();
  const t = run.times;
  const msPerStep = t.length >= 2 ? (t[t.length - 1] - t[0]) / (t.length - 1) : null;
  fv.stepMs = msPerStep;

  const frac = p.total > 0 ? p.done / p.total : 0;
  $("run-progress").value = frac;
  const batch = p.batches > 1 ? ` · batch ${p.batch_index + 1} of ${p.batches}` : "";
  const rate = msPerStep ? `${(1000 / msPerStep).toFixed(msPerStep > 1000 ? 2 : 1)} steps/s · ${fmtSecs(((p.total - p.done) * msPerStep) / 1000)} left` : "timing…";
  $("run-text").textContent = `step ${p.step} of ${p.steps}${batch} · ${rate}`;

  (p.values ?? []).forEach((v, k) => run.series[p.first + k]?.push([p.step, v]));
  if (p.snapshot != null) run.snapshots.add(p.snapshot);
  if (p.preview) for (let i = p.first; i < p.first + p.count; i++) drawTile(i);
  run.onStep?.(p);
  schedulePlot();
}

// The unfinished render kept in IndexedDB (featvis.saveRenderState) for a reloaded tab.
const SAVED = "page";

async function saveState(job, bytes, p) {
  const progress = p ?? fv.progress;
  try {
    await featvis.saveRenderState(SAVED, {
      job,
      weightsSha256: fv.weights?.sha256 ?? "",
      weightsUrl: fv.weights?.url ?? "",
      done: progress?.done ?? 0,
      total: progress?.total ?? job.steps,
      bytes,
      savedAt: Date.now(),
    });
    fv.savedAt = Date.now();
  } catch (e) {
    console.warn(`featvis: the render was not kept for a reload: ${message(e)}`);
  }
}

function describeJob(job) {
  const what = job.objective ? `“${job.objective}”${job.batch > 1 ? ` × ${job.batch}` : ""}` : `${job.layer} channels ${job.channels}`;
  return `${what}, ${job.size} px`;
}

// A render this tab (or an earlier one) did not finish, on these weights: offer to continue it.
async function offerResume() {
  const rec = await featvis.loadRenderState(SAVED);
  if (!rec || !fv.weights || rec.weightsSha256 !== fv.weights.sha256 || current) {
    $("resume-banner").hidden = true;
    return;
  }
  $("resume-text").textContent = `An unfinished render: ${describeJob(rec.job)}, stopped at step ${rec.done} of ${rec.total}.`;
  $("resume-banner").hidden = false;
  fv.resumable = { done: rec.done, total: rec.total, job: rec.job };
}

async function continueSaved() {
  const rec = await featvis.loadRenderState(SAVED);
  $("resume-banner").hidden = true;
  if (!rec) return;
  const strings = Object.fromEntries(Object.entries(rec.job).map(([k, v]) => [k, String(v)]));
  applySettings(strings);
  if (rec.job.layer) selectValue($("layer"), rec.job.layer);
  updateChannelsHint();
  await startRender({ job: rec.job, resumeFrom: rec.bytes });
}

// `onTile(i, rgba)` and `onStep(progress)`: what the atlas panel follows of a render it started.
async function startRender({ job: given = null, resumeFrom = null, onTile = null, onStep = null } = {}) {
  if (current) return;
  $("resume-banner").hidden = true;
  clearAlert();
  fv.error = null;
  if (!engine || !fv.weights) return;
  const lost = engine.lost?.();
  if (lost) {
    fail(`The GPU device was lost: ${lost}`, { restart: true, kind: "gpu" });
    return;
  }
  let job, info;
  try {
    job = given ?? jobFromForm();
    info = JSON.parse(engine.checkJob(JSON.stringify(job)));
    $("job-error").textContent = "";
  } catch (e) {
    $("job-error").textContent = message(e);
    fail(message(e), { kind: "job" });
    return;
  }
  history.replaceState(null, "", linkFor());
  fv.result = null;
  fv.stopMs = null;
  setupRun(job, info);
  run.onTile = onTile;
  run.onStep = onStep;
  setState("running");
  setRunning(true);
  let handle;
  try {
    handle = featvis.render(job, {
      onProgress: (p) => onProgress(p),
      resumeFrom,
      checkpointEvery: 8,
      onCheckpoint: (bytes, p) => saveState(job, bytes, p),
    });
  } catch (e) {
    setRunning(false);
    fail(message(e), { kind: "job" });
    return;
  }
  current = handle;
  run.handle = handle;
  try {
    const result = await handle.promise;
    finished(result);
  } catch (e) {
    await failed(e);
  } finally {
    current = null;
    setRunning(false);
  }
}

// ---------------------------------------------------------------- the atlas

let atlas = null; // the atlas panel (atlas.js)

// Render an atlas channel's group again here: its recorded request (layer,
// channels, batch, size, seed and the rest) goes into the form, so the
// render, its link and its downloads are those of any other render. Resolves
// to the record's image ({ rgba, size }), or null when stopped.
async function renderAtlasChannel(rec, { onTile, onStep }) {
  if (current) throw new Error("A render is running: stop it first, then press Render live again.");
  if (!engine) throw new Error("Render live needs WebGPU, which this browser does not offer (see the message above).");
  if (!fv.weights) throw new Error("The weights are not loaded yet: wait for them (or load the atlas's weights file), then press Render live again.");
  const r = rec.request;
  const s = {};
  // What the request leaves out (null) is the default, not what the form holds now.
  const given = Object.fromEntries(Object.entries(r).filter(([, v]) => v != null));
  for (const [k, v] of Object.entries({ ...defaultsFor(r.preset ?? ""), ...given })) if (k !== "redirect") s[k] = String(v);
  s.preset = r.preset ?? "";
  s.redirect = r.redirect === false ? "0" : "1";
  delete s.objective;
  applySettings(s);
  selectValue($("layer"), r.layer);
  updateChannelsHint();
  let job;
  try {
    job = jobFromForm();
  } catch (e) {
    throw new Error(`The atlas's request does not fit this page: ${message(e)}`);
  }
  if (r.snapshots) job.snapshots = r.snapshots;
  await startRender({ job, onTile, onStep });
  if (fv.error) throw new Error(fv.error);
  if (!fv.result || fv.result.cancelled || !run?.handle?.task) return null;
  return { rgba: run.handle.task.previewRGBA(rec.index), size: run.info.size };
}

function finished(result) {
  if (!result) {
    // Stopped before its first step: nothing was rendered.
    $("run").hidden = true;
    $("stage-empty").hidden = false;
    setState(fv.weights ? "ready" : "loading");
    return;
  }
  fv.result = result;
  if (!result.cancelled) featvis.clearRenderState(SAVED);
  for (let i = 0; i < run.info.images; i++) drawTile(i);
  schedulePlot();
  const steps = result.cancelled ? result.steps_done : run.info.steps;
  const perStep = result.ms_per_step != null ? ` · ${fmtNum(result.ms_per_step)} ms per step` : "";
  $("run-progress").value = result.cancelled ? $("run-progress").value : 1;
  $("run-text").textContent = result.cancelled ? `Stopped after ${result.steps_done ?? "?"} steps.` : `Done: ${steps} steps.`;
  $("result-text").textContent = `${result.images?.length ?? 0} image${result.images?.length === 1 ? "" : "s"}${perStep}${result.adapter ? ` on ${result.adapter}` : ""}`;
  $("download-grid").disabled = false;
  const body = $("numbers-body");
  body.innerHTML = "";
  (result.images ?? []).forEach((im, i) => {
    const tr = document.createElement("tr");
    for (const v of [i, im.objective, fmtNum(im.initial_activation), fmtNum(im.final_activation)]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  });
  $("numbers").hidden = false;
  if (viewer.index != null) drawViewer();
  setState("done");
  if (stopClickedAt != null) {
    fv.stopMs = performance.now() - stopClickedAt;
    stopClickedAt = null;
  }
}

async function failed(e) {
  // A lost device fails the step's readback before the device's `lost`
  // promise has settled: give it a moment to say why.
  let lost = engine.lost?.();
  for (let k = 0; k < 10 && !lost; k++) {
    await new Promise((r) => setTimeout(r, 50));
    lost = engine.lost?.();
  }
  const text = lost
    ? `The GPU device was lost during the render (${lost}).`
    : `The render failed: ${message(e)}`;
  $("run-text").textContent = "Failed.";
  fail(text, {
    restart: true,
    help: "A lost GPU needs a fresh start: the button reloads the page with the same settings and renders again.",
    kind: "gpu",
  });
}

let stopClickedAt = null;
function setRunning(on) {
  $("render").disabled = on || !fv.weights;
  $("pause").disabled = !on;
  $("stop").disabled = !on;
  $("pause").textContent = "Pause";
  $("pause").setAttribute("aria-pressed", "false");
  $("bench-run").disabled = on || !engine;
  $("weights-file").disabled = on;
  document.documentElement.dataset.paused = "";
  if (!on) delete document.documentElement.dataset.paused;
}

function togglePause() {
  if (!current) return;
  if (current.state === "paused") {
    current.resume();
    run.times = [];
    $("pause").textContent = "Pause";
    $("pause").setAttribute("aria-pressed", "false");
    delete document.documentElement.dataset.paused;
  } else {
    current.pause();
    $("pause").textContent = "Resume";
    $("pause").setAttribute("aria-pressed", "true");
    document.documentElement.dataset.paused = "1";
    $("run-text").textContent += " · paused";
  }
}

function stop() {
  if (!current) return;
  stopClickedAt = performance.now();
  $("stop").disabled = true;
  $("pause").disabled = true;
  current.stop();
}

// ---------------------------------------------------------------- names of downloads

function stepsForName(step) {
  if (step) return step;
  if (fv.result?.cancelled) return fv.result.steps_done ?? fv.progress?.step ?? run.info.steps;
  return run.info.steps;
}
function tail(step) {
  return `${run.info.size}px-${stepsForName(step)}steps-seed${run.job.seed}.png`;
}
function gridName() {
  const what = run.job.layer ? `${run.job.layer}-${slug(run.job.channels.replace(/,/g, "_"))}` : slug(run.job.objective);
  return `${what}-${tail(0)}`;
}
function tileName(i, step) {
  const what = run.job.layer
    ? `${run.job.layer}-${run.channels[i] ?? i}`
    : `${slug(run.job.objective)}${run.info.images > 1 ? `-${i}` : ""}`;
  return `${what}-${tail(step)}`;
}

// ---------------------------------------------------------------- the enlarged view

const viewer = { index: null, step: 0 };

function snapshotSteps() {
  const steps = new Set(run.snapshots);
  try {
    for (const s of run.handle?.task?.snapshotSteps() ?? []) steps.add(s);
  } catch {
    /* the task may be gone */
  }
  return [...steps].sort((a, b) => a - b);
}

// Image i at snapshot `step`, or undefined (also while a step is in flight:
// the task answers only between steps).
function snapshotRGBA(step, i) {
  try {
    return run?.handle?.task?.snapshotRGBA(step, i);
  } catch {
    return undefined;
  }
}

function openViewer(i) {
  if (!run) return;
  viewer.index = i;
  viewer.step = 0;
  $("viewer-title").textContent = run.info.labels[i] ?? tileLabel(i);
  drawViewer();
  const d = $("viewer");
  if (!d.open) d.showModal();
}

function drawViewer() {
  const i = viewer.index;
  const task = run?.handle?.task;
  const big = $("viewer-canvas");
  const size = run.info.size;
  big.style.setProperty("--shown", `${Math.max(1, Math.floor(512 / size)) * size}px`);
  const px = task ? (viewer.step ? snapshotRGBA(viewer.step, i) : task.previewRGBA(i)) : null;
  if (px) {
    big.width = size;
    big.height = size;
    big.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(px), big.width, big.height), 0, 0);
  } else {
    big.width = size;
    big.height = size;
  }
  const im = fv.result?.images?.[i];
  const act = im ? ` · objective ${fmtNum(im.initial_activation)} → ${fmtNum(im.final_activation)}` : "";
  $("viewer-caption").textContent = `${size}×${size} px, ${viewer.step ? `after ${viewer.step} steps` : current ? "as it is now" : `after ${stepsForName(0)} steps`}${viewer.step ? "" : act}`;
  $("download-tile").disabled = !px;

  // The snapshots strip: 32, 64, 128 … steps, then the final image.
  const strip = $("viewer-snapshots");
  strip.innerHTML = "";
  const entries = [...snapshotSteps().map((s) => [s, snapshotRGBA(s, i)]), [0, task?.previewRGBA(i)]];
  for (const [s, rgba] of entries) {
    if (!rgba || (s && s === stepsForName(0) && !current)) continue; // the last snapshot is the final image
    const b = document.createElement("button");
    b.type = "button";
    b.className = "snapshot";
    b.setAttribute("aria-pressed", String(s === viewer.step));
    const c = document.createElement("canvas");
    c.width = size;
    c.height = size;
    c.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(rgba), c.width, c.height), 0, 0);
    const cap = document.createElement("span");
    cap.textContent = s ? `${s}` : current ? "now" : `${stepsForName(0)}`;
    b.setAttribute("aria-label", s ? `after ${s} steps` : "final image");
    b.append(c, cap);
    b.addEventListener("click", () => {
      viewer.step = s;
      drawViewer();
      strip.querySelector('[aria-pressed="true"]')?.focus();
    });
    strip.appendChild(b);
  }
}

// ---------------------------------------------------------------- the plot

let plotQueued = false;
function schedulePlot() {
  if (plotQueued) return;
  plotQueued = true;
  requestAnimationFrame(() => {
    plotQueued = false;
    drawPlot();
  });
}

function drawPlot() {
  const c = $("plot");
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(120, c.clientWidth || 320);
  const h = Math.max(60, c.clientHeight || 120);
  if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
    c.width = Math.round(w * dpr);
    c.height = Math.round(h * dpr);
  }
  const ctx = c.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  if (!run) return;
  const m = { l: 46, r: 8, t: 8, b: 18 };
  const pw = w - m.l - m.r;
  const ph = h - m.t - m.b;
  let lo = Infinity;
  let hi = -Infinity;
  for (const s of run.series) for (const [, v] of s) if (Number.isFinite(v)) (lo = Math.min(lo, v)), (hi = Math.max(hi, v));
  const steps = run.stepsPerBatch || 1;
  const styles = getComputedStyle(document.documentElement);
  const ink = styles.getPropertyValue("--muted").trim() || "#666";
  const line = styles.getPropertyValue("--line").trim() || "#ddd";
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = ink;
  ctx.strokeStyle = line;
  ctx.lineWidth = 1;
  ctx.textBaseline = "middle";
  ctx.textAlign = "right";
  if (!Number.isFinite(lo)) {
    ctx.textAlign = "left";
    ctx.fillText("waiting for the first step…", m.l, m.t + ph / 2);
    return;
  }
  if (hi - lo < 1e-9 * Math.max(1, Math.abs(hi))) (lo -= 0.5), (hi += 0.5);
  const pad = (hi - lo) * 0.05;
  lo -= pad;
  hi += pad;
  const x = (s) => m.l + (pw * s) / steps;
  const y = (v) => m.t + ph - (ph * (v - lo)) / (hi - lo);
  for (const v of [lo + pad, (lo + hi) / 2, hi - pad]) {
    ctx.beginPath();
    ctx.moveTo(m.l, Math.round(y(v)) + 0.5);
    ctx.lineTo(m.l + pw, Math.round(y(v)) + 0.5);
    ctx.stroke();
    ctx.fillText(fmtNum(v), m.l - 6, y(v));
  }
  ctx.textBaseline = "top";
  ctx.textAlign = "left";
  ctx.fillText("0", m.l, m.t + ph + 4);
  ctx.textAlign = "right";
  ctx.fillText(`${steps} steps`, m.l + pw, m.t + ph + 4);
  ctx.lineWidth = 1.4;
  ctx.lineJoin = "round";
  run.series.forEach((s, i) => {
    if (s.length === 0) return;
    ctx.strokeStyle = colour(i);
    ctx.beginPath();
    s.forEach(([st, v], k) => (k ? ctx.lineTo(x(st), y(v)) : ctx.moveTo(x(st), y(v))));
    if (s.length === 1) ctx.lineTo(x(s[0][0]) + 1, y(s[0][1]));
    ctx.stroke();
  });
}

// ---------------------------------------------------------------- examples

function exampleObjective(kind) {
  const layer = layerInfo.get($("layer").value)?.kind === "conv" ? $("layer").value : DEFAULT_LAYER;
  const ch = (parseChannels($("channels").value) ?? [0])[0] ?? 0;
  switch (kind) {
    case "channel":
      return [`${layer}:${ch}`, 1];
    case "neuron":
      return [`${layer}:${ch}@`, 1];
    case "negative":
      return [`-${layer}:${ch}`, 1];
    case "diversity":
      return [`${layer}:${ch} - 100*diversity(${layer})`, 4];
    case "deepdream":
      return [`deepdream(${layer})`, 1];
    case "class":
      return ["class(281)", 1];
  }
  return null;
}

// ---------------------------------------------------------------- benchmark

function setupBench() {
  async function bench(size, batch, layers = "", schedule = "") {
    $("bench-section").open = true;
    if (schedule) await engine.setConvSchedule(schedule);
    $("schedule").textContent = engine.convSchedule();
    $("bench-run").disabled = true;
    $("bench-step").textContent = "";
    $("bench-progress").className = "";
    const body = $("bench-table").querySelector("tbody");
    body.innerHTML = "";
    try {
      const json = await engine.bench(size, batch, layers, (name) => {
        $("bench-progress").textContent = `timed ${name}…`;
      });
      const r = JSON.parse(json);
      for (const l of r.layers) {
        const tr = document.createElement("tr");
        const pct = (f) => (f != null ? `${(100 * f).toFixed(0)} %` : "—");
        tr.innerHTML =
          `<td>${l.name}</td><td>${l.gflop.toFixed(3)}</td><td>${l.fwd_gflops.toFixed(2)}</td><td>${l.bwd_gflops.toFixed(2)}</td>` +
          `<td>${pct(l.fwd_peak_fraction)} / ${pct(l.bwd_peak_fraction)}</td>`;
        body.appendChild(tr);
      }
      $("bench-table").hidden = false;
      $("bench-progress").textContent = `${r.size}×${r.size}, batch ${r.batch}, schedule ${r.conv_schedule}`;
      const mib = (b) => (b / 2 ** 20).toFixed(1);
      const memory = r.memory
        ? ` GPU memory of a step: ${mib(r.memory.bytes_per_image)} MiB per image + ${mib(r.memory.weights_bytes)} MiB of conv weights.`
        : "";
      $("bench-step").textContent =
        `Peak of this device (an FMA-bound kernel): ${r.peak_gflops.toFixed(1)} GFLOP/s. ` +
        `Forward + backward to conv5_3: ${r.step_ms.toFixed(1)} ms per step (${r.step_gflops.toFixed(2)} GFLOP/s).${memory}`;
      return json;
    } catch (e) {
      $("bench-progress").textContent = message(e);
      $("bench-progress").className = "error";
      throw e;
    } finally {
      $("bench-run").disabled = current != null;
    }
  }
  fv.bench = bench;
  $("bench-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    bench(Number($("bench-size").value), Number($("bench-batch").value)).catch(() => {});
  });
  $("adapter").textContent = engine.adapter() || "(the browser does not name it)";
  $("schedule").textContent = engine.convSchedule();
  $("binding").textContent = `${Math.round(engine.maxBindingBytes() / 2 ** 20)} MiB per storage binding`;
  $("info").hidden = false;
  $("bench-run").disabled = false;

  async function tune() {
    $("bench-section").open = true;
    $("tune-run").disabled = true;
    $("bench-run").disabled = true;
    $("tune-progress").className = "";
    const body = $("tune-table").querySelector("tbody");
    body.innerHTML = "";
    let n = 0;
    try {
      const r = await featvis.tuneConv({
        onCandidate: (name) => {
          n += 1;
          $("tune-progress").textContent = `checked and timed ${n}: ${name}…`;
        },
      });
      for (const c of r.candidates) {
        const tr = document.createElement("tr");
        const cells = [c.schedule, c.correct ? "yes" : c.error ? "—" : "no", Number.isFinite(c.max_rel_error) ? c.max_rel_error.toExponential(1) : "—",
          c.gflops > 0 ? c.gflops.toFixed(2) : c.error ?? "—"];
        for (const text of cells) {
          const td = document.createElement("td");
          td.textContent = text;
          tr.appendChild(td);
        }
        if (c.spec === r.chosen_spec) tr.className = "chosen";
        body.appendChild(tr);
      }
      $("tune-table").hidden = false;
      $("tune-progress").textContent = `Chosen: ${r.chosen} (kept for this adapter; the next visit uses it).`;
      $("schedule").textContent = engine.convSchedule();
      fv.tuning = r;
      return r;
    } catch (e) {
      $("tune-progress").textContent = message(e);
      $("tune-progress").className = "error";
      throw e;
    } finally {
      $("tune-run").disabled = false;
      $("bench-run").disabled = current != null;
    }
  }
  fv.tune = tune;
  $("tune-run").addEventListener("click", () => tune().catch(() => {}));
  $("tune-run").disabled = false;
}

// ---------------------------------------------------------------- wiring

function wire() {
  for (const r of document.querySelectorAll('input[name="mode"]')) {
    r.addEventListener("change", () => {
      setMode(mode());
      scheduleCheck();
    });
  }
  $("job-form").addEventListener("input", (ev) => {
    if (ev.target.name === "mode") return;
    scheduleCheck();
  });
  $("layer").addEventListener("change", () => {
    updateChannelsHint();
    scheduleCheck();
  });
  $("preset").addEventListener("change", () => {
    applyPreset($("preset").value);
    scheduleCheck();
  });
  $("job-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    startRender();
  });
  $("pause").addEventListener("click", togglePause);
  $("stop").addEventListener("click", stop);
  $("resume-continue").addEventListener("click", () => continueSaved().catch((e) => fail(message(e), { kind: "job" })));
  $("resume-discard").addEventListener("click", () => {
    $("resume-banner").hidden = true;
    featvis.clearRenderState(SAVED);
  });
  for (const b of document.querySelectorAll("[data-example]")) {
    b.addEventListener("click", () => {
      const [objective, batch] = exampleObjective(b.dataset.example);
      setMode("objective");
      $("objective").value = objective;
      $("batch").value = batch;
      $("objective").focus();
      scheduleCheck();
    });
  }
  $("copy-link").addEventListener("click", async () => {
    const url = linkFor();
    history.replaceState(null, "", url);
    try {
      await navigator.clipboard.writeText(url);
      $("link-status").textContent = "Link copied: it holds every setting.";
    } catch {
      $("link-status").textContent = "The address bar now holds the link to these settings.";
    }
    if (weightsFromFile) {
      $("link-status").textContent += " (your weights file cannot travel in a link: it opens with the default weights)";
    }
  });
  $("restart").addEventListener("click", () => {
    location.assign(linkFor({ run: true }));
  });
  $("download-grid").addEventListener("click", () => {
    if (!run?.handle?.task) return;
    downloadBytes(run.handle.task.png(-1, 0), gridName());
  });
  $("download-tile").addEventListener("click", () => {
    if (!run?.handle?.task || viewer.index == null) return;
    downloadBytes(run.handle.task.png(viewer.index, viewer.step), tileName(viewer.index, viewer.step));
  });
  $("viewer").addEventListener("close", () => {
    const i = viewer.index;
    viewer.index = null;
    $("tiles").children[i]?.focus();
  });
  // Click on the backdrop closes the enlarged view.
  $("viewer").addEventListener("click", (ev) => {
    if (ev.target === $("viewer")) $("viewer").close();
  });
  $("weights-file").addEventListener("change", () => {
    const f = $("weights-file").files[0];
    if (f) loadWeightsFrom(f);
  });
  $("forget-weights").addEventListener("click", async () => {
    try {
      await featvis.forgetWeights();
      $("weights-cached").hidden = true;
      $("forget-status").textContent = "Forgotten: the next visit downloads the weights again.";
    } catch (e) {
      $("forget-status").textContent = message(e);
    }
  });

  // Drop a .safetensors file anywhere.
  let depth = 0;
  const hasFiles = (ev) => [...(ev.dataTransfer?.types ?? [])].includes("Files");
  document.addEventListener("dragenter", (ev) => {
    if (!hasFiles(ev)) return;
    depth++;
    $("drop-overlay").hidden = false;
  });
  document.addEventListener("dragleave", () => {
    if (--depth <= 0) (depth = 0), ($("drop-overlay").hidden = true);
  });
  document.addEventListener("dragover", (ev) => {
    if (hasFiles(ev)) ev.preventDefault();
  });
  document.addEventListener("drop", (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    depth = 0;
    $("drop-overlay").hidden = true;
    const f = ev.dataTransfer.files[0];
    if (!f) return;
    if (current) {
      showAlert("Stop the render before loading other weights.", { kind: "weights" });
      return;
    }
    loadWeightsFrom(f);
  });
  window.addEventListener("resize", schedulePlot);
}

async function main() {
  wire();
  const link = settingsFromQuery(new URLSearchParams(location.search));
  applySettings(link.settings);
  pending = link;
  // Browsing an atlas needs neither WebGPU nor the weights.
  atlas = atlasView({
    renderLive: renderAtlasChannel,
    weightsSha: () => fv.weights?.sha256 ?? null,
    onChange: () => history.replaceState(null, "", linkFor()),
  });
  if (link.atlas) atlas.openUrl(link.atlas.url, link.atlas);
  try {
    featvis = await import("./featvis.js");
  } catch (e) {
    $("status").textContent = "The page's scripts did not load.";
    showWeightsStatus("Weights need the wasm module (see above).", true);
    fail(`Could not load featvis.js and its wasm module (www/pkg): ${message(e)}. Build them with tools/build-web.`);
    return;
  }
  try {
    engine = await featvis.getEngine();
  } catch (e) {
    $("status").textContent = "No WebGPU.";
    showWeightsStatus("Weights need WebGPU (see above).", true);
    const text = message(e);
    // featvis.js's message names the browsers that work (then the adapter's
    // own words, shown apart); add them if it did not.
    const known = featvis.NO_WEBGPU;
    if (known && text.startsWith(known) && text.length > known.length) {
      fail(known, { help: `What the browser said: ${text.slice(known.length).trim().replace(/^\((.*)\)$/s, "$1")}`, kind: "webgpu" });
    } else {
      fail(text, { help: /enable-unsafe-webgpu/.test(text) ? "" : WEBGPU_HELP, kind: "webgpu" });
    }
    return;
  }
  fv.engine = engine;
  $("status").textContent = engine.adapter() || "WebGPU (the browser does not name the adapter)";
  setupBench();
  fv.ready = true;
  await loadWeightsFrom(link.weights);
}

main();
