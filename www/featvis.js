// featvis.js — the one JS layer over the wasm engine, shared by the page
// (app.js) and the widget (featvis-widget.js):
//   getEngine()            one WebGPU device per page, created on first use
//   loadWeights(source)    one download per URL per page, kept in the Cache API
//   render(job)            renders scheduled one step at a time, round-robin,
//                          with pause / resume / stop
//   pageUrl(job), jobFromQuery(params)   settings ↔ the page's URL query
// Every URL is resolved against this module's own URL, so a blog that loads
// the widget from another folder or site still finds the wasm and weights.
import init, { Engine } from "./pkg/featvis.js";

const HERE = import.meta.url;

/** The weights `featvis fetch-weights` writes beside the page: f16 first, f32 as the fallback. */
export const DEFAULT_WEIGHTS = [
  new URL("weights/vgg16-imagenet-f16.safetensors", HERE).href,
  new URL("weights/vgg16-imagenet.safetensors", HERE).href,
];

/** The settings a link carries, with the CLI's option names. */
export const QUERY_KEYS = ["layer", "channels", "objective", "batch", "size", "steps", "transforms", "param", "lr", "seed", "preset", "redirect", "weights"];

export const NO_WEBGPU =
  "This browser has no WebGPU, which featvis needs to run VGG16 on your GPU. It works in Chrome or Edge 113+ " +
  "(Windows, macOS, ChromeOS, Android), Safari 26+ and Firefox 141+ on Windows. On Linux, Chrome needs " +
  "chrome://flags/#enable-unsafe-webgpu enabled (or the --enable-unsafe-webgpu command-line flag).";

const CACHE_NAME = "featvis-weights";

// An Error with a `code` for callers that act on the kind of failure:
// "no-webgpu", "weights-not-found", "weights-invalid", "device-lost".
function coded(code, message) {
  const e = new Error(message);
  e.code = code;
  return e;
}

function asError(e) {
  if (e instanceof Error) return e;
  return new Error(typeof e === "string" ? e : e?.message ?? String(e));
}

// ---------------------------------------------------------------- engine

let enginePromise = null;

/** The page's one engine (WebGPU device + weights). Rejects with a message for the user. */
export function getEngine() {
  if (!enginePromise) {
    enginePromise = (async () => {
      if (!globalThis.navigator?.gpu) throw coded("no-webgpu", NO_WEBGPU);
      try {
        await init({ module_or_path: new URL("pkg/featvis_bg.wasm", HERE) });
      } catch (e) {
        throw new Error(`Could not load featvis's wasm module (pkg/featvis_bg.wasm beside featvis.js): ${asError(e).message}. ` +
          "Build it with tools/build-web.");
      }
      let engine;
      try {
        engine = await Engine.create();
      } catch (e) {
        const msg = asError(e).message;
        throw /adapter|WebGPU/i.test(msg) ? coded("no-webgpu", `${NO_WEBGPU} (${msg})`) : new Error(msg);
      }
      // The conv schedule tuned on this device on an earlier visit (tuneConv).
      const stored = readStored(tuningKey(engine));
      if (stored?.chosen_spec) {
        try {
          await engine.setConvSchedule(stored.chosen_spec);
        } catch (e) {
          console.warn(`featvis: the tuned conv schedule ${stored.chosen_spec} was not taken: ${asError(e).message}`);
          writeStored(tuningKey(engine), null);
        }
      }
      return engine;
    })();
  }
  return enginePromise;
}

// ---------------------------------------------------------------- tuning

const tuningKey = (engine) => `featvis-conv-tuning:${engine.adapter()}`;

function readStored(key) {
  try {
    return JSON.parse(globalThis.localStorage?.getItem(key) ?? "null");
  } catch {
    return null;
  }
}

function writeStored(key, value) {
  try {
    if (value == null) globalThis.localStorage?.removeItem(key);
    else globalThis.localStorage?.setItem(key, JSON.stringify(value));
  } catch {
    /* storage off: tune again next visit */
  }
}

/**
 * Check every conv schedule worth trying against the CPU reference on this
 * device, time the correct ones and use the fastest, now and on later visits
 * (kept per adapter in localStorage). Resolves the report
 * {adapter, shape, chosen, chosen_spec, candidates:[{schedule, spec, max_rel_error, correct, gflops, error}]}.
 */
export async function tuneConv({ onCandidate } = {}) {
  const engine = await getEngine();
  const report = JSON.parse(await engine.tune(onCandidate ?? null));
  writeStored(tuningKey(engine), { chosen_spec: report.chosen_spec, chosen: report.chosen, at: new Date().toISOString() });
  return report;
}

/** The tuning kept for this device, if any: {chosen, chosen_spec, at}. */
export async function storedTuning() {
  return readStored(tuningKey(await getEngine()));
}

// ---------------------------------------------------------------- weights

const loads = new Map(); // key → { promise, listeners:Set }
let current = null;

/** The summary of the weights loaded last (null before any). */
export function currentWeights() {
  return current;
}

async function openCache() {
  try {
    return globalThis.caches ? await caches.open(CACHE_NAME) : null;
  } catch {
    return null; // no Cache API (an insecure context, private mode): download each time
  }
}

/** Forget the weights kept in this browser; the next load downloads them again. */
export async function forgetWeights() {
  loads.clear();
  try {
    if (globalThis.caches) await caches.delete(CACHE_NAME);
  } catch {
    /* nothing kept */
  }
}

class NotFound extends Error {}

// Download `url` with progress; a cached copy is used when the server still
// has the same file (a HEAD request: no body bytes) or cannot be reached.
async function fetchBytes(url, onBytes) {
  const cache = await openCache();
  const hit = cache ? await cache.match(url) : undefined;
  if (hit) {
    const size = Number(hit.headers.get("content-length"));
    const etag = hit.headers.get("etag");
    let fresh = true;
    try {
      const head = await fetch(url, { method: "HEAD", cache: "no-store" });
      if (head.status === 404) fresh = false;
      else if (head.ok) {
        const len = Number(head.headers.get("content-length"));
        const tag = head.headers.get("etag");
        if ((len && size && len !== size) || (tag && etag && tag !== etag)) fresh = false;
      }
    } catch {
      /* offline: the cached copy is what there is */
    }
    if (fresh) {
      const bytes = new Uint8Array(await hit.arrayBuffer());
      if (!size || bytes.length === size) {
        onBytes(bytes.length, bytes.length);
        return { bytes, cached: true, etag, cache };
      }
    }
    await cache.delete(url);
  }
  let res;
  try {
    res = await fetch(url, { cache: "no-store" });
  } catch (e) {
    throw new Error(`Could not download the weights from ${url}: ${asError(e).message}. ` +
      "If they are on another site, that site must allow it (CORS: Access-Control-Allow-Origin).");
  }
  if (res.status === 404) throw new NotFound(`${url} was not found (404).`);
  if (!res.ok) throw new Error(`Could not download the weights from ${url}: HTTP ${res.status} ${res.statusText}.`);
  const total = Number(res.headers.get("content-length")) || 0;
  let bytes;
  if (res.body && total) {
    bytes = new Uint8Array(total);
    let got = 0;
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (got + value.length > total) throw new Error(`${url}: the server sent more than its Content-Length (${total} bytes).`);
      bytes.set(value, got);
      got += value.length;
      onBytes(got, total);
    }
    if (got !== total) throw new Error(`${url}: the download stopped at ${got} of ${total} bytes; try again.`);
  } else {
    bytes = new Uint8Array(await res.arrayBuffer());
    onBytes(bytes.length, bytes.length);
  }
  return { bytes, cached: false, etag: res.headers.get("etag"), cache };
}

// One load per key per page; every caller's onBytes hears the progress.
function shared(key, listener, start) {
  let entry = loads.get(key);
  if (!entry) {
    const listeners = new Set();
    entry = { listeners, last: null };
    const report = (loaded, total) => {
      entry.last = [loaded, total];
      for (const l of listeners) l(loaded, total);
    };
    entry.promise = start(report).catch((e) => {
      loads.delete(key);
      throw e;
    });
    loads.set(key, entry);
  }
  if (listener) {
    entry.listeners.add(listener);
    if (entry.last) listener(...entry.last);
    entry.promise.finally(() => entry.listeners.delete(listener)).catch(() => {});
  }
  return entry.promise;
}

/** SHA-256 of `bytes` in hex (what checkpoints record of the weights). */
export async function sha256Hex(bytes) {
  try {
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  } catch {
    return `bytes:${bytes.length}`; // no WebCrypto (an insecure context): the size stands in
  }
}

async function loadUrl(url, report) {
  const got = await fetchBytes(url, report);
  const engine = await getEngine();
  let summary;
  try {
    summary = JSON.parse(await engine.loadWeights(got.bytes));
  } catch (e) {
    throw coded("weights-invalid", `${url}: ${asError(e).message}`);
  }
  summary.sha256 = await sha256Hex(got.bytes);
  if (got.cache && !got.cached) {
    const headers = { "content-type": "application/octet-stream", "content-length": String(got.bytes.length) };
    if (got.etag) headers.etag = got.etag;
    try {
      await got.cache.put(url, new Response(got.bytes, { headers }));
    } catch {
      /* quota: the next visit downloads again */
    }
  }
  return { ...summary, url, cached: got.cached };
}

/**
 * Load weights into the engine: `source` is a URL, a File/Blob (a
 * .safetensors the user picked or dropped), or null for the default (f16,
 * falling back to f32). Resolves the summary (layers, preprocessing, text, url, cached).
 */
export async function loadWeights(source = null, { onBytes } = {}) {
  let summary;
  if (source && typeof source === "object" && "arrayBuffer" in source) {
    const name = source.name ?? "the file";
    summary = await shared(`file:${name}:${source.size}:${source.lastModified ?? ""}`, onBytes, async (report) => {
      const bytes = new Uint8Array(await source.arrayBuffer());
      report(bytes.length, bytes.length);
      const engine = await getEngine();
      try {
        return { ...JSON.parse(await engine.loadWeights(bytes)), url: name, cached: false, sha256: await sha256Hex(bytes) };
      } catch (e) {
        throw coded("weights-invalid", `${name}: ${asError(e).message}`);
      }
    });
  } else if (source) {
    const url = new URL(String(source), globalThis.location?.href ?? HERE).href;
    try {
      summary = await shared(url, onBytes, (report) => loadUrl(url, report));
    } catch (e) {
      if (e instanceof NotFound) throw coded("weights-not-found", `No weights: ${e.message} Check the weights URL, or use a .safetensors file of your own.`);
      throw e;
    }
  } else {
    // The default: each file shares its load with callers that name its URL.
    for (const url of DEFAULT_WEIGHTS) {
      try {
        summary = await shared(url, onBytes, (report) => loadUrl(url, report));
        break;
      } catch (e) {
        if (!(e instanceof NotFound)) throw e;
      }
    }
    if (!summary) {
      throw coded("weights-not-found", `No weights: neither ${DEFAULT_WEIGHTS.map((u) => u.split("/").pop()).join(" nor ")} is in the weights/ folder beside featvis.js (404). ` +
        "Run `featvis fetch-weights` (tools/run does it) and reload, or use a .safetensors file of your own.");
    }
  }
  // The engine holds one set of weights at a time: the last loaded.
  current = summary;
  return summary;
}

// ---------------------------------------------------------------- renders

const active = []; // handles not yet done, in start order
let turn = 0;
let running = false;

const yieldToBrowser = () => new Promise((resolve) => setTimeout(resolve, 0));

/** A render in the page's schedule. */
export class RenderHandle {
  constructor(job, onProgress, { resumeFrom = null, onCheckpoint = null, checkpointEvery = 0 } = {}) {
    this.job = job;
    this.onProgress = onProgress;
    this.resumeFrom = resumeFrom;
    this.onCheckpoint = onCheckpoint;
    this.checkpointEvery = checkpointEvery;
    this.state = "queued";
    this.task = null;
    this.labels = [];
    this.result = null;
    this.paused = false;
    this.stopRequested = false;
    this.promise = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    this.promise.catch(() => {}); // callers that only watch state must not see an unhandled rejection
  }

  /** Stop taking steps (the GPU state stays); other renders go on. */
  pause() {
    if (this.state === "queued" || this.state === "running") {
      this.paused = true;
      this.state = "paused";
    }
  }

  resume() {
    if (this.state === "paused") {
      this.paused = false;
      this.state = this.task ? "running" : "queued";
      kick();
    }
  }

  /** End the render after the step under way; resolves the promise with the images as they are. */
  stop() {
    if (this.state === "done" || this.state === "stopped" || this.state === "error") return this.promise.catch(() => {});
    this.stopRequested = true;
    this.paused = false;
    kick();
    return this.promise.catch(() => {});
  }
}

// Hand the render's checkpoint to its onCheckpoint (between steps only).
async function saveCheckpoint(h, p) {
  if (!h.onCheckpoint || !h.task || h.task.finished()) return;
  try {
    const bytes = await h.task.checkpoint(currentWeights()?.sha256 ?? "");
    await h.onCheckpoint(bytes, p);
  } catch (e) {
    console.warn(`featvis: the render's state was not saved: ${asError(e).message}`);
  }
}

function retire(h) {
  const i = active.indexOf(h);
  if (i >= 0) active.splice(i, 1);
}

async function advance(h) {
  try {
    if (!h.task) {
      if (h.stopRequested) {
        h.state = "stopped";
        retire(h);
        h._resolve(null);
        return;
      }
      const engine = await getEngine();
      if (!engine.hasWeights()) await loadWeights(null);
      h.task = h.resumeFrom
        ? await engine.resume(JSON.stringify(h.job), h.resumeFrom, currentWeights()?.sha256 ?? "")
        : engine.start(JSON.stringify(h.job));
      h.resumeFrom = null;
      h.labels = JSON.parse(h.task.labels());
      if (h.paused && !h.stopRequested) return; // paused while the engine or weights loaded
    }
    if (h.stopRequested) {
      await saveCheckpoint(h, null);
      await h.task.stop();
      h.result = JSON.parse(h.task.result());
      h.state = "stopped";
      retire(h);
      h._resolve(h.result);
      return;
    }
    h.state = "running";
    const p = JSON.parse(await h.task.step());
    if (!p.finished && h.checkpointEvery > 0 && p.done % h.checkpointEvery === 0) await saveCheckpoint(h, p);
    if (p.finished) {
      h.result = JSON.parse(h.task.result());
      h.state = "done";
      retire(h);
    } else if (h.paused) {
      h.state = "paused";
    }
    try {
      h.onProgress?.(p, h);
    } catch (e) {
      console.error("featvis: a progress callback failed", e);
    }
    if (p.finished) h._resolve(h.result);
  } catch (e) {
    const err = asError(e);
    const engine = await getEngine().catch(() => null);
    if (!err.code && (engine?.lost() || /device was lost/i.test(err.message))) err.code = "device-lost";
    h.state = "error";
    retire(h);
    h._reject(err);
  }
}

async function loop() {
  running = true;
  try {
    for (;;) {
      const ready = active.filter((h) => !h.paused || h.stopRequested);
      if (!ready.length) break;
      const h = ready[turn++ % ready.length];
      await advance(h);
      await yieldToBrowser();
    }
  } finally {
    running = false;
  }
}

function kick() {
  if (!running) loop();
}

/**
 * Render `job` (the CLI's option names: layer, channels, objective, batch,
 * size, steps, preset, transforms, param, lr, seed, redirect, snapshots,
 * preview_every). Steps of several renders interleave; the browser's event
 * loop runs between any two. `resumeFrom`: a checkpoint's bytes to continue
 * from; `onCheckpoint(bytes, step)`: hears the render's state every
 * `checkpointEvery` steps and when it is stopped (see saveRenderState).
 */
export function render(job, { onProgress, resumeFrom, onCheckpoint, checkpointEvery } = {}) {
  const h = new RenderHandle(job, onProgress, { resumeFrom, onCheckpoint, checkpointEvery });
  active.push(h);
  kick();
  return h;
}

// ---------------------------------------------------------------- links

/** The page (index.html beside this module) with `job`'s settings in its query. */
export function pageUrl(job, { weights = null, run = false, base = new URL("index.html", HERE).href } = {}) {
  const u = new URL(base);
  for (const k of QUERY_KEYS) {
    const v = k === "weights" ? weights ?? job.weights : job[k];
    if (v !== undefined && v !== null && v !== "") u.searchParams.set(k, String(v));
  }
  if (run) u.searchParams.set("run", "1");
  return u.href;
}

const INTEGER_KEYS = ["batch", "size", "steps", "seed"];

/** A link's query → { job, weights, run, errors } (errors: what in the link is malformed). */
export function jobFromQuery(params) {
  const job = {};
  const errors = [];
  for (const k of QUERY_KEYS) {
    const v = params.get(k);
    if (v === null || v === "" || k === "weights") continue;
    if (INTEGER_KEYS.includes(k)) {
      if (!/^\d+$/.test(v.trim())) errors.push(`${k} in the link must be a whole number, got “${v}”`);
      else job[k] = Number(v);
    } else if (k === "lr") {
      const x = Number(v);
      if (!Number.isFinite(x) || x <= 0) errors.push(`lr in the link must be a positive number, got “${v}”`);
      else job.lr = x;
    } else if (k === "redirect") {
      job.redirect = !["0", "false", "off", "no"].includes(v.toLowerCase());
    } else {
      job[k] = v;
    }
  }
  return { job, weights: params.get("weights") || null, run: params.get("run") === "1", errors };
}

// ---------------------------------------------------------------- saved renders

const DB_NAME = "featvis";
const STORE = "renders";

function openDb() {
  return new Promise((resolve, reject) => {
    if (!globalThis.indexedDB) {
      reject(new Error("this browser keeps no IndexedDB"));
      return;
    }
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error("IndexedDB did not open"));
  });
}

async function withStore(mode, f) {
  const db = await openDb();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const req = f(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(req?.result);
      tx.onerror = () => reject(tx.error ?? new Error("IndexedDB transaction failed"));
      tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
    });
  } finally {
    db.close();
  }
}

/** Keep a render's record ({job, weightsSha256, bytes, step, …}) under `key`, so a reloaded tab can continue it. */
export function saveRenderState(key, record) {
  return withStore("readwrite", (s) => s.put(record, key));
}

/** The record kept under `key`, or undefined. */
export async function loadRenderState(key) {
  try {
    return await withStore("readonly", (s) => s.get(key));
  } catch {
    return undefined;
  }
}

export async function clearRenderState(key) {
  try {
    await withStore("readwrite", (s) => s.delete(key));
  } catch {
    /* nothing kept */
  }
}
