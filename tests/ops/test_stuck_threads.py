"""Requests behind a stuck app thread, the 504 in the metrics, and heartbeats for a short
--timeout."""

from __future__ import annotations

import threading
import time

from tests.ops.conftest import APP, metric, metrics_text, request, serving


def test_requests_queued_behind_a_timed_out_thread_are_served(servers):
    # One thread, stuck for 30 s: at the request timeout it is replaced, so the three requests
    # waiting behind it are answered then, not cut at the graceful timeout of the recycle.
    server = servers(APP, "--workers", "1", "--threads", "1", "--request-timeout", "1",
                     "--graceful-timeout", "8")
    serving(server, 1)
    results: dict[str, tuple[int, float]] = {}
    started = time.monotonic()

    def get(name: str, path: str) -> None:
        status, _ = request(server.host, server.port, path)
        results[name] = (status, time.monotonic() - started)

    threads = [threading.Thread(target=get, args=("hung", "/sleep?30"))]
    threads[0].start()
    time.sleep(0.2)
    threads += [threading.Thread(target=get, args=(f"queued {i}", "/hello")) for i in range(3)]
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert results["hung"][0] == 504
    for i in range(3):
        status, when = results[f"queued {i}"]
        assert status == 200 and when < 3.5, results


def test_a_request_timeout_504_is_counted(servers):
    server = servers(APP, "--workers", "1", "--request-timeout", "1",
                     "--metrics-bind", "127.0.0.1:0")
    serving(server, 1)
    assert request(server.host, server.port, "/sleep?5")[0] == 504
    text = metrics_text(server)
    assert metric(text, 'frontdesk_requests_total{method="GET",status="5xx"}') == 1


def test_a_short_timeout_does_not_kill_healthy_workers(servers):
    # With a --timeout under 4 s the worker beats four times per timeout, not once a second:
    # no false "timed out" (at 0.5 s, beating once a second would fail at once).
    server = servers(APP, "--workers", "1", "--timeout", "0.5")
    [worker] = serving(server, 1)
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        assert request(server.host, server.port, "/sleep?0.01")[0] == 200
        time.sleep(0.05)
    assert "timed out" not in server.log
    assert serving(server, 1) == [worker]
