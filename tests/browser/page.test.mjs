// The page (www/index.html + app.js) in headless Chromium with WebGPU on
// SwiftShader: a render from a link, compared with the native CLI; the
// failures a user can meet (no weights, corrupt weights, an unknown layer, a
// bad objective, a lost device, no WebGPU); the weights cache; stop and
// render again.
//
//   node --test tests/browser/page.test.mjs
//
// Needs www/pkg (tools/build-web), www/weights (featvis fetch-weights) and
// target/release/featvis (cargo build --release). Screenshots go to
// $FEATVIS_SHOTS (default: $TMPDIR/featvis-shots; printed). With
// FEATVIS_README_SHOTS=1 the render test also writes www/img/page-running.png
// and www/img/page-done.png for the README.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { inflateSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { launchChromium, CHROMIUM_ARGS } from "../../tools/browser.mjs";
import { serve } from "../../tools/serve.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const SHOTS = process.env.FEATVIS_SHOTS ?? path.join(os.tmpdir(), "featvis-shots");
const README_SHOTS = process.env.FEATVIS_README_SHOTS === "1";
fs.mkdirSync(SHOTS, { recursive: true });
console.log(`page.test: screenshots go to ${SHOTS}`);

const server = await serve(0);
const BASE = `http://127.0.0.1:${server.address().port}`;

// One Chromium for the tests; the no-WebGPU test closes it before starting
// its own (never two at once on a 2-core machine).
let browser = null;
async function getBrowser() {
  browser ??= await launchChromium();
  return browser;
}
after(async () => {
  await browser?.close();
  server.close();
});

async function newPage(options = {}) {
  const context = await (await getBrowser()).newContext({ viewport: { width: 1000, height: 900 }, ...options });
  const page = await context.newPage();
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") console.error(`[page ${m.type()}] ${m.text()}`);
  });
  page.on("pageerror", (e) => console.error(`[page exception] ${e.message}`));
  return { context, page };
}

// Waits until the page's state is one of `states`; on a timeout the error
// says what the page shows.
async function waitState(page, states, timeout) {
  try {
    await page.waitForFunction((s) => s.includes(document.documentElement.dataset.state), states, { timeout, polling: 100 });
  } catch (e) {
    throw new Error(`state did not reach ${states.join("|")} within ${timeout} ms: ${JSON.stringify(await shown(page))}`);
  }
  return page.evaluate(() => document.documentElement.dataset.state);
}

// What the page shows: its state, the alert, the weights line, the job error.
function shown(page) {
  return page.evaluate(() => ({
    state: document.documentElement.dataset.state,
    alert: document.querySelector("[role=alert]:not([hidden])")?.textContent.trim().replace(/\s+/g, " ") ?? null,
    weights: document.getElementById("weights-status")?.textContent,
    jobError: document.getElementById("job-error")?.textContent,
    error: window.featvis?.error,
  }));
}

async function alertText(page) {
  const alert = page.locator("[role=alert]:not([hidden])");
  await alert.first().waitFor({ state: "visible", timeout: 5000 });
  return (await alert.first().innerText()).replace(/\s+/g, " ").trim();
}

// ---------------------------------------------------------------- PNG decoding

function paeth(a, b, c) {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

// An 8-bit, non-interlaced PNG → { width, height, channels, pixels }.
function decodePng(buf) {
  assert.deepEqual([...buf.subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10], "not a PNG");
  let pos = 8;
  let ihdr = null;
  const idat = [];
  while (pos + 8 <= buf.length) {
    const len = buf.readUInt32BE(pos);
    const type = buf.toString("latin1", pos + 4, pos + 8);
    const data = buf.subarray(pos + 8, pos + 8 + len);
    pos += 12 + len;
    if (type === "IHDR") {
      ihdr = { width: data.readUInt32BE(0), height: data.readUInt32BE(4), depth: data[8], type: data[9], interlace: data[12] };
    } else if (type === "IDAT") {
      idat.push(data);
    } else if (type === "IEND") {
      break;
    }
  }
  assert.ok(ihdr, "PNG without IHDR");
  assert.equal(ihdr.depth, 8, "only 8-bit PNGs are compared");
  assert.equal(ihdr.interlace, 0, "interlaced PNG");
  const channels = { 0: 1, 2: 3, 4: 2, 6: 4 }[ihdr.type];
  assert.ok(channels, `PNG colour type ${ihdr.type}`);
  const raw = inflateSync(Buffer.concat(idat));
  const stride = ihdr.width * channels;
  assert.equal(raw.length, ihdr.height * (stride + 1), "PNG data size");
  const out = Buffer.alloc(ihdr.height * stride);
  const zero = Buffer.alloc(stride);
  for (let y = 0; y < ihdr.height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const prev = y ? out.subarray((y - 1) * stride, y * stride) : zero;
    const cur = out.subarray(y * stride, (y + 1) * stride);
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? cur[x - channels] : 0;
      const b = prev[x];
      const c = x >= channels ? prev[x - channels] : 0;
      const pred = [0, a, b, (a + b) >> 1, paeth(a, b, c)][filter];
      assert.ok(pred !== undefined, `PNG filter ${filter}`);
      cur[x] = (line[x] + pred) & 255;
    }
  }
  return { width: ihdr.width, height: ihdr.height, channels, pixels: out };
}

// ---------------------------------------------------------------- 1. a render from a link, against the CLI

test("a link with run=1 renders conv2_2 channels 0-3 live, and its grid PNG matches `featvis render`", { timeout: 900_000 }, async () => {
  const { context, page } = await newPage({ acceptDownloads: true });
  const t0 = Date.now();
  try {
    await page.goto(`${BASE}/?layer=conv2_2&channels=0-3&size=48&steps=32&seed=1&run=1`);
    assert.equal(await waitState(page, ["running", "error"], 120_000), "running", JSON.stringify(await shown(page)));

    // Mid-render: a preview drawn, half the steps done.
    await page.waitForFunction(
      () => (window.featvis.firstPreviewMs != null && window.featvis.progress?.step >= 16) || document.documentElement.dataset.state !== "running",
      null,
      { timeout: 400_000, polling: 200 },
    );
    await page.screenshot({ path: path.join(SHOTS, "page-running.png"), fullPage: true });
    if (README_SHOTS) await page.screenshot({ path: path.join(ROOT, "www/img/page-running.png"), fullPage: true });

    assert.equal(await waitState(page, ["done", "error"], 400_000), "done", JSON.stringify(await shown(page)));
    const pageMs = Date.now() - t0;
    await page.screenshot({ path: path.join(SHOTS, "page-done.png"), fullPage: true });
    if (README_SHOTS) await page.screenshot({ path: path.join(ROOT, "www/img/page-done.png"), fullPage: true });

    assert.equal(await page.locator("#tiles .tile").count(), 4, "one tile per channel");
    const { result, weightsUrl, firstPreviewMs } = await page.evaluate(() => ({
      result: window.featvis.result,
      weightsUrl: window.featvis.weights.url,
      firstPreviewMs: window.featvis.firstPreviewMs,
    }));
    assert.equal(result.cancelled, false);
    assert.equal(result.images.length, 4);
    for (const [i, im] of result.images.entries()) {
      assert.ok(im.final_activation > 0 && im.final_activation >= 10 * im.initial_activation, `image ${i}: ${JSON.stringify(im)}`);
    }
    assert.ok(firstPreviewMs > 0, `firstPreviewMs ${firstPreviewMs}`);

    // The grid through the real button.
    const [download] = await Promise.all([page.waitForEvent("download", { timeout: 30_000 }), page.click("#download-grid")]);
    assert.equal(download.suggestedFilename(), "conv2_2-0-3-48px-32steps-seed1.png");
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "featvis-page-"));
    const pagePng = path.join(tmp, "page.png");
    await download.saveAs(pagePng);

    // The same job on the CLI, with the weights file the page used.
    const weightsName = new URL(weightsUrl).pathname.split("/").pop();
    const weights = path.join("www/weights", weightsName);
    assert.equal(weightsName, "vgg16-imagenet-f16.safetensors", `the page used ${weightsUrl}`);
    const cliPng = path.join(tmp, "cli.png");
    const featvisBin = path.join(ROOT, "target/release/featvis");
    assert.ok(fs.existsSync(featvisBin), `${featvisBin} is missing: cargo build --release`);
    const c0 = Date.now();
    const { stdout } = await promisify(execFile)(
      featvisBin,
      ["render", "--weights", weights, "--layer", "conv2_2", "--channels", "0-3", "--size", "48", "--steps", "32", "--seed", "1", "--json", "--quiet", "--out", cliPng],
      { cwd: ROOT, maxBuffer: 1 << 24 },
    );
    const cliMs = Date.now() - c0;
    const cli = JSON.parse(stdout);

    const a = decodePng(fs.readFileSync(pagePng));
    const b = decodePng(fs.readFileSync(cliPng));
    assert.deepEqual([a.width, a.height, a.channels], [b.width, b.height, b.channels], "PNG sizes");
    let max = 0;
    let sum = 0;
    for (let k = 0; k < a.pixels.length; k++) {
      const d = Math.abs(a.pixels[k] - b.pixels[k]);
      max = Math.max(max, d);
      sum += d;
    }
    const mean = sum / a.pixels.length;
    const rel = result.images.map((im, i) => Math.abs(im.final_activation - cli.images[i].final_activation) / Math.abs(cli.images[i].final_activation));
    const report = {
      test: "page vs CLI, conv2_2 0-3, 48 px, 32 steps, seed 1",
      png: `${a.width}x${a.height}`,
      pixel_max_abs_diff: max,
      pixel_mean_abs_diff: Number(mean.toFixed(4)),
      final_activation_page: result.images.map((im) => im.final_activation),
      final_activation_cli: cli.images.map((im) => im.final_activation),
      final_activation_rel_diff: rel.map((r) => Number(r.toExponential(3))),
      first_preview_ms: firstPreviewMs,
      page_ms_per_step: result.ms_per_step,
      cli_ms_per_step: cli.ms_per_step,
      page_total_ms: pageMs,
      cli_total_ms: cliMs,
      page_adapter: result.adapter,
      cli_adapter: cli.adapter,
      files: { page: pagePng, cli: cliPng },
    };
    console.log(JSON.stringify(report));
    assert.equal(cli.images.length, 4);
    for (const [i, r] of rel.entries()) assert.ok(r <= 0.02, `image ${i}: final activation ${result.images[i].final_activation} (page) vs ${cli.images[i].final_activation} (CLI)`);
    assert.ok(mean < 3, `mean absolute pixel difference ${mean}`);
  } finally {
    await context.close();
  }
});

// ---------------------------------------------------------------- 2. failures

test("weights that are not there (404): the page says to run `featvis fetch-weights`", { timeout: 60_000 }, async () => {
  const { context, page } = await newPage();
  let hits = 0;
  await context.route("**/weights/**", (route) => {
    hits++;
    return route.fulfill({ status: 404, contentType: "text/plain", body: "404 not found\n" });
  });
  try {
    await page.goto(`${BASE}/`);
    assert.equal(await waitState(page, ["error", "ready"], 45_000), "error", JSON.stringify(await shown(page)));
    const text = await alertText(page);
    assert.match(text, /featvis fetch-weights/);
    assert.ok(hits > 0, "the weights were never requested");
    assert.match(await page.locator("#weights-status").textContent(), /featvis fetch-weights/);
    assert.equal(await page.locator("#render").isDisabled(), true, "Render stays off without weights");
  } finally {
    await context.close();
  }
});

test("corrupt weights: the loader's message names the problem", { timeout: 60_000 }, async () => {
  const { context, page } = await newPage();
  // 64 KiB of noise with the size of a safetensors header in front that points past the end.
  const garbage = Buffer.alloc(65536);
  let x = 12345;
  for (let k = 0; k < garbage.length; k++) garbage[k] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
  await context.route("**/weights/**", (route) => route.fulfill({ status: 200, contentType: "application/octet-stream", body: garbage }));
  try {
    await page.goto(`${BASE}/`);
    assert.equal(await waitState(page, ["error", "ready"], 45_000), "error", JSON.stringify(await shown(page)));
    const text = await alertText(page);
    const weightsError = await page.evaluate(() => window.featvis.weightsError);
    console.log(JSON.stringify({ test: "corrupt weights", alert: text }));
    assert.ok(weightsError && text.includes(weightsError), `alert “${text}” vs weightsError “${weightsError}”`);
    assert.match(text, /weights/i);
    assert.match(text, /header|magic|length|offset|json|safetensors|truncat|too (short|large|big)|past the end/i);
    assert.doesNotMatch(text, /fetch-weights/, "a corrupt file is not a missing one");
  } finally {
    await context.close();
  }
});

test("a link with an unknown layer and run=1: “unknown layer”, nothing renders", { timeout: 60_000 }, async () => {
  const { context, page } = await newPage();
  try {
    await page.goto(`${BASE}/?layer=conv9_9&channels=0&size=32&steps=4&run=1`);
    assert.equal(await waitState(page, ["error", "done"], 50_000), "error", JSON.stringify(await shown(page)));
    const text = await alertText(page);
    assert.match(text, /unknown layer/i);
    assert.match(text, /conv9_9/);
    assert.equal(await page.evaluate(() => window.featvis.result), null);
    assert.equal(await page.locator("#tiles .tile").count(), 0);
  } finally {
    await context.close();
  }
});

test("an objective with a syntax error: shown under the box as one types, and in the alert on Render", { timeout: 60_000 }, async () => {
  const { context, page } = await newPage();
  try {
    await page.goto(`${BASE}/?objective=conv1_2:0&size=32&steps=4`);
    assert.equal(await waitState(page, ["ready", "error"], 45_000), "ready", JSON.stringify(await shown(page)));
    assert.equal(await page.locator("#job-error").textContent(), "", "a valid objective has no error");
    await page.locator("#objective").fill("");
    await page.locator("#objective").pressSequentially("conv1_2:0 + *", { delay: 20 });
    await page.waitForFunction(() => document.getElementById("job-error").textContent.length > 0, null, { timeout: 5000 });
    const under = await page.locator("#job-error").textContent();
    assert.equal(await page.evaluate(() => document.documentElement.dataset.state), "ready", "typing alone is no failure");
    await page.click("#render");
    assert.equal(await waitState(page, ["error", "running"], 5000), "error");
    const text = await alertText(page);
    console.log(JSON.stringify({ test: "objective syntax error", under_the_box: under, alert: text }));
    assert.ok(text.includes(under), `alert “${text}” vs under the box “${under}”`);
    // Fixing the box clears the alert.
    await page.locator("#objective").fill("conv1_2:0");
    await page.waitForFunction(() => document.getElementById("job-error").textContent === "", null, { timeout: 5000 });
    assert.equal(await page.locator("[role=alert]:not([hidden])").count(), 0, "the alert stays after the fix");
  } finally {
    await context.close();
  }
});

// ---------------------------------------------------------------- 3. the weights cache

test("a reload with the weights cached downloads no weights", { timeout: 120_000 }, async () => {
  const { context, page } = await newPage();
  let requests = [];
  let bytes = 0;
  page.on("request", (r) => {
    if (r.url().includes("/weights/")) requests.push(`${r.method()} ${r.url()}`);
  });
  page.on("requestfinished", async (r) => {
    if (!r.url().includes("/weights/")) return;
    const sizes = await r.sizes();
    bytes += sizes.responseBodySize;
  });
  try {
    await page.goto(`${BASE}/`);
    assert.equal(await waitState(page, ["ready", "error"], 60_000), "ready", JSON.stringify(await shown(page)));
    await page.waitForTimeout(300);
    const first = { requests: requests.length, bytes, cached: await page.evaluate(() => window.featvis.weights.cached) };
    assert.ok(first.requests > 0 && first.bytes > 1e6, `the first load downloaded ${JSON.stringify(first)}`);
    assert.equal(first.cached, false);
    assert.equal(await page.locator("#weights-cached").isVisible(), false);

    requests = [];
    bytes = 0;
    await page.reload();
    assert.equal(await waitState(page, ["ready", "error"], 60_000), "ready", JSON.stringify(await shown(page)));
    await page.waitForTimeout(300);
    const second = { requests: [...requests], bytes, cached: await page.evaluate(() => window.featvis.weights.cached) };
    console.log(JSON.stringify({ test: "weights cache", first, second }));
    // featvis.js may ask the server whether the file changed (HEAD: no body); it must not GET it.
    assert.deepEqual(second.requests.filter((r) => !r.startsWith("HEAD ")), [], "the reload downloaded weights");
    assert.equal(second.bytes, 0, "weights bytes on the reload");
    assert.equal(second.cached, true);
    assert.equal(await page.locator("#weights-cached").isVisible(), true, "“from cache” is shown");
    assert.match(await page.locator("#weights-status").textContent(), /13 conv layers, 14,714,688 parameters, Keras preprocessing/);

    // A link with run=1, the weights cached: the time to the first preview frame.
    requests = [];
    await page.goto(`${BASE}/?layer=conv2_2&channels=0-3&size=48&steps=32&seed=1&run=1`);
    await page.waitForFunction(() => window.featvis?.firstPreviewMs != null || document.documentElement.dataset.state === "error", null, {
      timeout: 60_000,
    });
    const firstPreviewMs = await page.evaluate(() => window.featvis.firstPreviewMs);
    console.log(JSON.stringify({ test: "link with run=1, weights cached", first_preview_ms: firstPreviewMs, weights_gets: requests.filter((r) => r.startsWith("GET ")).length }));
    assert.ok(firstPreviewMs > 0, `no preview frame (${firstPreviewMs})`);
    assert.deepEqual(requests.filter((r) => r.startsWith("GET ")), [], "the link downloaded the weights again");
    await page.click("#stop");
    await waitState(page, ["done", "ready", "error"], 60_000);

    // Forget: the next load downloads again.
    await page.click("#forget-weights");
    await page.waitForFunction(() => document.getElementById("forget-status").textContent.length > 0, null, { timeout: 5000 });
    requests = [];
    await page.reload();
    assert.equal(await waitState(page, ["ready", "error"], 60_000), "ready");
    assert.ok(requests.some((r) => r.startsWith("GET ")), "after “Forget cached weights” the reload downloaded nothing");
  } finally {
    await context.close();
  }
});

// ---------------------------------------------------------------- 4. stop, and render again

test("Stop ends a render within about one step, keeps its images, and the page renders again", { timeout: 180_000 }, async () => {
  const { context, page } = await newPage();
  try {
    await page.goto(`${BASE}/?layer=conv1_2&channels=0-1&size=32&steps=400&seed=1&run=1`);
    assert.equal(await waitState(page, ["running", "error"], 60_000), "running", JSON.stringify(await shown(page)));
    await page.waitForFunction(() => window.featvis.progress?.step >= 6, null, { timeout: 90_000, polling: 100 });
    await page.click("#stop");
    assert.equal(await waitState(page, ["done", "error"], 30_000), "done", JSON.stringify(await shown(page)));
    const { stopMs, stepMs, result } = await page.evaluate(() => ({ stopMs: window.featvis.stopMs, stepMs: window.featvis.stepMs, result: window.featvis.result }));
    console.log(JSON.stringify({ test: "stop", stop_ms: Math.round(stopMs), step_ms: Math.round(stepMs), steps_done: result.steps_done }));
    assert.equal(result.cancelled, true);
    assert.ok(result.steps_done < 400, `steps_done ${result.steps_done}`);
    assert.equal(result.images.length, 2);
    assert.ok(stopMs <= 2 * stepMs + 50, `stop took ${stopMs} ms; a step takes ${stepMs} ms`);
    assert.equal(await page.locator("#download-grid").isDisabled(), false, "the stopped render's grid can be downloaded");

    // Again, tiny.
    await page.fill("#steps", "4");
    await page.click("#render");
    assert.equal(await waitState(page, ["running", "error"], 5000), "running");
    assert.equal(await waitState(page, ["done", "error"], 60_000), "done", JSON.stringify(await shown(page)));
    const again = await page.evaluate(() => window.featvis.result);
    assert.equal(again.cancelled, false);
    assert.equal(again.images.length, 2);
    assert.equal(await page.locator("#tiles .tile").count(), 2);
  } finally {
    await context.close();
  }
});

test("a stopped render is kept: the reloaded page offers to continue it, and it ends on the images of an uninterrupted render", { timeout: 300_000 }, async () => {
  const { context, page } = await newPage();
  const link = `${BASE}/?layer=conv1_2&channels=0-2&size=24&steps=20&seed=5&batch=2`;
  const grid = async () => {
    const [download] = await Promise.all([page.waitForEvent("download", { timeout: 30_000 }), page.click("#download-grid")]);
    const file = path.join(os.tmpdir(), `featvis-resume-${process.pid}-${Date.now()}.png`);
    await download.saveAs(file);
    const bytes = fs.readFileSync(file);
    fs.rmSync(file);
    return bytes;
  };
  try {
    // Uninterrupted (two batches: 2 images, then 1).
    await page.goto(`${link}&run=1`);
    assert.equal(await waitState(page, ["done", "error"], 120_000), "done", JSON.stringify(await shown(page)));
    const whole = await page.evaluate(() => window.featvis.result);
    const wholePng = await grid();
    assert.equal(await page.locator("#resume-banner").isVisible(), false, "nothing to continue after a finished render");

    // Stopped in its first batch, after a checkpoint (every 8 steps) and past it.
    await page.goto(`${link}&run=1`);
    await page.waitForFunction(() => window.featvis.progress?.done >= 10, null, { timeout: 120_000, polling: 50 });
    await page.click("#stop");
    assert.equal(await waitState(page, ["done", "error"], 60_000), "done");
    const stopped = await page.evaluate(() => window.featvis.result);
    assert.equal(stopped.cancelled, true);
    assert.equal(await page.locator("#download-grid").isDisabled(), false, "the stopped images can be saved");

    // Reloaded: the page offers to continue, and continuing finishes it.
    await page.goto(link);
    await page.waitForSelector("#resume-banner:not([hidden])", { timeout: 60_000 });
    const offer = await page.locator("#resume-text").textContent();
    assert.match(offer, /conv1_2 channels 0-2, 24 px, stopped at step \d+ of 40/);
    await page.click("#resume-continue");
    assert.equal(await waitState(page, ["done", "error"], 120_000), "done", JSON.stringify(await shown(page)));
    const resumed = await page.evaluate(() => window.featvis.result);
    console.log(JSON.stringify({ test: "resume in the page", offer, whole: whole.images.map((i) => i.final_activation), resumed: resumed.images.map((i) => i.final_activation) }));
    assert.equal(resumed.cancelled, false);
    assert.deepEqual(resumed.images, whole.images, "the continued render ends on other values");
    assert.ok(Buffer.compare(await grid(), wholePng) === 0, "the continued render's grid PNG differs from the uninterrupted one");
    // Finished: nothing left to continue.
    await page.goto(link);
    assert.equal(await waitState(page, ["ready", "error"], 60_000), "ready");
    await page.waitForTimeout(500);
    assert.equal(await page.locator("#resume-banner").isVisible(), false);
  } finally {
    await context.close();
  }
});

test("a device lost during a render: the alert offers a restart, which renders the same settings again", { timeout: 180_000 }, async () => {
  const { context, page } = await newPage();
  try {
    await page.goto(`${BASE}/?layer=conv1_2&channels=0&size=32&steps=400&seed=3&run=1`);
    assert.equal(await waitState(page, ["running", "error"], 60_000), "running", JSON.stringify(await shown(page)));
    await page.waitForFunction(() => window.featvis.progress?.step >= 2, null, { timeout: 60_000, polling: 100 });
    await page.evaluate(() => window.featvis.engine.loseDevice());
    assert.equal(await waitState(page, ["error", "done"], 30_000), "error", JSON.stringify(await shown(page)));
    const text = await alertText(page);
    console.log(JSON.stringify({ test: "device lost", alert: text }));
    assert.match(await page.locator("#alert-text").innerText(), /device was lost/i);
    const restart = page.getByRole("button", { name: "Restart GPU and render again" });
    assert.equal(await restart.isVisible(), true);
    await Promise.all([page.waitForURL(/run=1/, { timeout: 10_000 }), restart.click()]);
    const q = new URL(page.url()).searchParams;
    assert.deepEqual(
      ["layer", "channels", "size", "steps", "seed", "run"].map((k) => q.get(k)),
      ["conv1_2", "0", "32", "400", "3", "1"],
    );
    assert.equal(await waitState(page, ["running", "error"], 60_000), "running", JSON.stringify(await shown(page)));
    await page.waitForFunction(() => window.featvis.progress?.step >= 1, null, { timeout: 60_000, polling: 100 });
    await page.click("#stop");
    assert.equal(await waitState(page, ["done", "error"], 30_000), "done");
  } finally {
    await context.close();
  }
});

// ---------------------------------------------------------------- links, examples, pause, own weights

test("settings travel in links, examples fill the objective, pause holds the steps, a picked weights file is used", { timeout: 120_000 }, async () => {
  const { context, page } = await newPage();
  try {
    const link = "objective=conv1_2%3A3+-+1e-3*tv()&batch=2&preset=lucid&size=32&steps=300&param=pixel&lr=0.02&seed=7&redirect=0";
    await page.goto(`${BASE}/?${link}`);
    assert.equal(await waitState(page, ["ready", "error"], 45_000), "ready", JSON.stringify(await shown(page)));
    const form = await page.evaluate(() =>
      Object.fromEntries(["objective", "batch", "preset", "size", "steps", "transforms", "param", "lr", "seed"].map((k) => [k, document.getElementById(k).value])),
    );
    assert.deepEqual(form, { objective: "conv1_2:3 - 1e-3*tv()", batch: "2", preset: "lucid", size: "32", steps: "300", transforms: "lucid", param: "pixel", lr: "0.02", seed: "7" });
    assert.equal(await page.locator("#redirect").isChecked(), false);
    assert.equal(await page.locator('[data-example="class"]').isVisible(), false, "class logits need the classifier head");

    // Copy link: the address holds every setting, and opening it gives the same form.
    await page.click("#copy-link");
    const q = new URL(page.url()).searchParams;
    for (const [k, v] of Object.entries({ objective: "conv1_2:3 - 1e-3*tv()", batch: "2", preset: "lucid", size: "32", steps: "300", param: "pixel", lr: "0.02", seed: "7", redirect: "0" })) {
      assert.equal(q.get(k), v, `link key ${k} in ${page.url()}`);
    }

    // Examples use the layer and first channel of the layer box.
    await page.check('input[name="mode"][value="layer"]');
    await page.selectOption("#layer", "conv2_1");
    await page.fill("#channels", "5-9");
    await page.click('[data-example="diversity"]');
    assert.equal(await page.inputValue("#objective"), "conv2_1:5 - 100*diversity(conv2_1)");
    assert.equal(await page.inputValue("#batch"), "4");
    await page.click('[data-example="neuron"]');
    assert.equal(await page.inputValue("#objective"), "conv2_1:5@");

    // Pause holds the render (at most the step under way finishes); resume goes on.
    await page.fill("#objective", "conv1_2:3");
    await page.fill("#batch", "1");
    await page.fill("#steps", "300");
    await page.click("#render");
    assert.equal(await waitState(page, ["running", "error"], 5000), "running");
    await page.waitForFunction(() => window.featvis.progress?.step >= 3, null, { timeout: 60_000, polling: 100 });
    await page.click("#pause");
    assert.equal(await page.locator("#pause").textContent(), "Resume");
    // Let the step under way finish (on a busy machine a step can take several times its usual time).
    const stepMs = await page.evaluate(() => window.featvis.stepMs);
    await page.waitForTimeout(Math.max(500, 3 * stepMs + 200));
    const held = await page.evaluate(() => window.featvis.progress.step);
    await page.waitForTimeout(1500);
    assert.equal(await page.evaluate(() => window.featvis.progress.step), held, "steps went on while paused");
    assert.equal(await page.evaluate(() => document.documentElement.dataset.state), "running");
    await page.click("#pause");
    await page.waitForFunction((n) => window.featvis.progress.step > n, held, { timeout: 30_000, polling: 100 });
    await page.click("#stop");
    assert.equal(await waitState(page, ["done", "error"], 30_000), "done");

    // A weights file picked with the file input (the f32 file) replaces the default.
    await page.setInputFiles("#weights-file", path.join(ROOT, "www/weights/vgg16-imagenet.safetensors"));
    await page.waitForFunction(() => window.featvis.weights?.dtype !== "F16" || window.featvis.weightsError, null, { timeout: 60_000 });
    const w = await page.evaluate(() => ({ dtype: window.featvis.weights.dtype, error: window.featvis.weightsError }));
    assert.equal(w.error, null);
    assert.equal(w.dtype, "F32");
    assert.match(await page.locator("#weights-status").textContent(), /58\.9 MB \(f32\).*vgg16-imagenet\.safetensors/);
  } finally {
    await context.close();
  }
});

// ---------------------------------------------------------------- no WebGPU (last: it needs its own Chromium)

test("Tune: every conv schedule is checked and timed on this device, and the choice is kept for the next visit", { timeout: 300_000 }, async () => {
  const { context, page } = await newPage();
  try {
    await page.goto(`${BASE}/`);
    assert.equal(await waitState(page, ["ready", "error"], 60_000), "ready", JSON.stringify(await shown(page)));
    await page.click("#bench-section summary");
    await page.click("#tune-run");
    await page.waitForFunction(() => window.featvis.tuning || document.getElementById("tune-progress").className === "error", null, { timeout: 240_000 });
    const r = await page.evaluate(() => window.featvis.tuning);
    assert.ok(r, await page.locator("#tune-progress").textContent());
    console.log(JSON.stringify({ test: "tune (SwiftShader)", chosen: r.chosen, candidates: r.candidates.map((c) => [c.schedule, c.correct, c.max_rel_error, Number(c.gflops.toFixed(2)), c.error]) }));
    const chosen = r.candidates.find((c) => c.spec === r.chosen_spec);
    assert.ok(chosen?.correct, `the chosen schedule is a correct one: ${JSON.stringify(chosen)}`);
    const fastest = Math.max(...r.candidates.filter((c) => c.correct).map((c) => c.gflops));
    assert.equal(chosen.gflops, fastest);
    assert.equal(await page.locator("#tune-table tbody tr").count(), r.candidates.length);
    assert.equal(await page.locator("#schedule").textContent(), r.chosen);
    // The next visit uses the tuned schedule from the start.
    await page.reload();
    assert.equal(await waitState(page, ["ready", "error"], 60_000), "ready");
    assert.equal(await page.evaluate(() => window.featvis.engine.convSchedule()), r.chosen);
  } finally {
    await context.close();
  }
});

test("Chromium without --enable-unsafe-webgpu: the page says which browsers and flags work", { timeout: 60_000 }, async () => {
  await browser?.close();
  browser = null;
  const args = CHROMIUM_ARGS.filter((a) => a !== "--enable-unsafe-webgpu");
  assert.equal(args.length, CHROMIUM_ARGS.length - 1, "webdriver.json no longer has --enable-unsafe-webgpu");
  const plain = await chromium.launch({ executablePath: "/usr/bin/chromium", args });
  try {
    const page = await plain.newPage({ viewport: { width: 1000, height: 700 } });
    await page.goto(`${BASE}/?layer=conv1_2&channels=0&run=1`);
    assert.equal(await waitState(page, ["error", "ready", "running"], 45_000), "error", JSON.stringify(await shown(page)));
    const text = await alertText(page);
    console.log(JSON.stringify({ test: "no WebGPU", alert: text }));
    assert.match(text, /WebGPU/);
    assert.match(text, /Chrome/);
    assert.match(text, /enable-unsafe-webgpu/);
    assert.match(text, /Safari 26/);
    assert.match(text, /Firefox 141/);
    await page.screenshot({ path: path.join(SHOTS, "page-no-webgpu.png") });
  } finally {
    await plain.close();
  }
});
