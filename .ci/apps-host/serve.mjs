// Serves the built host (dist/) on a loopback port and its sandbox proxy on a second one: two origins, as the
// Apps spec's double-iframe sandbox requires. The sandbox page carries the view's CSP as an HTTP header (the
// view cannot change a header), from the `csp` the host passes in the query (the resource's `_meta.ui.csp`),
// with the directives basic-host's server sends (inline and same-origin allowed, data:/blob: pictures and
// fonts, no frames, plugins or <base>). Written on node:http alone: nothing to install for serving two files.
// Prints one JSON line, {"host": url, "sandbox": url}, once both listen.
//   HOST_PORT / SANDBOX_PORT (0: any free port), MCP_SERVER_URL (the server the page connects to).
import { readFile } from "node:fs/promises";
import http from "node:http";

const DIST = new URL("./dist/", import.meta.url);
const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8" };
const HOST_FILES = new Set(["/index.html", "/host.js"]);

function cspHeader(query) {
  let csp = {};
  try {
    csp = query ? JSON.parse(query) : {};
  } catch {
    csp = {};
  }
  const list = (key) => (Array.isArray(csp[key]) ? csp[key].filter((d) => /^[\w.:*/-]+$/.test(d)).join(" ") : "");
  const resources = list("resourceDomains");
  return [
    "default-src 'self' 'unsafe-inline'",
    `script-src 'self' 'unsafe-inline' 'unsafe-eval' blob: data: ${resources}`.trim(),
    `style-src 'self' 'unsafe-inline' blob: data: ${resources}`.trim(),
    `img-src 'self' data: blob: ${resources}`.trim(),
    `font-src 'self' data: blob: ${resources}`.trim(),
    `connect-src 'self' ${list("connectDomains")}`.trim(),
    `worker-src 'self' blob: ${resources}`.trim(),
    list("frameDomains") ? `frame-src ${list("frameDomains")}` : "frame-src 'none'",
    "object-src 'none'",
    list("baseUriDomains") ? `base-uri ${list("baseUriDomains")}` : "base-uri 'none'",
  ].join("; ");
}

async function send(res, status, type, body, headers = {}) {
  res.writeHead(status, { "Content-Type": type, "Cache-Control": "no-store", ...headers });
  res.end(body);
}

function listen(handler, port) {
  const server = http.createServer((req, res) => handler(req, res).catch((err) => send(res, 500, "text/plain", String(err))));
  return new Promise((resolve) => server.listen(port, "127.0.0.1", () => resolve(`http://127.0.0.1:${server.address().port}`)));
}

const sandbox = await listen(async (req, res) => {
  const url = new URL(req.url, "http://127.0.0.1");
  if (req.method !== "GET" || url.pathname !== "/sandbox.html") return send(res, 404, "text/plain", "only /sandbox.html is served here");
  const page = await readFile(new URL("sandbox.html", DIST));
  return send(res, 200, TYPES[".html"], page, { "Content-Security-Policy": cspHeader(url.searchParams.get("csp")) });
}, Number(process.env.SANDBOX_PORT || 0));

const host = await listen(async (req, res) => {
  const url = new URL(req.url, "http://127.0.0.1");
  const path = url.pathname === "/" ? "/index.html" : url.pathname;
  if (req.method !== "GET") return send(res, 405, "text/plain", "GET only");
  if (path === "/config.json") {
    return send(res, 200, "application/json", JSON.stringify({ server: process.env.MCP_SERVER_URL || null, sandbox: `${sandbox}/sandbox.html` }));
  }
  if (!HOST_FILES.has(path)) return send(res, 404, "text/plain", "not found");
  return send(res, 200, TYPES[path.slice(path.lastIndexOf("."))], await readFile(new URL(path.slice(1), DIST)));
}, Number(process.env.HOST_PORT || 0));

console.log(JSON.stringify({ host, sandbox }));
