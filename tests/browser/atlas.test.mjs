// An atlas made by the CLI (`featvis atlas`, llvmpipe), then used as people
// use it: its static site opened from file:// and from another origin with
// every picture loaded; the page opening it from a URL (another origin, so
// CORS matters) and from a picked folder; "Render live" re-rendering a
// channel in the browser (SwiftShader) and matching the atlas's picture; the
// errors for what is not an atlas.
//
//   node --test tests/browser/atlas.test.mjs
//
// Needs www/pkg (tools/build-web), www/weights (featvis fetch-weights) and
// target/release/featvis (cargo build --release).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { fileURLToPath, pathToFileURL } from "node:url";
import { launchChromium } from "../../tools/browser.mjs";
import { serve } from "../../tools/serve.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const SHOTS = process.env.FEATVIS_SHOTS ?? path.join(os.tmpdir(), "featvis-shots");
fs.mkdirSync(SHOTS, { recursive: true });
const FEATVIS = path.join(ROOT, "target/release/featvis");
// The weights the page loads by default: the atlas is made with the same file.
const WEIGHTS = path.join(ROOT, "www/weights/vgg16-imagenet-f16.safetensors");

const TMP = fs.mkdtempSync(path.join(os.tmpdir(), "featvis-atlas-page-"));
const ATLAS = path.join(TMP, "atlas");
// Two layers, channels 0-3 in batches of 4: 8 channels, 2 groups.
const SETTINGS = ["--layers", "conv1_2,conv2_1", "--channels", "0-3", "--batch", "4", "--size", "24", "--steps", "20", "--seed", "3"];

const page_server = await serve(0);
const PAGE = `http://127.0.0.1:${page_server.address().port}`;
const atlas_server = await serve(0, TMP);
const ATLAS_URL = `http://127.0.0.1:${atlas_server.address().port}/atlas/`;

let browser = null;
before(async () => {
  assert.ok(fs.existsSync(FEATVIS), `${FEATVIS} is missing: cargo build --release`);
  assert.ok(fs.existsSync(WEIGHTS), `${WEIGHTS} is missing: featvis fetch-weights`);
  const { stdout } = await promisify(execFile)(FEATVIS, ["atlas", "--weights", WEIGHTS, ...SETTINGS, "--out", ATLAS, "--quiet", "--json"], {
    cwd: ROOT,
    maxBuffer: 1 << 24,
  });
  const summary = JSON.parse(stdout);
  assert.equal(summary.rendered, 8, stdout);
  // The one shard is the last: it wrote the site.
  assert.ok(summary.site && fs.existsSync(path.join(ATLAS, "atlas-index.json")), stdout);
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  page_server.close();
  atlas_server.close();
  fs.rmSync(TMP, { recursive: true, force: true });
});

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1200, height: 1600 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[page exception] ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") console.error(`[page error] ${m.text()}`);
  });
  return { context, page };
}

// Every <img> of the page loaded (after making lazy ones eager): [src] of those that did not.
async function missingImages(page) {
  return page.evaluate(async () => {
    const imgs = [...document.images].filter((img) => img.getAttribute("src"));
    for (const img of imgs) img.loading = "eager";
    await Promise.all(imgs.map((img) => (img.complete ? null : new Promise((r) => img.addEventListener("load", r) || img.addEventListener("error", r)))));
    await new Promise((r) => setTimeout(r, 50));
    const bad = imgs.filter((img) => !img.complete || img.naturalWidth === 0).map((img) => img.getAttribute("src"));
    return { count: imgs.length, bad };
  });
}

test("the atlas's static site opens from file:// and from a static host with no missing image", { timeout: 120_000 }, async () => {
  const { context, page } = await newPage();
  try {
    const pages = ["index.html", "conv1_2/index.html", "conv2_1/index.html", "conv2_1/3.html", "conv1_2/0.html"];
    for (const base of [pathToFileURL(ATLAS + "/").href, ATLAS_URL]) {
      for (const p of pages) {
        const res = await page.goto(new URL(p, base).href);
        assert.ok(!res || res.ok(), `${base}${p}: ${res?.status()}`);
        const { count, bad } = await missingImages(page);
        assert.ok(count >= 1, `${base}${p}: ${count} images`);
        assert.deepEqual(bad, [], `${base}${p}: images that did not load`);
        // The stylesheet applies (relative link).
        const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
        assert.equal(bg, "rgb(251, 251, 250)", `${base}${p}: atlas.css not applied`);
      }
      // A layer page shows every channel with its activation.
      await page.goto(new URL("conv2_1/index.html", base).href);
      assert.equal(await page.locator(".tile").count(), 4);
      // From the grid to a channel and on to its neighbour.
      await page.click('a.tile[href="2.html"]');
      assert.match(await page.locator("h1").innerText(), /conv2_1, channel 2/);
      await page.click('nav a[href="3.html"]');
      assert.match(await page.locator("h1").innerText(), /conv2_1, channel 3/);
    }
    await page.goto(new URL("conv2_1/index.html", ATLAS_URL).href);
    await page.screenshot({ path: path.join(SHOTS, "atlas-site-layer.png"), fullPage: true });
  } finally {
    await context.close();
  }
});

test("the page opens an atlas from a link, browses it, and Render live matches the atlas's picture", { timeout: 600_000 }, async () => {
  const { context, page } = await newPage();
  try {
    const link = `${PAGE}/?atlas=${encodeURIComponent(ATLAS_URL)}&atlas_layer=conv2_1&atlas_channel=2`;
    await page.goto(link);
    await page.waitForFunction(() => window.featvis?.atlas?.opened || window.featvis?.atlas?.error, null, { timeout: 60_000 });
    const opened = await page.evaluate(() => window.featvis.atlas);
    assert.equal(opened.error, null);
    assert.deepEqual(opened.opened.layers, ["conv1_2", "conv2_1"]);
    assert.equal(opened.opened.settings.seed, 3);
    assert.equal(await page.locator("#atlas-section").getAttribute("open"), "");

    // The layer and channel of the link are shown; every picture loaded.
    assert.equal(await page.locator('.atlas-layer[aria-pressed="true"]').getAttribute("data-layer"), "conv2_1");
    await page.waitForFunction(() => document.querySelectorAll("#atlas-grid .atlas-tile").length === 4, null, { timeout: 10_000 });
    assert.match(await page.locator("#atlas-channel-title").innerText(), /conv2_1, channel 2/);
    assert.deepEqual((await missingImages(page)).bad, []);
    assert.match(await page.locator("#atlas-status").innerText(), /8 channels of 2 layers · 24×24 px, 20 steps/);

    // Another layer, another channel.
    await page.click('.atlas-layer[data-layer="conv1_2"]');
    await page.waitForFunction(() => document.querySelector("#atlas-grid-title").textContent.startsWith("conv1_2"), null, { timeout: 10_000 });
    await page.click('.atlas-tile[data-channel="1"]');
    assert.match(await page.locator("#atlas-channel-title").innerText(), /conv1_2, channel 1/);
    assert.ok(new URL(page.url()).searchParams.get("atlas_channel") === "1", page.url());
    assert.deepEqual((await missingImages(page)).bad, []);

    // The weights the page loads by default are the atlas's.
    await page.waitForFunction(() => ["ready", "done", "error"].includes(document.documentElement.dataset.state), null, { timeout: 120_000 });
    assert.match(await page.locator("#atlas-weights").innerText(), /Made with the weights loaded here/);

    // Render live: channel 1 of conv1_2 is image 1 of the batch 0-3.
    await page.click('.atlas-tile[data-channel="1"]');
    await page.click("#atlas-live");
    await page.waitForFunction(() => ["done", "error", "stopped"].includes(window.featvis.atlas.live), null, { timeout: 500_000, polling: 250 });
    const after = await page.evaluate(() => ({ atlas: window.featvis.atlas, result: window.featvis.result, state: document.documentElement.dataset.state }));
    assert.equal(after.atlas.live, "done", JSON.stringify(after));
    assert.equal(after.state, "done");
    // The page rendered the recorded request: the group, its batch, its seed.
    assert.equal(after.result.images.length, 4);
    assert.equal(await page.inputValue("#layer"), "conv1_2");
    assert.equal(await page.inputValue("#channels"), "0-3");
    assert.equal(await page.inputValue("#seed"), "3");
    assert.equal(await page.inputValue("#size"), "24");
    assert.equal(await page.inputValue("#steps"), "20");
    // Same picture up to float differences between adapters (llvmpipe natively, SwiftShader here).
    const cmp = after.atlas.compare;
    assert.equal(cmp.channel, 1);
    assert.ok(cmp.mean < 4, `mean difference ${cmp.mean} of 255 (largest ${cmp.max})`);
    assert.match(await page.locator("#atlas-compare-text").innerText(), /the same picture/);
    // The comparison can fail: the live picture against the atlas's channel 1 (itself) and channel 2 (another).
    const against = await page.evaluate(async (base) => {
      const live = document.getElementById("atlas-live-canvas");
      const mine = live.getContext("2d").getImageData(0, 0, live.width, live.height).data;
      const out = {};
      for (const c of [1, 2]) {
        const img = new Image();
        img.crossOrigin = "anonymous";
        img.src = `${base}conv1_2/${c}.png`;
        await img.decode();
        const cv = document.createElement("canvas");
        [cv.width, cv.height] = [img.naturalWidth, img.naturalHeight];
        cv.getContext("2d").drawImage(img, 0, 0);
        const theirs = cv.getContext("2d").getImageData(0, 0, cv.width, cv.height).data;
        let sum = 0;
        for (let k = 0; k < theirs.length; k++) if (k % 4 !== 3) sum += Math.abs(theirs[k] - mine[k]);
        out[c] = sum / ((theirs.length / 4) * 3);
      }
      return out;
    }, ATLAS_URL);
    assert.ok(Math.abs(against[1] - cmp.mean) < 0.5, `the page's figure ${cmp.mean}, the test's ${against[1]}`);
    assert.ok(against[2] > 8, `channel 2's picture differs from channel 1's by only ${against[2]} of 255`);
    await page.locator("#atlas-channel").screenshot({ path: path.join(SHOTS, "atlas-page-live.png") });
    await page.screenshot({ path: path.join(SHOTS, "atlas-page.png"), fullPage: true });
    console.log(`atlas.test: Render live of conv1_2:1 against the atlas: mean difference ${cmp.mean.toFixed(2)} of 255, largest ${cmp.max}`);
  } finally {
    await context.close();
  }
});

test("the page opens an atlas folder (with and without its index), and says what is wrong with what is not an atlas", { timeout: 120_000 }, async () => {
  // The same atlas before `atlas-index`: records only.
  const bare = path.join(TMP, "bare");
  fs.cpSync(ATLAS, bare, { recursive: true });
  fs.rmSync(path.join(bare, "atlas-index.json"));
  for (const l of ["conv1_2", "conv2_1"]) fs.rmSync(path.join(bare, l, "index.json"));
  const notAtlas = path.join(TMP, "not-an-atlas");
  fs.mkdirSync(notAtlas);
  fs.writeFileSync(path.join(notAtlas, "notes.txt"), "hello");

  const { context, page } = await newPage();
  try {
    await page.goto(`${PAGE}/`);
    await page.click("#atlas-section summary");
    for (const dir of [ATLAS, bare]) {
      await page.setInputFiles("#atlas-folder", dir);
      await page.waitForFunction(
        (name) => window.featvis.atlas.opened?.name === name || window.featvis.atlas.error,
        path.basename(dir),
        { timeout: 30_000 },
      );
      const a = await page.evaluate(() => window.featvis.atlas);
      assert.equal(a.error, null, `${dir}: ${a.error}`);
      assert.deepEqual(a.opened.layers, ["conv1_2", "conv2_1"], dir);
      await page.waitForFunction(() => document.querySelectorAll("#atlas-grid .atlas-tile").length === 4, null, { timeout: 10_000 });
      await page.click('.atlas-layer[data-layer="conv2_1"]');
      await page.click('.atlas-tile[data-channel="3"]');
      assert.match(await page.locator("#atlas-channel-title").innerText(), /conv2_1, channel 3/);
      assert.deepEqual((await missingImages(page)).bad, [], dir);
      assert.match(await page.locator("#atlas-layers").innerText(), /4 of 128/);
    }

    // A folder that is not an atlas: the message says what to pick; the last atlas stays.
    await page.setInputFiles("#atlas-folder", notAtlas);
    await page.waitForFunction(() => window.featvis.atlas.error, null, { timeout: 10_000 });
    const err = await page.locator("#atlas-error").innerText();
    assert.match(err, /not-an-atlas is not an atlas folder: it has no atlas\.json/);
    assert.match(await page.locator("#atlas-status").innerText(), /Still showing bare/);

    // A URL with no atlas, and a string that is not a URL.
    await page.fill("#atlas-url", `${PAGE}/img/`);
    await page.click("#atlas-open");
    await page.waitForFunction(() => /No atlas at/.test(window.featvis.atlas.error ?? ""), null, { timeout: 10_000 });
    assert.match(await page.locator("#atlas-error").innerText(), /neither atlas-index\.json nor atlas\.json is there/);
    await page.fill("#atlas-url", "ftp://example.org/atlas/");
    await page.click("#atlas-open");
    await page.waitForFunction(() => /not an http/.test(window.featvis.atlas.error ?? ""), null, { timeout: 10_000 });
    await page.screenshot({ path: path.join(SHOTS, "atlas-page-error.png"), fullPage: true });
  } finally {
    await context.close();
  }
});
