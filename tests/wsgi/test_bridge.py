"""The bridge alone, with a fake connection: what it hands the loop, byte for byte, and when.

These cover what a real socket cannot show deterministically: how far an app's iterable is
iterated, the moment the head is pushed, what is logged, and a drain that begins while the
app runs."""

from __future__ import annotations

import logging
import re
import time

import pytest

from frontdesk.protocol.parser import Limits, RequestParser
from frontdesk.wsgi import response as response_module
from frontdesk.wsgi.bridge import DONE_CLOSE, DONE_KEEP_ALIVE, MORE, Bridge, FileRegion
from frontdesk.wsgi.environ import connection_environ

DATE = re.compile(rb"Date: [^\r]*\r\n")


class Wire:
    """The connection (`Channel`) and the `Outbox` in one: records what the bridge pushes."""

    def __init__(self) -> None:
        self.closed = False
        self.environ_base = connection_environ(
            server=("127.0.0.1", "8000"), peer=("127.0.0.1", "5000"), url_scheme="http",
            root_path="", multithread=True, multiprocess=False)
        self.proxy_trust = None
        self.access_log = None
        self.max_queue_time = 0.0
        self.status = 0
        self.queued = 0.0
        self.pushed: list[tuple[object, int]] = []

    def reserve(self, nbytes: int) -> bool:
        return not self.closed

    def push(self, channel: object, data: object, end: int) -> None:
        assert channel is self
        self.pushed.append((data, end))

    @property
    def data(self) -> bytes:
        out = b""
        for data, _ in self.pushed:
            if isinstance(data, FileRegion):
                data.file.seek(data.offset)
                out += data.file.read(data.count)
            else:
                out += data
        return DATE.sub(b"", out)

    @property
    def end(self) -> int:
        ends = [end for _, end in self.pushed]
        assert ends and all(end == MORE for end in ends[:-1]), ends
        return ends[-1]


def parse(raw: bytes):
    parser = RequestParser(Limits())
    parser.feed(raw)
    (request,) = parser.requests
    request.started = time.monotonic()
    return request


def run(app, raw: bytes = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", wire: Wire | None = None):
    wire = wire or Wire()
    Bridge(app, wire).handle(wire, parse(raw))
    return wire


HEAD_REQUEST = b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"


class Body:
    """An app's iterable that counts how far it was iterated and whether it was closed."""

    def __init__(self, chunks) -> None:
        self.chunks = chunks
        self.taken = 0
        self.closed = False

    def __iter__(self):
        for chunk in self.chunks:
            self.taken += 1
            yield chunk

    def close(self) -> None:
        self.closed = True


def app_returning(status: str, headers: list[tuple[str, str]], body):
    def app(environ, start_response):
        start_response(status, headers)
        return body

    return app


# -- 3, 4. statuses -------------------------------------------------------------------------------


def test_205_has_content_length_0_and_no_body():
    wire = run(app_returning("205 Reset Content", [("Content-Length", "4")], [b"body"]))
    assert wire.data == (b"HTTP/1.1 205 Reset Content\r\nContent-Length: 0\r\n"
                         b"Server: frontdesk\r\n\r\n")


@pytest.mark.parametrize("status", ["600 Weird", "999 X", "099 X", "000 X"])
def test_status_outside_100_599_is_a_500(status, caplog):
    wire = run(app_returning(status, [], [b"body"]))
    assert wire.data.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert f"invalid WSGI status {status!r}" in caplog.text


# -- 9. hop-by-hop headers from the app -----------------------------------------------------------


@pytest.fixture
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(response_module, "_warned", set())


@pytest.mark.parametrize("name, value", [
    ("Keep-Alive", "timeout=5"), ("Transfer-Encoding", "chunked"), ("Upgrade", "h2c"),
    ("TE", "trailers"), ("Trailer", "X-Sum"), ("Proxy-Authenticate", "Basic"),
    ("Proxy-Authorization", "Basic eDp5"), ("Proxy-Connection", "keep-alive"),
    ("Connection", "keep-alive"),
])
def test_hop_by_hop_headers_are_dropped_with_one_warning(name, value, fresh_warnings, caplog):
    app = app_returning("200 OK", [(name, value), ("Content-Length", "2")], [b"ok"])
    for _ in range(2):
        wire = run(app)
        assert wire.data == (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: frontdesk\r\n"
                             b"\r\nok")
        assert wire.end == DONE_KEEP_ALIVE
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"hop-by-hop header {name!r}" in warnings[0].getMessage()


def test_connection_close_from_the_app_is_honoured_without_a_warning(fresh_warnings, caplog):
    wire = run(app_returning("200 OK", [("Connection", "Close"), ("Content-Length", "2")],
                             [b"ok"]))
    assert wire.data == (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n"
                         b"Server: frontdesk\r\n\r\nok")
    assert wire.end == DONE_CLOSE and not caplog.records
