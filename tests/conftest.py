"""Fixtures: a real frontdesk process on a loopback port chosen by the kernel."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"Listening at: (?:http://)?\[?([0-9a-f.:]+?)\]?:(\d+) ")


class Server:
    """A running `python -m frontdesk` subprocess; its stderr is collected in `log`."""

    def __init__(self, proc: subprocess.Popen[str], host: str, port: int, lines: list[str]):
        self.proc = proc
        self.host = host
        self.port = port
        self.lines = lines

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def worker_pids(self) -> list[int]:
        """The master's worker processes (its children)."""
        with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
            return [int(pid) for pid in f.read().split()]

    def connect(self, timeout: float = 5.0) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        return sock

    def raw(self, data: bytes, *, timeout: float = 5.0, shutdown: bool = False) -> bytes:
        """Send `data` on a new connection; return everything read until the server closes."""
        with self.connect(timeout) as sock:
            sock.sendall(data)
            if shutdown:
                sock.shutdown(socket.SHUT_WR)
            return read_until_close(sock, timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


def free_port() -> int:
    """A loopback port free right now (for programs that cannot report the port they bound)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_until_close(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            chunks.append(b"<RESET>")
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def start_server(app: str, *args: str, env: dict[str, str] | None = None,
                 cwd: Path | None = None, timeout: float = 15.0, bind: bool = True) -> Server:
    """`python -m frontdesk APP ARGS` on a free loopback port (without `bind`: on the addresses
    its settings name, e.g. a config file's, which a command-line --bind would override). The
    first `Listening at:` TCP address is the server's `host`/`port`."""
    cmd = [sys.executable, "-m", "frontdesk", app, *(("--bind", "127.0.0.1:0") if bind else ()),
           *args]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDESK_")}
    for name in ("PORT", "WEB_CONCURRENCY", "LISTEN_FDS", "LISTEN_PID", "NOTIFY_SOCKET"):
        full_env.pop(name, None)
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    proc = subprocess.Popen(
        cmd, cwd=cwd or ROOT, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    found = threading.Event()
    address: list[tuple[str, int]] = []

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            match = LISTENING.search(line)
            if match and not found.is_set():
                address.append((match.group(1), int(match.group(2))))
                found.set()
        found.set()

    threading.Thread(target=pump, daemon=True).start()
    if not found.wait(timeout) or not address:
        proc.kill()
        proc.wait(5)
        raise RuntimeError(f"server did not start: {cmd}\n{''.join(lines)}")
    return Server(proc, address[0][0], address[0][1], lines)


@pytest.fixture(scope="session", autouse=True)
def apps_tmpdir() -> Iterator[Path]:
    """Where tests/apps.py writes its files (some of 50 MB): one directory per test session,
    removed at its end. Servers the tests start inherit it through the environment."""
    path = Path(tempfile.mkdtemp(prefix="frontdesk-tests-"))
    os.environ["TESTS_APPS_TMPDIR"] = str(path)
    yield path
    del os.environ["TESTS_APPS_TMPDIR"]
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def server_factory() -> Iterator:
    started: list[Server] = []

    def factory(app: str = "tests.apps:hello", *args: str, **kwargs) -> Server:
        server = start_server(app, *args, **kwargs)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop(signal.SIGKILL if server.proc.poll() is None else signal.SIGTERM)


@pytest.fixture(scope="module")
def apps_server() -> Iterator[Server]:
    """One server for a whole module: the routing app in tests/apps.py, small limits."""
    server = start_server(
        "tests.apps:router", "--workers", "1", "--threads", "4", "--limit-request-body", "1048576",
        "--body-buffer-size", "65536", "--header-timeout", "2", "--keep-alive", "2",
    )
    yield server
    server.stop()
