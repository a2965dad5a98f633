"""X-Request-Start from a trusted proxy: the time before the request reached this server counts
as queue time, in the metric and against --max-queue-time."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from frontdesk.worker.transport import request_start_wait
from tests.ops.conftest import APP, metric, metrics_text, serving, wait_for

NOW = 1_700_000_000.5


@pytest.mark.parametrize(("value", "waited"), [
    (b"t=1700000000.123", 0.377),  # nginx: t=${msec}
    (b"t=1700000000123", 0.377),  # milliseconds
    (b"1700000000123", 0.377),  # Heroku: milliseconds, no t=
    (b"t=1700000000123456", 0.376544),  # microseconds (Apache %t)
    (b"t=1700000000", 0.5),  # whole seconds
    (b" t=1700000000.4 ", 0.1),
    (b"t=1700000001000", 0.0),  # the proxy's clock is ahead: no wait, not a negative one
])
def test_formats(value, waited):
    assert request_start_wait(value, NOW) == pytest.approx(waited, abs=1e-6)


@pytest.mark.parametrize("value", [
    b"", b"t=", b"t=abc", b"t=-5", b"t=1.2.3", b"t=1700000000,5", b"T=1700000000", b"t=0x10",
    b"t=1600000000",  # over an hour ago: a wrong unit or clock, not a queue
    b"t=17000000001234567",
])
def test_junk_is_ignored(value):
    assert request_start_wait(value, NOW) is None


def stamp(seconds_ago: float) -> str:
    return f"t={int((time.time() - seconds_ago) * 1000)}"


def test_time_before_the_server_counts_against_max_queue_time_and_in_the_metric(servers):
    server = servers(APP, "--workers", "1", "--threads", "1", "--max-queue-time", "1",
                     "--metrics-bind", "127.0.0.1:0")
    serving(server, 1)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        # Over the limit before it even arrived: 503 at once, no thread needed.
        late = client.get("/hello", headers={"X-Request-Start": stamp(2.0)})
        assert late.status_code == 503 and late.headers["retry-after"] == "1"
        on_time = client.get("/hello", headers={"X-Request-Start": stamp(0.4)})
        assert on_time.status_code == 200
        queue_sum = metric(metrics_text(server), "frontdesk_request_queue_seconds_sum")
        assert 2.3 < queue_sum < 3.0  # both waits observed
    wait_for(lambda: "(X-Request-Start over --max-queue-time 1 s)" in server.log, 3,
             "the tick's overload warning")

    # Together: 0.7 s upstream + about 0.5 s waiting for the only thread > 1 s.
    results: dict[str, int] = {}

    def get(name: str, path: str, headers: dict[str, str]) -> None:
        results[name] = httpx.get(server.url + path, headers=headers, timeout=10).status_code

    busy = threading.Thread(target=get, args=("busy", "/sleep?0.6", {}))
    busy.start()
    time.sleep(0.1)
    waiting = [
        threading.Thread(target=get, args=("upstream", "/hello", {"X-Request-Start": stamp(0.7)})),
        threading.Thread(target=get, args=("plain", "/hello", {})),
    ]
    for thread in waiting:
        thread.start()
    for thread in [busy, *waiting]:
        thread.join(10)
    assert results == {"busy": 200, "upstream": 503, "plain": 200}


def test_x_request_start_from_an_untrusted_peer_is_ignored(servers):
    server = servers(APP, "--workers", "1", "--max-queue-time", "0.5",
                     "--forwarded-allow-ips", "192.0.2.1")
    serving(server, 1)
    response = httpx.get(server.url + "/hello", headers={"X-Request-Start": stamp(5.0)})
    assert response.status_code == 200
