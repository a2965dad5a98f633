"""Property tests at the parser boundary: any bytes → requests or ProtocolError, nothing else.

300 examples per test; for a longer run (docs/testing.md):
`FUZZ_EXAMPLES=20000 pytest tests/protocol/test_fuzz.py`.
"""

from __future__ import annotations

import http.client
import io
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from frontdesk.errors import ProtocolError
from frontdesk.protocol.parser import Limits, RequestParser

# Applied to this module's tests only: a settings.load_profile() here, at import, would change
# the settings of every hypothesis test in the session.
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 300)), deadline=None)

VALID = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /p?q=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nz",
]

SMALL = Limits(request_line=200, fields=20, field_size=300, header_size=2000, body=5000,
               body_buffer=100)


def feed_all(pieces: list[bytes]) -> tuple[list, ProtocolError | None]:
    parser = RequestParser(SMALL)
    try:
        for piece in pieces:
            parser.feed(piece)
    except ProtocolError as exc:
        assert 400 <= exc.status < 600
        parser.discard()
        return list(parser.requests), exc
    return list(parser.requests), None


@given(st.lists(st.binary(max_size=300), max_size=8))
@settings(FUZZ)
def test_arbitrary_bytes_give_requests_or_protocol_error(pieces):
    requests, _ = feed_all(pieces)
    for request in requests:
        assert request.method and request.version in ("1.0", "1.1")


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(VALID)) * draw(st.integers(1, 3)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "dup"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from(
                [b"\r\n", b"\n", b"\r", b" ", b"\x00", b":", b"_", b"0x", b"-1", b"\t",
                 b"Transfer-Encoding: chunked\r\n", b"Content-Length: 3\r\n", b"Host: b\r\n"]))
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 4))]
        elif op == "dup":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 10))]
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
    bounds = [0, *cuts, len(data)]
    return [bytes(data[a:b]) for a, b in zip(bounds, bounds[1:])]


@given(mutated())
@settings(FUZZ, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_requests_give_requests_or_protocol_error(pieces):
    requests, _ = feed_all(pieces)
    for request in requests:
        body = request.body if isinstance(request.body, bytes) else request.body.read()
        assert len(body) == request.body_size <= SMALL.body


HEADER_NAME = st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,20}\Z")
HEADER_VALUE = st.from_regex(r"\A[!-~]([ -~]{0,40}[!-~])?\Z")


@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
    path=st.from_regex(r"\A/[A-Za-z0-9._~%!$&'()*+,;=:@/-]{0,50}\Z"),
    headers=st.lists(st.tuples(HEADER_NAME, HEADER_VALUE), max_size=8),
    body=st.binary(max_size=200),
    chunked=st.booleans(),
)
@settings(FUZZ)
def test_round_trip_against_stdlib_client_serialisation(method, path, headers, body, chunked):
    """What http.client writes, the parser reads back exactly (differential vs the stdlib)."""
    headers = [(n, v) for n, v in headers if n.lower() not in
               ("host", "content-length", "transfer-encoding", "expect", "connection")]
    sink = _Sink()
    conn = http.client.HTTPConnection("example.com")
    conn.sock = sink
    conn.putrequest(method, path, skip_accept_encoding=True)
    for name, value in headers:
        conn.putheader(name, value)
    if chunked:
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        if body:
            sink.sendall(b"%x\r\n%s\r\n" % (len(body), body))
        sink.sendall(b"0\r\n\r\n")
    else:
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
    parser = RequestParser(Limits())
    parser.feed(sink.data.getvalue())
    (request,) = parser.requests
    assert request.method == method
    assert request.target == path.encode()
    assert request.body == body
    sent = [(n.encode(), v.encode()) for n, v in headers]
    assert [h for h in request.headers if h[0].lower() not in
            (b"host", b"content-length", b"transfer-encoding")] == sent


class _Sink:
    def __init__(self) -> None:
        self.data = io.BytesIO()

    def sendall(self, data: bytes) -> None:
        self.data.write(data)

    def close(self) -> None:
        pass
