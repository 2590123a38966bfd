// Loads the page in headless Chromium (WebGPU on SwiftShader) three times:
//   1. as is: the page downloads the f16 weights, checks them in wasm and
//      uploads them to the GPU;
//   2. with the f16 file unreachable: it falls back to the f32 file;
//   3. with neither: it says to run `featvis fetch-weights`.
// Records the bytes transferred for the weights each time, asserts that the
// f16 download is at least 1.8× smaller than the f32 one, prints a JSON
// report and screenshots the first load.
//   node tools/browser-weights.mjs [--screenshot www/img/weights-page.png]
// Needs www/pkg (tools/build-web) and www/weights (featvis fetch-weights).
import { launchChromium, parseArgs } from "./browser.mjs";
import { serve } from "./serve.mjs";

const args = parseArgs();
const screenshot = args.screenshot ?? "www/img/weights-page.png";
const server = await serve(0);
const port = server.address().port;
const browser = await launchChromium();

// One page load; `block` lists weights files made unreachable. Returns what
// the page reports and the bytes of each weights response.
async function load(block, shot) {
  const page = await browser.newPage({ viewport: { width: 1000, height: 640 } });
  page.on("console", (m) => console.error(`[page] ${m.text()}`));
  // A missing file is a 404 (the page falls back from f16 to f32 on a 404, as when the file is not there).
  for (const name of block) await page.route(`**/weights/${name}`, (r) => r.fulfill({ status: 404, contentType: "text/plain", body: "404 not found\n" }));
  const transfers = {};
  page.on("requestfinished", async (req) => {
    if (!req.url().includes("/weights/")) return;
    const sizes = await req.sizes();
    transfers[req.url().split("/").pop()] = sizes.responseBodySize + sizes.responseHeadersSize;
  });
  const t0 = Date.now();
  await page.goto(`http://127.0.0.1:${port}/`);
  await page.waitForFunction(() => window.featvis?.error || window.featvis?.weights || window.featvis?.weightsError, null, {
    timeout: 180_000,
  });
  const state = await page.evaluate(() => ({
    error: window.featvis.error,
    weights: window.featvis.weights,
    weightsError: window.featvis.weightsError,
    shown: document.getElementById("weights-status").textContent,
  }));
  state.ms = Date.now() - t0;
  await page.waitForTimeout(200); // let requestfinished handlers settle
  state.transfers = transfers;
  if (shot) await page.screenshot({ path: shot, fullPage: true });
  await page.close();
  // Missing weights are also the page's error (its alert); anything else is a failure to start.
  if (state.error && state.error !== state.weightsError) throw new Error(`page failed to start: ${state.error}`);
  return state;
}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

try {
  const f16 = await load([], screenshot);
  check(f16.weights, `f16 load failed: ${f16.weightsError}`);
  check(f16.weights.dtype === "F16", `expected the f16 file, got ${f16.weights.dtype}`);
  check(f16.shown.includes("13 conv layers, 14,714,688 parameters, Keras preprocessing"), `page shows: ${f16.shown}`);
  const f32 = await load(["vgg16-imagenet-f16.safetensors"]);
  check(f32.weights, `f32 fallback failed: ${f32.weightsError}`);
  check(f32.weights.dtype === "F32", `expected the f32 fallback, got ${f32.weights.dtype}`);
  const none = await load(["vgg16-imagenet-f16.safetensors", "vgg16-imagenet.safetensors"]);
  check(!none.weights && /featvis fetch-weights/.test(none.shown), `without weights the page shows: ${none.shown}`);
  const b16 = f16.transfers["vgg16-imagenet-f16.safetensors"];
  const b32 = f32.transfers["vgg16-imagenet.safetensors"];
  check(b16 > 0 && b32 > 0, `transfers not recorded: ${JSON.stringify([f16.transfers, f32.transfers])}`);
  const ratio = b32 / b16;
  const report = {
    f16: { bytes_transferred: b16, shown: f16.shown, ms: f16.ms },
    f32: { bytes_transferred: b32, shown: f32.shown, ms: f32.ms },
    none: { shown: none.shown },
    ratio: Number(ratio.toFixed(3)),
    screenshot,
  };
  console.log(JSON.stringify(report, null, 2));
  check(ratio >= 1.8, `the f16 download is only ${ratio.toFixed(3)}× smaller than f32 (need ≥ 1.8)`);
} finally {
  await browser.close();
  server.close();
}
