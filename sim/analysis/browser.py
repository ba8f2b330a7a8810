"""Open a page in headless Chromium and report what a reader's browser would see: console errors,
uncaught exceptions, every network request, the page's text, and a screenshot.

Speaks the DevTools protocol over Chromium's `--remote-debugging-pipe` (JSON messages ended by
NUL on file descriptors 3 and 4), so it needs no websocket library, driver or downloaded browser:
Debian's `chromium` package is enough (`.ci/run` installs it).
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")


@dataclass
class PageCheck:
    """What loading a page produced."""

    console_errors: list[str] = field(default_factory=list)
    network_requests: list[str] = field(default_factory=list)  # URLs outside LOCAL_SCHEMES
    text: str = ""
    headline: str = ""
    plots: int = 0  # rendered plotly figures
    screenshot_png: bytes = b""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


class _Pipe:
    def __init__(self, proc: subprocess.Popen, wfd: int, rfd: int) -> None:
        self.proc, self.wfd, self.rfd = proc, wfd, rfd
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout_s: float = 30.0) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.wfd, json.dumps(msg).encode() + b"\0")
        want = self.next_id
        end = time.monotonic() + timeout_s
        while True:
            for m in self._read(end - time.monotonic()):
                if m.get("id") == want:
                    if "error" in m:
                        raise RuntimeError(f"{method}: {m['error']}")
                    return m.get("result", {})
                self.events.append(m)
            if time.monotonic() > end:
                raise TimeoutError(f"Chromium did not answer {method} in {timeout_s:g} s")

    def wait_event(self, method: str, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if any(e.get("method") == method for e in self.events):
                return True
            self.events.extend(self._read(end - time.monotonic()))
        return any(e.get("method") == method for e in self.events)

    def _read(self, timeout_s: float) -> list[dict[str, Any]]:
        r, _, _ = select.select([self.rfd], [], [], max(0.0, timeout_s))
        if r:
            chunk = os.read(self.rfd, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe (it crashed or could not start)")
            self.buf += chunk
        out = []
        while b"\0" in self.buf:
            raw, self.buf = self.buf.split(b"\0", 1)
            out.append(json.loads(raw))
        return out


def check_page(path: str | Path, width: int = 1280, height: int = 900, settle_s: float = 1.0,
               chromium: str | None = None) -> PageCheck:
    """Load `path` (a local HTML file) in headless Chromium; collect errors, requests, text and a
    full-page screenshot at `width` CSS pixels."""
    exe = chromium or find_chromium()
    if exe is None:
        raise FileNotFoundError("no Chromium found: install Debian's package (apt-get install chromium)")
    url = Path(path).resolve().as_uri()
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()
    profile = tempfile.mkdtemp(prefix="dcsim-chromium-")

    def fds() -> None:  # Chromium reads commands on fd 3 and writes answers on fd 4
        a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)  # (in case either is 3 or 4 already)
        os.dup2(a, 3)  # dup2 leaves 3 and 4 inheritable; Python's other descriptors close on exec
        os.dup2(b, 4)

    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
             f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
    proc = subprocess.Popen([exe, *flags], preexec_fn=fds, close_fds=False,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(to_chrome_r)
    os.close(from_chrome_w)
    pipe = _Pipe(proc, to_chrome_w, from_chrome_r)
    out = PageCheck()
    try:
        target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for dom in ("Runtime", "Log", "Network", "Page"):
            pipe.send(f"{dom}.enable", session=sid)
        pipe.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=sid)
        pipe.events.clear()
        pipe.send("Page.navigate", {"url": url}, session=sid)
        if not pipe.wait_event("Page.loadEventFired", 60.0):
            raise TimeoutError(f"{url} did not finish loading in 60 s")
        time.sleep(settle_s)  # let plots draw and late requests show
        ev = lambda expr: pipe.send("Runtime.evaluate", {"expression": expr, "returnByValue": True},  # noqa: E731
                                    session=sid)["result"].get("value")
        out.text = ev("document.body.innerText") or ""
        out.headline = ev("(document.getElementById('headline') || {innerText: ''}).innerText") or ""
        out.plots = int(ev("document.querySelectorAll('.js-plotly-plot .main-svg').length > 0 ? "
                           "document.querySelectorAll('.js-plotly-plot').length : 0") or 0)
        page_h = int(ev("Math.ceil(document.documentElement.scrollHeight)") or height)
        shot = pipe.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                    "clip": {"x": 0, "y": 0, "width": width, "height": page_h,
                                                             "scale": 1}}, session=sid)
        out.screenshot_png = base64.b64decode(shot["data"])
        pipe._read(0.2)
        for e in pipe.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.console_errors.append(
                    " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
                )
            elif m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.console_errors.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.console_errors.append(p["entry"].get("text", ""))
            elif m == "Network.requestWillBeSent":
                u = p.get("request", {}).get("url", "")
                if not u.startswith(LOCAL_SCHEMES):
                    out.network_requests.append(u)
        try:
            pipe.send("Browser.close", timeout_s=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
    finally:
        for fd in (to_chrome_w, from_chrome_r):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
    return out
