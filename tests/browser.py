"""A small Chrome DevTools Protocol client for headless Chromium, over `--remote-debugging-pipe` (no port,
no websocket library): enough to load a page, read back its DOM in any frame, take a screenshot, and
record every console message, exception and network request the page makes."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        found = name if os.path.isabs(name) and os.access(name, os.X_OK) else shutil.which(name)
        if found:
            return found
    return None


class CDPError(RuntimeError):
    pass


@dataclass
class Page:
    """One tab: its CDP session, and what it (and its frames) logged and asked the network for."""

    browser: Browser
    session: str
    frame_id: str
    console: list[dict] = field(default_factory=list)  # errors and warnings (console, exceptions, log)
    requests: list[str] = field(default_factory=list)
    contexts: list[tuple[str, int, str]] = field(default_factory=list)  # (session, context id, frame id)

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30) -> dict:
        return self.browser.call(method, params, session=session or self.session, timeout=timeout)

    def navigate(self, url: str, timeout: float = 30) -> None:
        loaded = self.browser.expect("Page.loadEventFired", self.session)
        self.call("Page.navigate", {"url": url})
        if not loaded.wait(timeout):
            raise CDPError(f"{url} did not finish loading in {timeout} s")

    def evaluate(self, expression: str, frame: str | None = None, timeout: float = 30) -> Any:
        """The value of `expression` in the main frame, or in the frame whose document has `frame` (a CSS
        selector) in it; awaits promises."""
        session, context = self.session, None
        if frame is not None:
            session, context = self._context_with(frame)
        params: dict[str, Any] = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        if context is not None:
            params["contextId"] = context
        reply = self.call("Runtime.evaluate", params, session=session, timeout=timeout)
        if "exceptionDetails" in reply:
            raise CDPError(f"evaluating {expression[:80]!r}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def _context_with(self, selector: str) -> tuple[str, int]:
        probe = f"!!document.querySelector({json.dumps(selector)})"
        for session, context, frame in reversed(self.contexts):
            if frame == self.frame_id and session == self.session:
                continue
            try:
                reply = self.browser.call(
                    "Runtime.evaluate", {"expression": probe, "returnByValue": True, "contextId": context},
                    session=session, timeout=5,
                )
            except CDPError:
                continue  # a context that went away
            if reply.get("result", {}).get("value") is True:
                return session, context
        raise CDPError(f"no frame holds {selector!r}")

    def wait_for(self, expression: str, frame: str | None = None, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression, frame=frame)
                if value:
                    return value
            except CDPError:
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise CDPError(f"{expression!r} did not become true in {timeout} s")
            time.sleep(0.05)

    def resize(self, width: int, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"])

    def close(self) -> None:
        """Close the tab (and the connections its page held open: Chromium keeps at most six to one host)."""
        self.browser.call("Target.closeTarget", {"targetId": self.frame_id})


class _Waiter:
    def __init__(self) -> None:
        self.event = threading.Event()
        self.value: dict | None = None

    def wait(self, timeout: float) -> bool:
        return self.event.wait(timeout)


class Browser:
    """Headless Chromium driven over the DevTools pipe (fd 3: commands in, fd 4: replies and events out)."""

    def __init__(self, executable: str, width: int = 1000, height: int = 900, loopback: bool = False) -> None:
        """`loopback`: 127.0.0.1 is reachable (for pages served by the tests); every other name never resolves."""
        self._profile = tempfile.TemporaryDirectory(prefix="mcp-vision-chromium-")
        commands_r, commands_w = os.pipe()
        replies_r, replies_w = os.pipe()

        def wire() -> None:  # in the child: the pipe ends on the fds Chromium reads and writes
            os.dup2(commands_r, 3)
            os.dup2(replies_w, 4)

        args = [
            executable, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
            "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
            "--mute-audio", "--hide-scrollbars", "--force-device-scale-factor=1", "--force-color-profile=srgb",
            "--host-resolver-rules=MAP * ~NOTFOUND" + (", EXCLUDE 127.0.0.1" if loopback else ""),
            f"--window-size={width},{height}",
            f"--user-data-dir={self._profile.name}", "about:blank",
        ]
        self._process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire, close_fds=False,
        )
        os.close(commands_r)
        os.close(replies_w)
        self._out = os.fdopen(commands_w, "wb", buffering=0)
        self._in = os.fdopen(replies_r, "rb", buffering=0)
        self._lock = threading.Lock()
        self._next = 0
        self._waiting: dict[int, _Waiter] = {}
        self._expected: list[tuple[str, str | None, _Waiter]] = []
        self._pages: dict[str, Page] = {}  # by every session that belongs to the page (its frames' too)
        self._reader = threading.Thread(target=self._read, name="cdp-reader", daemon=True)
        self._reader.start()
        self.version = self.call("Browser.getVersion")["product"]

    # ---- the wire -------------------------------------------------------------------------------------
    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30) -> dict:
        with self._lock:
            self._next += 1
            ident = self._next
            waiter = self._waiting[ident] = _Waiter()
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._out.write(json.dumps(message).encode() + b"\0")
        if not waiter.wait(timeout):
            raise CDPError(f"{method} got no reply in {timeout} s")
        reply = waiter.value or {}
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    def expect(self, method: str, session: str | None) -> _Waiter:
        waiter = _Waiter()
        with self._lock:
            self._expected.append((method, session, waiter))
        return waiter

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = self._in.read(1 << 16)
            if not chunk:
                for waiter in self._waiting.values():
                    waiter.event.set()
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                self._dispatch(json.loads(raw))

    def _dispatch(self, message: dict) -> None:
        if "id" in message:
            with self._lock:
                waiter = self._waiting.pop(message["id"], None)
            if waiter is not None:
                waiter.value = message
                waiter.event.set()
            return
        method, params, session = message.get("method"), message.get("params", {}), message.get("sessionId")
        with self._lock:
            for entry in [e for e in self._expected if e[0] == method and e[1] in (None, session)]:
                self._expected.remove(entry)
                entry[2].value = params
                entry[2].event.set()
            page = self._pages.get(session or "")
        if page is None:
            return
        if method == "Runtime.executionContextCreated":
            context = params["context"]
            aux = context.get("auxData", {})
            if aux.get("isDefault"):
                page.contexts.append((session, context["id"], aux.get("frameId", "")))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in {"error", "warning", "assert"}:
            page.console.append({"type": params["type"], "args": [a.get("value", a.get("description")) for a in params.get("args", [])]})
        elif method == "Runtime.exceptionThrown":
            page.console.append({"type": "exception", "details": params.get("exceptionDetails", {}).get("text"),
                                 "description": params.get("exceptionDetails", {}).get("exception", {}).get("description")})
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in {"error", "warning"}:
            entry = params["entry"]
            page.console.append({"type": "log-" + entry["level"], "text": entry.get("text"), "url": entry.get("url")})
        elif method == "Network.requestWillBeSent":
            page.requests.append(params["request"]["url"])
        elif method == "Target.attachedToTarget":  # an out-of-process frame: watch it the same way
            child = params["sessionId"]
            with self._lock:
                self._pages[child] = page
            threading.Thread(target=self._watch, args=(child, True), daemon=True).start()

    def _watch(self, session: str, child: bool) -> None:
        for method in ("Runtime.enable", "Log.enable", "Network.enable"):
            self.call(method, session=session)
        self.call("Target.setAutoAttach", {"autoAttach": True, "waitForDebuggerOnStart": child, "flatten": True}, session=session)
        if child:
            self.call("Runtime.runIfWaitingForDebugger", session=session)

    # ---- pages ----------------------------------------------------------------------------------------
    def new_page(self, width: int = 1000, height: int = 900) -> Page:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session, target)
        with self._lock:
            self._pages[session] = page
        self.call("Page.enable", session=session)
        self._watch(session, child=False)
        page.resize(width, height)
        return page

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except CDPError:
            pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for stream in (self._out, self._in):
            try:
                stream.close()
            except OSError:
                pass
        self._profile.cleanup()


def file_url(path: Path) -> str:
    return path.resolve().as_uri()


__all__ = ["Browser", "Page", "CDPError", "find_chromium", "file_url"]
