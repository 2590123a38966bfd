// Browsing an atlas made by `featvis atlas` (and `featvis atlas-index`), from
// a URL (any static host; another origin must send CORS headers) or from a
// folder the user picks: its layers, a grid of each layer's channels, a
// channel's snapshots and record, and "Render live", which re-runs the
// channel's group on this GPU with the recorded settings and seed and sets
// the two pictures side by side.
//
// Browsing needs no WebGPU and no weights; Render live needs both.
//
// What the page reads (tools/featvis/atlas.rs writes it):
//   DIR/atlas.json          the settings (format "featvis-atlas")
//   DIR/atlas-index.json    the settings and the layers (format "featvis-atlas-index")
//   DIR/LAYER/index.json    the layer's channel records, in channel order
//   DIR/LAYER/C.json        one channel's record (a folder without the index)
//   DIR/LAYER/C.png, C-STEP.png

const $ = (id) => document.getElementById(id);

// Channels of each conv layer: a folder read record by record says "8 of 256".
const CONV_CHANNELS = { conv1: 64, conv2: 128, conv3: 256, conv4: 512, conv5: 512 };
const channelsOf = (layer) => CONV_CHANNELS[layer.split("_")[0]] ?? null;
const layerOrder = (a, b) => a.localeCompare(b, "en", { numeric: true });

function checkSettings(s, where) {
  if (!s || s.format !== "featvis-atlas" || typeof s.size !== "number" || typeof s.steps !== "number") {
    throw new Error(`${where} is not the record of a featvis atlas (it has no featvis-atlas settings).`);
  }
  if (s.version !== 1) {
    throw new Error(`${where} is a featvis atlas of format version ${s.version}; this page reads version 1. Use the featvis that made it.`);
  }
  return s;
}

function checkIndex(index, where) {
  if (!index || index.format !== "featvis-atlas-index" || !Array.isArray(index.layers)) {
    throw new Error(`${where} is not a featvis atlas index (format "featvis-atlas-index"). Write it with \`featvis atlas-index DIR\`.`);
  }
  checkSettings(index.settings, where);
  return index;
}

function checkRecords(recs, where) {
  if (!Array.isArray(recs) || recs.some((r) => typeof r?.channel !== "number" || !Array.isArray(r.files) || !r.request)) {
    throw new Error(`${where} does not hold channel records of a featvis atlas.`);
  }
  return recs.sort((a, b) => a.channel - b.channel);
}

async function fetchJson(url, what) {
  let res;
  try {
    res = await fetch(url, { cache: "no-cache" });
  } catch (e) {
    const other = new URL(url).origin !== location.origin;
    throw new Error(
      `Could not read ${url} (${e.message}).` +
        (other ? " An atlas on another site must allow this page to read it: its server has to send Access-Control-Allow-Origin." : ""),
    );
  }
  if (res.status === 404) throw Object.assign(new Error(`${url} does not exist (404).`), { status: 404 });
  if (!res.ok) throw new Error(`${url}: the server answered ${res.status} ${res.statusText}.`);
  try {
    return await res.json();
  } catch {
    throw new Error(`${url} is not JSON: ${what}.`);
  }
}

/** The atlas at a URL: the folder (or its index.html / atlas-index.json). */
export async function atlasFromUrl(text) {
  let base;
  try {
    base = new URL(text.trim(), location.href);
  } catch {
    throw new Error(`“${text}” is not a URL. Give the address of an atlas folder, e.g. https://example.org/my-atlas/`);
  }
  if (base.protocol !== "http:" && base.protocol !== "https:") {
    throw new Error(`“${text}” is not an http(s) address. To open an atlas on this computer, use “Open a folder…”.`);
  }
  base.search = "";
  base.hash = "";
  base.pathname = base.pathname.replace(/(index\.html|atlas-index\.json|atlas\.json)$/, "");
  if (!base.pathname.endsWith("/")) base.pathname += "/";
  const indexUrl = new URL("atlas-index.json", base).href;
  let index;
  try {
    index = checkIndex(await fetchJson(indexUrl, "the atlas index"), indexUrl);
  } catch (e) {
    if (e.status !== 404) throw e;
    // atlas.json without the index: an atlas whose site was not written yet.
    let settings = null;
    try {
      settings = await fetchJson(new URL("atlas.json", base).href, "the atlas settings");
    } catch {
      /* not an atlas at all */
    }
    throw new Error(
      settings
        ? `The atlas at ${base.href} has no atlas-index.json yet: run \`featvis atlas-index DIR\` on its folder (the last shard does it when all are done).`
        : `No atlas at ${base.href}: neither atlas-index.json nor atlas.json is there. Give the folder that \`featvis atlas --out\` wrote.`,
    );
  }
  const cache = new Map();
  return {
    name: base.href,
    link: base.href,
    settings: index.settings,
    layers: index.layers.filter((l) => l.channels > 0),
    records(layer) {
      if (!cache.has(layer)) {
        const url = new URL(`${encodeURIComponent(layer)}/index.json`, base).href;
        cache.set(
          layer,
          fetchJson(url, "the layer's records").then((r) => checkRecords(r, url)),
        );
        cache.get(layer).catch(() => cache.delete(layer));
      }
      return cache.get(layer);
    },
    image(layer, file) {
      return new URL(`${encodeURIComponent(layer)}/${encodeURIComponent(file)}`, base).href;
    },
    crossOrigin: "anonymous",
    close() {},
  };
}

async function readJsonFile(file, where) {
  try {
    return JSON.parse(await file.text());
  } catch (e) {
    throw new Error(`${where} is not JSON (${e.message}).`);
  }
}

/** The atlas in a folder the user picked (<input webkitdirectory>). */
export async function atlasFromFolder(fileList) {
  const files = [...fileList];
  const rel = (f) => f.webkitRelativePath || f.name;
  const folder = files.length ? rel(files[0]).split("/")[0] : "The folder";
  if (!files.length) throw new Error("The folder is empty. Pick the folder that `featvis atlas --out` wrote.");
  // The atlas's root holds atlas.json (the outermost one, if several).
  const settingsFile = files
    .filter((f) => rel(f) === "atlas.json" || rel(f).endsWith("/atlas.json"))
    .sort((a, b) => rel(a).length - rel(b).length)[0];
  if (!settingsFile) {
    throw new Error(`${folder} is not an atlas folder: it has no atlas.json. Pick the folder that \`featvis atlas --out\` wrote.`);
  }
  const root = rel(settingsFile).slice(0, -"atlas.json".length);
  const byPath = new Map();
  for (const f of files) if (rel(f).startsWith(root)) byPath.set(rel(f).slice(root.length), f);
  const settings = checkSettings(await readJsonFile(settingsFile, rel(settingsFile)), rel(settingsFile));

  let layers;
  const recordsOf = new Map(); // layer → Promise of records
  const indexFile = byPath.get("atlas-index.json");
  if (indexFile) {
    const index = checkIndex(await readJsonFile(indexFile, rel(indexFile)), rel(indexFile));
    layers = index.layers.filter((l) => l.channels > 0);
  }
  if (!layers || layers.some((l) => !byPath.has(`${l.name}/index.json`))) {
    // No site yet (or an incomplete one): read the channel records themselves.
    const perLayer = new Map();
    for (const [p, f] of byPath) {
      const m = /^(conv\d_\d)\/(\d+)\.json$/.exec(p);
      if (m) (perLayer.get(m[1]) ?? perLayer.set(m[1], []).get(m[1])).push(f);
    }
    if (!perLayer.size) throw new Error(`${folder} holds an atlas with no finished channel yet (no LAYER/C.json records).`);
    layers = [];
    for (const name of [...perLayer.keys()].sort(layerOrder)) {
      const recs = perLayer.get(name);
      const read = Promise.all(recs.map((f) => readJsonFile(f, rel(f)))).then((r) => checkRecords(r, `${folder}/${name}`));
      recordsOf.set(name, read);
      const first = Math.min(...recs.map((f) => Number(/(\d+)\.json$/.exec(f.name)[1])));
      layers.push({ name, total: channelsOf(name) ?? recs.length, channels: recs.length, cover: first });
    }
  }
  const urls = new Map();
  return {
    name: folder,
    link: null,
    settings,
    layers,
    records(layer) {
      if (!recordsOf.has(layer)) {
        const f = byPath.get(`${layer}/index.json`);
        recordsOf.set(
          layer,
          f ? readJsonFile(f, rel(f)).then((r) => checkRecords(r, rel(f))) : Promise.reject(new Error(`${folder} has no records of ${layer}.`)),
        );
      }
      return recordsOf.get(layer);
    },
    image(layer, file) {
      const key = `${layer}/${file}`;
      if (!urls.has(key)) {
        const f = byPath.get(key);
        urls.set(key, f ? URL.createObjectURL(f) : "");
      }
      return urls.get(key);
    },
    crossOrigin: null,
    close() {
      for (const u of urls.values()) if (u) URL.revokeObjectURL(u);
      urls.clear();
    },
  };
}

// The step of a record's file: `12-128.png` → 128; the final `12.png` → steps.
const stepOf = (file, steps) => {
  const m = /-(\d+)\.png$/.exec(file);
  return m ? Number(m[1]) : steps;
};

const fmt = (v) => (typeof v !== "number" ? "—" : Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(2));

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k in e && typeof v !== "string") e[k] = v;
    else e.setAttribute(k, v);
  }
  e.append(...children.filter((c) => c != null));
  return e;
}

// RGBA pixels of an <img> (an atlas PNG), at its own size.
async function pixelsOf(src, crossOrigin) {
  const img = new Image();
  if (crossOrigin) img.crossOrigin = crossOrigin;
  img.src = src;
  await img.decode();
  const c = document.createElement("canvas");
  [c.width, c.height] = [img.naturalWidth, img.naturalHeight];
  const g = c.getContext("2d", { willReadFrequently: true });
  g.drawImage(img, 0, 0);
  return { width: c.width, height: c.height, rgba: g.getImageData(0, 0, c.width, c.height).data };
}

/**
 * The atlas panel. `renderLive(record, { onTile, onStep })` renders the
 * record's group on this GPU and resolves to { rgba, size } of the record's
 * image (null when stopped); `weightsSha()` is the loaded weights' sha256
 * (null before they are in); `onChange()` is called when what is shown changes
 * (the page's link follows it).
 */
export function atlasView({ renderLive, weightsSha, onChange = () => {} }) {
  const state = { atlas: null, layer: null, channel: null, records: null, loading: 0, liveRunning: false };
  const fv = (window.featvis ??= {});
  fv.atlas = { opened: null, error: null, compare: null, live: "idle" };

  const section = $("atlas-section");
  const status = $("atlas-status");
  const errorBox = $("atlas-error");

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = !text;
    fv.atlas.error = text || null;
  }

  async function open(loader, what) {
    const ticket = ++state.loading;
    showError("");
    status.textContent = `Opening ${what}…`;
    section.open = true;
    section.dataset.state = "loading";
    let atlas;
    try {
      atlas = await loader();
    } catch (e) {
      if (ticket !== state.loading) return;
      status.textContent = state.atlas ? `Still showing ${state.atlas.name}.` : "";
      section.dataset.state = state.atlas ? "open" : "error";
      showError(e.message || String(e));
      return;
    }
    if (ticket !== state.loading) return atlas.close();
    state.atlas?.close();
    Object.assign(state, { atlas, layer: null, channel: null, records: null });
    fv.atlas.opened = { name: atlas.name, layers: atlas.layers.map((l) => l.name), settings: atlas.settings };
    fv.atlas.compare = null;
    drawAbout();
    drawLayers();
    await showLayer(atlas.layers[0]?.name);
    section.dataset.state = "open";
    onChange();
  }

  function drawAbout() {
    const { atlas } = state;
    const s = atlas.settings;
    const n = atlas.layers.reduce((k, l) => k + l.channels, 0);
    status.textContent =
      `${atlas.name}: ${n} channel${n === 1 ? "" : "s"} of ${atlas.layers.length} layer${atlas.layers.length === 1 ? "" : "s"} · ` +
      `${s.size}×${s.size} px, ${s.steps} steps, ${s.transforms} transforms, ${s.param === "fft" ? "Fourier" : "pixel"} parameterization, ` +
      `lr ${s.lr}, seed ${s.seed}, batches of ${s.batch}.`;
    weightsChanged();
  }

  /** Says whether the loaded weights are the atlas's (call when they change). */
  function weightsChanged() {
    const line = $("atlas-weights");
    if (!state.atlas) return void (line.hidden = true);
    const want = state.atlas.settings.weights_sha256 ?? "";
    const have = weightsSha();
    line.hidden = false;
    line.classList.remove("error");
    if (!/^[0-9a-f]{64}$/.test(want)) {
      line.textContent = `Made with ${want || "unrecorded weights"}: Render live uses the weights loaded here, so its pictures differ.`;
    } else if (!have) {
      line.textContent = `Made with the weights of sha256 ${want.slice(0, 12)}…; Render live waits for weights to be loaded.`;
    } else if (have === want) {
      line.textContent = `Made with the weights loaded here (sha256 ${want.slice(0, 12)}…): Render live gives the same pictures, up to float differences between GPUs.`;
    } else {
      line.classList.add("error");
      line.textContent =
        `Made with other weights (sha256 ${want.slice(0, 12)}…) than those loaded here (${have.slice(0, 12)}…): ` +
        "load the atlas's weights file for the same pictures.";
    }
  }

  function drawLayers() {
    const nav = $("atlas-layers");
    nav.innerHTML = "";
    for (const l of state.atlas.layers) {
      const cover = state.atlas.image(l.name, `${l.cover}.png`);
      const img = el("img", { src: cover, alt: "", width: "40", height: "40" });
      if (state.atlas.crossOrigin) img.crossOrigin = state.atlas.crossOrigin;
      const b = el(
        "button",
        { type: "button", class: "atlas-layer", "aria-pressed": "false", dataset: { layer: l.name } },
        img,
        el("span", {}, el("b", {}, l.name), el("small", {}, `${l.channels} of ${l.total ?? "?"}`)),
      );
      b.addEventListener("click", () => showLayer(l.name).then(onChange));
      nav.appendChild(b);
    }
  }

  async function showLayer(name) {
    if (!state.atlas || !name) return;
    state.layer = name;
    state.channel = null;
    for (const b of $("atlas-layers").children) b.setAttribute("aria-pressed", String(b.dataset.layer === name));
    const grid = $("atlas-grid");
    grid.innerHTML = "";
    $("atlas-channel").hidden = true;
    let recs;
    try {
      recs = await state.atlas.records(name);
    } catch (e) {
      showError(e.message || String(e));
      return;
    }
    if (state.layer !== name) return;
    state.records = recs;
    const s = state.atlas.settings;
    $("atlas-grid-title").textContent = `${name}: ${recs.length} channel${recs.length === 1 ? "" : "s"}, each with its mean activation at the end`;
    for (const r of recs) {
      const img = el("img", { src: state.atlas.image(name, `${r.channel}.png`), alt: `${name} channel ${r.channel}`, width: String(s.size), height: String(s.size), loading: "lazy" });
      if (state.atlas.crossOrigin) img.crossOrigin = state.atlas.crossOrigin;
      const b = el(
        "button",
        { type: "button", class: "atlas-tile", "aria-pressed": "false", dataset: { channel: String(r.channel) }, title: `${name} channel ${r.channel}: open` },
        img,
        el("span", {}, el("b", {}, String(r.channel)), ` ${fmt(r.final_activation)}`),
      );
      b.addEventListener("click", () => {
        showChannel(r.channel);
        onChange();
      });
      grid.appendChild(b);
    }
  }

  function showChannel(channel) {
    const rec = state.records?.find((r) => r.channel === channel);
    if (!rec) return false;
    state.channel = channel;
    fv.atlas.compare = null;
    for (const b of $("atlas-grid").children) b.setAttribute("aria-pressed", String(Number(b.dataset.channel) === channel));
    const s = state.atlas.settings;
    const panel = $("atlas-channel");
    panel.hidden = false;
    $("atlas-channel-title").textContent = `${rec.layer}, channel ${rec.channel}`;
    const snaps = $("atlas-snapshots");
    snaps.innerHTML = "";
    for (const f of [...rec.files].sort((a, b) => stepOf(a, s.steps) - stepOf(b, s.steps))) {
      const img = el("img", { src: state.atlas.image(rec.layer, f), alt: `step ${stepOf(f, s.steps)}`, width: String(s.size), height: String(s.size) });
      if (state.atlas.crossOrigin) img.crossOrigin = state.atlas.crossOrigin;
      snaps.appendChild(el("figure", {}, img, el("figcaption", {}, `step ${stepOf(f, s.steps)}`)));
    }
    const req = rec.request;
    $("atlas-channel-text").textContent =
      `Mean activation ${fmt(rec.initial_activation)} → ${fmt(rec.final_activation)}; ${fmt(rec.ms_per_step)} ms per step where it was rendered. ` +
      `It was image ${rec.index} of a batch of ${req.layer} channels ${req.channels}: Render live renders that batch again, ` +
      `with the atlas's settings and seed ${req.seed ?? s.seed}.`;
    $("atlas-compare").hidden = true;
    $("atlas-live-status").textContent = "";
    $("atlas-live").disabled = state.liveRunning;
    panel.scrollIntoView?.({ block: "nearest" });
    return true;
  }

  async function live() {
    const rec = state.records?.find((r) => r.channel === state.channel);
    if (!rec || state.liveRunning) return;
    const s = state.atlas.settings;
    const liveCanvas = $("atlas-live-canvas");
    [liveCanvas.width, liveCanvas.height] = [s.size, s.size];
    liveCanvas.getContext("2d").clearRect(0, 0, s.size, s.size);
    $("atlas-compare").hidden = false;
    $("atlas-compare-text").textContent = "";
    $("atlas-atlas-img").src = state.atlas.image(rec.layer, `${rec.channel}.png`);
    if (state.atlas.crossOrigin) $("atlas-atlas-img").crossOrigin = state.atlas.crossOrigin;
    const statusLine = $("atlas-live-status");
    statusLine.classList.remove("error");
    statusLine.textContent = "Starting…";
    state.liveRunning = true;
    fv.atlas.live = "running";
    fv.atlas.compare = null;
    $("atlas-live").disabled = true;
    let out;
    try {
      out = await renderLive(rec, {
        onTile(i, rgba) {
          if (i === rec.index && rgba.length === s.size * s.size * 4) {
            liveCanvas.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(rgba), s.size, s.size), 0, 0);
          }
        },
        onStep(p) {
          statusLine.textContent = `Rendering on this GPU: step ${p.step} of ${p.steps}${p.batches > 1 ? `, batch ${p.batch_index + 1} of ${p.batches}` : ""}…`;
        },
      });
    } catch (e) {
      statusLine.classList.add("error");
      statusLine.textContent = e.message || String(e);
      fv.atlas.live = "error";
      return;
    } finally {
      state.liveRunning = false;
      $("atlas-live").disabled = false;
    }
    if (!out) {
      statusLine.textContent = "Stopped.";
      fv.atlas.live = "stopped";
      return;
    }
    liveCanvas.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(out.rgba), out.size, out.size), 0, 0);
    // Compare with the atlas's PNG, pixel by pixel (RGB).
    try {
      const a = await pixelsOf(state.atlas.image(rec.layer, `${rec.channel}.png`), state.atlas.crossOrigin);
      if (a.width !== out.size || a.height !== out.size) throw new Error(`the atlas's PNG is ${a.width}×${a.height}, the render ${out.size}×${out.size}`);
      let sum = 0;
      let max = 0;
      for (let k = 0; k < a.rgba.length; k++) {
        if (k % 4 === 3) continue;
        const d = Math.abs(a.rgba[k] - out.rgba[k]);
        sum += d;
        if (d > max) max = d;
      }
      const mean = sum / ((a.rgba.length / 4) * 3);
      fv.atlas.compare = { layer: rec.layer, channel: rec.channel, mean, max };
      $("atlas-compare-text").textContent =
        `Mean difference ${mean.toFixed(2)} of 255 per colour (largest ${max})` +
        (mean < 4 ? ": the same picture, up to float differences between GPUs." : ": the pictures differ (other weights or another featvis?).");
    } catch (e) {
      $("atlas-compare-text").textContent = `Could not compare with the atlas's picture: ${e.message || e}`;
    }
    statusLine.textContent = "Done.";
    fv.atlas.live = "done";
  }

  $("atlas-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const url = $("atlas-url").value.trim();
    if (!url) return showError("Type the address of an atlas folder, or open a folder on this computer.");
    open(() => atlasFromUrl(url), url);
  });
  $("atlas-folder").addEventListener("change", () => {
    const files = $("atlas-folder").files;
    if (files) open(() => atlasFromFolder(files), "the folder");
    $("atlas-folder").value = "";
  });
  $("atlas-live").addEventListener("click", () => live());

  return {
    /** Open the atlas at a URL (a link's `atlas=`), then its layer and channel. */
    async openUrl(url, { layer = null, channel = null } = {}) {
      $("atlas-url").value = url;
      await open(() => atlasFromUrl(url), url);
      if (layer && state.atlas?.layers.some((l) => l.name === layer)) await showLayer(layer);
      if (channel != null && Number.isInteger(Number(channel))) showChannel(Number(channel));
    },
    weightsChanged,
    /** The link's part for what is shown: atlas, atlas_layer, atlas_channel. */
    query() {
      const q = {};
      if (state.atlas?.link) {
        q.atlas = state.atlas.link;
        if (state.layer) q.atlas_layer = state.layer;
        if (state.channel != null) q.atlas_channel = String(state.channel);
      }
      return q;
    },
  };
}
