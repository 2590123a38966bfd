// Tests of <featvis-view> (www/featvis-widget.js) in headless Chromium
// (WebGPU on SwiftShader):   node --test tests/browser/widget.test.mjs
// Needs www/pkg (tools/build-web) and www/weights (featvis fetch-weights).
//
// The test pages are made here (served through page.route under /__test/ of
// the www/ server, so the widget is loaded from another folder than the
// page), with tiny renders: SwiftShader on two cores does ~2 GFLOP/s.
//   1. two widgets share one device and one weights download, both finish,
//      their activations rise, and a 16 ms timer on the host page keeps firing
//      (the largest gap is printed as a JSON line);
//   2. www/embed-example.html as it is: its widgets start without an error
//      (screenshot to $FEATVIS_SHOTS or <tmp>/featvis-shots; with
//      FEATVIS_README_SHOTS=1 also to www/img/embed-example.png);
//   3. a widget below the fold waits until scrolled into view, pauses when
//      scrolled away and resumes when back;
//   4. a bad objective is an error in its widget only (the other finishes),
//      and fixing the attribute restarts it; the page here is on another
//      origin than the widget (an embedding site);
//   5. missing weights (404) are an error that says what to do.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { launchChromium } from "../../tools/browser.mjs";
import { serve } from "../../tools/serve.mjs";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const shots = process.env.FEATVIS_SHOTS ?? path.join(os.tmpdir(), "featvis-shots");
const TINY = 'size="32" steps="8" seed="1"';

let server, origin, browser, blogRoot, blog;

before(async () => {
  for (const f of ["www/pkg/featvis_bg.wasm", "www/featvis.js"]) {
    assert.ok(fs.existsSync(path.join(repo, f)), `${f} is missing: run tools/build-web`);
  }
  assert.ok(
    fs.existsSync(path.join(repo, "www/weights/vgg16-imagenet-f16.safetensors")),
    "www/weights/vgg16-imagenet-f16.safetensors is missing: run `featvis fetch-weights`",
  );
  fs.mkdirSync(shots, { recursive: true });
  console.log(`screenshots: ${shots}`);
  server = await serve(0);
  origin = `http://127.0.0.1:${server.address().port}`;
  // Another site (another origin: localhost, not 127.0.0.1) that embeds the
  // widget from the www/ server, as a blog would.
  blogRoot = fs.mkdtempSync(path.join(os.tmpdir(), "featvis-blog-"));
  blog = await serve(0, blogRoot);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  server?.close();
  blog?.close();
  if (blogRoot) fs.rmSync(blogRoot, { recursive: true, force: true });
});

// Installed before any page script: a 16 ms timer that records its largest
// gaps, every widget event (they bubble to document) and every change of a
// widget's `state` attribute, with times.
function recorder() {
  const fv = (window.__fv = { events: [], states: [], maxGap: 0, maxGapAt: 0, ticks: 0, gaps: [] });
  let last = performance.now();
  setInterval(() => {
    const now = performance.now();
    const gap = now - last;
    last = now;
    fv.ticks++;
    if (gap > fv.maxGap) {
      fv.maxGap = gap;
      fv.maxGapAt = now;
    }
    if (gap > 50) fv.gaps.push([now, Math.round(gap)]);
  }, 16);
  for (const type of ["featvis-progress", "featvis-done", "featvis-error"]) {
    document.addEventListener(type, (e) => {
      const d = e.detail;
      const detail = type === "featvis-progress" ? { step: d.step, steps: d.steps, preview: d.preview } : d;
      fv.events.push({ type, id: e.target.id, t: performance.now(), detail });
    });
  }
  fv.layoutShift = 0; // cumulative layout shift (what the reader sees jump)
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (!e.hadRecentInput) fv.layoutShift += e.value;
  }).observe({ type: "layout-shift", buffered: true });
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.target.localName === "featvis-view") fv.states.push({ id: r.target.id, state: r.target.getAttribute("state"), t: performance.now() });
    }
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ["state"] });
}

// A page showing `body`, with the widget loaded from the www/ server: at
// www/'s origin under /__test/NAME.html (page.route), or with `elsewhere`
// on the blog server's origin (a real server: Chromium lets only a page
// served from a loopback address load scripts from one).
async function open(name, body, { viewport = { width: 900, height: 700 }, elsewhere = false, before } = {}) {
  const page = await browser.newPage({ viewport });
  const log = [];
  page.on("console", (m) => log.push(`[${name}] ${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => log.push(`[${name}] pageerror: ${e.message}`));
  const weights = [];
  page.on("response", (r) => {
    if (r.url().includes("/weights/")) weights.push(`${r.status()} ${r.url()}`);
  });
  await page.addInitScript(recorder);
  if (before) await before(page);
  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${name}</title>
<script type="module" src="${origin}/featvis-widget.js"></script>
<style>body { margin: 16px; font: 14px system-ui, sans-serif; } featvis-view { margin: 8px 0; }</style></head>
<body>${body}</body></html>`;
  let url;
  if (elsewhere) {
    fs.writeFileSync(path.join(blogRoot, `${name}.html`), html);
    url = `http://localhost:${blog.address().port}/${name}.html`;
  } else {
    url = `${origin}/__test/${name}.html`;
    await page.route(url, (route) => route.fulfill({ contentType: "text/html; charset=utf-8", body: html }));
  }
  await page.goto(url);
  return { page, log, weights };
}

const fv = (page) => page.evaluate(() => window.__fv);
const states = (page) => page.evaluate(() => Object.fromEntries([...document.querySelectorAll("featvis-view")].map((e) => [e.id, e.getAttribute("state")])));
const alertText = (page, id) => page.evaluate((id) => document.getElementById(id).shadowRoot.querySelector('[role="alert"]:not([hidden])')?.textContent ?? null, id);

// Waits until every id has reached one of `want` (an array of states),
// failing early with what the widgets show when one is in error instead.
async function waitStates(page, want, timeout, log) {
  try {
    await page.waitForFunction(
      (want) => Object.entries(want).every(([id, ok]) => ok.includes(document.getElementById(id)?.getAttribute("state"))),
      want,
      { timeout, polling: 250 },
    );
  } catch (e) {
    const shown = await page.evaluate(() =>
      [...document.querySelectorAll("featvis-view")].map((e) => `${e.id}: ${e.getAttribute("state")} — ${e.shadowRoot?.querySelector(".status")?.textContent} ${e.shadowRoot?.querySelector('[role="alert"]')?.textContent}`),
    );
    throw new Error(`widgets did not reach ${JSON.stringify(want)} in ${timeout} ms:\n${shown.join("\n")}\n${log?.slice(-20).join("\n") ?? ""}`);
  }
}

// The times of one widget's state changes, relative to the first one.
function timeline(rec, id) {
  const s = rec.states.filter((x) => x.id === id);
  const t0 = s[0]?.t ?? 0;
  return s.map((x) => `${x.state}@${((x.t - t0) / 1000).toFixed(1)}s`).join(" ");
}
const at = (rec, id, state) => rec.states.find((x) => x.id === id && x.state === state)?.t;

test("two widgets share one device and one download, both finish, the host page stays responsive", { timeout: 240_000 }, async () => {
  const { page, log, weights } = await open(
    "two",
    `<p>Two widgets:</p>
<featvis-view id="a" objective="conv1_2:3" ${TINY}></featvis-view>
<featvis-view id="b" objective="conv2_1:5" ${TINY}></featvis-view>`,
  );
  try {
    await waitStates(page, { a: ["done"], b: ["done"] }, 200_000, log);
    const rec = await fv(page);
    for (const id of ["a", "b"]) {
      const done = rec.events.filter((e) => e.type === "featvis-done" && e.id === id);
      assert.equal(done.length, 1, `${id}: featvis-done fired ${done.length} times`);
      const img = done[0].detail.images[0];
      assert.ok(img.final_activation > img.initial_activation, `${id}: activation ${img.initial_activation} → ${img.final_activation}`);
      const progress = rec.events.filter((e) => e.type === "featvis-progress" && e.id === id);
      assert.equal(progress.at(-1).detail.step, 8, `${id}: last progress ${JSON.stringify(progress.at(-1))}`);
      assert.ok(progress.some((p) => p.detail.preview), `${id}: no preview step`);
      assert.deepEqual(await page.evaluate((id) => document.getElementById(id).result, id), done[0].detail, `${id}: .result`);
      assert.ok(!rec.events.some((e) => e.type === "featvis-error"), "an error fired");
    }
    // The canvas shows the image: not blank, not one flat colour.
    const pixels = await page.evaluate(() => {
      const c = document.getElementById("a").shadowRoot.querySelector("canvas");
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let min = 255, max = 0, alpha = 0;
      for (let i = 0; i < d.length; i += 4) {
        min = Math.min(min, d[i], d[i + 1], d[i + 2]);
        max = Math.max(max, d[i], d[i + 1], d[i + 2]);
        alpha += d[i + 3] === 255 ? 1 : 0;
      }
      return { w: c.width, h: c.height, min, max, opaque: alpha / (d.length / 4), label: c.getAttribute("aria-label"), role: c.getAttribute("role") };
    });
    assert.equal(pixels.w, 32);
    assert.equal(pixels.opaque, 1, `canvas ${JSON.stringify(pixels)}`);
    assert.ok(pixels.max - pixels.min > 40, `canvas is flat: ${JSON.stringify(pixels)}`);
    assert.equal(pixels.role, "img");
    assert.match(pixels.label, /conv1_2:3/);
    assert.match(await page.evaluate(() => document.getElementById("a").shadowRoot.querySelector("a").href), /objective=conv1_2(%3A|:)3/);
    assert.equal(weights.length, 1, `weights responses: ${weights.join(", ")}`);

    const first = Math.min(at(rec, "a", "loading"), at(rec, "b", "loading"));
    const running = Math.min(at(rec, "a", "running") ?? Infinity, at(rec, "b", "running") ?? Infinity);
    // The render phase: from the first render's start (state queued after loading) to the end.
    const rendering = Math.min(...["a", "b"].map((id) => rec.states.find((x) => x.id === id && x.state === "queued" && x.t > at(rec, id, "loading")).t));
    const report = {
      test: "widget two",
      max_timer_gap_ms: Math.round(rec.maxGap),
      max_gap_at_s: +((rec.maxGapAt - first) / 1000).toFixed(1),
      max_gap_while_rendering_ms: Math.max(16, ...rec.gaps.filter(([t, g]) => t - g >= rendering).map(([, g]) => g)),
      gaps_over_50ms: rec.gaps.map(([t, g]) => [+((t - first) / 1000).toFixed(2), g]),
      ticks: rec.ticks,
      weights_responses: weights.length,
      a: { to_done_s: +((at(rec, "a", "done") - first) / 1000).toFixed(1), timeline: timeline(rec, "a") },
      b: { to_done_s: +((at(rec, "b", "done") - first) / 1000).toFixed(1), timeline: timeline(rec, "b") },
      first_running_s: +((running - first) / 1000).toFixed(1),
      activations: rec.events.filter((e) => e.type === "featvis-done").map((e) => [e.id, e.detail.images[0].initial_activation, e.detail.images[0].final_activation]),
    };
    console.log(JSON.stringify(report));
    await page.screenshot({ path: path.join(shots, "widget-two.png"), fullPage: true });
    assert.ok(rec.maxGap < 2000, `the host page's 16 ms timer stalled for ${Math.round(rec.maxGap)} ms`);
  } finally {
    await page.close();
  }
});

const README_SHOTS = process.env.FEATVIS_README_SHOTS === "1";

test("the embed example loads and its widgets start without an error", { timeout: README_SHOTS ? 900_000 : 240_000 }, async () => {
  const page = await browser.newPage({ viewport: { width: 1000, height: 1100 } });
  const log = [];
  page.on("console", (m) => log.push(`[embed] ${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => log.push(`[embed] pageerror: ${e.message}`));
  await page.addInitScript(recorder);
  try {
    await page.goto(`${origin}/embed-example.html`);
    const ids = await page.evaluate(() => [...document.querySelectorAll("featvis-view")].map((e, i) => (e.id ||= `w${i}`)));
    assert.equal(ids.length, 3, "the example has three widgets");
    // The first figure is in view: it renders; the ones below the fold wait.
    await waitStates(page, { [ids[0]]: ["running", "done"] }, 180_000, log);
    // Let the first preview arrive so the picture shows something.
    await page
      .waitForFunction(() => window.__fv.events.some((e) => e.type === "featvis-progress" && e.detail.preview), null, { timeout: 40_000, polling: 500 })
      .catch(() => {});
    const shown = await states(page);
    assert.ok(["running", "done"].includes(shown[ids[0]]), `${ids[0]}: ${shown[ids[0]]}`);
    for (const id of ids.slice(1)) assert.equal(shown[id], "queued", `${id} (below the fold): ${shown[id]} (${await alertText(page, id)})`);
    const rec = await fv(page);
    assert.deepEqual(rec.events.filter((e) => e.type === "featvis-error"), [], "an error fired");
    assert.ok(!log.some((l) => l.includes("pageerror")), log.join("\n"));
    assert.ok(rec.layoutShift < 0.05, `the page's layout shifted by ${rec.layoutShift}`);
    const file = path.join(shots, "embed-example.png");
    await page.screenshot({ path: file, fullPage: true });
    const steps = rec.events.filter((e) => e.type === "featvis-progress").map((e) => e.detail.step);
    console.log(JSON.stringify({ test: "embed example", states: shown, steps_seen: steps.length, last_step: steps.at(-1), layout_shift: +rec.layoutShift.toFixed(4), max_timer_gap_ms: Math.round(rec.maxGap), screenshot: file }));
  } finally {
    await page.close();
  }
  if (README_SHOTS) await readmeShot();
});

// The README's picture of the example: its widgets at 64 px and 48 steps
// (the example's 128 px × 256 steps take most of an hour on SwiftShader), in
// a viewport tall enough that all three run, until all are done.
async function readmeShot() {
  const page = await browser.newPage({ viewport: { width: 1000, height: 2400 } });
  await page.addInitScript(recorder);
  try {
    await page.route(`${origin}/embed-example.html`, async (route) => {
      const res = await route.fetch();
      const body = (await res.text()).replace(/<featvis-view [^>]*>/g, (tag) => tag.replace('size="128"', 'size="64"').replace('steps="256"', 'steps="48"'));
      await route.fulfill({ response: res, body });
    });
    await page.goto(`${origin}/embed-example.html`);
    const ids = await page.evaluate(() => [...document.querySelectorAll("featvis-view")].map((e, i) => (e.id ||= `w${i}`)));
    await waitStates(page, Object.fromEntries(ids.map((id) => [id, ["done"]])), 840_000);
    const figure = await page.evaluate(() => {
      const r = document.querySelectorAll("figure")[1].getBoundingClientRect();
      return r.bottom + window.scrollY;
    });
    const file = path.join(repo, "www/img/embed-example.png");
    await page.screenshot({ path: file, clip: { x: 0, y: 0, width: 1000, height: Math.ceil(figure + 24) } });
    const rec = await fv(page);
    console.log(JSON.stringify({ readme_shot: file, done: rec.events.filter((e) => e.type === "featvis-done").map((e) => [e.id, e.detail.images[0]]) }));
  } finally {
    await page.close();
  }
}

test("a widget below the fold waits until scrolled into view, and pauses when scrolled away", { timeout: 240_000 }, async () => {
  const { page, log, weights } = await open(
    "fold",
    `<featvis-view id="top" objective="conv1_2:3" ${TINY}></featvis-view>
<div style="height: 3000px; background: linear-gradient(#fff, #eee)">spacer</div>
<featvis-view id="low" objective="conv1_2:9" size="32" steps="24" seed="2" preview-every="2"></featvis-view>`,
    { viewport: { width: 800, height: 600 } },
  );
  try {
    await waitStates(page, { top: ["done"] }, 200_000, log);
    await page.waitForTimeout(1000);
    let rec = await fv(page);
    assert.deepEqual(rec.states.filter((s) => s.id === "low").map((s) => s.state), ["queued"], `low: ${timeline(rec, "low")}`);
    assert.equal(rec.events.filter((e) => e.id === "low").length, 0, "the widget out of view sent events");

    // Into view: it starts (the weights are not downloaded again).
    await page.evaluate(() => document.getElementById("low").scrollIntoView());
    await page.waitForFunction(() => window.__fv.events.some((e) => e.id === "low" && e.type === "featvis-progress"), null, { timeout: 120_000, polling: 100 });
    // Away again: it pauses within a step and stays paused.
    await page.evaluate(() => window.scrollTo(0, 0));
    await waitStates(page, { low: ["paused"] }, 10_000, log);
    await page.waitForTimeout(1500); // a step in flight may still land
    const before = (await fv(page)).events.filter((e) => e.id === "low").length;
    await page.waitForTimeout(2500);
    rec = await fv(page);
    const after = rec.events.filter((e) => e.id === "low").length;
    assert.equal(after, before, "the paused widget kept stepping");
    assert.equal((await states(page)).low, "paused");
    const pausedAt = rec.events.filter((e) => e.id === "low").at(-1).detail.step;
    assert.ok(pausedAt < 24, `paused at step ${pausedAt}`);
    assert.match(await page.evaluate(() => document.getElementById("low").shadowRoot.querySelector(".status").textContent), /paused/);

    // Back: it resumes from where it was and finishes.
    await page.evaluate(() => document.getElementById("low").scrollIntoView());
    await waitStates(page, { low: ["done"] }, 120_000, log);
    rec = await fv(page);
    const steps = rec.events.filter((e) => e.id === "low" && e.type === "featvis-progress").map((e) => e.detail.step);
    assert.deepEqual(steps, Array.from({ length: 24 }, (_, i) => i + 1), "steps seen");
    assert.equal(weights.length, 1, `weights responses: ${weights.join(", ")}`);
    console.log(JSON.stringify({ test: "widget fold", paused_at_step: pausedAt, low: timeline(rec, "low"), max_timer_gap_ms: Math.round(rec.maxGap) }));
  } finally {
    await page.close();
  }
});

test("a bad objective is an error in its own widget; the other finishes; fixing it restarts", { timeout: 240_000 }, async () => {
  // The page is on another origin (localhost) than the widget (127.0.0.1): an embedding site.
  const { page, log } = await open(
    "bad",
    `<featvis-view id="bad" objective="conv4_3:" ${TINY}></featvis-view>
<featvis-view id="good" objective="conv1_2:3" ${TINY}></featvis-view>`,
    { elsewhere: true },
  );
  try {
    await waitStates(page, { bad: ["error"], good: ["done"] }, 200_000, log);
    let rec = await fv(page);
    const errors = rec.events.filter((e) => e.type === "featvis-error");
    assert.equal(errors.length, 1, JSON.stringify(errors));
    assert.equal(errors[0].id, "bad");
    assert.match(errors[0].detail.message, /channel number/);
    assert.match(errors[0].detail.message, /conv4_3:/);
    assert.equal(await alertText(page, "bad"), errors[0].detail.message);
    assert.equal(rec.events.filter((e) => e.type === "featvis-done" && e.id === "good").length, 1);
    assert.equal(await page.evaluate(() => document.getElementById("bad").result), null);
    assert.equal(await page.evaluate(() => document.location.origin), `http://localhost:${blog.address().port}`);

    // Fixing the attribute restarts the widget; the error goes away.
    await page.evaluate(() => document.getElementById("bad").setAttribute("objective", "conv1_2:4"));
    await waitStates(page, { bad: ["done"] }, 120_000, log);
    assert.equal(await alertText(page, "bad"), null);
    rec = await fv(page);
    const done = rec.events.find((e) => e.type === "featvis-done" && e.id === "bad");
    assert.equal(done.detail.images[0].objective, "conv1_2:4");
    console.log(JSON.stringify({ test: "widget bad objective", message: errors[0].detail.message, bad: timeline(rec, "bad"), good: timeline(rec, "good") }));
  } finally {
    await page.close();
  }
});

test("missing weights (404) are an error that says what to do", { timeout: 120_000 }, async () => {
  const { page, log, weights } = await open("noweights", `<featvis-view id="w" objective="conv1_2:3" ${TINY}></featvis-view>`, {
    before: (page) => page.route("**/weights/**", (r) => r.fulfill({ status: 404, contentType: "text/plain", body: "not found" })),
  });
  try {
    await waitStates(page, { w: ["error"] }, 100_000, log);
    const rec = await fv(page);
    const errors = rec.events.filter((e) => e.type === "featvis-error");
    assert.equal(errors.length, 1);
    const message = errors[0].detail.message;
    assert.match(message, /404|not found/i);
    assert.match(message, /featvis fetch-weights/);
    assert.match(message, /weights="URL"/);
    assert.match(message, /beside featvis-widget\.js/);
    assert.equal(await alertText(page, "w"), message);
    assert.ok(weights.length >= 1 && weights.every((w) => w.startsWith("404")), weights.join(", "));
    await page.screenshot({ path: path.join(shots, "widget-no-weights.png") });
    console.log(JSON.stringify({ test: "widget 404", message }));
  } finally {
    await page.close();
  }
});
