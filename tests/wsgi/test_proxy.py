"""Forwarded / X-Forwarded-* are believed only from trusted proxies."""

from __future__ import annotations

import httpx
import pytest

from frontdesk.wsgi.proxy import ProxyTrust, apply_forwarded


def environ(**headers):
    env = {"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "5000", "wsgi.url_scheme": "http",
           "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "HTTP_HOST": "127.0.0.1:8000"}
    env.update(headers)
    return env


LOOPBACK = ProxyTrust("127.0.0.1,::1")  # default headers: X-Forwarded-For and -Proto
ALL_HEADERS = ProxyTrust("127.0.0.1,::1", "X-Forwarded-For,X-Forwarded-Proto,X-Forwarded-Host,"
                         "X-Forwarded-Port,Forwarded")


def test_x_forwarded_headers_from_a_trusted_proxy():
    env = environ(HTTP_X_FORWARDED_FOR="203.0.113.7", HTTP_X_FORWARDED_PROTO="https",
                  HTTP_X_FORWARDED_HOST="example.com")
    apply_forwarded(env, ALL_HEADERS)
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["wsgi.url_scheme"] == "https" and env["HTTPS"] == "on"
    assert env["HTTP_HOST"] == "example.com"
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.com", "443")


def test_client_is_the_rightmost_untrusted_hop():
    trust = ProxyTrust("127.0.0.1,10.0.0.0/8")
    env = environ(HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.1, 10.1.2.3")
    apply_forwarded(env, trust)
    assert env["REMOTE_ADDR"] == "198.51.100.1"  # 6.6.6.6 was written by the client itself


def test_rfc7239_forwarded():
    env = environ(HTTP_FORWARDED='for="[2001:db8::1]:4711";proto=https;host=shop.example:8443')
    apply_forwarded(env, ALL_HEADERS)
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("2001:db8::1", "4711")
    assert env["wsgi.url_scheme"] == "https"
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("shop.example", "8443")


@pytest.mark.parametrize("proto", ["javascript", "ftp", ""])
def test_unknown_scheme_ignored(proto):
    env = environ(HTTP_X_FORWARDED_PROTO=proto)
    apply_forwarded(env, LOOPBACK)
    assert env["wsgi.url_scheme"] == "http"


def test_garbage_addresses_and_hosts_are_ignored():
    env = environ(HTTP_X_FORWARDED_FOR="unknown, <script>", HTTP_X_FORWARDED_HOST="a b\r\nc")
    apply_forwarded(env, LOOPBACK)
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["HTTP_HOST"] == "127.0.0.1:8000"


def test_by_default_only_for_and_proto_are_believed():
    """A proxy that sets X-Forwarded-For/-Proto but passes the client's Forwarded or
    X-Forwarded-Host through must not let the client rewrite its host or address."""
    env = environ(HTTP_X_FORWARDED_FOR="203.0.113.7", HTTP_X_FORWARDED_PROTO="https",
                  HTTP_X_FORWARDED_HOST="evil.example",
                  HTTP_FORWARDED="for=6.6.6.6;proto=http;host=evil.example")
    apply_forwarded(env, LOOPBACK)
    assert env["REMOTE_ADDR"] == "203.0.113.7" and env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "127.0.0.1:8000" and env["SERVER_NAME"] == "127.0.0.1"


def test_unknown_forwarded_header_name_is_rejected():
    with pytest.raises(ValueError, match="X-Real-IP"):
        ProxyTrust("127.0.0.1", "X-Real-IP")


def test_trust_rules():
    assert ProxyTrust("*").trusts("8.8.8.8")
    assert ProxyTrust("10.0.0.0/8").trusts("10.9.9.9")
    assert not ProxyTrust("10.0.0.0/8").trusts("11.0.0.1")
    assert ProxyTrust("127.0.0.1").trusts("::ffff:127.0.0.1")
    assert ProxyTrust("127.0.0.1").trusts("")  # unix-socket peer


def test_server_believes_loopback_proxy_by_default(apps_server):
    env = httpx.get(apps_server.url + "/environ", headers={
        "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}).json()
    assert env["REMOTE_ADDR"] == "203.0.113.9" and env["wsgi.url_scheme"] == "https"


def test_server_does_not_believe_untrusted_peer(server_factory):
    server = server_factory("tests.apps:router", "--forwarded-allow-ips", "10.0.0.1",
                            "--workers", "1")
    env = httpx.get(server.url + "/environ", headers={
        "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}).json()
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["wsgi.url_scheme"] == "http"
    assert env["headers"]["HTTP_X_FORWARDED_FOR"] == "203.0.113.9"  # passed on, not believed
