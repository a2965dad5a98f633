"""Shared-memory metrics across real forked workers, the exposition format, and the endpoint."""

from __future__ import annotations

import http.client
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from frontdesk.metrics import (
    CONTENT_TYPE,
    LATENCY_BUCKETS,
    METHODS,
    NOT_QUEUED,
    MetricsServer,
    Registry,
    WorkerMetrics,
    method_index,
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(text: str) -> Samples:
    """Parse an exposition with prometheus_client (which rejects malformed text)."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of every sample of `name` whose labels include `labels`."""
    return sum(value for (n, pairs), value in samples.items()
               if n == name and set(labels.items()) <= set(pairs))


def in_child(registry: Registry, index: int | None, work: Callable[[WorkerMetrics], None]) -> None:
    """Fork a worker that takes slot `index`, runs `work` on its writer and exits; wait for it."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; its result is checked through the exit status
        code = 1
        try:
            metrics = registry.worker(index)
            metrics.reset()
            work(metrics)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def check_histogram(samples: Samples, name: str) -> list[float]:
    """Buckets cumulative and complete, `+Inf` equal to `_count`; returns the bucket values."""
    bounds = [*(str(b) for b in LATENCY_BUCKETS), "+Inf"]
    values = [samples[(f"{name}_bucket", (("le", b),))] for b in bounds]
    assert values == sorted(values)
    assert values[-1] == samples[(f"{name}_count", ())]
    return values


def worker_a(m: WorkerMetrics) -> None:
    for _ in range(3):
        m.request(method_index("GET"), 200, 0.002, 0.0001, 0, 100)
    for _ in range(2):
        m.request(method_index("POST"), 201, 0.02, 0.003, 50, 10)
    m.request(method_index("DELETE"), 404, 0.0004, NOT_QUEUED, 0, 20)
    m.static(200)
    m.set_gauges(5, 2, 2, 6, 1)


def worker_b(m: WorkerMetrics) -> None:
    for _ in range(4):
        m.request(method_index(b"HEAD"), 304, 0.0003, NOT_QUEUED, 0, 30)
        m.static(304)
    m.request(method_index("BREW"), 500, 12.0, 0.5, 7, 40)
    for _ in range(2):
        m.request(method_index("GET"), 503, 0.0001, NOT_QUEUED, 0, 50)
        m.shed()
    m.set_gauges(3, 1, 1, 7, 0)


def test_two_forked_workers_one_retired_sum_exactly():
    registry = Registry(4)
    a, b = registry.claim(), registry.claim()
    assert (a, b) == (0, 1)
    in_child(registry, a, worker_a)
    in_child(registry, b, worker_b)
    registry.serving(a, True)  # the master heard READY from both
    registry.serving(b, True)
    registry.retire(a)  # b is dead too, but not reaped yet: its gauges still count
    registry.worker_restart("crash")
    registry.worker_restart("max-requests")
    registry.worker_restart("max-requests")
    s = scrape(registry.render())

    requests = "frontdesk_requests_total"
    by_status = {c: total(s, requests, status=c) for c in ("1xx", "2xx", "3xx", "4xx", "5xx")}
    assert by_status == {"1xx": 0, "2xx": 5, "3xx": 4, "4xx": 1, "5xx": 3}
    by_method = {m: total(s, requests, method=m) for m in METHODS}
    assert by_method == {"GET": 5, "HEAD": 4, "POST": 2, "PUT": 0, "PATCH": 0, "DELETE": 1,
                         "OPTIONS": 0, "other": 1}
    assert s[(requests, (("method", "GET"), ("status", "5xx")))] == 2

    duration = "frontdesk_request_duration_seconds"
    buckets = dict(zip((*LATENCY_BUCKETS, "+Inf"), check_histogram(s, duration)))
    assert buckets[0.0005] == 7 and buckets[0.001] == 7 and buckets[0.0025] == 10
    assert buckets[0.025] == 12 and buckets[10.0] == 12 and buckets[30.0] == 13
    assert s[(f"{duration}_count", ())] == 13
    assert s[(f"{duration}_sum", ())] == pytest.approx(
        3 * 0.002 + 2 * 0.02 + 0.0004 + 4 * 0.0003 + 12.0 + 2 * 0.0001)

    queue = "frontdesk_request_queue_seconds"
    queue_buckets = check_histogram(s, queue)
    assert queue_buckets[0] == 3 and s[(f"{queue}_count", ())] == 6  # NOT_QUEUED left out
    assert s[(f"{queue}_sum", ())] == pytest.approx(3 * 0.0001 + 2 * 0.003 + 0.5)

    assert s[("frontdesk_request_body_bytes_total", ())] == 2 * 50 + 7
    assert s[("frontdesk_response_bytes_total", ())] == 300 + 20 + 20 + 120 + 40 + 100
    assert total(s, "frontdesk_static_responses_total", status="2xx") == 1
    assert total(s, "frontdesk_static_responses_total", status="3xx") == 4
    assert s[("frontdesk_static_not_modified_total", ())] == 4
    assert s[("frontdesk_requests_shed_total", ())] == 2
    restarts = {c: total(s, "frontdesk_worker_restarts_total", cause=c)
                for c in ("timeout", "crash", "max-requests", "memory", "reload")}
    assert restarts == {"timeout": 0, "crash": 1, "max-requests": 2, "memory": 0, "reload": 0}
    gauges = {name: s[(f"frontdesk_{name}", ())] for name in (
        "open_connections", "in_flight_requests", "busy_threads", "idle_threads",
        "queued_requests", "workers")}
    assert gauges == {"open_connections": 3, "in_flight_requests": 1, "busy_threads": 1,
                      "idle_threads": 7, "queued_requests": 0, "workers": 1}

    registry.retire(b)  # nothing changes but the gauges
    after = scrape(registry.render())
    assert total(after, requests) == total(s, requests) == 13
    assert after[("frontdesk_open_connections", ())] == 0 and after[("frontdesk_workers", ())] == 0


def test_counters_stay_monotonic_across_retire_and_reset():
    registry = Registry(1)

    def requests() -> float:
        return total(scrape(registry.render()), "frontdesk_requests_total")

    slot = registry.claim()
    in_child(registry, slot, lambda m: [m.request(0, 200, 0.01, 0.0, 1, 1) for _ in range(10)])
    assert requests() == 10
    registry.retire(slot)
    assert requests() == 10
    again = registry.claim()
    assert again == slot  # a replacement takes the freed slot and resets it
    in_child(registry, again, lambda m: m.request(0, 200, 0.01, 0.0, 1, 1))
    assert requests() == 11
    registry.retire(again)
    assert requests() == 11
    s = scrape(registry.render())
    assert s[("frontdesk_request_duration_seconds_count", ())] == 11
    assert s[("frontdesk_request_duration_seconds_sum", ())] == pytest.approx(0.11)


def test_bucket_bounds_and_unusual_statuses():
    registry = Registry(1)
    metrics = registry.worker(registry.claim())
    metrics.reset()
    registry.serving(0, True)
    metrics.request(method_index("PATCH"), 999, 0.001, 30.0, 0, 0)  # on a bound: that bucket
    metrics.request(method_index(b"PUT"), 1000, 0.0011, 31.0, 0, 0)  # no status: class "other"
    metrics.static(404)
    metrics.static(304)
    metrics.shed()
    metrics.set_gauges(1, 2, 3, 4, 5)
    s = scrape(registry.render())
    duration = dict(zip(LATENCY_BUCKETS, check_histogram(s, "frontdesk_request_duration_seconds")))
    assert duration[0.0005] == 0 and duration[0.001] == 1 and duration[0.0025] == 2
    assert check_histogram(s, "frontdesk_request_queue_seconds")[-2:] == [1, 2]
    assert s[("frontdesk_requests_total", (("method", "PATCH"), ("status", "9xx")))] == 1
    assert s[("frontdesk_requests_total", (("method", "PUT"), ("status", "other")))] == 1
    assert ("frontdesk_requests_total", (("method", "GET"), ("status", "9xx"))) not in s
    assert s[("frontdesk_static_responses_total", (("status", "4xx"),))] == 1
    assert s[("frontdesk_static_responses_total", (("status", "3xx"),))] == 1
    assert s[("frontdesk_static_not_modified_total", ())] == 1
    assert s[("frontdesk_requests_shed_total", ())] == 1
    assert [s[(f"frontdesk_{name}", ())] for name in (
        "open_connections", "in_flight_requests", "busy_threads", "idle_threads",
        "queued_requests", "workers")] == [1, 2, 3, 4, 5, 1]


def test_slots_claims_and_bad_arguments():
    registry = Registry(1)
    assert registry.claim() == 0 and registry.claim() is None
    nowhere = registry.worker(None)  # a worker beyond max_workers: counts go nowhere
    nowhere.reset()
    nowhere.request(0, 200, 0.1, 0.1, 1, 1)
    s = scrape(registry.render())
    assert total(s, "frontdesk_requests_total") == 0 and s[("frontdesk_workers", ())] == 0
    registry.retire(0)
    registry.retire(0)  # retiring twice frees the slot once
    assert registry.claim() == 0 and registry.claim() is None
    with pytest.raises(IndexError):
        registry.worker(1)
    with pytest.raises(ValueError, match="unknown restart cause 'oom'"):
        registry.worker_restart("oom")
    with pytest.raises(ValueError):
        Registry(0)
    assert [method_index(m) for m in METHODS[:-1]] == list(range(len(METHODS) - 1))
    assert method_index("get") == method_index("M-SEARCH") == METHODS.index("other")


def test_exposition_text_shape():
    text = Registry(2).render()
    assert text.endswith("\n")
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert all(name.startswith("frontdesk_") for name in names)
    assert "# TYPE frontdesk_requests_total counter" in text
    assert "# TYPE frontdesk_request_duration_seconds histogram" in text
    assert 'frontdesk_request_duration_seconds_bucket{le="+Inf"} 0' in text
    assert "# TYPE frontdesk_workers gauge" in text


@pytest.fixture
def server():
    registry = Registry(2)
    metrics = registry.worker(registry.claim())
    metrics.reset()
    metrics.request(0, 200, 0.01, 0.0, 0, 5)
    srv = MetricsServer(registry, "127.0.0.1", 0)
    srv.start()
    yield srv
    srv.stop()
    srv.stop()  # idempotent


def test_endpoint_serves_metrics_and_404(server):
    host, port = server.address
    assert host == "127.0.0.1" and port > 0
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == CONTENT_TYPE
        s = scrape(response.read().decode())
    assert s[("frontdesk_requests_total", (("method", "GET"), ("status", "2xx")))] == 1
    with urllib.request.urlopen(f"http://{host}:{port}/metrics?x=1", timeout=5) as response:
        assert response.status == 200
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://{host}:{port}/other", timeout=5)
    assert info.value.code == 404
    info.value.close()
    conn = http.client.HTTPConnection(host, port, timeout=5)
    conn.request("HEAD", "/metrics")
    head = conn.getresponse()
    assert head.status == 200 and int(head.headers["Content-Length"]) > 0 and head.read() == b""
    conn.close()


def test_endpoint_bind_error_is_clear(server):
    # No SO_REUSEPORT: not even another frontdesk may bind beside it and take half the scrapes
    # (the new master of an upgrade inherits the socket instead).
    host, port = server.address
    with pytest.raises(OSError, match=rf"cannot serve metrics on 127\.0\.0\.1:{port}: address "
                                      "already in use"):
        MetricsServer(server.registry, host, port).start()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        other = MetricsServer(server.registry, "127.0.0.1", port)
        with pytest.raises(OSError, match=rf"cannot serve metrics on 127\.0\.0\.1:{port}: "
                                          "address already in use"):
            other.start()
    with pytest.raises(RuntimeError):
        _ = other.address
    with pytest.raises(OSError, match="cannot serve metrics on 203.0.113.1:0"):
        MetricsServer(server.registry, "203.0.113.1", 0).start()  # not a local address


# Python 3.12+ warns about fork() while the serving thread runs; the arbiter forks just so.
@pytest.mark.filterwarnings("ignore:.*use of fork\\(\\) may lead to deadlocks:DeprecationWarning")
def test_endpoint_survives_a_forked_child_closing_its_copy(server):
    host, port = server.address
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            server.close_after_fork()
            server.close_after_fork()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        assert response.status == 200


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_endpoint_on_ipv6_loopback():
    srv = MetricsServer(Registry(1), "::1", 0)
    try:
        srv.start()
    except OSError:  # pragma: no cover - IPv6 configured off
        pytest.skip("::1 cannot be bound")
    try:
        host, port = srv.address
        with urllib.request.urlopen(f"http://[{host}]:{port}/metrics", timeout=5) as response:
            assert response.status == 200
    finally:
        srv.stop()



@pytest.mark.parametrize("workers, slots", [(1, 64), (4, 64), (16, 64), (40, 160)])
def test_slots_cover_a_reload_to_many_more_workers(workers, slots):
    from types import SimpleNamespace

    from frontdesk.server import start_metrics

    config = SimpleNamespace(metrics_bind="127.0.0.1:0", statsd_host=None, workers=workers)
    registry, server, _ = start_metrics(config)
    try:
        assert registry.max_workers == slots
    finally:
        server.stop()


def test_a_scrape_reads_only_the_slots_ever_claimed():
    registry = Registry(64)
    registry.worker(registry.claim()).request(0, 200, 0.01, NOT_QUEUED, 0, 10)
    second = registry.claim()
    registry.worker(second).request(0, 500, 0.01, NOT_QUEUED, 0, 10)
    registry.retire(second)
    registry.worker_restart("crash")
    text = registry.render()
    assert 'frontdesk_requests_total{method="GET",status="2xx"} 1' in text
    assert 'frontdesk_requests_total{method="GET",status="5xx"} 1' in text  # from the retired slot
    assert 'frontdesk_worker_restarts_total{cause="crash"} 1' in text
    assert registry.totals()["requests"] == 2


def test_workers_counts_serving_workers_not_booting_or_draining_ones():
    registry = Registry(2)
    slot = registry.claim()
    metrics = registry.worker(slot)
    metrics.reset()  # booting
    metrics.set_gauges(1, 0, 0, 8, 0)

    def workers() -> float:
        return scrape(registry.render())[("frontdesk_workers", ())]

    assert workers() == 0 and registry.totals()["workers"] == 0
    registry.serving(slot, True)  # READY
    assert workers() == 1 and registry.totals()["workers"] == 1
    registry.serving(slot, False)  # told to stop: draining
    assert workers() == 0
    assert scrape(registry.render())[("frontdesk_open_connections", ())] == 1  # still its own
    registry.retire(slot)
    assert workers() == 0


def test_an_inherited_socket_is_served_only_once_told():
    registry = Registry(1)
    registry.worker_restart("crash")
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    srv = MetricsServer(registry, "127.0.0.1", port, sock=listening)
    srv.open()
    try:
        assert srv.address == ("127.0.0.1", port) and srv.fileno() == listening.fileno()
        assert not srv.serving
        with socket.create_connection(("127.0.0.1", port), timeout=5) as early:
            early.sendall(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
            early.settimeout(0.3)
            with pytest.raises(TimeoutError):
                early.recv(1)  # queued in the backlog: nobody answers yet
            srv.serve()
            early.settimeout(5)
            assert early.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")  # answered now
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert 'frontdesk_worker_restarts_total{cause="crash"} 1' in response.read().decode()
    finally:
        srv.stop()
    assert listening.fileno() == -1  # closed by stop()


def test_stop_without_serving_closes_at_once():
    srv = MetricsServer(Registry(1), "127.0.0.1", 0)
    srv.open()
    port = srv.address[1]
    srv.stop()  # never served: must not wait for a serve_forever that never ran
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
