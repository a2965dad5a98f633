"""PEP 3333 environ, as the app sees it through a real server, and the pure builder."""

from __future__ import annotations

import io
import json
import re

import httpx
import pytest

from frontdesk.protocol.parser import Limits, RequestParser
from frontdesk.wsgi.environ import build_environ, connection_environ, split_target


def environ_of(server, request: bytes) -> dict:
    out = server.raw(request)
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), out
    return json.loads(body)


def test_environ_basics(apps_server):
    env = environ_of(apps_server, b"GET /environ/caf%C3%A9/a%2Fb?x=1&y=%20 HTTP/1.1\r\n"
                                  b"Host: example.com:8080\r\nConnection: close\r\n\r\n")
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    # percent-decoded, bytes carried as latin-1 code points (PEP 3333)
    assert env["PATH_INFO"] == "/environ/caf\u00c3\u00a9/a/b"
    assert env["QUERY_STRING"] == "x=1&y=%20"
    assert env["RAW_URI"] == "/environ/caf%C3%A9/a%2Fb?x=1&y=%20"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_NAME"] == "127.0.0.1" and env["SERVER_PORT"] == str(apps_server.port)
    assert env["REMOTE_ADDR"] == "127.0.0.1" and re.fullmatch(r"\d+", env["REMOTE_PORT"])
    assert env["wsgi.url_scheme"] == "http"
    assert env["version"] == [1, 0]
    assert env["wsgi.multithread"] is True and env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert env["headers"]["HTTP_HOST"] == "example.com:8080"
    assert "CONTENT_LENGTH" not in env or env["CONTENT_LENGTH"] in ("", "0")


def test_duplicate_headers_are_joined(apps_server):
    env = environ_of(apps_server, b"GET /environ HTTP/1.1\r\nHost: x\r\nAccept: a/b\r\n"
                                  b"Accept: c/d\r\nCookie: a=1\r\nCookie: b=2\r\n"
                                  b"Connection: close\r\n\r\n")
    assert env["headers"]["HTTP_ACCEPT"] == "a/b, c/d"
    assert env["headers"]["HTTP_COOKIE"] == "a=1; b=2"


def test_underscore_header_cannot_spoof_a_dash_header(apps_server):
    env = environ_of(apps_server, b"GET /environ HTTP/1.1\r\nHost: x\r\nX-Real-IP: 1.1.1.1\r\n"
                                  b"X_Real_IP: 6.6.6.6\r\nConnection: close\r\n\r\n")
    assert env["headers"]["HTTP_X_REAL_IP"] == "1.1.1.1"


def test_content_type_and_length_are_unprefixed(apps_server):
    env = environ_of(apps_server, b"POST /environ HTTP/1.1\r\nHost: x\r\nContent-Type: text/x\r\n"
                                  b"Content-Length: 3\r\nConnection: close\r\n\r\nabc")
    assert env["CONTENT_TYPE"] == "text/x" and env["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_TYPE" not in env["headers"]
    assert env["body_head"] == "abc"


def test_chunked_body_arrives_dechunked_with_its_length(apps_server):
    env = environ_of(apps_server, b"POST /environ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                                  b"\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n"
                                  b"X-Trailer: t\r\n\r\n")
    assert env["CONTENT_LENGTH"] == "5" and env["body_head"] == "abcde"
    assert "HTTP_TRANSFER_ENCODING" not in env["headers"]
    assert "HTTP_X_TRAILER" not in env["headers"]


def test_large_upload_is_spooled_and_intact(apps_server):
    body = bytes(range(256)) * 1024  # 256 KiB > --body-buffer-size 64 KiB
    response = httpx.post(apps_server.url + "/environ", content=body)
    env = response.json()
    assert env["body_length"] == len(body)
    assert env["input_type"] != "BytesIO"


def test_readline_and_iteration_of_input(apps_server):
    response = httpx.post(apps_server.url + "/lines", content=b"one\ntwo\nthree")
    assert response.text == "3 lines\none\ntwo\nthree"


def test_root_path_sets_script_name(server_factory):
    server = server_factory("tests.apps:router", "--root-path", "/mount", "--workers", "1")
    env = httpx.get(server.url + "/mount/environ/x").json()
    assert env["SCRIPT_NAME"] == "/mount" and env["PATH_INFO"] == "/environ/x"
    env = httpx.get(server.url + "/mountain").json()  # not under the mount: left alone
    assert env["PATH_INFO"] == "/mountain"


@pytest.mark.parametrize(
    "target, expected",
    [
        (b"/a?b", (b"/a", b"b")),
        (b"/a", (b"/a", b"")),
        (b"*", (b"*", b"")),
        (b"http://host:8080/p/q?r=1", (b"/p/q", b"r=1")),
        (b"http://host", (b"/", b"")),
        (b"http://host?x=1", (b"/", b"x=1")),
        (b"/a?b?c", (b"/a", b"b?c")),
    ],
)
def test_split_target(target, expected):
    assert split_target(target) == expected


def test_build_environ_pure():
    parser = RequestParser(Limits())
    parser.feed(b"PUT /x%20y?q HTTP/1.0\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nhi")
    base = connection_environ(server=("srv", "80"), peer=("10.0.0.1", "5555"),
                              url_scheme="http", root_path="", multithread=False,
                              multiprocess=True)
    env = build_environ(parser.requests[0], base)
    assert env["PATH_INFO"] == "/x y" and env["QUERY_STRING"] == "q"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert env["CONTENT_LENGTH"] == "2" and env["HTTP_X_A"] == "1"
    assert isinstance(env["wsgi.input"], io.BytesIO) and env["wsgi.input"].read() == b"hi"
    assert env["wsgi.multiprocess"] is True and env["wsgi.multithread"] is False
    assert base.get("PATH_INFO") is None  # the shared part is copied, never mutated


def test_absolute_form_authority_replaces_host_and_fragments_are_dropped():
    parser = RequestParser(Limits())
    parser.feed(b"GET http://user@good.example:8080/p?q=1#frag HTTP/1.1\r\nHost: evil.example\r\n\r\n"
                b"GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n")
    base = connection_environ(server=("srv", "80"), peer=("1.2.3.4", "5"), url_scheme="http",
                              root_path="", multithread=True, multiprocess=False)
    env = build_environ(parser.requests[0], base)
    assert env["HTTP_HOST"] == "good.example:8080"
    assert (env["PATH_INFO"], env["QUERY_STRING"]) == ("/p", "q=1")
    assert build_environ(parser.requests[1], base)["PATH_INFO"] == "/a"
