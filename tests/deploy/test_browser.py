"""A real browser (Debian's headless Chromium) loads the demo through frontdesk.

It drives Chromium over the DevTools protocol: the page's CSS, JS and image must have applied
(computed style, script output, decoded image), and a reload must revalidate the static files
with conditional requests that frontdesk answers 304.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import start_server

websockets_sync = pytest.importorskip("websockets.sync.client")

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "flaskapp"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (python3 dev.py test installs it)"
)
# Offline-safe flags: no sandbox as root, no background fetches to Google's hosts.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--remote-debugging-port=0", "about:blank"]


class DevTools:
    """Just enough of the Chrome DevTools protocol: commands, and events collected meanwhile."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=15))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_event(self, method: str, timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(i)
            self.events.append(json.loads(self.ws.recv(timeout=deadline - time.monotonic())))
        raise TimeoutError(method)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True,
                           returnByValue=True)
        return result["result"].get("value")


@pytest.fixture
def browser(tmp_path):
    proc = subprocess.Popen([CHROMIUM, f"--user-data-dir={tmp_path / 'profile'}", *FLAGS],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = None
    deadline = time.monotonic() + 30
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        match = re.search(r"DevTools listening on (ws://\S+)", line)
        if match:
            url = match.group(1)
            break
        if not line and proc.poll() is not None:
            break
    if url is None:
        proc.kill()
        pytest.fail("chromium did not start")
    connect = websockets_sync.connect
    try:
        with connect(url, max_size=None, open_timeout=10) as browser_ws:
            target = DevTools(browser_ws).call("Target.createTarget", url="about:blank")
            page_url = url.split("/devtools/")[0] + f"/devtools/page/{target['targetId']}"
            with connect(page_url, max_size=None, open_timeout=10) as page_ws:
                yield DevTools(page_ws)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_demo_page_renders_with_its_assets_and_revalidates(browser):
    env = dict(os.environ, WEB_CONCURRENCY="1")
    server = start_server("app:app", "--static", "/static=static;cache-control=no-cache",
                          cwd=DEMO, env=env)
    try:
        browser.call("Network.enable")
        browser.call("Page.enable")
        browser.call("Page.navigate", url=server.url + "/")
        browser.wait_event("Page.loadEventFired")
        # CSS applied: h1 takes the accent colour #2b6cb0 from /static/style.css
        assert browser.evaluate("getComputedStyle(document.querySelector('h1')).color") == (
            "rgb(43, 108, 176)")
        # the SVG logo was fetched and decoded
        assert browser.evaluate("document.querySelector('header img').naturalWidth") > 0
        # JS applied: app.js replaced the placeholder with the time from /api/time
        deadline = time.monotonic() + 10
        while browser.evaluate("document.getElementById('clock').textContent") == "…":
            assert time.monotonic() < deadline, "app.js did not run"
            time.sleep(0.1)
        first = _static_statuses(browser)
        assert first == {"style.css": 200, "app.js": 200, "logo.svg": 200}

        browser.call("Page.reload")
        browser.wait_event("Page.loadEventFired")
        time.sleep(0.3)
        assert _static_statuses(browser) == {"style.css": 304, "app.js": 304, "logo.svg": 304}
    finally:
        server.stop()


def _static_statuses(browser: DevTools) -> dict[str, int]:
    """Status of each /static/ response seen since the last call (drains the events)."""
    statuses = {}
    for event in list(browser.events):
        if event.get("method") == "Network.responseReceived":
            response = event["params"]["response"]
            if "/static/" in response["url"]:
                statuses[response["url"].rsplit("/", 1)[-1]] = response["status"]
    browser.events.clear()
    return statuses
