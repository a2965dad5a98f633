"""Forwarded / X-Forwarded-* are believed only from trusted proxies."""

from __future__ import annotations

import httpx
import pytest

from frontdesk.protocol.parser import Limits, RequestParser
from frontdesk.wsgi.environ import build_environ, connection_environ
from frontdesk.wsgi.proxy import ProxyTrust, apply_forwarded, forwarded_client


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


# -- walking the hops: never past junk ------------------------------------------------------------

INTERNAL = ProxyTrust("127.0.0.1,10.0.0.0/8", "X-Forwarded-For,X-Forwarded-Proto,Forwarded")


@pytest.mark.parametrize("header, value, client", [
    # junk right of a client-written address: the client does not win, the peer stands
    ("HTTP_X_FORWARDED_FOR", "6.6.6.6, unknown", "127.0.0.1"),
    ("HTTP_X_FORWARDED_FOR", "6.6.6.6, _hidden", "127.0.0.1"),
    ("HTTP_X_FORWARDED_FOR", "6.6.6.6, , 10.0.0.1", "10.0.0.1"),
    ("HTTP_X_FORWARDED_FOR", "6.6.6.6, unknown, 10.0.0.2, 10.0.0.1", "10.0.0.2"),
    ("HTTP_X_FORWARDED_FOR", "unknown, 203.0.113.7, 10.0.0.1", "203.0.113.7"),
    ("HTTP_X_FORWARDED_FOR", "10.0.0.3, 10.0.0.2", "10.0.0.3"),  # all proxies: the left-most
    ("HTTP_FORWARDED", "for=6.6.6.6, for=unknown", "127.0.0.1"),
    ("HTTP_FORWARDED", 'for=6.6.6.6, for="_gw"', "127.0.0.1"),
    ("HTTP_FORWARDED", "for=6.6.6.6, proto=https", "127.0.0.1"),  # no for= in the nearest hop
    ("HTTP_FORWARDED", "for=6.6.6.6, for=203.0.113.7, for=10.0.0.1", "203.0.113.7"),
])
def test_the_walk_stops_at_the_first_entry_that_is_not_an_address(header, value, client):
    env = environ(**{header: value})
    apply_forwarded(env, INTERNAL)
    assert env["REMOTE_ADDR"] == client


def test_star_trusts_the_peer_but_takes_the_entry_it_appended():
    """Heroku's router (any address) appends the client's address to what the client sent."""
    env = environ(HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7")
    apply_forwarded(env, ProxyTrust("*"))
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    env = environ(HTTP_X_FORWARDED_FOR="6.6.6.6, 10.0.0.1")  # no address is assumed a proxy
    apply_forwarded(env, ProxyTrust("*"))
    assert env["REMOTE_ADDR"] == "10.0.0.1"


def test_server_with_star_believes_only_the_right_most_entry(server_factory):
    server = server_factory("tests.apps:router", "--forwarded-allow-ips", "*", "--workers", "1")
    env = httpx.get(server.url + "/environ", headers={
        "X-Forwarded-For": "6.6.6.6, 203.0.113.9", "X-Forwarded-Proto": "https"}).json()
    assert env["REMOTE_ADDR"] == "203.0.113.9" and env["wsgi.url_scheme"] == "https"


# -- RFC 7239 quoted strings ----------------------------------------------------------------------


def test_forwarded_separators_inside_quotes_are_part_of_the_value():
    env = environ(HTTP_FORWARDED='for=203.0.113.7;proto=http;host="x;proto=https"')
    apply_forwarded(env, ALL_HEADERS)
    assert env["REMOTE_ADDR"] == "203.0.113.7" and env["wsgi.url_scheme"] == "http"
    env = environ(HTTP_FORWARDED='host="a.example,b";for=203.0.113.7')
    apply_forwarded(env, ALL_HEADERS)
    assert env["REMOTE_ADDR"] == "203.0.113.7"  # one element, not "b" and another


@pytest.mark.parametrize("value", [
    'for=203.0.113.7;proto="https',  # unterminated quote
    "for=203.0.113.7;proto=https;proto=http",  # a parameter twice
    "for=203.0.113.7 proto=https",
    "for=",
])
def test_malformed_forwarded_is_not_believed_at_all(value):
    env = environ(HTTP_FORWARDED=value)
    apply_forwarded(env, ALL_HEADERS)
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["wsgi.url_scheme"] == "http"


# -- host and port --------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["évil.example", "évil.example:444", "a b", "a.example:99999",
                                  "a.example:0", "a.example:x", "[::1", "[fe80::1%eth0]", ":80",
                                  "a.example:80:80", "x" * 256])
def test_malformed_forwarded_host_changes_neither_host_nor_port(host):
    env = environ(HTTP_X_FORWARDED_HOST=host)
    apply_forwarded(env, ALL_HEADERS)
    assert (env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"]) == (
        "127.0.0.1:8000", "127.0.0.1", "8000")


@pytest.mark.parametrize("host, name, port", [
    ("example.com", "example.com", "80"),
    ("example.com:8443", "example.com", "8443"),
    ("[2001:db8::1]:8443", "[2001:db8::1]", "8443"),
    ("203.0.113.7", "203.0.113.7", "80"),
    ("xn--caf-dma.example", "xn--caf-dma.example", "80"),
])
def test_wellformed_forwarded_host(host, name, port):
    env = environ(HTTP_X_FORWARDED_HOST=host)
    apply_forwarded(env, ALL_HEADERS)
    assert (env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"]) == (host, name, port)


@pytest.mark.parametrize("port, expected", [("99999", "443"), ("0", "443"), ("x", "443"),
                                            ("8443", "8443"), ("²", "443")])
def test_forwarded_port_must_be_1_to_65535(port, expected):
    env = environ(HTTP_X_FORWARDED_PROTO="https", HTTP_X_FORWARDED_PORT=port)
    apply_forwarded(env, ALL_HEADERS)
    assert env["SERVER_PORT"] == expected


# -- the same client address without an environ (for the event loop) ------------------------------


@pytest.mark.parametrize("trust", [LOOPBACK, ALL_HEADERS, INTERNAL, ProxyTrust("*"),
                                   ProxyTrust("127.0.0.1", "X-Forwarded-Proto")])
@pytest.mark.parametrize("headers", [
    [],
    [(b"X-Forwarded-For", b"203.0.113.7")],
    [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.7, 10.0.0.1")],
    [(b"X-Forwarded-For", b"6.6.6.6"), (b"X-Forwarded-For", b"203.0.113.7, 127.0.0.1")],
    [(b"X-Forwarded-For", b"6.6.6.6, unknown")],
    [(b"X-Forwarded-For", b"[2001:db8::1]:4711")],
    [(b"X-Forwarded-For", b"203.0.113.7"), (b"Forwarded", b"for=198.51.100.2")],
    [(b"Forwarded", b'for="[2001:db8::1]:4711";host="a,b", for=10.0.0.1')],
    [(b"Forwarded", b"for=6.6.6.6"), (b"FORWARDED", b"for=198.51.100.2")],
    [(b"Forwarded", b'for="unterminated')],
    [(b"X-Forwarded-For", b"1.2.3.4, " * 100 + b"203.0.113.7")],  # too long to cache
])
def test_forwarded_client_agrees_with_the_environ(trust, headers):
    parser = RequestParser(Limits())
    parser.feed(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(
        name + b": " + value + b"\r\n" for name, value in headers) + b"\r\n")
    (request,) = parser.requests
    base = connection_environ(server=("127.0.0.1", "8000"), peer=("127.0.0.1", "5000"),
                              url_scheme="http", root_path="", multithread=True,
                              multiprocess=False)
    expected = build_environ(request, base, trust)["REMOTE_ADDR"]
    assert (forwarded_client(trust, request.headers) or "127.0.0.1") == expected
    assert forwarded_client(None, request.headers) is None  # an untrusted peer


@pytest.mark.parametrize("pad", [0, 300])  # cached, and too long to be cached
def test_a_forwarded_value_is_parsed_once_per_request(monkeypatch, pad):
    from frontdesk.wsgi import proxy

    calls = []
    real = proxy._parse_forwarded
    monkeypatch.setattr(proxy, "_parse_forwarded", lambda value: calls.append(value) or real(value))
    value = "for=203.0.113.9;proto=https;host=example.org" + ", for=127.0.0.1" * (pad // 15 + 1)
    value += f';host="x{pad}.example"'  # a value no other test has put in the caches
    env = environ(HTTP_FORWARDED=value)
    apply_forwarded(env, ALL_HEADERS)
    assert env["REMOTE_ADDR"] == "203.0.113.9" and len(calls) == 1


def test_cached_answers_are_immutable():
    """lru_cache hands every caller the same object: it must not be a list or dict."""
    from frontdesk.wsgi import proxy

    for value in ("for=203.0.113.9;proto=https, for=127.0.0.1", "for=junk;;;\"", ""):
        hash(proxy._forwarded(ALL_HEADERS, value))
    hash(proxy._xff_client(ALL_HEADERS, "203.0.113.9, 127.0.0.1"))
