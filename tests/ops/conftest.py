"""Shared by the operations tests: the master tests' process helpers, plus small HTTP helpers."""

from __future__ import annotations

import re
import socket

import httpx

from tests.master.conftest import Load, alive, children, request, servers, wait_for  # noqa: F401

APP = "tests.ops.ops_app:app"


def metrics_text(server) -> str:
    """The master's /metrics page (the server was started with --metrics-bind 127.0.0.1:0)."""
    match = wait_for(lambda: re.search(r"Metrics at: (http://\S+)", server.log), 5, "metrics")
    return httpx.get(match[1], timeout=5).text  # type: ignore[index]


def metric(text: str, line_start: str) -> float:
    """The value of the first sample line of `text` starting with `line_start`."""
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric line starting with {line_start!r}")


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """One response with Content-Length from `sock`: (head, body). b"", b"" on a clean EOF;
    ConnectionResetError propagates."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            if data:
                raise ConnectionError(f"EOF inside a response head: {data!r}")
            return b"", b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)\r\ncontent-length: *([0-9]+)", head)[1])  # type: ignore[index]
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("EOF inside a response body")
        body += chunk
    assert len(body) == length, "more bytes than one response"
    return head, body


def serving(server, count: int, timeout: float = 15.0) -> list[int]:
    """Wait until the master says `count` workers serve; return its children's pids."""
    wait_for(lambda: f"ready, {count} worker(s) serving" in server.log, timeout,
             f"{count} workers serving")
    return children(server.proc.pid)
