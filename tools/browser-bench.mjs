// Runs the kernel benchmark in headless Chromium (WebGPU on SwiftShader) on
// the built page and prints its JSON report; with --screenshot FILE also
// saves a picture of the page.
//   node tools/browser-bench.mjs [--size 64] [--batch 1] [--layers conv1_2,conv3_2] [--schedule register:4,4,64]
// Several schedules separated by `;` run one after another in the same page,
// one JSON report (one line) each.
import { launchChromium, parseArgs } from "./browser.mjs";
import { serve } from "./serve.mjs";

const args = parseArgs();
const server = await serve(0);
const port = server.address().port;
const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 760 } });
  page.on("console", (m) => console.error(`[page] ${m.text()}`));
  await page.goto(`http://127.0.0.1:${port}/`);
  await page.waitForFunction(() => window.featvis?.ready || window.featvis?.error, null, { timeout: 60_000 });
  const err = await page.evaluate(() => window.featvis.error);
  if (err) throw new Error(`page failed to start: ${err}`);
  for (const schedule of (args.schedule ?? "").split(";")) {
    const report = await page.evaluate(
      async ({ size, batch, layers, schedule }) => window.featvis.bench(size, batch, layers, schedule),
      { size: Number(args.size ?? 64), batch: Number(args.batch ?? 1), layers: args.layers ?? "", schedule },
    );
    console.log(report);
  }
  if (args.screenshot) await page.screenshot({ path: args.screenshot, fullPage: true });
} finally {
  await browser.close();
  server.close();
}
