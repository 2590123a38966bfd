// A static file server for www/ on localhost, used by tools/run and the
// browser checks:  node tools/serve.mjs PORT   (FEATVIS_SERVE_LOG=1 logs
// one line per request).  From JS: `await serve(port, root?)` gives the
// http.Server listening on 127.0.0.1 (port 0 picks a free one).
//
// Every bad request gets a 4xx answer and the server keeps serving: bad
// percent-escapes, control characters and `..` segments (plain or encoded)
// are 400, symlinks are resolved and must stay inside the root (403), other
// methods than GET/HEAD are 405, malformed HTTP is answered by `clientError`.
// Files are streamed; the weights (.safetensors) carry content-length (the
// page's progress bar) and are revalidated with ETag / Last-Modified.
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { pipeline } from "node:stream";
import { fileURLToPath } from "node:url";

const defaultRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "www");

const types = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".wasm": "application/wasm",
  ".json": "application/json",
  ".png": "image/png",
  ".svg": "image/svg+xml",
  ".safetensors": "application/octet-stream",
};

// Longer request paths get 414. Node itself answers requests whose request
// line and headers exceed its header limit (16 KiB) through `clientError`.
const MAX_PATH = 4096;

const reasons = http.STATUS_CODES;

/** Starts the server on 127.0.0.1:port serving `root` (default www/). */
export function serve(port, root = defaultRoot) {
  // Compare against the real path, so a root that is itself reached through
  // a symlink (e.g. /tmp on macOS) still contains its files.
  const realRoot = fs.realpathSync(root);
  const log = process.env.FEATVIS_SERVE_LOG === "1";

  const server = http.createServer((req, res) => {
    const start = Date.now();
    if (log) {
      res.on("close", () => {
        const url = JSON.stringify(req.url.length > 200 ? `${req.url.slice(0, 200)}…` : req.url);
        console.log(`${req.method} ${url} ${res.statusCode} ${Date.now() - start}ms`);
      });
    }
    handle(req, res, realRoot).catch((err) => fail(res, err));
  });

  // Malformed HTTP never reaches the handler; answer it and close the socket.
  server.on("clientError", (err, socket) => {
    if (log) console.log(`client error: ${err.code ?? err.message}`);
    if (err.code === "ECONNRESET" || !socket.writable) {
      socket.destroy();
      return;
    }
    const status =
      err.code === "HPE_HEADER_OVERFLOW" ? 431 : err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : 400;
    socket.end(`HTTP/1.1 ${status} ${reasons[status]}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
  });

  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      server.off("error", reject);
      resolve(server);
    });
  });
}

async function handle(req, res, root) {
  if (req.method !== "GET" && req.method !== "HEAD") {
    return answer(res, 405, "method not allowed", { allow: "GET, HEAD" });
  }
  // Parse the raw target ourselves: `new URL` would resolve `..` segments
  // before we could see them.
  const target = req.url;
  const cut = target.search(/[?#]/);
  const rawPath = cut < 0 ? target : target.slice(0, cut);
  const query = cut < 0 ? "" : target.slice(cut);
  if (!rawPath.startsWith("/")) return answer(res, 400, "bad request target");
  if (rawPath.length > MAX_PATH) return answer(res, 414, "path too long");

  let decoded;
  try {
    decoded = decodeURIComponent(rawPath);
  } catch {
    return answer(res, 400, "malformed percent-escape in path");
  }
  if (/[\x00-\x1f\x7f]/.test(decoded)) return answer(res, 400, "control character in path");
  if (decoded.includes("\\")) return answer(res, 400, "backslash in path");
  const segments = decoded.split("/").filter((s) => s !== "" && s !== ".");
  if (segments.includes("..")) return answer(res, 400, "`..` in path");

  // Resolve symlinks and require the result to stay inside the root.
  let file = await realpathInside(path.join(root, ...segments), root);
  if (file === null) return answer(res, 403, "forbidden");
  let stat = await fs.promises.stat(file);
  if (stat.isDirectory()) {
    if (!rawPath.endsWith("/")) {
      // Rebuilt from the checked segments, so `//host` cannot become an
      // off-site redirect.
      const location = `/${segments.map(encodeURIComponent).join("/")}/${query}`;
      return answer(res, 301, "moved", { location });
    }
    file = await realpathInside(path.join(file, "index.html"), root);
    if (file === null) return answer(res, 403, "forbidden");
    stat = await fs.promises.stat(file);
  }
  if (!stat.isFile()) return answer(res, 404, "not found");

  const ext = path.extname(file).toLowerCase();
  const etag = `"${stat.size.toString(16)}-${Math.floor(stat.mtimeMs).toString(16)}"`;
  const headers = {
    "content-type": types[ext] ?? "application/octet-stream",
    // The weights are 60+ MB: let the browser keep them and revalidate with
    // ETag / Last-Modified. Everything else is reloaded fresh while developing.
    "cache-control": ext === ".safetensors" ? "no-cache" : "no-store",
    etag,
    "last-modified": stat.mtime.toUTCString(),
    // CORS: any site may embed the widget and fetch the page's files,
    // weights included (they are public; nothing here carries credentials).
    "access-control-allow-origin": "*",
    "x-content-type-options": "nosniff",
  };
  if (notModified(req, etag, stat.mtime)) {
    res.writeHead(304, headers).end();
    return;
  }
  headers["content-length"] = stat.size;
  if (req.method === "HEAD") {
    res.writeHead(200, headers).end();
    return;
  }
  // Open first, so an open error can still be answered with 500; a later
  // read error can only abort the response (pipeline destroys both ends).
  const stream = fs.createReadStream(file);
  await new Promise((resolve, reject) => {
    stream.once("open", resolve);
    stream.once("error", reject);
  });
  res.writeHead(200, headers);
  pipeline(stream, res, () => {});
}

/** The real path of `file`, or null when it lies outside `root`. Missing
 *  files reject with ENOENT (answered 404 by `fail`). */
async function realpathInside(file, root) {
  const real = await fs.promises.realpath(file);
  return real === root || real.startsWith(root + path.sep) ? real : null;
}

function notModified(req, etag, mtime) {
  const inm = req.headers["if-none-match"];
  if (inm !== undefined) {
    return inm.split(",").some((t) => {
      t = t.trim();
      return t === "*" || t.replace(/^W\//, "") === etag;
    });
  }
  const ims = Date.parse(req.headers["if-modified-since"] ?? "");
  return !Number.isNaN(ims) && Math.floor(mtime.getTime() / 1000) * 1000 <= ims;
}

function answer(res, status, message, headers = {}) {
  const body = `${status} ${message}\n`;
  res.writeHead(status, {
    "content-type": "text/plain; charset=utf-8",
    "content-length": Buffer.byteLength(body),
    "cache-control": "no-store",
    ...headers,
  });
  res.end(res.req.method === "HEAD" ? undefined : body);
}

// Errors from the file system: missing → 404, anything else → 500.
function fail(res, err) {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (err.code === "ENOENT" || err.code === "ENOTDIR" || err.code === "ENAMETOOLONG") {
    answer(res, 404, "not found");
  } else {
    answer(res, 500, `cannot read the file (${err.code ?? "error"})`);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = process.argv[2] ?? "8080";
  const port = Number(arg);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`usage: node tools/serve.mjs PORT  (got ${JSON.stringify(arg)})`);
    process.exit(2);
  }
  const server = await serve(port);
  console.log(`featvis: serving www/ on http://localhost:${server.address().port}/ (Ctrl-C stops)`);
}
