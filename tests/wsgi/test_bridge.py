"""The bridge alone, with a fake connection: what it hands the loop, byte for byte, and when.

These cover what a real socket cannot show deterministically: how far an app's iterable is
iterated, the moment the head is pushed, what is logged, and a drain that begins while the
app runs."""

from __future__ import annotations

import itertools
import logging
import re
import time

import pytest

from frontdesk.logs import given_request_id
from frontdesk.protocol.parser import Limits, RequestParser
from frontdesk.wsgi import response as response_module
from frontdesk.wsgi.bridge import DONE_CLOSE, DONE_KEEP_ALIVE, MORE, Bridge, FileRegion
from frontdesk.wsgi.environ import connection_environ
from frontdesk.wsgi.proxy import proxy_trust_for
from frontdesk.wsgi.response import InvalidResponse, validate

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


# -- 1. stop iterating once the response can take no more -----------------------------------------


def test_endless_generator_behind_content_length_is_iterated_only_as_far_as_needed():
    body = Body(itertools.repeat(b"0123456789", 10_000))  # bounded, so a regression fails
    wire = run(app_returning("200 OK", [("Content-Length", "25")], body))
    assert wire.data.endswith(b"\r\n\r\n" + b"0123456789" * 2 + b"01234")
    assert body.taken == 3 and body.closed
    assert wire.end == DONE_CLOSE  # the app had more than it declared: not trusted further


def test_exact_content_length_stops_iterating_and_keeps_the_connection():
    body = Body(itertools.chain([b"", b"abc", b"de"], itertools.repeat(b"never", 10_000)))
    wire = run(app_returning("200 OK", [("Content-Length", "5")], body))
    assert wire.data.endswith(b"\r\n\r\nabcde") and body.taken == 3 and body.closed
    assert wire.end == DONE_KEEP_ALIVE


@pytest.mark.parametrize("status, raw", [
    ("200 OK", HEAD_REQUEST),
    ("204 No Content", None),
    ("205 Reset Content", None),
    ("304 Not Modified", None),
])
def test_a_response_without_body_stops_at_the_first_chunk(status, raw):
    body = Body(itertools.chain([b""], itertools.repeat(b"body", 10_000)))
    wire = run(app_returning(status, [("Content-Type", "text/plain")], body),
               *([raw] if raw else []))
    assert wire.data.endswith(b"\r\n\r\n") and b"body" not in wire.data
    assert body.taken == 2 and body.closed
    assert wire.end == DONE_KEEP_ALIVE


def test_file_wrapper_with_a_smaller_content_length_reads_no_further(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"A" * 1000)
    where = []
    f = open(path, "rb")

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "10")])
        wrapper = environ["wsgi.file_wrapper"](f, 4)
        wrapper.close = lambda: (where.append(f.tell()), f.close())
        return wrapper

    wire = run(app)
    assert wire.data.endswith(b"\r\n\r\n" + b"A" * 10)
    assert where == [12]  # three blocks of 4, not the whole file


# -- 2. a client gone under write() ---------------------------------------------------------------


def test_client_gone_during_write_is_a_connection_error_and_not_an_app_failure(caplog):
    seen = []

    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"first")
        wire.closed = True
        try:
            write(b"second")
        except OSError as exc:  # what an app that guards its writes catches
            seen.append(exc)
            raise

    wire = Wire()
    with caplog.at_level(logging.DEBUG, "frontdesk.error"):
        run(app, wire=wire)
    assert isinstance(seen[0], ConnectionError)
    assert wire.pushed[-1] == (b"", DONE_CLOSE)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert all(r.exc_info is None for r in caplog.records)
    assert any("client closed the connection" in r.getMessage() for r in caplog.records)


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


@pytest.mark.parametrize("status, headers, error", [
    ("200 \u20ac", [], "invalid WSGI status '200 \u20ac'"),
    ("200 OK", [("X-Price", "5 \u20ac")], "invalid value for header 'X-Price'"),
    ("200 OK", [("X-Emoji", "\U0001f600")], "invalid value for header 'X-Emoji'"),
])
def test_text_beyond_latin_1_is_an_invalid_response(status, headers, error, caplog):
    with pytest.raises(InvalidResponse, match="invalid"):
        validate(status, headers)
    wire = run(app_returning(status, headers, [b"body"]))
    assert wire.data.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert error in caplog.text


def test_latin_1_text_goes_out_as_its_bytes():
    wire = run(app_returning("200 \xd6K", [("X-Name", "caf\xe9 \xff")], [b"body"]))
    assert wire.data.startswith(b"HTTP/1.1 200 \xd6K\r\nX-Name: caf\xe9 \xff\r\n")


# -- 5. a body longer than its Content-Length -----------------------------------------------------


@pytest.mark.parametrize("connection", [b"close", b"keep-alive"])
def test_body_longer_than_content_length_is_logged_once(connection, caplog):
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Length", "3")])
        write(b"abcd")
        write(b"efgh")
        return [b"ijkl"]

    wire = run(app, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: %s\r\n\r\n" % connection)
    assert wire.data.endswith(b"\r\n\r\nabc") and wire.end == DONE_CLOSE
    assert caplog.text.count("more than its Content-Length") == 1


# -- 6. a drain that begins while the app runs ----------------------------------------------------


def test_drain_before_the_head_is_made_gives_connection_close():
    request = parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "2")])
        request.keep_alive = False  # what the loop does when the worker starts draining
        return [b"ok"]

    wire = Wire()
    Bridge(app, wire).handle(wire, request)
    assert wire.data == (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n"
                         b"Server: frontdesk\r\n\r\nok")
    assert wire.end == DONE_CLOSE


def test_drain_after_the_head_went_out_closes_after_the_response():
    request = parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")

    def body():
        yield b"a"
        request.keep_alive = False
        yield b"b"

    wire = Wire()
    Bridge(app_returning("200 OK", [], body()), wire).handle(wire, request)
    assert wire.data.endswith(b"1\r\na\r\n1\r\nb\r\n0\r\n\r\n") and wire.end == DONE_CLOSE


def test_drain_before_a_500_gives_connection_close():
    request = parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")

    def app(environ, start_response):
        request.keep_alive = False
        raise RuntimeError("boom")

    wire = Wire()
    Bridge(app, wire).handle(wire, request)
    assert b"Connection: close\r\n" in wire.data and wire.end == DONE_CLOSE


# -- 8. access log of a server-made 500 -----------------------------------------------------------


class AccessLog:
    def __init__(self) -> None:
        self.records: list[tuple] = []

    def record(self, *args) -> None:
        self.records.append(args)


@pytest.mark.parametrize("raw, sent", [(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 26),
                                       (HEAD_REQUEST, 0)])
def test_server_made_500_logs_the_bytes_it_sent(raw, sent):
    def app(environ, start_response):
        start_response("200 OK", [("X-Never", "sent")])
        raise RuntimeError("boom")

    wire = Wire()
    wire.access_log = AccessLog()
    run(app, raw, wire)
    ((_, _, status, logged_sent, headers, *_),) = wire.access_log.records
    assert (status, logged_sent, headers) == (500, sent, [])
    assert len(wire.data.partition(b"\r\n\r\n")[2]) == sent


def test_request_shed_for_queue_time_is_access_logged():
    wire = Wire()
    wire.access_log = AccessLog()
    wire.max_queue_time = 0.001
    request = parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    request.started -= 1
    Bridge(app_returning("200 OK", [], [b"never"]), wire).handle(wire, request)
    ((address, _, status, sent, *_),) = wire.access_log.records
    assert (address, status) == ("127.0.0.1", 503)
    assert sent == len(wire.data.partition(b"\r\n\r\n")[2]) > 0


@pytest.mark.parametrize("headers, expected", [
    (b"X-Request-ID: abc-1\r\n", "abc-1"),
    # Repeated: the environ joins them ("abc-1, abc-2"), which is no valid id: a new one.
    (b"X-Request-ID: abc-1\r\nx-request-id: abc-2\r\n", None),
])
def test_shed_and_served_requests_take_the_same_request_id(headers, expected):
    raw = b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"
    for shed in (False, True):
        wire = Wire()
        wire.access_log = AccessLog()
        wire.proxy_trust = proxy_trust_for("127.0.0.1")
        request = parse(raw)
        if shed:
            wire.max_queue_time = 0.001
            request.started -= 1
        Bridge(app_returning("200 OK", [], [b"ok"]), wire).handle(wire, request)
        ((_, _, status, _, _, _, rid, *_),) = wire.access_log.records
        assert status == (503 if shed else 200)
        if expected is None:
            assert re.fullmatch(r"[0-9a-f]{10}-[0-9a-f]+", rid), rid
        else:
            assert rid == expected


def test_given_request_id_is_the_trusted_header_as_the_environ_has_it():
    headers = [(b"Host", b"x"), (b"X-Request-Id", b"a"), (b"x-request-id", b"b")]
    assert given_request_id(proxy_trust_for("127.0.0.1"), headers) == "a, b"
    assert given_request_id(proxy_trust_for("127.0.0.1"), headers[:2]) == "a"
    assert given_request_id(None, headers) is None
    assert given_request_id(proxy_trust_for("127.0.0.1"), headers[:1]) is None


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


# -- 10. the write callable sends the head on its first call --------------------------------------


def test_first_write_sends_the_head_even_when_empty():
    pushed_before_return = []

    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"")
        pushed_before_return.extend(wire.pushed)
        return [b"", b"rest"]

    wire = Wire()
    run(app, wire=wire)
    assert [end for _, end in pushed_before_return] == [MORE]
    assert pushed_before_return[0][0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert wire.data.endswith(b"Transfer-Encoding: chunked\r\nServer: frontdesk\r\n\r\n"
                              b"4\r\nrest\r\n0\r\n\r\n")
    assert wire.end == DONE_KEEP_ALIVE


@pytest.mark.parametrize("chunk", ["", "text", None])
def test_write_refuses_what_is_not_bytes_even_when_empty(chunk, caplog):
    def app(environ, start_response):
        start_response("200 OK", [])(chunk)
        return []

    wire = run(app)
    assert wire.data.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert "WSGI body chunks must be bytes" in caplog.text


def test_empty_chunks_from_the_iterable_do_not_send_the_head():
    """PEP 3333: the headers wait for the first non-empty chunk, so an app can still replace
    them with start_response(..., exc_info) after yielding b''."""

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            yield b""
            try:
                raise ValueError("changed my mind")
            except ValueError:
                start_response("503 Service Unavailable", [("Content-Length", "4")],
                               __import__("sys").exc_info())
            yield b"busy"

        return body()

    wire = run(app)
    assert wire.data == (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n"
                         b"Server: frontdesk\r\n\r\nbusy")


def test_file_wrapper_goes_to_the_loop_as_a_region(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"B" * 100)

    def app(environ, start_response):
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](open(path, "rb"))

    wire = run(app)
    assert isinstance(wire.pushed[-1][0], FileRegion) and wire.end == DONE_KEEP_ALIVE
    assert wire.data.endswith(b"Content-Length: 100\r\nServer: frontdesk\r\n\r\n" + b"B" * 100)
    wire.pushed[-1][0].close()


@pytest.mark.parametrize("offset", [0, 3])  # empty, or read to its end by the app already
def test_file_wrapper_with_nothing_left_to_send_is_no_region(tmp_path, offset):
    path = tmp_path / "f"
    path.write_bytes(b"abc"[:offset])
    files = []

    def app(environ, start_response):
        start_response("200 OK", [])
        f = open(path, "rb")
        f.read(offset)
        files.append(f)
        return environ["wsgi.file_wrapper"](f)

    wire = run(app)
    assert not any(isinstance(data, FileRegion) for data, _ in wire.pushed)
    assert wire.data.endswith(b"Content-Length: 0\r\nServer: frontdesk\r\n\r\n")
    assert wire.end == DONE_KEEP_ALIVE and files[0].closed  # closed by the app thread


def test_headers_added_to_the_list_after_start_response_never_reach_the_wire(caplog):
    # wsgiref keeps the app's list; an app may append to it later. What goes out is what was
    # validated: a CR/LF smuggled in afterwards must not become a header of its own.
    def app(environ, start_response):
        headers = [("Content-Type", "text/plain")]
        start_response("200 OK", headers)
        headers.append(("X-Evil", "a\r\nSet-Cookie: pwned=1"))
        return [b"body"]

    wire = Wire()
    run(app, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", wire)
    assert b"pwned" not in wire.data and b"X-Evil" not in wire.data
    assert wire.data.endswith(b"\r\n\r\nbody")


def test_a_partial_line_on_wsgi_errors_is_logged_with_its_own_request(caplog):
    def app(environ, start_response):
        environ["wsgi.errors"].write(environ["PATH_INFO"] + " said no newline")
        start_response("200 OK", [])
        return [b"ok"]

    with caplog.at_level(logging.ERROR, "frontdesk.error.app"):
        run(app, b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        run(app, b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [r.getMessage() for r in caplog.records if r.name == "frontdesk.error.app"] == [
        "/first said no newline", "/second said no newline"]
