// A web MCP Apps host for CI (tests/test_apps_host.py), built on the host bridge that ext-apps publishes
// (`@modelcontextprotocol/ext-apps/app-bridge`) and the official TypeScript MCP client.
//
// Why not ext-apps' own `examples/basic-host`: it is not published to the npm registry (the only package
// source CI reaches), and its source is not ours to copy into this repository. So this page does what
// basic-host does, with the same published pieces, and nothing of mcp-vision's: a Client over streamable
// HTTP that declares no Apps extension (as basic-host's does not); the tool's `_meta.ui.resourceUri` read
// with resources/read and refused unless it is `text/html;profile=mcp-app`; the view in the spec's
// double-iframe sandbox (sandbox.html on a second origin, the view's CSP sent as an HTTP header); an
// AppBridge over postMessage with a host context of theme, style variables and a 6000 px maximum height;
// the view's size changes applied to its frame; the tool input, then the result, sent once the view has
// initialised. The bridge forwards the view's resources/read and tools/call to the server itself.
import {
  AppBridge,
  PostMessageTransport,
  RESOURCE_MIME_TYPE,
  getToolUiResourceUri,
} from "@modelcontextprotocol/ext-apps/app-bridge";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";

const HOST_INFO = { name: "mcp-vision CI apps host", version: "1.0.0" };
const status = document.getElementById("status");
const calls = document.getElementById("calls");

// The host's look, handed to every view (a subset of the spec's variables; a view falls back for the rest).
// Colours as light-dark() pairs, as basic-host gives them: the view's color-scheme picks one, so a theme
// change (ui/notifications/host-context-changed) needs no new variables.
export const STYLE_VARIABLES = {
  "--color-background-primary": "light-dark(#ffffff, #1a1a1a)",
  "--color-background-secondary": "light-dark(#f4f5f7, #2b2b2b)",
  "--color-text-primary": "light-dark(#1f2328, #f0f0f0)",
  "--color-text-secondary": "light-dark(#59636e, #b0b0b0)",
  "--color-border-primary": "light-dark(#d0d7de, #444444)",
  "--font-sans": '"DejaVu Sans", system-ui, sans-serif',
  "--font-mono": '"DejaVu Sans Mono", ui-monospace, monospace',
  "--border-radius-md": "6px",
};
const bridges = new Set();
let theme = new URL(location.href).searchParams.get("theme") === "dark" ? "dark" : "light";

// The host's theme toggle: its own page and every view shown.
function setTheme(next) {
  theme = next === "dark" ? "dark" : "light";
  document.documentElement.style.colorScheme = theme;
  return Promise.all([...bridges].map((bridge) => bridge.sendHostContextChange({ theme })));
}

async function connect(serverUrl) {
  const client = new Client(HOST_INFO, { capabilities: {} });
  await client.connect(new StreamableHTTPClientTransport(new URL(serverUrl)));
  const { tools } = await client.listTools();
  return { client, tools: new Map(tools.map((tool) => [tool.name, tool])) };
}

async function readView(client, uri) {
  const { contents } = await client.readResource({ uri });
  if (contents.length !== 1) throw new Error(`${uri}: ${contents.length} contents, expected one`);
  const [content] = contents;
  if (content.mimeType !== RESOURCE_MIME_TYPE) throw new Error(`${uri}: ${content.mimeType} is not ${RESOURCE_MIME_TYPE}`);
  const html = "blob" in content ? atob(content.blob) : content.text;
  const ui = (content._meta && content._meta.ui) || {};
  return { html, csp: ui.csp, permissions: ui.permissions };
}

function loadSandbox(iframe, sandboxUrl, csp) {
  const url = new URL(sandboxUrl);
  if (csp) url.searchParams.set("csp", JSON.stringify(csp));
  iframe.setAttribute("sandbox", "allow-scripts allow-same-origin allow-forms");
  const ready = new Promise((resolve) => {
    const listener = (event) => {
      if (event.source === iframe.contentWindow && event.data && event.data.method === "ui/notifications/sandbox-proxy-ready") {
        window.removeEventListener("message", listener);
        resolve();
      }
    };
    window.addEventListener("message", listener);
  });
  iframe.src = url.href;
  return ready;
}

function bridgeFor(client, iframe) {
  const server = client.getServerCapabilities() || {};
  const bridge = new AppBridge(client, HOST_INFO, {
    openLinks: {},
    serverTools: server.tools,
    serverResources: server.resources,
  }, {
    hostContext: {
      theme,
      platform: "web",
      displayMode: "inline",
      availableDisplayModes: ["inline"],
      containerDimensions: { maxHeight: 6000 },
      styles: { variables: STYLE_VARIABLES },
    },
  });
  bridge.onmessage = async () => ({});
  bridge.onopenlink = async () => ({});
  bridge.onsizechange = ({ width, height }) => {
    const style = getComputedStyle(iframe);
    const borders = (a, b) => (style.boxSizing === "border-box" ? parseFloat(a) + parseFloat(b) : 0);
    if (width !== undefined) iframe.style.minWidth = `min(${width + borders(style.borderLeftWidth, style.borderRightWidth)}px, 100%)`;
    if (height !== undefined) iframe.style.height = `${height + borders(style.borderTopWidth, style.borderBottomWidth)}px`;
  };
  return bridge;
}

// One tool call shown as a person sees it in the host: a card with the tool's view. Resolves once the
// view has the result, with what the server answered.
async function call(state, name, args) {
  const tool = state.tools.get(name);
  if (!tool) throw new Error(`the server has no tool ${name}`);
  const section = document.createElement("section");
  section.className = "call";
  section.dataset.tool = name;
  const title = document.createElement("h2");
  title.textContent = name;
  section.append(title);
  calls.append(section);
  const result = state.client.callTool({ name, arguments: args });
  const uri = getToolUiResourceUri(tool);
  if (!uri) {
    const answer = await result;
    const text = document.createElement("pre");
    text.textContent = (answer.content || []).filter((c) => c.type === "text").map((c) => c.text).join("\n");
    section.append(text);
    return { view: false, isError: !!answer.isError };
  }
  const view = await readView(state.client, uri);
  const iframe = document.createElement("iframe");
  iframe.className = "app";
  iframe.title = `${name} view`;
  section.append(iframe);
  await loadSandbox(iframe, state.sandbox, view.csp);
  const bridge = bridgeFor(state.client, iframe);
  const initialized = new Promise((resolve) => { bridge.oninitialized = resolve; });
  await bridge.connect(new PostMessageTransport(iframe.contentWindow, iframe.contentWindow));
  bridges.add(bridge);
  await bridge.sendSandboxResourceReady({ html: view.html, csp: view.csp, permissions: view.permissions });
  await initialized;
  await bridge.sendToolInput({ arguments: args });
  try {
    const answer = await result;
    await bridge.sendToolResult(answer);
    return { view: true, isError: !!answer.isError, structured: answer.structuredContent ?? null, meta: answer._meta ?? null };
  } catch (err) {
    await bridge.sendToolCancelled({ reason: err instanceof Error ? err.message : String(err) });
    throw err;
  }
}

async function main() {
  document.documentElement.style.colorScheme = theme;
  const config = await (await fetch("config.json")).json();
  const params = new URL(location.href).searchParams;
  const serverUrl = params.get("server") || config.server;
  const state = { ...(await connect(serverUrl)), sandbox: config.sandbox };
  status.textContent = `connected to ${state.client.getServerVersion()?.name ?? serverUrl}: ${state.tools.size} tools`;
  window.appsHost = { ready: true, tools: [...state.tools.keys()], call: (name, args) => call(state, name, args), setTheme };
}

main().catch((err) => {
  status.textContent = `Failed to connect: ${err instanceof Error ? err.message : err}`;
  window.appsHost = { ready: false, error: String(err) };
  console.error("[host]", err);
});
