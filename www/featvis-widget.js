// <featvis-view>: one feature visualization of VGG16, rendered live on the
// reader's GPU, for embedding in a blog post:
//
//   <script type="module" src="https://example.org/featvis/featvis-widget.js"></script>
//   <featvis-view objective="conv4_3:12" size="128" steps="256" seed="1"></featvis-view>
//
// Attributes (the CLI's option names; all but one of objective/layer optional):
//   objective      an objective in featvis's language ("conv4_3:12 - 100*diversity(conv4_3)")
//   layer, channel (or channels="0-3"): one image per channel instead of an objective
//   size, steps, seed, batch, lr, transforms, param, preset, redirect ("false")
//   preview-every  steps between previews (default 4; a preview is a GPU readback)
//   weights        URL of the weights file (default: weights/ beside featvis.js)
// Read-only attribute `state`: loading | queued | running | paused | done | error.
// Events (bubbling, composed): featvis-progress (detail: the step object),
// featvis-done (detail: the result object, as `featvis render --json`),
// featvis-error (detail: {message}). Property `result`; method `restart()`.
//
// Every widget on a page shares one WebGPU device and one download of the
// weights (featvis.js); renders start when scrolled into view, pause when
// scrolled away, and interleave one step at a time.

const FEATVIS_URL = new URL("./featvis.js", import.meta.url).href;
let featvisModule = null;
// featvis.js, imported on first use (a failure to load it becomes the widget's error).
function loadFeatvis() {
  featvisModule ??= import(FEATVIS_URL).catch((e) => {
    featvisModule = null;
    throw new Error(`could not load ${FEATVIS_URL}: ${e.message ?? e}`);
  });
  return featvisModule;
}

// One IntersectionObserver for every widget on the page.
const watched = new Map(); // element → callback(visible)
let observer = null;
function watch(el, callback) {
  observer ??= new IntersectionObserver(
    (entries) => {
      for (const e of entries) watched.get(e.target)?.(e.isIntersecting);
    },
    { rootMargin: "64px 0px" },
  );
  watched.set(el, callback);
  observer.observe(el);
}
function unwatch(el) {
  watched.delete(el);
  observer?.unobserve(el);
}

const NUMBERS = { size: "size", steps: "steps", seed: "seed", batch: "batch", lr: "lr", "preview-every": "preview_every" };
const STRINGS = ["transforms", "param", "preset"];
const DEFAULT_PREVIEW_EVERY = 4;
const DEFAULT_SIZE = 128; // the CLI's default, used for the layout until the engine confirms it

const STYLE = `
:host { display: block; max-width: 256px; color: inherit; font: 12px/18px system-ui, -apple-system, "Segoe UI", sans-serif; }
:host([hidden]) { display: none; }
* { box-sizing: border-box; }
figure { margin: 0; }
.frame { position: relative; background: rgba(127, 127, 127, 0.14); border-radius: 3px; overflow: hidden; }
canvas { display: block; width: 100%; height: auto; }
.error { position: absolute; inset: 0; margin: 0; padding: 10px; overflow: auto; font-size: 12px; line-height: 16px;
  color: #b00020; background: rgba(255, 240, 240, 0.96); overflow-wrap: anywhere; }
.error[hidden] { display: none; }
.row { display: flex; align-items: center; gap: 6px; height: 24px; margin-top: 4px; }
.label { flex: 1 1 auto; min-width: 0; overflow: hidden; white-space: nowrap; text-overflow: ellipsis;
  font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 11.5px; }
button { flex: none; width: 24px; height: 24px; padding: 0; border: 1px solid rgba(127, 127, 127, 0.4); border-radius: 4px;
  background: transparent; color: inherit; font: 15px/1 system-ui, sans-serif; cursor: pointer; }
button:hover { background: rgba(127, 127, 127, 0.15); }
button:focus-visible, a:focus-visible { outline: 2px solid #2a6cd6; outline-offset: 1px; }
a { flex: none; color: #2a6cd6; text-decoration: none; white-space: nowrap; }
a:hover { text-decoration: underline; }
a:not([href]) { visibility: hidden; }
.status { height: 18px; overflow: hidden; white-space: nowrap; text-overflow: ellipsis; opacity: 0.68;
  font-variant-numeric: tabular-nums; }
:host([state="error"]) .status { color: #b00020; opacity: 1; }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%); white-space: nowrap; }
`;

// A figure to show: 0.31, 4.2, 412.
function num(x) {
  if (typeof x !== "number" || !Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (x === 0) return "0";
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  return x.toPrecision(2);
}
const mb = (bytes) => (bytes / 1e6).toFixed(bytes < 1e7 ? 1 : 0);

// How many images a job renders, from its attributes alone (for the layout
// before the engine confirms it): one per listed channel, or `batch`.
function countChannels(text) {
  let n = 0;
  for (const part of String(text).split(",")) {
    const [a, b] = part.split("-").map((s) => Number.parseInt(s, 10));
    if (Number.isInteger(a)) n += Number.isInteger(b) && b >= a ? b - a + 1 : 1;
  }
  return Math.max(1, n);
}

export class FeatvisView extends HTMLElement {
  static observedAttributes = ["objective", "layer", "channel", "channels", "weights", "redirect", ...Object.keys(NUMBERS), ...STRINGS];

  #canvas;
  #ctx;
  #error;
  #label;
  #status;
  #live;
  #restart;
  #link;
  #connected = false;
  #visible = false;
  #gen = 0; // bumped by every (re)start and stop: callbacks of an older render are ignored
  #restartQueued = false;
  #handle = null;
  #result = null;
  #layout = { images: 1, size: DEFAULT_SIZE, cols: 1, gap: 0 };
  #rate = [];
  #stepped = false;
  #lastStep = null;
  #t0 = 0;

  constructor() {
    super();
    const root = this.attachShadow({ mode: "open" });
    root.innerHTML = `<style>${STYLE}</style>
<figure part="figure">
  <div class="frame" part="frame">
    <canvas part="canvas" role="img" width="${DEFAULT_SIZE}" height="${DEFAULT_SIZE}"></canvas>
    <p class="error" role="alert" hidden></p>
  </div>
  <div class="row">
    <span class="label" part="label"></span>
    <button type="button" class="restart" part="restart">↻</button>
    <a class="open" part="link" target="_blank" rel="noopener">open in featvis ↗</a>
  </div>
  <div class="status" part="status" aria-hidden="true"></div>
  <span class="sr" aria-live="polite"></span>
</figure>`;
    this.#canvas = root.querySelector("canvas");
    this.#ctx = this.#canvas.getContext("2d");
    this.#error = root.querySelector(".error");
    this.#label = root.querySelector(".label");
    this.#status = root.querySelector(".status");
    this.#live = root.querySelector(".sr");
    this.#restart = root.querySelector("button");
    this.#link = root.querySelector("a");
    this.#restart.addEventListener("click", () => this.restart());
  }

  /** The result object of the finished render (`featvis render --json`), else null. */
  get result() {
    return this.#result;
  }

  /** loading | queued | running | paused | done | error */
  get state() {
    return this.getAttribute("state");
  }

  connectedCallback() {
    this.#connected = true;
    watch(this, (visible) => this.#onVisible(visible));
    document.addEventListener("visibilitychange", this.#onPageVisibility);
    this.restart();
  }

  disconnectedCallback() {
    this.#connected = false;
    unwatch(this);
    document.removeEventListener("visibilitychange", this.#onPageVisibility);
    this.#stop();
  }

  attributeChangedCallback(name, old, value) {
    if (!this.#connected || old === value || this.#restartQueued) return;
    // Several attributes set in a row restart once.
    this.#restartQueued = true;
    queueMicrotask(() => {
      this.#restartQueued = false;
      if (this.#connected) this.restart();
    });
  }

  /** Starts the render again from step 0 (now if the widget is in view, else once it is). */
  restart() {
    this.#stop();
    this.#result = null;
    this.#rate = [];
    this.#stepped = false;
    this.#lastStep = null;
    this.#error.hidden = true;
    this.#error.textContent = "";
    const named = this.getAttribute("objective") ?? this.getAttribute("layer") ?? "";
    this.#label.textContent = named;
    this.#label.title = named;
    let job;
    try {
      job = this.#job();
    } catch (e) {
      this.#fail(this.#gen, e);
      return;
    }
    const what = job.objective ?? `${job.layer}:${job.channels ?? ""}`;
    this.#label.textContent = what;
    this.#label.title = what;
    this.#canvas.setAttribute("aria-label", `Feature visualization of VGG16: ${what}`);
    this.#restart.setAttribute("aria-label", `Restart the render of ${what}`);
    this.#restart.title = "Restart";
    this.#setLayout(job.objective != null ? (job.batch ?? 1) : countChannels(job.channels ?? "0"), job.size ?? DEFAULT_SIZE);
    this.#setState("queued", "starts when scrolled into view");
    const gen = this.#gen;
    loadFeatvis().then(
      (fv) => gen === this.#gen && this.#setLink(fv, job),
      () => {}, // reported when the render starts
    );
    if (this.#shown()) this.#start(job);
    else this.#pendingJob = job;
  }

  #pendingJob = null;

  #stop() {
    this.#gen++;
    this.#pendingJob = null;
    this.#whenShown = null;
    const h = this.#handle;
    this.#handle = null;
    if (h && h.state !== "done" && h.state !== "error" && h.state !== "stopped") {
      try {
        h.stop();
      } catch {
        // already over
      }
    }
  }

  #whenShown = null; // resolves the wait of a render that loaded while out of view

  #shown() {
    return this.#visible && !document.hidden;
  }

  #onPageVisibility = () => this.#onVisible(this.#visible, true);

  // In view (or not): start the waiting render, or pause/resume the running one.
  #onVisible(visible, pageEvent = false) {
    if (!pageEvent) this.#visible = visible;
    const show = this.#shown();
    if (show && this.#whenShown) {
      this.#whenShown();
      this.#whenShown = null;
      return;
    }
    if (show && this.#pendingJob) {
      const job = this.#pendingJob;
      this.#pendingJob = null;
      this.#start(job);
      return;
    }
    const h = this.#handle;
    if (!h) return;
    const state = this.state;
    if (!show && (state === "running" || state === "queued")) {
      h.pause();
      const at = this.#lastStep ? ` at step ${this.#lastStep.step}/${this.#lastStep.steps}` : "";
      this.#setState("paused", `paused${at} (out of view)`);
    } else if (show && state === "paused") {
      h.resume();
      if (this.#stepped) this.#setState("running", this.#stepText(this.#lastStep));
      else this.#setState("queued", "waiting for the GPU");
    }
  }

  // The job object from the attributes (the CLI's option names).
  #job() {
    const attr = (n) => this.getAttribute(n);
    const job = {};
    const objective = attr("objective");
    const layer = attr("layer");
    if (objective != null && layer != null) throw new Error("give the widget either objective=\"…\" or layer=\"…\" (with channel=\"…\"), not both");
    if (objective != null) job.objective = objective;
    else if (layer != null) {
      job.layer = layer;
      const ch = attr("channels") ?? attr("channel");
      if (ch != null) job.channels = ch;
    } else throw new Error("the widget needs an objective, e.g. <featvis-view objective=\"conv4_3:12\">");
    for (const [name, key] of Object.entries(NUMBERS)) {
      const v = attr(name);
      if (v == null || v.trim() === "") continue;
      const x = Number(v);
      if (!Number.isFinite(x)) throw new Error(`${name}="${v}" is not a number`);
      job[key] = x;
    }
    for (const name of STRINGS) if (attr(name) != null) job[name] = attr(name);
    const redirect = attr("redirect");
    if (redirect != null) job.redirect = !/^(false|0|no|off)$/i.test(redirect.trim());
    job.preview_every ??= DEFAULT_PREVIEW_EVERY;
    return job;
  }

  #weightsUrl() {
    const w = this.getAttribute("weights");
    return w ? new URL(w, document.baseURI).href : null;
  }

  #setLink(fv, job) {
    const { preview_every: _, ...rest } = job;
    const weights = this.#weightsUrl();
    try {
      this.#link.href = fv.pageUrl(weights ? { ...rest, weights } : rest);
      this.#link.setAttribute("aria-label", `Open ${this.#label.textContent} in featvis`);
    } catch {
      this.#link.removeAttribute("href");
    }
  }

  async #start(job) {
    const gen = this.#gen;
    const alive = () => gen === this.#gen;
    try {
      this.#setState("loading", "starting WebGPU…");
      const fv = await loadFeatvis();
      if (!alive()) return;
      const engine = await fv.getEngine();
      if (!alive()) return;
      this.#setState("loading", "loading weights…");
      await this.#loadWeights(fv, alive);
      if (!alive()) return;
      // The engine's check: a malformed objective, an unknown layer or a
      // channel out of range fails here, with the parser's message.
      const check = JSON.parse(engine.checkJob(JSON.stringify(job)));
      this.#setLayout(check.images, check.size);
      if (Array.isArray(check.labels) && check.labels.length) {
        this.#canvas.setAttribute("aria-label", `Feature visualization of VGG16: ${check.labels.join(", ")}`);
      }
      if (!this.#shown()) {
        // Scrolled away while loading: start once back in view.
        this.#setState("paused", "paused (out of view)");
        await new Promise((resolve) => (this.#whenShown = resolve));
        if (!alive()) return;
      }
      this.#t0 = performance.now();
      const handle = fv.render(job, { onProgress: (p, h) => alive() && this.#onProgress(p, h) });
      this.#handle = handle;
      this.#setState("queued", "waiting for the GPU");
      const result = await handle.promise;
      if (!alive()) return;
      this.#drawAll(handle);
      this.#result = result;
      this.#setState("done", this.#doneText(result), "done");
      this.dispatchEvent(new CustomEvent("featvis-done", { detail: result, bubbles: true, composed: true }));
    } catch (e) {
      if (alive()) this.#fail(gen, e);
    }
  }

  async #loadWeights(fv, alive) {
    const url = this.#weightsUrl();
    try {
      await fv.loadWeights(url, {
        onBytes: (loaded, total) => {
          if (!alive()) return;
          const of = total ? ` of ${mb(total)} MB` : " MB";
          this.#setStatus(`loading weights ${mb(loaded)}${of}`);
        },
      });
    } catch (e) {
      const said = String(e?.message ?? e);
      // featvis.js words its messages for the page (“beside the page”, “drop a file on the page”).
      if (!url && (e?.code === "weights-not-found" || /\(404\)/.test(said))) {
        const names = fv.DEFAULT_WEIGHTS.map((u) => u.split("/").pop()).join(" nor ");
        throw new Error(`No weights: neither ${names} is in the weights/ folder beside featvis-widget.js (404). ` +
          "Run `featvis fetch-weights` to put them there, or give the widget a weights=\"URL\" attribute.");
      }
      const where = url
        ? `check the widget's weights="${this.getAttribute("weights")}"; a file on another site must be served with Access-Control-Allow-Origin`
        : `the widget looks for weights/ beside featvis-widget.js, or give it a weights="URL" attribute`;
      throw new Error(`${said.replace(/,? or drop a \.safetensors file on the page/, "")} (${where}.)`);
    }
  }

  #onProgress(p, handle) {
    this.#lastStep = p;
    if (!this.#stepped) {
      this.#stepped = true;
      if (this.state === "queued") this.#setState("running", "", "running");
    }
    if (p.preview) this.#draw(handle, p.first, p.count);
    const now = performance.now();
    const done = (p.batch_index ?? 0) * p.steps + p.step;
    this.#rate.push([now, done]);
    while (this.#rate.length > 2 && now - this.#rate[0][0] > 3000) this.#rate.shift();
    if (this.state === "running") this.#setStatus(this.#stepText(p));
    this.dispatchEvent(new CustomEvent("featvis-progress", { detail: p, bubbles: true, composed: true }));
  }

  #stepText(p) {
    if (!p) return "";
    let text = `step ${p.step}/${p.steps}`;
    if (p.batches > 1) text += ` · batch ${p.batch_index + 1}/${p.batches}`;
    const r = this.#rate;
    if (r.length >= 2) {
      const [t0, s0] = r[0];
      const [t1, s1] = r[r.length - 1];
      if (t1 > t0) text += ` · ${num(((s1 - s0) * 1000) / (t1 - t0))} steps/s`;
    }
    return text;
  }

  #doneText(result) {
    const images = result?.images ?? [];
    const secs = (performance.now() - this.#t0) / 1000;
    const time = secs < 100 ? ` (${secs < 10 ? secs.toFixed(1) : secs.toFixed(0)} s)` : ` (${Math.floor(secs / 60)} min ${Math.round(secs % 60)} s)`;
    if (images.length === 1) return `done: activation ${num(images[0].initial_activation)} → ${num(images[0].final_activation)}${time}`;
    if (images.length > 1) {
      const mean = (k) => images.reduce((s, im) => s + im[k], 0) / images.length;
      return `done: mean activation ${num(mean("initial_activation"))} → ${num(mean("final_activation"))}${time}`;
    }
    return `done${time}`;
  }

  // The canvas holds every image of the render in a grid (one image: just it).
  #setLayout(images, size) {
    const n = Math.max(1, images | 0);
    const cols = n === 1 ? 1 : n <= 4 ? 2 : Math.ceil(Math.sqrt(n));
    const rows = Math.ceil(n / cols);
    const gap = n === 1 ? 0 : Math.max(1, Math.round(size / 32));
    const l = this.#layout;
    const w = cols * size + (cols - 1) * gap;
    const h = rows * size + (rows - 1) * gap;
    if (l.images === n && l.size === size && this.#canvas.width === w && this.#canvas.height === h) {
      this.#ctx.clearRect(0, 0, w, h);
      return;
    }
    this.#layout = { images: n, size, cols, gap };
    this.#canvas.width = w; // also clears it
    this.#canvas.height = h;
  }

  #draw(handle, first, count) {
    const task = handle?.task;
    if (!task) return;
    const { size, cols, gap, images } = this.#layout;
    const w = task.width?.() ?? size;
    const h = task.height?.() ?? size;
    for (let i = first; i < first + count && i < images; i++) {
      const rgba = task.previewRGBA(i);
      if (!rgba || rgba.length !== w * h * 4) continue;
      const x = (i % cols) * (size + gap);
      const y = Math.floor(i / cols) * (size + gap);
      this.#ctx.putImageData(new ImageData(rgba, w, h), x, y);
    }
  }

  #drawAll(handle) {
    this.#draw(handle, 0, this.#layout.images);
  }

  #setState(state, status, announce) {
    if (this.getAttribute("state") !== state) this.setAttribute("state", state);
    this.#canvas.setAttribute("aria-busy", String(state === "loading" || state === "running" || state === "queued"));
    this.#setStatus(status);
    if (announce) this.#live.textContent = `${this.#label.textContent}: ${announce === "done" ? status : announce}`;
  }

  #setStatus(text) {
    if (this.#status.textContent === text) return;
    this.#status.textContent = text;
    this.#status.title = text; // the whole line where it is cut short
  }

  #fail(gen, e) {
    if (gen !== this.#gen) return;
    const message = e?.message ?? String(e);
    this.#handle = null;
    this.#error.textContent = message;
    this.#error.hidden = false;
    this.#setState("error", "error");
    this.dispatchEvent(new CustomEvent("featvis-error", { detail: { message }, bubbles: true, composed: true }));
  }
}

if (!customElements.get("featvis-view")) customElements.define("featvis-view", FeatvisView);
