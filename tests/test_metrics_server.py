"""--metrics-bind end to end: real requests through two workers, scraped and parsed with
prometheus-client's own parser; the counters match the requests made."""

from __future__ import annotations

import time
import urllib.request

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port


def scrape(port: int) -> dict[str, list]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def total(samples, name: str, **labels) -> float:
    return sum(s.value for s in samples if s.name == name
               and all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_count_requests_over_workers(server_factory, tmp_path):
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "a.txt").write_text("static file\n")
    port = free_port()
    server = server_factory("tests.apps:router", "--workers", "2", "--metrics-bind",
                            f"127.0.0.1:{port}", "--static", f"/s={tmp_path / 'static'}")
    with httpx.Client(base_url=server.url) as client:
        for _ in range(30):
            assert client.get("/hello").status_code == 200
        for _ in range(5):
            assert client.post("/environ", content=b"x" * 1000).status_code == 200
        for _ in range(4):
            assert client.get("/raise").status_code == 500
        assert client.get("/s/a.txt").status_code == 200
        etag = client.get("/s/a.txt").headers["etag"]
        assert client.get("/s/a.txt", headers={"If-None-Match": etag}).status_code == 304
    for _ in range(3):  # fresh connections land on either worker
        assert httpx.get(server.url + "/hello").status_code == 200
    deadline = time.monotonic() + 5
    while True:
        families = scrape(port)
        requests = families["frontdesk_requests"]
        if total(requests, "frontdesk_requests_total") >= 45 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert total(requests, "frontdesk_requests_total", method="GET", status="2xx") == 35
    assert total(requests, "frontdesk_requests_total", method="POST", status="2xx") == 5
    assert total(requests, "frontdesk_requests_total", method="GET", status="5xx") == 4
    assert total(requests, "frontdesk_requests_total", method="GET", status="3xx") == 1
    latency = families["frontdesk_request_duration_seconds"]
    assert total(latency, "frontdesk_request_duration_seconds_count") == 45
    received = total(families["frontdesk_request_body_bytes"], "frontdesk_request_body_bytes_total")
    assert received == 5000
    assert total(families["frontdesk_static_responses"], "frontdesk_static_responses_total") == 3
    assert total(families["frontdesk_workers"], "frontdesk_workers") == 2
