"""Helpers for the master tests: real `python -m frontdesk` processes, real signals, loopback.

Servers come from the lead's `tests/conftest.py::start_server`; this file adds what watching a
process tree needs: children of a pid, RSS, a bounded `wait_for`, and `Load`, a client that keeps
sending requests on fresh connections and counts every outcome.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

try:
    from conftest import ROOT, Server, start_server
except ImportError:  # pragma: no cover - tests/ as a package
    from tests.conftest import ROOT, Server, start_server  # type: ignore[no-redef]

__all__ = ["ROOT", "Load", "Server", "alive", "children", "rss_kib", "start_server", "wait_for"]


def children(pid: int) -> list[int]:
    """Direct children of `pid` (Linux /proc)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return sorted(int(p) for p in text.split())


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(predicate: Callable[[], object], timeout: float, what: str = "condition",
             interval: float = 0.02) -> object:
    """Poll `predicate` until it is truthy, at most `timeout` seconds; fail with `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def request(host: str, port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """One request on a fresh connection (Connection: close): (status, body)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 "):
        raise ConnectionError(f"no response: {data[:60]!r}")
    return int(head[9:12]), body


class Load:
    """`threads` clients sending `path` on fresh connections until `stop()`.

    Outcomes are counted: `ok` (2xx), `refused` (connect refused), `failed` (anything else), and
    the bodies of 2xx answers in order (`bodies`), so a test can see which code answered.
    """

    def __init__(self, server: Server, path: str = "/", threads: int = 4,
                 max_seconds: float = 30.0) -> None:
        self.server, self.path = server, path
        self.counts: Counter[str] = Counter()
        self.errors: list[str] = []
        self.bodies: list[bytes] = []
        self._stop = threading.Event()
        self._deadline = time.monotonic() + max_seconds
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                status, body = request(self.server.host, self.server.port, self.path)
            except ConnectionRefusedError:
                outcome, body, error = "refused", b"", "refused"
            except OSError as exc:
                outcome, body, error = "failed", b"", repr(exc)
            else:
                ok = 200 <= status < 300
                outcome, error = ("ok", "") if ok else ("failed", f"status {status}")
            with self._lock:
                self.counts[outcome] += 1
                if error:
                    self.errors.append(f"{time.monotonic():.3f} {error}")
                else:
                    self.bodies.append(body)

    @property
    def ok(self) -> int:
        return self.counts["ok"]

    def wait_ok(self, more: int, timeout: float = 10.0) -> None:
        start = self.ok
        wait_for(lambda: self.ok >= start + more, timeout, f"{more} more good answers")

    def stop(self) -> Counter[str]:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)
        return self.counts


APP_SOURCE = '''\
import os, time
VERSION = {version!r}

def app(environ, start_response):
    if environ["PATH_INFO"] == "/sleep":
        time.sleep(float(environ["QUERY_STRING"] or "0.05"))
    body = VERSION.encode() + b" " + str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def write_app(directory: Path, version: str) -> None:
    """(Re)write `versioned.py`: answers 'VERSION PID'; /sleep?S sleeps S seconds first."""
    path = directory / "versioned.py"
    tmp = directory / "versioned.py.tmp"
    tmp.write_text(APP_SOURCE.format(version=version))
    os.replace(tmp, path)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_app(tmp_path, "v1")
    return tmp_path


ENV = {"PYTHONDONTWRITEBYTECODE": "1"}


@pytest.fixture
def servers() -> Iterator[Callable[..., Server]]:
    """Start servers (`bind=False`: without --bind 127.0.0.1:0); at the end, stop what is still
    running (by PID: masters we started)."""
    started: list[Server] = []
    extra_pids: list[int] = []

    def start(app: str = "tests.apps:router", *args: str, env: dict[str, str] | None = None,
              bind: bool = True, **kwargs: object) -> Server:
        server = start_server(app, *args, env={**ENV, **(env or {})}, bind=bind,
                              **kwargs)  # type: ignore[arg-type]
        server.extra_pids = extra_pids  # type: ignore[attr-defined]
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.stop(signal.SIGTERM, timeout=10)
    for pid in extra_pids:  # masters started by an upgrade (USR2)
        if alive(pid):
            os.kill(pid, signal.SIGTERM)
            try:
                wait_for(lambda pid=pid: not alive(pid), 10, f"master {pid} to exit")
            except AssertionError:
                os.kill(pid, signal.SIGKILL)


def run_frontdesk(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                  timeout: float = 20.0, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run `python -m frontdesk ARGS` to its end (for servers that are expected to exit)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDESK_")}
    for name in ("PORT", "WEB_CONCURRENCY", "LISTEN_FDS", "LISTEN_PID", "NOTIFY_SOCKET"):
        full_env.pop(name, None)
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(ENV)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "frontdesk", *args], check=False, env=full_env, cwd=cwd or ROOT,
        capture_output=True, text=True, timeout=timeout, **kwargs,  # type: ignore[call-overload]
    )
