"""Open a local HTML page in headless Chromium over the DevTools protocol and report what rendered.

Used by the ``browser`` tier (tests/test_report_e2e.py, tests/test_browser_check.py). No
Selenium or Playwright: Debian's ``chromium`` started with ``--remote-debugging-port`` and
``websocket-client`` (already in the lock, via kubernetes and jupyter-server) speaking
the protocol. What is collected:

- every ``<img>``: source (first 80 characters), ``complete``, ``naturalWidth`` /
  ``naturalHeight`` and the size it is drawn at;
- console messages at level error (``console.error``, uncaught exceptions, failed
  resource loads, CSP violations: Runtime and Log domains), and failed network requests;
- a full-page PNG screenshot.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
MISSING = (
    "headless Chromium is needed for the browser tier and none of {names} is on PATH: install Debian's "
    "chromium (`apt-get install chromium`; `.ci/run --services-only` does it)"
)

# Waits for every image to load or fail (decode() settles either way), then describes them.
_IMAGES_JS = """
(async () => {
  const images = Array.from(document.images);
  await Promise.all(images.map(i => i.decode().catch(() => null)));
  return images.map(i => {
    const r = i.getBoundingClientRect();
    return {src: (i.currentSrc || i.src || '').slice(0, 80), alt: i.alt || '', complete: i.complete,
            naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight,
            width: r.width, height: r.height};
  });
})()
"""


def find_chromium() -> str | None:
    """The first Chromium on PATH, or None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclasses.dataclass
class PageCheck:
    """What headless Chromium saw on one page."""

    url: str
    images: list[dict[str, Any]]
    console_errors: list[str]
    failed_requests: list[str]
    screenshot: Path | None
    title: str = ""

    @property
    def broken_images(self) -> list[dict[str, Any]]:
        """Images that did not load, did not decode or are drawn with no area."""
        return [
            i
            for i in self.images
            if not i["complete"] or i["naturalWidth"] <= 0 or i["naturalHeight"] <= 0 or i["width"] * i["height"] <= 0
        ]

    def describe(self) -> str:
        """A readable account for assertion messages."""
        lines = [f"{self.url}: title {self.title!r}, {len(self.images)} image(s), screenshot {self.screenshot}"]
        lines += [f"  broken image: {i}" for i in self.broken_images]
        lines += [f"  console error: {e}" for e in self.console_errors]
        lines += [f"  failed request: {r}" for r in self.failed_requests]
        return "\n".join(lines)


class _Cdp:
    """A minimal synchronous DevTools protocol client on one page target."""

    def __init__(self, ws_url: str, timeout: float):
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, deadline: float, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = self._receive(deadline, f"an answer to {method}")
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"chromium refused {method}: {message['error']}")
                return message.get("result", {})

    def wait_for(self, event: str, deadline: float) -> dict[str, Any]:
        for seen in self.events:
            if seen.get("method") == event:
                return seen
        while True:
            message = self._receive(deadline, event)
            if message.get("method") == event:
                return message

    def _receive(self, deadline: float, what: str) -> dict[str, Any]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"headless chromium: no {what} before the deadline")
        message = json.loads(self.ws.recv())
        if "method" in message:
            self.events.append(message)
        return message

    def close(self) -> None:
        self.ws.close()


def _devtools_port(profile: Path, proc: subprocess.Popen, deadline: float) -> int:
    """The port Chromium chose (``--remote-debugging-port=0`` writes it to DevToolsActivePort)."""
    active = profile / "DevToolsActivePort"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with status {proc.returncode} before it listened: {_tail(proc)}")
        if active.exists():
            text = active.read_text().split()
            if text:
                return int(text[0])
        time.sleep(0.1)
    raise TimeoutError(f"chromium did not open its DevTools port within the deadline: {_tail(proc)}")


def _tail(proc: subprocess.Popen) -> str:
    if proc.poll() is None or proc.stderr is None:
        return "(still running)"
    return proc.stderr.read()[-2000:]


def _console_errors(events: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    errors, failed = [], []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            errors.append(f"console.{params['type']}: {args}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            errors.append(f"uncaught exception: {text}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            failed.append(f"{params.get('type', '')} {params.get('errorText', '')} (request {params.get('requestId')})")
    return errors, failed


def check_page(path: str | os.PathLike, screenshot: str | os.PathLike | None, timeout: float = 90.0) -> PageCheck:
    """Open the local file ``path`` in headless Chromium; return its images, console errors and a screenshot.

    Raises ``FileNotFoundError`` when no Chromium is installed (the message says how to get one).
    """
    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError(MISSING.format(names=", ".join(CHROMIUM_NAMES)))
    url = Path(path).resolve().as_uri()
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [
            chromium,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--remote-debugging-port=0",
            "--remote-allow-origins=*",
            f"--user-data-dir={profile}",
            "--window-size=1280,900",
            "about:blank",
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        cdp = None
        try:
            port = _devtools_port(Path(profile), proc, deadline)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
                targets = json.load(answer)
            page = next(t for t in targets if t.get("type") == "page")
            cdp = _Cdp(page["webSocketDebuggerUrl"], timeout=max(1.0, deadline - time.monotonic()))
            for domain in ("Page", "Runtime", "Log", "Network"):
                cdp.send(f"{domain}.enable", deadline)
            cdp.send("Page.navigate", deadline, url=url)
            cdp.wait_for("Page.loadEventFired", deadline)
            images = cdp.send(
                "Runtime.evaluate", deadline, expression=_IMAGES_JS, awaitPromise=True, returnByValue=True
            )
            title = cdp.send("Runtime.evaluate", deadline, expression="document.title", returnByValue=True)
            shot = None
            if screenshot is not None:
                metrics = cdp.send("Page.getLayoutMetrics", deadline)
                size = metrics.get("cssContentSize") or metrics["contentSize"]
                width, height = int(size["width"]), min(int(size["height"]), 16000)
                cdp.send(
                    "Emulation.setDeviceMetricsOverride",
                    deadline,
                    width=width,
                    height=height,
                    deviceScaleFactor=1,
                    mobile=False,
                )
                data = cdp.send("Page.captureScreenshot", deadline, format="png", captureBeyondViewport=True)
                shot = Path(screenshot)
                shot.parent.mkdir(parents=True, exist_ok=True)
                shot.write_bytes(base64.b64decode(data["data"]))
            # Let late console messages arrive (a script error after load, say).
            cdp.send("Runtime.evaluate", deadline, expression="new Promise(r => setTimeout(r, 300))", awaitPromise=True)
            errors, failed = _console_errors(cdp.events)
            return PageCheck(
                url=url,
                images=images["result"].get("value") or [],
                console_errors=errors,
                failed_requests=failed,
                screenshot=shot,
                title=title["result"].get("value", ""),
            )
        finally:
            if cdp is not None:
                cdp.close()
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
