"""The server on a real socket: raw request bytes in, exact response bytes out."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest

from tests.conftest import read_until_close

DATE = re.compile(rb"Date: [A-Za-z]{3}, \d\d [A-Za-z]{3} \d{4} \d\d:\d\d:\d\d GMT\r\n")


def normal(data: bytes) -> bytes:
    """Responses with the Date header checked for form and then removed."""
    dates = DATE.findall(data)
    assert data.count(b"\r\nDate: ") == len(dates)
    return DATE.sub(b"", data)


def error_bytes(status: int, phrase: bytes) -> bytes:
    body = b"%d %s\n" % (status, phrase)
    return (
        b"HTTP/1.1 %d %s\r\nServer: frontdesk\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (status, phrase, len(body), body)
    )


HELLO = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
    b"Server: frontdesk\r\n\r\nHello, World!"
)


def test_hello_exact_bytes_and_keep_alive(apps_server):
    with apps_server.connect() as sock:
        for _ in range(3):
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while not data.endswith(b"Hello, World!"):
                data += sock.recv(4096)
            assert normal(data) == HELLO


def test_http10_gets_close_and_no_keep_alive(apps_server):
    out = apps_server.raw(b"GET /hello HTTP/1.0\r\n\r\n")
    assert normal(out) == HELLO.replace(b"Server:", b"Connection: close\r\nServer:")


def test_http10_keep_alive_is_honoured(apps_server):
    with apps_server.connect() as sock:
        sock.sendall(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2)
        time.sleep(0.3)
        data = sock.recv(65536)
    assert normal(data).count(b"Connection: keep-alive\r\n") == 2


def test_http10_streaming_body_is_close_delimited(apps_server):
    out = normal(apps_server.raw(b"GET /stream HTTP/1.0\r\n\r\n"))
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head and b"Connection: close" in head
    assert body == b"chunk 0\nchunk 1\nchunk 2\n"


def test_chunked_response_on_http11(apps_server):
    out = normal(apps_server.raw(b"GET /stream?2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    assert out.endswith(b"\r\n\r\n8\r\nchunk 0\n\r\n8\r\nchunk 1\n\r\n0\r\n\r\n")
    assert b"Transfer-Encoding: chunked\r\n" in out


def test_head_sends_no_body(apps_server):
    out = normal(apps_server.raw(b"HEAD /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    assert out.endswith(b"Content-Length: 13\r\nConnection: close\r\nServer: frontdesk\r\n\r\n")
    out = normal(apps_server.raw(b"HEAD /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    assert out.endswith(b"\r\n\r\n") and b"chunk" not in out


def test_204_has_no_framing_headers(apps_server):
    out = normal(apps_server.raw(b"GET /empty HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    assert out == b"HTTP/1.1 204 No Content\r\nConnection: close\r\nServer: frontdesk\r\n\r\n"


def test_pipelined_requests_answered_in_order(apps_server):
    request = b"GET /sleep?%s HTTP/1.1\r\nHost: x\r\n\r\n"
    data = request % b"0.3" + request % b"0" + request % b"0.1" + (
        b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    out = apps_server.raw(data)
    assert re.findall(rb"slept [0-9.]+", out) == [b"slept 0.3", b"slept 0.0", b"slept 0.1"]
    assert out.endswith(b"Hello, World!")


def test_bad_request_after_good_ones_answers_good_then_400_and_closes(apps_server):
    data = (
        b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /hello HTTP/1.1\r\n\r\n"  # no Host
        b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"  # must never be answered
    )
    out = normal(apps_server.raw(data))
    assert out == HELLO + error_bytes(400, b"Bad Request")


@pytest.mark.parametrize(
    "smuggle",
    [
        # CL.TE: a front end using Content-Length would see one request; we must refuse.
        b"POST /environ HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\nTransfer-Encoding: chunked"
        b"\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        # TE.CL
        b"POST /environ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4"
        b"\r\n\r\n2c\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n\r\n0\r\n\r\n",
        # duplicate Content-Length
        b"POST /environ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 41\r\n\r\n"
        b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        # obfuscated Transfer-Encoding
        b"POST /environ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \x0bchunked\r\n\r\n"
        b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        # bare LF line endings hiding a second request
        b"GET /environ HTTP/1.1\nHost: x\n\nGET /smuggled HTTP/1.1\nHost: x\n\n",
        # Transfer-Encoding on HTTP/1.0
        b"POST /environ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
def test_smuggling_attempts_get_400_and_close(apps_server, smuggle):
    out = normal(apps_server.raw(smuggle))
    assert out == error_bytes(400, b"Bad Request")
    assert b"smuggled" not in out


@pytest.mark.parametrize(
    "request_bytes, status, phrase",
    [
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, b"URI Too Long"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431,
         b"Request Header Fields Too Large"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"v" * 9000 + b"\r\n\r\n", 431,
         b"Request Header Fields Too Large"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n", 413,
         b"Content Too Large"),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, b"HTTP Version Not Supported"),
        (b"GET /\r\n\r\n", 400, b"Bad Request"),
    ],
)
def test_limits_and_versions(apps_server, request_bytes, status, phrase):
    assert normal(apps_server.raw(request_bytes)) == error_bytes(status, phrase)


def test_megabyte_header_is_431_while_still_sending(apps_server):
    with apps_server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            for _ in range(16):
                sock.sendall(b"v" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before we finished: that is the point
        out = read_until_close(sock)
    assert out.startswith(b"HTTP/1.1 431 ")


def test_expect_100_continue(apps_server):
    with apps_server.connect() as sock:
        sock.sendall(b"POST /environ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        out = read_until_close(sock)
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert json.loads(out.partition(b"\r\n\r\n")[2])["body_head"] == "hello"


def test_expect_100_continue_over_limit_gets_413_at_once(apps_server):
    out = apps_server.raw(b"POST /environ HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n"
                          b"Expect: 100-continue\r\n\r\n")
    assert normal(out) == error_bytes(413, b"Content Too Large")


def test_no_100_continue_for_http10(apps_server):
    with apps_server.connect() as sock:
        sock.sendall(b"POST /environ HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        sock.settimeout(0.5)
        with pytest.raises(socket.timeout):
            sock.recv(100)
        sock.sendall(b"hello")
        assert read_until_close(sock).startswith(b"HTTP/1.1 200 OK")


def test_slow_headers_get_408_then_close(apps_server):
    started = time.monotonic()
    with apps_server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        out = read_until_close(sock, timeout=6)
    assert normal(out) == error_bytes(408, b"Request Timeout")
    assert 1.5 < time.monotonic() - started < 4.5  # --header-timeout 2, swept once a second


def test_dribbled_headers_do_not_extend_the_header_timeout(apps_server):
    started = time.monotonic()
    with apps_server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n")
        try:
            for _ in range(10):
                time.sleep(0.4)
                sock.sendall(b"X: y\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = read_until_close(sock, timeout=6)
    assert out.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < 4.5


def test_idle_keep_alive_connection_is_closed_silently(apps_server):
    with apps_server.connect() as sock:
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert first.endswith(b"Hello, World!")
        started = time.monotonic()
        assert read_until_close(sock, timeout=6) == b""
        assert time.monotonic() - started < 4.5  # --keep-alive 2


def test_truncated_body_is_never_passed_to_the_app(apps_server):
    with apps_server.connect() as sock:
        sock.sendall(b"POST /environ HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nshort")
        sock.shutdown(socket.SHUT_WR)
        out = read_until_close(sock)
    assert normal(out) == error_bytes(400, b"Bad Request")


def test_half_closed_client_still_gets_its_response(apps_server):
    out = apps_server.raw(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", shutdown=True)
    assert normal(out) == HELLO


def test_server_keeps_serving_after_errors(apps_server):
    for bad in (b"\x00\x01\x02garbage\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nX: \x7f\r\n\r\n"):
        assert apps_server.raw(bad).startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert normal(apps_server.raw(b"GET /hello HTTP/1.0\r\n\r\n")).endswith(b"Hello, World!")


def test_upgrade_request_is_answered_and_closed(apps_server):
    out = apps_server.raw(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                          b"Upgrade: websocket\r\n\r\n\x81\x80junk")
    assert normal(out) == HELLO.replace(b"Server:", b"Connection: close\r\nServer:")


def test_options_asterisk_is_answered_by_the_server(apps_server):
    out = normal(apps_server.raw(b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    assert out == (b"HTTP/1.1 200 OK\r\nServer: frontdesk\r\n"
                   b"Allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n"
                   b"Content-Length: 0\r\nConnection: close\r\n\r\n")
