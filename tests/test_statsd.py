"""StatsD push (--statsd-host): gunicorn's names where they overlap, the pusher's deltas against a
registry, and a real server sending to a real UDP socket."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from frontdesk.metrics import NOT_QUEUED, Registry, StatsdPusher, WorkerMetrics, method_index
from tests.conftest import ROOT, start_server
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


def names(lines: list[str]) -> set[str]:
    return {line.split(":")[0] for line in lines}


def work(m: WorkerMetrics) -> None:
    for _ in range(4):
        m.request(method_index("GET"), 200, 0.010, NOT_QUEUED, 0, 10)
    m.request(method_index("GET"), 503, 0.030, NOT_QUEUED, 0, 10)
    m.shed()
    m.set_gauges(3, 1, 1, 7, 2)


def test_pusher_sends_deltas_with_gunicorns_names(udp: socket.socket) -> None:
    registry = Registry(max_workers=2, status_codes=True)
    pusher = StatsdPusher(registry, *udp.getsockname())  # the default prefix: none, as gunicorn
    slot = registry.claim()
    in_child(registry, slot, work)  # the child exits: its slot stays live
    registry.serving(slot, True)  # as the master does on READY
    pusher.push()
    first = receive(udp, 0.5)
    # gunicorn/instrument/statsd.py: gunicorn.requests, gunicorn.request.status.<code> (the
    # exact code), gunicorn.request.duration (ms); the arbiter's gauge gunicorn.workers.
    assert counter(first, "gunicorn.requests") == 5
    assert counter(first, "gunicorn.request.status.200") == 4
    assert counter(first, "gunicorn.request.status.503") == 1
    assert "gunicorn.request.duration:14.000|ms" in first  # (4 * 10 + 30) / 5 ms
    assert "gunicorn.workers:1|g" in first
    # What gunicorn does not have is frontdesk's own.
    assert counter(first, "frontdesk.requests.shed") == 1
    for gauge in ("frontdesk.connections:3|g", "frontdesk.threads.busy:1|g",
                  "frontdesk.queue.depth:2|g"):
        assert gauge in first
    assert names(first) == {
        "gunicorn.requests", "gunicorn.request.status.200", "gunicorn.request.status.503",
        "gunicorn.request.duration", "gunicorn.workers", "frontdesk.requests.shed",
        "frontdesk.connections", "frontdesk.threads.busy", "frontdesk.queue.depth",
    }  # nothing by status class, no limited (none), nothing else

    pusher.push()  # nothing new: gauges only
    second = receive(udp, 0.5)
    assert not any("|c" in line or "|ms" in line for line in second)
    assert "gunicorn.workers:1|g" in second
    pusher.stop()


@pytest.mark.parametrize(("prefix", "expect"), [
    ("", "gunicorn.requests"),
    ("service.app", "service.app.gunicorn.requests"),
    ("service.app.", "service.app.gunicorn.requests"),  # one dot, as gunicorn makes it
    ("x", "x.gunicorn.requests"),
])
def test_prefix(udp: socket.socket, prefix: str, expect: str) -> None:
    registry = Registry(max_workers=1, status_codes=True)
    pusher = StatsdPusher(registry, *udp.getsockname(), prefix=prefix)
    in_child(registry, registry.claim(), work)
    pusher.push()
    lines = receive(udp, 0.3)
    pusher.stop()
    assert counter(lines, expect) == 5
    lead = expect.removesuffix("gunicorn.requests")
    assert all(name.startswith((lead + "gunicorn.", lead + "frontdesk.")) for name in names(lines))


def test_exact_codes_survive_retired_workers(udp: socket.socket) -> None:
    """The codes of a worker that exited are folded into the retired slot like every counter."""
    registry = Registry(max_workers=2, status_codes=True)
    pusher = StatsdPusher(registry, *udp.getsockname())
    first = registry.claim()
    in_child(registry, first, work)
    registry.retire(first)
    in_child(registry, registry.claim(), lambda m: m.request(0, 404, 0.001, NOT_QUEUED, 0, 1))
    pusher.push()
    lines = receive(udp, 0.3)
    pusher.stop()
    assert counter(lines, "gunicorn.request.status.200") == 4
    assert counter(lines, "gunicorn.request.status.503") == 1
    assert counter(lines, "gunicorn.request.status.404") == 1
    assert counter(lines, "gunicorn.requests") == 6


def test_codes_cost_nothing_without_statsd() -> None:
    """Without StatsD the loop thread's writer is the plain one: no per-code addition."""
    registry = Registry(max_workers=1)
    assert type(registry.worker(registry.claim())) is WorkerMetrics
    assert type(Registry(max_workers=1, status_codes=True).worker(0)) is not WorkerMetrics


def test_pusher_never_raises_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    pusher = StatsdPusher(Registry(max_workers=1), "no-such-host.invalid", 8125)
    with caplog.at_level(logging.WARNING, logger="frontdesk.error"):
        pusher.push()
        pusher.push()
        pusher.stop()  # a last push
    warnings = [r.getMessage() for r in caplog.records if "statsd" in r.getMessage()]
    assert len(warnings) == 1 and "no-such-host.invalid:8125" in warnings[0], warnings


@pytest.mark.parametrize("prefix", [None, "service.app"])
def test_server_pushes_to_statsd(udp: socket.socket, prefix: str | None) -> None:
    port = udp.getsockname()[1]
    args = ["--workers", "2", "--statsd-host", f"127.0.0.1:{port}"]
    if prefix is not None:
        args += ["--statsd-prefix", prefix]
    server = start_server("tests.apps:router", *args)
    try:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            for _ in range(20):
                assert client.get("/hello").status_code == 200
            for _ in range(3):
                assert client.get("/raise").status_code == 500
            assert client.get("/empty").status_code == 204
        lines = receive(udp, 3.0)
    finally:
        assert server.stop() == 0
    lines += receive(udp, 0.5)  # the last push, at shutdown
    p = f"{prefix}." if prefix else ""
    assert counter(lines, f"{p}gunicorn.requests") == 24
    assert counter(lines, f"{p}gunicorn.request.status.200") == 20
    assert counter(lines, f"{p}gunicorn.request.status.500") == 3
    assert counter(lines, f"{p}gunicorn.request.status.204") == 1
    assert f"{p}gunicorn.workers:2|g" in lines
    assert any(line.startswith(f"{p}gunicorn.request.duration:") and line.endswith("|ms")
               for line in lines)
    assert all(name.startswith((f"{p}gunicorn.", f"{p}frontdesk.")) for name in names(lines)
               if name)


def test_bad_prefix_is_a_config_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "frontdesk", "tests.apps:hello", "--bind", "127.0.0.1:0",
         "--statsd-host", "127.0.0.1:8125", "--statsd-prefix", "a:b"],
        cwd=ROOT, capture_output=True, text=True, timeout=20,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("frontdesk: error:") and "statsd" in done.stderr
