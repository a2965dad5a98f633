"""The demo's Procfile, run the way Heroku-style platforms run it: through honcho (Foreman)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "flaskapp"
HONCHO = shutil.which("honcho", path=str(Path(sys.executable).parent)) or shutil.which("honcho")
pytestmark = pytest.mark.skipif(HONCHO is None, reason="honcho is not installed (test extra)")


def test_procfile_served_through_honcho_then_stopped_with_sigterm():
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDESK_")}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["WEB_CONCURRENCY"] = "1"
    # honcho sets PORT for the web process, as Heroku does; frontdesk binds 0.0.0.0:$PORT
    proc = subprocess.Popen([HONCHO, "start", "-p", str(port), "web"], cwd=DEMO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("the Procfile's web process did not come up")
                time.sleep(0.1)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        css = httpx.get(f"http://127.0.0.1:{port}/static/style.css", timeout=5)
        assert css.status_code == 200 and "text/css" in css.headers["content-type"]
        assert httpx.get(f"http://127.0.0.1:{port}/api/time", timeout=5).status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # honcho's own process group, started above
        try:
            output, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate(timeout=5)
    assert f"0.0.0.0:{port}" in output  # PORT honoured, as on Heroku
