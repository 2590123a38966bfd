// What the tools/browser-*.mjs scripts share: their `--name value` arguments
// and headless Chromium launched with WebGPU (SwiftShader on a machine
// without a GPU), with the binary and flags of webdriver.json, which the
// wasm test lane uses: one list for both.
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const webdriver = JSON.parse(readFileSync(new URL("../webdriver.json", import.meta.url), "utf8"))["goog:chromeOptions"];
export const CHROMIUM_ARGS = webdriver.args;

// `--name value` pairs of process.argv → { name: value }.
export function parseArgs(argv = process.argv.slice(2)) {
  return Object.fromEntries(
    argv.reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
  );
}

export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? webdriver.binary,
    args: CHROMIUM_ARGS,
  });
}
