// Tests of tools/serve.mjs, the static server of the page:
//   node --test tests/browser/server.test.mjs
// Needs node 20 only. Most tests serve a temporary root:
//   <tmp>/www/            index.html, style.css, one file per content type,
//                         sub/ (with index.html), empty/ (without),
//                         symlinks out of the root and a symlink loop
//   <tmp>/www-sibling/    secret.txt (a prefix of the root's name, outside it)
//   <tmp>/outside/        secret.txt
// Bad requests are sent as raw bytes over node:net, since http clients
// normalize `..` and refuse malformed targets; after each one the server must
// still answer GET / and GET /style.css.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { serve } from "../../tools/serve.mjs";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const SECRET = "secret outside the root";

let tmp, root, server, port;

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "featvis-serve-"));
  root = path.join(tmp, "www");
  const files = {
    "index.html": "<!doctype html><title>index</title>\n",
    "style.css": "body { color: black; }\n",
    "app.js": "export const x = 1;\n",
    "mod.mjs": "export default 2;\n",
    "data.json": '{"a": 1}\n',
    "icon.svg": '<svg xmlns="http://www.w3.org/2000/svg"/>\n',
    "sub/index.html": "<!doctype html><title>sub</title>\n",
    "empty/readme.txt": "no index here\n",
  };
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, name)), { recursive: true });
    fs.writeFileSync(path.join(root, name), text);
  }
  fs.writeFileSync(path.join(root, "image.png"), Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1, 2, 255]));
  fs.writeFileSync(path.join(root, "featvis_bg.wasm"), Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]));
  // Bytes that are not UTF-8, so a text round trip would change them.
  fs.writeFileSync(path.join(root, "weights.safetensors"), Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 37) % 256)));
  for (const dir of ["outside", "www-sibling"]) {
    fs.mkdirSync(path.join(tmp, dir));
    fs.writeFileSync(path.join(tmp, dir, "secret.txt"), SECRET);
  }
  fs.symlinkSync(path.join(tmp, "outside", "secret.txt"), path.join(root, "link-out.txt"));
  fs.symlinkSync(path.join(tmp, "outside"), path.join(root, "link-out-dir"));
  fs.symlinkSync(path.join(root, "style.css"), path.join(root, "link-in.css"));
  fs.symlinkSync("loop-b", path.join(root, "loop-a"));
  fs.symlinkSync("loop-a", path.join(root, "loop-b"));

  server = await serve(0, root);
  port = server.address().port;
});

after(() => {
  server?.close();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/** Sends `bytes` on a fresh connection and parses what comes back until the
 *  server closes it: { status, headers, body (Buffer) }. */
function raw(bytes, p = port) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    const socket = net.connect(p, "127.0.0.1");
    // A server that never closes the connection fails the test, not hangs it.
    socket.setTimeout(5000, () => socket.destroy(new Error("no answer within 5 s")));
    socket.on("data", (c) => chunks.push(c));
    // The server may close while a long request is still being written.
    socket.on("error", (err) => (chunks.length ? null : reject(err)));
    socket.on("close", () => {
      const all = Buffer.concat(chunks);
      const end = all.indexOf("\r\n\r\n");
      if (end < 0) return reject(new Error(`no HTTP response: ${JSON.stringify(all.toString("latin1"))}`));
      const [statusLine, ...lines] = all.subarray(0, end).toString("latin1").split("\r\n");
      const headers = {};
      for (const line of lines) {
        const i = line.indexOf(":");
        headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      resolve({ status: Number(statusLine.split(" ")[1]), headers, body: all.subarray(end + 4) });
    });
    // write, not end: node's server drops a half-closed connection before
    // an asynchronous handler answers. `connection: close` ends it instead.
    socket.write(bytes);
  });
}

/** A request with the target written as is (no normalization). */
function request(target, { method = "GET", headers = {} } = {}, p = port) {
  const lines = [`${method} ${target} HTTP/1.1`, "host: 127.0.0.1", "connection: close"];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  return raw(Buffer.from(`${lines.join("\r\n")}\r\n\r\n`, "latin1"), p);
}

async function assertStillServing(p = port) {
  for (const target of ["/", "/style.css"]) {
    const res = await request(target, {}, p);
    assert.equal(res.status, 200, `GET ${target} after a bad request`);
  }
}

/** Sends a bad request, checks its status is one of `expected` (all 4xx),
 *  that no outside file leaked and that the server still serves. */
async function assertRejected(target, expected, opts) {
  const res = await request(target, opts);
  const shown = JSON.stringify(target.length > 80 ? `${target.slice(0, 80)}…(${target.length} chars)` : target);
  assert.ok(expected.includes(res.status), `${shown}: status ${res.status}, want one of ${expected}`);
  assert.ok(!res.body.toString("latin1").includes(SECRET), `${shown} leaked a file outside the root`);
  await assertStillServing();
  return res;
}

test("GET of a file answers 200 with the exact bytes, content-length and CORS header", async () => {
  for (const name of ["index.html", "style.css", "image.png", "weights.safetensors"]) {
    const res = await request(`/${name}`);
    assert.equal(res.status, 200, name);
    assert.deepEqual(res.body, fs.readFileSync(path.join(root, name)), name);
    assert.equal(res.headers["content-length"], String(res.body.length), name);
    assert.equal(res.headers["access-control-allow-origin"], "*", name);
  }
  const index = await request("/");
  assert.deepEqual(index.body, fs.readFileSync(path.join(root, "index.html")));
});

test("content types follow the file extension", async () => {
  const want = {
    "/index.html": "text/html",
    "/style.css": "text/css",
    "/app.js": "text/javascript",
    "/mod.mjs": "text/javascript",
    "/data.json": "application/json",
    "/image.png": "image/png",
    "/icon.svg": "image/svg+xml",
    "/featvis_bg.wasm": "application/wasm",
    "/weights.safetensors": "application/octet-stream",
  };
  for (const [target, type] of Object.entries(want)) {
    const res = await request(target);
    assert.equal(res.status, 200, target);
    assert.equal(res.headers["content-type"].split(";")[0], type, target);
  }
});

test("weights are sent with cache-control no-cache, ETag and Last-Modified", async () => {
  const res = await request("/weights.safetensors");
  assert.equal(res.headers["cache-control"], "no-cache");
  assert.equal(res.headers["content-length"], "3000");
  assert.ok(res.headers.etag, "ETag header");
  assert.ok(!Number.isNaN(Date.parse(res.headers["last-modified"])), "Last-Modified header");
});

test("If-None-Match with the current ETag answers 304 without a body", async () => {
  const first = await request("/weights.safetensors");
  const res = await request("/weights.safetensors", { headers: { "if-none-match": first.headers.etag } });
  assert.equal(res.status, 304);
  assert.equal(res.body.length, 0);
  const stale = await request("/weights.safetensors", { headers: { "if-none-match": '"stale"' } });
  assert.equal(stale.status, 200);
  assert.equal(stale.body.length, 3000);
});

test("If-Modified-Since at Last-Modified answers 304", async () => {
  const first = await request("/weights.safetensors");
  const res = await request("/weights.safetensors", { headers: { "if-modified-since": first.headers["last-modified"] } });
  assert.equal(res.status, 304);
  const old = await request("/weights.safetensors", { headers: { "if-modified-since": new Date(0).toUTCString() } });
  assert.equal(old.status, 200);
});

test("HEAD answers the headers of GET without a body", async () => {
  const res = await request("/weights.safetensors", { method: "HEAD" });
  assert.equal(res.status, 200);
  assert.equal(res.headers["content-length"], "3000");
  assert.equal(res.headers["content-type"], "application/octet-stream");
  assert.equal(res.body.length, 0);
});

test("methods other than GET and HEAD answer 405 with Allow", async () => {
  for (const method of ["POST", "PUT", "DELETE", "OPTIONS"]) {
    const res = await assertRejected("/index.html", [405], { method });
    assert.equal(res.headers.allow, "GET, HEAD", method);
  }
});

test("a malformed percent-escape answers 400 and the server keeps serving", async () => {
  for (const target of ["/%E0%A4%A", "/%", "/%zz", "/style.css%"]) await assertRejected(target, [400]);
});

test("plain `..` segments never leave the root", async () => {
  for (const target of ["/../etc/passwd", "/a/../../x", "/../outside/secret.txt", "/sub/../../outside/secret.txt", "/.."]) {
    await assertRejected(target, [400, 403, 404]);
  }
});

test("encoded `..` segments and backslashes never leave the root", async () => {
  for (const target of [
    "/%2e%2e/outside/secret.txt",
    "/%2E%2E%2Foutside%2Fsecret.txt",
    "/%2E%2E%2F..",
    "/..%2foutside%2fsecret.txt",
    "/sub/..%2F..%2Foutside/secret.txt",
    // A sibling whose name starts with the root's: a plain prefix check lets it through.
    "/..%2fwww-sibling%2fsecret.txt",
    "/..\\outside\\secret.txt",
    "/%5c..%5coutside%5csecret.txt",
  ]) {
    await assertRejected(target, [400, 403, 404]);
  }
});

test("the default root (www/) does not serve files of the repository around it", async () => {
  const www = await serve(0);
  const p = www.address().port;
  try {
    const index = await request("/", {}, p);
    assert.equal(index.status, 200);
    assert.deepEqual(index.body, fs.readFileSync(path.join(repo, "www", "index.html")));
    for (const target of ["/../tools/serve.mjs", "/%2e%2e/tools/serve.mjs", "/..%2fwww-x%2f..%2ftools%2fserve.mjs"]) {
      const res = await request(target, {}, p);
      assert.ok([400, 403, 404].includes(res.status), `${target}: status ${res.status}`);
      assert.ok(!res.body.toString().includes("createServer"), `${target} served tools/serve.mjs`);
    }
    await assertStillServing(p);
  } finally {
    www.close();
  }
});

test("NUL and other control characters in the path answer 400", async () => {
  for (const target of ["/index.html%00", "/%00../secret", "/a%0d%0aset-cookie:%20x", "/%1b[31m", "/%7f"]) {
    await assertRejected(target, [400]);
  }
  // Raw control bytes in the request line are malformed HTTP (clientError).
  for (const target of ["/index.html\x00", "/a\x01b"]) await assertRejected(target, [400]);
});

test("malformed HTTP is answered 400 and the socket closed", async () => {
  for (const bytes of ["GARBAGE\r\n\r\n", "GET / HTTP/9.9x\r\n\r\n", "GET / HTTP/1.1\r\nbad header line\r\n\r\n"]) {
    const res = await raw(Buffer.from(bytes, "latin1"));
    assert.equal(res.status, 400, JSON.stringify(bytes));
    await assertStillServing();
  }
});

test("a request target that is not a path answers 400", async () => {
  await assertRejected("http://example.com/index.html", [400]);
});

test("a very long path answers 414 or 431 and the server keeps serving", async () => {
  await assertRejected(`/${"a".repeat(8 * 1024)}`, [414]);
  await assertRejected(`/${"a".repeat(100 * 1024)}`, [414, 431]);
});

test("a directory serves its index.html; without a trailing slash it redirects", async () => {
  const res = await request("/sub/");
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, fs.readFileSync(path.join(root, "sub", "index.html")));
  const redirect = await request("/sub?x=1");
  assert.equal(redirect.status, 301);
  assert.equal(redirect.headers.location, "/sub/?x=1");
});

test("a directory without index.html answers 404", async () => {
  await assertRejected("/empty/", [404]);
  await assertRejected("/empty", [301, 404]);
});

test("a missing file answers 404", async () => {
  await assertRejected("/missing.js", [404]);
  await assertRejected("/style.css/x", [404]);
});

test("a redirect never points off-site", async () => {
  const res = await request("//sub");
  assert.equal(res.status, 301);
  assert.equal(res.headers.location, "/sub/");
});

test("symlinks leading outside the root are not followed", async () => {
  await assertRejected("/link-out.txt", [403, 404]);
  await assertRejected("/link-out-dir/secret.txt", [403, 404]);
  await assertRejected("/link-out-dir/", [403, 404]);
  const inside = await request("/link-in.css");
  assert.equal(inside.status, 200, "a symlink inside the root is served");
  assert.deepEqual(inside.body, fs.readFileSync(path.join(root, "style.css")));
});

test("a file system error other than ENOENT (a symlink loop) answers 500", async () => {
  await assertRejected("/loop-a", [500]);
});

test("the CLI serves on the given port and logs one line per request with FEATVIS_SERVE_LOG=1", { timeout: 10_000 }, async () => {
  const child = spawn(process.execPath, [path.join(repo, "tools", "serve.mjs"), "0"], {
    env: { ...process.env, FEATVIS_SERVE_LOG: "1" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  try {
    let out = "";
    child.stdout.on("data", (c) => (out += c));
    // Resolves with the match of `re` in the child's output so far or to come.
    const waitFor = (re) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const m = out.match(re);
          if (!m) return;
          child.stdout.off("data", check);
          resolve(m);
        };
        child.stdout.on("data", check);
        child.once("exit", (code) => reject(new Error(`serve.mjs exited (${code}): ${out}`)));
        check();
      });
    const [, p] = await waitFor(/http:\/\/localhost:(\d+)\//);
    assert.notEqual(Number(p), 0, "prints the port it listens on");
    assert.equal((await request("/style.css", {}, Number(p))).status, 200);
    assert.equal((await request("/%E0%A4%A", {}, Number(p))).status, 400);
    await waitFor(/GET "\/%E0%A4%A" 400/);
    assert.match(out, /^GET "\/style.css" 200 \d+ms$/m);
  } finally {
    child.kill();
  }
});
