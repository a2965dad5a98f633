"""Connection-level behaviour found in review: lingering close, 100-continue turns, keep-alive 0."""

from __future__ import annotations

import http.client
import socket
import time

from tests.conftest import read_until_close


def test_client_sending_an_oversized_body_reads_the_413(server_factory):
    server = server_factory("tests.apps:router", "--workers", "1", "--limit-request-body", "1000")
    for _ in range(3):
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        try:
            conn.request("POST", "/environ", body=b"x" * 5_000_000)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading; its answer is still waiting for us
        response = conn.getresponse()
        assert response.status == 413
        conn.close()


def test_100_continue_waits_its_turn_without_timing_out(server_factory):
    server = server_factory("tests.apps:router", "--workers", "1", "--body-timeout", "1")
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(b"GET /sleep?2 HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"POST /environ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        sock.settimeout(5)
        data = b""
        while b"100 Continue" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        assert b"slept 2" in data and b"408" not in data
        sock.sendall(b"hello")
        data += read_until_close(sock)
    assert data.count(b"HTTP/1.1 200 OK") == 2 and b'"body_head": "hello"' in data


def test_keep_alive_zero_closes_after_each_response(server_factory):
    server = server_factory("tests.apps:router", "--workers", "1", "--keep-alive", "0")
    started = time.monotonic()
    out = server.raw(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"Connection: close\r\n" in out and out.endswith(b"Hello, World!")
    assert time.monotonic() - started < 0.5


def test_header_section_over_the_limit_in_one_write_is_431(apps_server):
    headers = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 8000) for i in range(25))
    out = apps_server.raw(b"GET /hello HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert out.startswith(b"HTTP/1.1 431 ")


def test_upgrade_request_body_reaches_the_app(apps_server):
    out = apps_server.raw(b"POST /environ HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                          b"Upgrade: h2c\r\nContent-Length: 11\r\n\r\nhello=world")
    assert out.startswith(b"HTTP/1.1 200 OK") and b'"body_head": "hello=world"' in out


def test_pipelined_request_completed_in_two_reads_gets_no_stray_408(server_factory):
    # The header timer armed by the first half must not fire once the request is complete and
    # waits behind a slow one: the client would take the 408 as the answer to its next request.
    server = server_factory("tests.apps:router", "--workers", "1", "--header-timeout", "1")
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(b"GET /sleep?2 HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHo")
        time.sleep(0.3)
        sock.sendall(b"st: x\r\n\r\n")
        sock.settimeout(5)
        data = b""
        while data.count(b"HTTP/1.1 200 OK") < 2 or not data.endswith(b"Hello, World!"):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        sock.settimeout(2.5)  # past the header timeout: nothing more may come
        try:
            extra = sock.recv(65536)
        except socket.timeout:
            extra = b"(nothing)"
    assert b"408" not in data and extra == b"(nothing)"


def test_refused_requests_reach_the_access_log(server_factory, tmp_path):
    # As nginx logs its 400s: a request the parser refuses gets an access-log line.
    log = tmp_path / "access.log"
    server = server_factory("tests.apps:router", "--workers", "1", "--access-logfile", str(log))
    for raw in (b"GET /bad\x01path HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /no-host HTTP/1.1\r\n\r\n",
                b"GET /x HTTP/1.1\r\nHost: x\r\nX: " + b"v" * 10000 + b"\r\n\r\n"):
        with socket.create_connection((server.host, server.port)) as sock:
            sock.sendall(raw)
            assert read_until_close(sock).startswith(b"HTTP/1.1 4")
    server.stop()
    lines = log.read_text().splitlines()
    assert len(lines) == 3, lines
    assert '" 400 ' in lines[0]
    assert '"GET /no-host HTTP/1.1" 400 ' in lines[1]
    assert '" 431 ' in lines[2]
    assert ": 400 " not in server.log and ": 431 " not in server.log  # error log: debug only


def test_proxy_header_only_from_allowed_balancers(server_factory):
    # A PROXY header names the client; from a peer not in --proxy-allow-from it is refused,
    # or anyone could choose the address the app (and the rate limit) sees.
    proxied = b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 80\r\nGET /environ HTTP/1.1\r\nHost: x\r\n" \
              b"Connection: close\r\n\r\n"
    allowed = server_factory("tests.apps:router", "--workers", "1", "--proxy-protocol")
    with socket.create_connection((allowed.host, allowed.port)) as sock:
        sock.sendall(proxied)
        assert b'"REMOTE_ADDR": "203.0.113.7"' in read_until_close(sock)
    refused = server_factory("tests.apps:router", "--workers", "1", "--proxy-protocol",
                             "--proxy-allow-from", "192.0.2.1")
    with socket.create_connection((refused.host, refused.port)) as sock:
        sock.sendall(proxied)
        assert read_until_close(sock) in (b"", b"<RESET>")
    assert "not in --proxy-allow-from" in refused.log
