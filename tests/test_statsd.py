"""StatsD push (--statsd-host): the pusher's deltas against a registry, and a real server."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from frontdesk.metrics import NOT_QUEUED, Registry, StatsdPusher, method_index
from tests.conftest import start_server
from tests.test_metrics import in_child


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    yield sock
    sock.close()


def receive(sock: socket.socket, seconds: float) -> list[str]:
    """Every metric line received within `seconds` (datagrams split on newlines)."""
    lines: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        assert len(data) <= 1400
        lines.extend(data.decode().split("\n"))
    return lines


def counter(lines: list[str], name: str) -> int:
    return sum(int(line.split(":")[1].removesuffix("|c")) for line in lines
               if line.startswith(name + ":") and line.endswith("|c"))


def test_pusher_sends_deltas(udp: socket.socket) -> None:
    registry = Registry(max_workers=2)

    def work(m) -> None:
        for _ in range(4):
            m.request(method_index("GET"), 200, 0.010, NOT_QUEUED, 0, 10)
        m.request(method_index("GET"), 503, 0.030, NOT_QUEUED, 0, 10)
        m.shed()
        m.set_gauges(3, 1, 1, 7, 2)

    pusher = StatsdPusher(registry, *udp.getsockname(), prefix="app.")
    in_child(registry, registry.claim(), work)  # the child exits: its slot stays live
    pusher.push()
    first = receive(udp, 0.5)
    assert counter(first, "app.requests") == 5
    assert counter(first, "app.request.status.2xx") == 4
    assert counter(first, "app.request.status.5xx") == 1
    assert counter(first, "app.requests.shed") == 1
    assert "app.requests.limited" not in "".join(first)
    assert "app.request.duration:14.000|ms" in first  # (4 * 10 + 30) / 5 ms
    for gauge in ("app.workers:1|g", "app.connections:3|g", "app.threads.busy:1|g",
                  "app.queue.depth:2|g"):
        assert gauge in first

    pusher.push()  # nothing new: gauges only
    second = receive(udp, 0.5)
    assert counter(second, "app.requests") == 0
    assert not any("|c" in line or "|ms" in line for line in second)
    assert "app.workers:1|g" in second
    pusher.stop()


def test_pusher_never_raises() -> None:
    pusher = StatsdPusher(Registry(max_workers=1), "no-such-host.invalid", 8125)
    pusher.push()
    pusher.stop()


def test_server_pushes_to_statsd(udp: socket.socket) -> None:
    port = udp.getsockname()[1]
    server = start_server("tests.apps:router", "--workers", "2",
                          "--statsd-host", f"127.0.0.1:{port}")
    try:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            for _ in range(20):
                assert client.get("/hello").status_code == 200
            for _ in range(3):
                assert client.get("/raise").status_code == 500
        lines = receive(udp, 3.0)
    finally:
        assert server.stop() == 0
    lines += receive(udp, 0.5)  # the last push, at shutdown
    assert counter(lines, "frontdesk.requests") == 23
    assert counter(lines, "frontdesk.request.status.5xx") == 3
    assert counter(lines, "frontdesk.request.status.2xx") == 20
    assert "frontdesk.workers:2|g" in lines
    assert any(line.startswith("frontdesk.request.duration:") and line.endswith("|ms")
               for line in lines)
