"""A headless Chromium driven over the DevTools protocol on a pipe: no Python dependency, no websocket.

`chromium --remote-debugging-pipe` reads protocol commands from file descriptor 3 and writes replies and events to
file descriptor 4, each message one JSON object ended by a NUL byte (the transport Puppeteer's `pipe: true` uses).
Tests open a page, wait for the DOM to reach a state, click where a user would (real mouse events at an element's
centre, so the page's own handlers run) and read the rendered DOM back.

    with Browser.launch() as b:
        b.open("file:///.../index.html")
        b.wait("document.querySelectorAll('tbody tr').length > 0")
        b.click("tbody tr")
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-pipe")  # fmt: skip


def find_chromium() -> str | None:
    """A Chromium-family browser on PATH (Debian's `chromium` package: /usr/bin/chromium), or None."""
    env = os.environ.get("PSRLM_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


class BrowserError(RuntimeError):
    pass


class Browser:
    def __init__(self, proc: subprocess.Popen, to_browser: int, from_browser: int, profile: str):
        self.proc, self._out, self._in, self._profile = proc, to_browser, from_browser, profile
        self._buf = b""
        self._id = 0
        self._events: list[dict] = []
        self.session: str | None = None

    @classmethod
    def launch(cls, width: int = 1400, height: int = 1000, exe: str | None = None) -> Browser:
        exe = exe or find_chromium()
        if not exe:
            raise BrowserError("no Chromium found (apt-get install chromium)")
        profile = tempfile.mkdtemp(prefix="psrlm-chromium-")
        cmd_r, cmd_w = os.pipe()  # we write commands -> its fd 3
        ev_r, ev_w = os.pipe()  # it writes replies -> its fd 4

        def plumb():  # in the child: the two pipe ends at exactly fds 3 and 4 (dup first: they may be 3 or 4)
            a, b = os.dup(cmd_r), os.dup(ev_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [exe, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"]
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                close_fds=False, preexec_fn=plumb)  # fmt: skip
        os.close(cmd_r)
        os.close(ev_w)
        b = cls(proc, cmd_w, ev_r, profile)
        try:
            target = b.call("Target.createTarget", url="about:blank")["targetId"]
            b.session = b.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            b.call("Page.enable")
            b.call("Runtime.enable")
            b.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        except BaseException:
            b.close()
            raise
        return b

    # --------------------------------------------------------------------------------------------- protocol

    def _read_message(self, deadline: float) -> dict:
        import select

        while b"\0" not in self._buf:
            left = deadline - time.time()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                raise BrowserError("Chromium did not answer in time")
            chunk = os.read(self._in, 1 << 16)
            if not chunk:
                raise BrowserError(f"Chromium closed its pipe (exit {self.proc.poll()})")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, timeout: float = 30.0, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            msg["sessionId"] = self.session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self._out, data) :]
        deadline = time.time() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            if "method" in reply:
                self._events.append(reply)

    def _wait_event(self, name: str, timeout: float) -> dict:
        deadline = time.time() + timeout
        while True:
            for i, ev in enumerate(self._events):
                if ev["method"] == name:
                    return self._events.pop(i)
            msg = self._read_message(deadline)
            if "method" in msg:
                self._events.append(msg)

    # -------------------------------------------------------------------------------------------- the page

    def open(self, url: str, timeout: float = 30.0) -> None:
        self._events.clear()
        result = self.call("Page.navigate", url=url)
        if result.get("errorText"):
            raise BrowserError(f"cannot open {url}: {result['errorText']}")
        self._wait_event("Page.loadEventFired", timeout)

    def eval(self, expression: str):
        """The value of a JavaScript expression in the page (JSON-serialisable), or BrowserError with its message."""
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            d = res["exceptionDetails"]
            raise BrowserError(f"{expression[:80]}: {d.get('exception', {}).get('description') or d.get('text')}")
        return res["result"].get("value")

    def wait(self, expression: str, timeout: float = 15.0):
        """Poll until `expression` is truthy; returns its value."""
        deadline = time.time() + timeout
        while True:
            value = self.eval(expression)
            if value:
                return value
            if time.time() > deadline:
                raise BrowserError(f"timed out waiting for: {expression}")
            time.sleep(0.05)

    def click(self, selector: str) -> None:
        """A real left click (mouse pressed + released) at the centre of the first element matching `selector`."""
        box = self.eval(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        if not box:
            raise BrowserError(f"nothing to click: no element matches {selector!r}")
        x, y = box
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def set_value(self, selector: str, value: str) -> None:
        """Set a form control's value and fire the `input` and `change` events a user's edit fires."""
        done = self.eval(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return false;"
            f" e.focus(); e.value = {json.dumps(value)}; e.dispatchEvent(new Event('input', {{bubbles: true}}));"
            " e.dispatchEvent(new Event('change', {bubbles: true})); return true; })()"
        )
        if not done:
            raise BrowserError(f"nothing to set: no element matches {selector!r}")

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        params: dict = {"format": "png"}
        if full_page:  # from the top: a sticky header would otherwise be drawn where the page was scrolled to
            self.eval("window.scrollTo(0, 0)")
            width, height = self.eval("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": width, "height": height,
                                                            "scale": 1})  # fmt: skip
        Path(path).write_bytes(base64.b64decode(self.call("Page.captureScreenshot", **params)["data"]))
        return Path(path)

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self.call("Browser.close", timeout=5)
                except (BrowserError, OSError):
                    pass
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            for fd in (self._out, self._in):
                try:
                    os.close(fd)
                except OSError:
                    pass
            shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
