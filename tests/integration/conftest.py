"""Fixtures and helpers for the integration tests (servers are real `python -m frontdesk`
processes, started by the lead's `tests/conftest.py::start_server`)."""

from __future__ import annotations

import http.client
import io
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tests.conftest import Server, read_until_close, start_server

__all__ = [
    "Server", "read_until_close", "start_server", "Reply", "parse_responses", "read_response",
    "ResponseReader", "recv_all", "get", "tree_rss_kib", "open_fds", "wait_for", "alarming",
    "WORKERS",
]

# Multi-worker mode is not here yet; framework tests keep per-process state (the streaming
# gates), so they pin one worker whatever it becomes.
WORKERS = ("--workers", "1")

FLASK_APP = "tests.integration.flask_site:app"
DJANGO_APP = "tests.integration.django_site.wsgi:application"
DJANGO_ENV = {"DJANGO_SETTINGS_MODULE": "tests.integration.django_site.settings"}


@pytest.fixture(scope="module", params=["flask", "django"])
def site(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A real Flask app or a real Django project, the same URLs in both, behind frontdesk."""
    if request.param == "flask":
        server = start_server(FLASK_APP, *WORKERS, "--threads", "8")
    else:
        server = start_server(DJANGO_APP, *WORKERS, "--threads", "8", env=DJANGO_ENV)
    server.framework = request.param  # type: ignore[attr-defined]
    yield server
    server.stop()


# -- reading responses off a raw socket -----------------------------------------------------------


@dataclass
class Reply:
    status: int
    reason: str
    version: int
    headers: http.client.HTTPMessage
    body: bytes
    complete: bool = True  # False: the body was cut short (IncompleteRead)
    raw_head: bytes = b""
    extra: dict = field(default_factory=dict)


class _Unclosable(io.BufferedReader):
    def close(self) -> None:  # http.client closes its fp after each response; keep reading ours
        pass


class _FakeSocket:
    def __init__(self, fp: io.BufferedIOBase) -> None:
        self._fp = fp

    def makefile(self, *args: object, **kwargs: object) -> io.BufferedIOBase:
        return self._fp


def _read_one(fp: io.BufferedIOBase, method: str) -> Reply | None:
    if not fp.peek(1):  # type: ignore[attr-defined]
        return None
    response = http.client.HTTPResponse(_FakeSocket(fp), method=method)  # type: ignore[arg-type]
    response.begin()
    complete = True
    try:
        body = response.read()
    except http.client.IncompleteRead as exc:
        body, complete = exc.partial, False
    return Reply(response.status, response.reason, response.version, response.headers, body,
                 complete)


def parse_responses(data: bytes, methods: list[str] | None = None) -> list[Reply]:
    """Every HTTP response in `data`, in order (interim 1xx skipped). Raises on garbage.

    `methods[i]` is the method of the i-th request (HEAD responses have no body); default GET.
    """
    fp = _Unclosable(io.BytesIO(data))  # type: ignore[arg-type]
    replies: list[Reply] = []
    while True:
        method = (methods or [])[len(replies)] if methods and len(replies) < len(methods) else "GET"
        reply = _read_one(fp, method)
        if reply is None:
            return replies
        replies.append(reply)
        if not reply.complete:
            rest = fp.read()
            if rest:
                raise AssertionError(f"bytes after a truncated response: {rest[:200]!r}")
            return replies


def read_response(sock: socket.socket, method: str = "GET") -> Reply:
    """One response from a live socket with one request in flight (reads no further)."""
    reply = ResponseReader(sock).next(method)
    if reply is None:
        raise ConnectionError("the server closed the connection without a response")
    return reply


class ResponseReader:
    """Successive responses on one connection (pipelining: one buffer for all of them)."""

    def __init__(self, sock: socket.socket) -> None:
        self._fp = _Unclosable(socket.SocketIO(sock, "rb"))  # type: ignore[arg-type]

    def next(self, method: str = "GET") -> Reply | None:
        """The next response, or None when the server closed the connection cleanly first."""
        return _read_one(self._fp, method)


def recv_all(sock: socket.socket, timeout: float) -> tuple[bytes, str]:
    """Everything until the server closes: (data, "eof" | "reset" | "timeout")."""
    deadline = time.monotonic() + timeout
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return b"".join(chunks), "timeout"
        sock.settimeout(left)
        try:
            data = sock.recv(1 << 20)
        except socket.timeout:
            return b"".join(chunks), "timeout"
        except ConnectionResetError:
            return b"".join(chunks), "reset"
        if not data:
            return b"".join(chunks), "eof"
        chunks.append(data)


def get(server: Server, target: str = "/hello", timeout: float = 5.0) -> Reply:
    """One GET on a new connection, `Connection: close`."""
    with server.connect(timeout) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                     % target.encode())
        return read_response(sock)


# -- the server process, from outside ------------------------------------------------------------


def _children(pid: int) -> list[int]:
    kids = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return kids


def _process_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += _children(p)
    return pids


def tree_rss_kib(pid: int) -> int:
    """VmRSS of the server process and all its descendants (workers, once there are any)."""
    total = 0
    for p in _process_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def open_fds(pid: int) -> list[str]:
    """What the server's processes hold open (targets of /proc/PID/fd/*)."""
    targets = []
    for p in _process_tree(pid):
        try:
            names = os.listdir(f"/proc/{p}/fd")
        except OSError:
            continue
        for name in names:
            try:
                targets.append(os.readlink(f"/proc/{p}/fd/{name}"))
            except OSError:
                pass
    return targets


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> object:
    """Poll an observable condition of another process until true or `timeout` (then return it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def alarming(log: str) -> list[str]:
    """Error-log lines a user would have to look into."""
    return [line for line in log.splitlines()
            if any(word in line for word in ("[ERROR]", "[CRITICAL]", "Traceback", "Exception"))]
