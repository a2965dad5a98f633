"""Clients that do not read their static responses: bounded memory, cut off at --send-timeout.

The app-response side of this lives in test_resilience.py; static replies are made in the loop
and sent with sendfile or from the in-memory cache, so they have their own paths to cover.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server, start_server
from tests.integration.conftest import open_fds, recv_all, tree_rss_kib, wait_for

SEND_TIMEOUT = 2


@pytest.fixture(scope="module")
def static_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root: Path = tmp_path_factory.mktemp("static")
    (root / "small.bin").write_bytes(os.urandom(16 * 1024))  # cached in memory
    (root / "large.bin").write_bytes(os.urandom(8 * 1024 * 1024))  # sent with sendfile
    server = start_server("tests.apps:hello", "--workers", "1", "--static", f"/s={root}",
                          "--send-timeout", str(SEND_TIMEOUT))
    yield server
    server.stop()


def _server_side(sock: socket.socket) -> str | None:
    """The `socket:[inode]` the server holds for our end of the connection, once accepted."""
    client_port, server_port = sock.getsockname()[1], sock.getpeername()[1]
    for line in open("/proc/net/tcp").readlines()[1:]:
        fields = line.split()
        if (int(fields[1].split(":")[1], 16) == server_port
                and int(fields[2].split(":")[1], 16) == client_port and fields[9] != "0"):
            return f"socket:[{fields[9]}]"
    return None


def _small_receive_buffer() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.settimeout(5)
    return sock


def _assert_served(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /s/small.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data, how = recv_all(sock, timeout=2)
    assert how == "eof" and data.startswith(b"HTTP/1.1 200 OK") and len(data) > 16 * 1024


def test_stalled_sendfile_download_is_cut_off_at_the_send_timeout(static_server: Server) -> None:
    pid = static_server.proc.pid
    sock = _small_receive_buffer()
    sock.connect((static_server.host, static_server.port))
    try:
        sock.sendall(b"GET /s/large.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        theirs = wait_for(lambda: _server_side(sock), timeout=2)
        assert theirs
        started = time.monotonic()
        gone = wait_for(lambda: theirs not in open_fds(pid), timeout=SEND_TIMEOUT + 5)
        assert gone, "the server kept a download nobody reads open"
        assert time.monotonic() - started >= SEND_TIMEOUT - 0.5
        _assert_served(static_server)
        data, how = recv_all(sock, timeout=5)
        assert how in ("eof", "reset") and len(data) < 8 * 1024 * 1024
    finally:
        sock.close()


def test_pipelined_static_requests_never_read_cost_one_buffer(static_server: Server) -> None:
    # 5,000 requests for a cached 16 KiB file, none of the 80 MB of answers read: the worker
    # stops answering at its write buffer bound, stops reading, and cuts the client off.
    pid = static_server.proc.pid
    baseline = tree_rss_kib(pid)
    sock = _small_receive_buffer()
    sock.connect((static_server.host, static_server.port))
    try:
        theirs = None
        requests = b"GET /s/small.bin HTTP/1.1\r\nHost: x\r\n\r\n" * 5000
        sock.setblocking(False)
        sent, peak, started = 0, baseline, time.monotonic()
        while time.monotonic() - started < SEND_TIMEOUT + 5:
            if sent < len(requests):
                try:
                    sent += sock.send(requests[sent:])
                except BlockingIOError:
                    pass
            if theirs is None:
                theirs = _server_side(sock)
            peak = max(peak, tree_rss_kib(pid))
            if theirs is not None and theirs not in open_fds(pid):
                break
            time.sleep(0.05)
        assert theirs is not None and theirs not in open_fds(pid), "never cut off"
        assert peak - baseline < 32 * 1024, f"RSS grew {(peak - baseline) // 1024} MiB"
        _assert_served(static_server)
    finally:
        sock.close()


def test_a_slow_but_steady_reader_is_never_cut_off(server_factory) -> None:
    # Writes pause and resume many times for a client slower than the app; as long as it takes
    # bytes it is making progress, however long the response takes (nginx's send_timeout is
    # between two successive writes, not for the whole response).
    server = server_factory("tests.apps:router", "--workers", "1", "--send-timeout", "1")
    sock = _small_receive_buffer()
    sock.connect((server.host, server.port))
    try:
        sock.sendall(b"GET /big?50000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        received, started = 0, time.monotonic()
        while time.monotonic() - started < 4:  # four send timeouts
            chunk = sock.recv(16384)
            assert chunk, f"cut off after {received} bytes"
            received += len(chunk)
            time.sleep(0.05)  # about 300 KB/s: far slower than the app writes
        assert received > 500_000
    finally:
        sock.close()
