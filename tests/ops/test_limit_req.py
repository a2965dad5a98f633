"""--limit-req RATE,BURST: nginx's limit_req with nodelay, per client address, per worker."""

from __future__ import annotations

import math
import re

import httpx
import pytest

from frontdesk.config import resolve
from frontdesk.errors import ConfigError
from frontdesk.worker.transport import RateLimiter
from tests.ops.conftest import APP, metric, metrics_text, serving, wait_for

# -- the bucket, with a given clock ---------------------------------------------------------------


def test_burst_then_one_request_per_period_like_nginx_nodelay():
    limiter = RateLimiter(rate=10.0, burst=2)
    now = 100.0
    assert [limiter.check("a", now) for _ in range(3)] == [0.0, 0.0, 0.0]  # 1 + burst at once
    wait = limiter.check("a", now)
    assert wait == pytest.approx(0.1)  # one more leaks out in 1/rate s
    assert limiter.refused == 1 and limiter.last_refused == "a"
    assert limiter.check("b", now) == 0.0  # another client has its own bucket
    assert limiter.check("a", now + 0.1) == 0.0
    assert limiter.check("a", now + 0.1) > 0.0
    assert limiter.check("a", now + 0.3) == 0.0  # refused requests did not count


def test_without_burst_exactly_the_rate_passes():
    limiter = RateLimiter(rate=2.0, burst=0)
    assert limiter.check("a", 0.0) == 0.0
    assert limiter.check("a", 0.25) == pytest.approx(0.25)
    assert limiter.check("a", 0.5) == 0.0
    assert limiter.check("a", 0.9) == pytest.approx(0.1)
    assert limiter.check("a", 10.0) == 0.0  # a long pause does not bank more than the burst
    assert limiter.check("a", 10.0) > 0.0


def test_idle_buckets_expire_and_memory_is_bounded():
    limiter = RateLimiter(rate=10.0, burst=4, max_clients=100)
    for i in range(1000):
        limiter.check(f"10.0.{i // 256}.{i % 256}", 50.0 + i * 0.001)
    assert len(limiter) == 100  # the least recently seen are forgotten first
    assert limiter.horizon == pytest.approx(0.5)
    limiter.check("hot", 51.2)
    limiter.expire(51.5)  # idle for more than (burst + 1) / rate: as good as no bucket
    assert len(limiter) == 1


@pytest.mark.parametrize(("raw", "want"), [
    ("10,20", (10.0, 20)), ("10", (10.0, 0)), (" 0.5 , 3 ", (0.5, 3)), ("", None),
])
def test_setting_parses(raw, want):
    assert resolve({"limit_req": raw}, environ={}).config.limit_req == want


@pytest.mark.parametrize("raw", ["0,1", "abc", "10,", "-1,2", "10,2.5", "1e3,1", "10,20,30"])
def test_bad_setting_is_one_line(raw):
    with pytest.raises(ConfigError, match="'limit_req' on the command line is invalid"):
        resolve({"limit_req": raw}, environ={})


# -- real requests ----------------------------------------------------------------------------------


def test_over_the_rate_gets_429_with_retry_after_per_client(servers):
    server = servers(APP, "--workers", "1", "--limit-req", "2,3", "--ready-path", "/readyz",
                     "--metrics-bind", "127.0.0.1:0", "--access-logfile", "-")
    serving(server, 1)
    with httpx.Client(base_url=server.url, timeout=5) as client:
        statuses = [client.get("/hello").status_code for _ in range(4)]
        assert statuses == [200] * 4  # 1 + burst
        refused = client.get("/hello")
        assert refused.status_code == 429
        assert refused.text == "429 Too Many Requests\n"
        assert 1 <= int(refused.headers["retry-after"]) <= math.ceil(1 / 2)
        assert "connection" not in refused.headers  # keep-alive is kept
        assert client.head("/hello").status_code == 429
        # Another client behind the trusted proxy (loopback) has its own bucket ...
        other = client.get("/hello", headers={"X-Forwarded-For": "198.51.100.7"})
        assert other.status_code == 200 and other.text.endswith(" 198.51.100.7\n")
        # ... and probes are never limited.
        assert all(client.get("/readyz").status_code == 200 for _ in range(10))
    text = metrics_text(server)
    assert metric(text, "frontdesk_requests_limited_total") == 2
    assert metric(text, 'frontdesk_requests_total{method="GET",status="4xx"}') == 1
    wait_for(lambda: re.search(r"--limit-req 2,3: answered 429 to [12] request\(s\) in the last"
                               r" second, the last from 127\.0\.0\.1", server.log),
             3, "the once-a-second warning")


def test_forwarded_for_from_an_untrusted_peer_does_not_pick_the_bucket(servers):
    server = servers(APP, "--workers", "1", "--limit-req", "1,0",
                     "--forwarded-allow-ips", "192.0.2.1")
    serving(server, 1)
    with httpx.Client(base_url=server.url, timeout=5) as client:
        assert client.get("/hello", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 200
        second = client.get("/hello", headers={"X-Forwarded-For": "198.51.100.2"})
        assert second.status_code == 429  # the same peer, whatever it claims


def test_the_bucket_is_the_client_the_app_sees_also_from_rfc7239_forwarded(servers):
    # The key is computed by the same rule as the app's REMOTE_ADDR (wsgi.proxy.forwarded_client):
    # with Forwarded believed, two clients behind the proxy have two buckets.
    server = servers(APP, "--workers", "1", "--limit-req", "1,0",
                     "--forwarded-headers", "Forwarded,X-Forwarded-For")
    serving(server, 1)
    with httpx.Client(base_url=server.url, timeout=5) as client:
        for address in ("198.51.100.1", "198.51.100.2"):
            answer = client.get("/hello", headers={"Forwarded": f"for={address}"})
            assert answer.status_code == 200 and answer.text.endswith(f" {address}\n")
        again = client.get("/hello", headers={"Forwarded": "for=198.51.100.1"})
        assert again.status_code == 429
