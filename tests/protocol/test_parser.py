"""RequestParser: raw bytes in, requests or ProtocolError out, under every way of splitting."""

from __future__ import annotations

import random

import pytest

from frontdesk.errors import ProtocolError
from frontdesk.protocol import parser as parser_module
from frontdesk.protocol.parser import Limits, RequestParser


def splits(data: bytes):
    """Whole, line by line, byte by byte, and at random points (h11/gunicorn habit)."""
    yield [data]
    lines = data.split(b"\n")
    yield [line + b"\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    yield [data[i : i + 1] for i in range(len(data))]
    rng = random.Random(len(data))
    for _ in range(3):
        cuts = sorted(rng.sample(range(1, len(data)), min(5, len(data) - 1))) if len(data) > 1 else []
        yield [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]


def parse(data: bytes, limits: Limits | None = None):
    """Parse under every split; all splits must agree. Returns (requests, error status)."""
    outcomes = []
    for pieces in splits(data):
        parser = RequestParser(limits or Limits())
        status = None
        try:
            for piece in pieces:
                parser.feed(piece)
        except ProtocolError as exc:
            status = exc.status
        requests = [
            (r.method, r.target, r.version, r.headers, _body(r.body), r.keep_alive)
            for r in parser.requests
        ]
        outcomes.append((requests, status))
    first = outcomes[0]
    for other in outcomes[1:]:
        assert other == first
    return first


def _body(body):
    if isinstance(body, bytes):
        return body
    data = body.read()
    body.close()
    return data


def test_simple_get():
    requests, error = parse(b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert error is None
    assert requests == [("GET", b"/a?b=c", "1.1", [(b"Host", b"example.com")], b"", True)]


def test_content_length_body_and_pipelining():
    data = (
        b"POST /one HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /two HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    requests, error = parse(data)
    assert error is None
    assert [(r[0], r[1], r[4], r[5]) for r in requests] == [
        ("POST", b"/one", b"hello", True),
        ("GET", b"/two", b"", False),
    ]


def test_chunked_body_is_dechunked_and_trailers_are_not_headers():
    data = (
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: sneaky\r\n\r\n"
    )
    requests, error = parse(data)
    assert error is None
    (method, target, version, headers, body, keep_alive), = requests
    assert body == b"hello world"
    assert (b"X-Trailer", b"sneaky") not in headers
    assert [name for name, _ in headers] == [b"Host", b"Transfer-Encoding"]


def test_http10_keep_alive_rules():
    requests, _ = parse(b"GET / HTTP/1.0\r\n\r\n")
    assert requests[0][2:] == ("1.0", [], b"", False)
    requests, _ = parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert requests[0][5] is True


def test_underscore_headers_dropped_and_trailing_whitespace_trimmed():
    requests, error = parse(
        b"GET / HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 6.6.6.6\r\nX-Name: value \t \r\n\r\n"
    )
    assert error is None
    assert requests[0][3] == [(b"Host", b"h"), (b"X-Name", b"value")]


def test_obs_text_in_values_is_kept():
    requests, error = parse(b"GET / HTTP/1.1\r\nHost: h\r\nX-Latin: caf\xe9\r\n\r\n")
    assert error is None and requests[0][3][1] == (b"X-Latin", b"caf\xe9")


def test_leading_empty_line_is_ignored():
    requests, error = parse(b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert error is None and len(requests) == 1


# Each of these must be refused with the given status (RFC 9112 §6.3, §11; RFC 9110).
REJECTED = {
    "cl-and-te": (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "te-and-cl": (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Length: 3\r\n\r\n0\r\n\r\n", 400),
    "duplicate-cl-same": (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                          b"Content-Length: 3\r\n\r\nabc", 400),
    "duplicate-cl-different": (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                               b"Content-Length: 4\r\n\r\nabcd", 400),
    "cl-list": (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
    "cl-plus-sign": (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\nabc", 400),
    "cl-negative": (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400),
    "cl-hex": (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x3\r\n\r\nabc", 400),
    "cl-underscore": (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1_0\r\n\r\n", 400),
    "cl-overflow": (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
    "te-obfuscated": (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
    "te-not-final": (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
    "te-identity": (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n", 400),
    "te-twice": (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "te-space-before-colon": (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n", 400),
    "te-in-http10": (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "chunk-size-0x": (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"0x5\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-size-plus": (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"+5\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-data-too-long": (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"3\r\nabcX\r\n0\r\n\r\n", 400),
    "bare-lf-request-line": (b"GET / HTTP/1.1\nHost: h\r\n\r\n", 400),
    "bare-lf-header": (b"GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", 400),
    "bare-cr-header": (b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", 400),
    "obs-fold": (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400),
    "nul-in-value": (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n", 400),
    "ctl-in-value": (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n", 400),
    "space-in-name": (b"GET / HTTP/1.1\r\nHost: h\r\nX Y: z\r\n\r\n", 400),
    "colon-less-header": (b"GET / HTTP/1.1\r\nHost: h\r\nJustAName\r\n\r\n", 400),
    "no-host-11": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "two-hosts-11": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "http09": (b"GET /\r\n\r\n", 400),
    "http20": (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
    "http12": (b"GET / HTTP/1.2\r\nHost: h\r\n\r\n", 400),
    "lowercase-http": (b"GET / http/1.1\r\nHost: h\r\n\r\n", 400),
    "unknown-method": (b"FOO / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "method-with-symbol": (b"G@T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "space-in-target": (b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "ctl-in-target": (b"GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "leading-space": (b" GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "asterisk-not-options": (b"GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "authority-form-connect": (b"CONNECT example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "not-a-target": (b"GET *x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "other-scheme": (b"GET ftp://h/x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
}


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_rejected(name):
    data, status = REJECTED[name]
    requests, error = parse(data)
    assert error == status
    assert requests == []


def test_request_before_a_bad_one_still_parses():
    requests, error = parse(b"GET /ok HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\n\r\n")
    assert error == 400
    assert [r[1] for r in requests] == [b"/ok"]


def test_upgrade_request_is_answered_then_closed():
    parser = RequestParser(Limits())
    parser.feed(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
                b"\x81\x85garbage-frame")
    assert len(parser.requests) == 1 and parser.requests[0].keep_alive is False
    parser.feed(b"GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n")
    assert len(parser.requests) == 1  # nothing after the upgrade point is parsed


# -- limits ---------------------------------------------------------------------------------------


def test_request_line_limit_is_414():
    # The whole line counts (method, target, version, two spaces; not the CRLF), as gunicorn's
    # --limit-request-line does: 100 bytes pass, 101 get 414.
    limits = Limits(request_line=100)
    line = b"GET /" + b"a" * 86 + b" HTTP/1.1"
    assert len(line) == 100
    requests, error = parse(line + b"\r\nHost: h\r\n\r\n", limits)
    assert error is None and len(requests) == 1
    _, error = parse(b"POST" + line[3:] + b"\r\nHost: h\r\n\r\n", limits)
    assert error == 414
    _, error = parse(b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: h\r\n\r\n", limits)
    assert error == 414


def test_too_many_fields_is_431():
    headers = b"".join(b"X-%d: v\r\n" % i for i in range(10))
    _, error = parse(b"GET / HTTP/1.1\r\nHost: h\r\n" + headers + b"\r\n", Limits(fields=10))
    assert error == 431
    requests, error = parse(b"GET / HTTP/1.1\r\nHost: h\r\n" + headers[:-8] + b"\r\n",
                            Limits(fields=10))
    assert error is None


def test_field_too_large_is_431():
    _, error = parse(b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"v" * 200 + b"\r\n\r\n",
                     Limits(field_size=100))
    assert error == 431


def test_one_megabyte_header_value_is_431_without_buffering_it_all():
    parser = RequestParser(Limits())  # defaults: 8190 per field, 64 KiB per section
    parser.feed(b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: ")
    with pytest.raises(ProtocolError) as info:
        for _ in range(16):  # 16 × 64 KiB = 1 MiB, fed as a socket would deliver it
            parser.feed(b"v" * 65536)
    assert info.value.status == 431


def test_twenty_thousand_headers_is_431():
    parser = RequestParser(Limits())
    with pytest.raises(ProtocolError) as info:
        parser.feed(b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X: y\r\n" * 20000 + b"\r\n")
    assert info.value.status == 431


def test_header_section_limit_counts_across_reads():
    # A field that never completes is never counted by its meaning; the bytes llhttp holds for
    # it are bounded all the same: the limit plus a fixed slack plus one read.
    parser = RequestParser(Limits(header_size=1000, field_size=100000))
    parser.feed(b"GET / HTTP/1.1\r\nHost: h\r\nX: ")
    fed = 0
    with pytest.raises(ProtocolError) as info:
        for _ in range(100):
            parser.feed(b"v" * 600)
            fed += 600
    assert info.value.status == 431
    assert fed <= 1000 + parser_module._STALL_SLACK


def test_header_section_limit_does_not_depend_on_how_the_request_is_split():
    # Counted as request line + `name: value` CRLF per field + the blank line: the request's
    # own size when it has no extra whitespace.
    request = b"GET /abc HTTP/1.1\r\nHost: example.com\r\nUser-Agent: probe\r\nX-Long: " + \
        b"v" * 10 + b"\r\n\r\n"
    assert parse(request, Limits(header_size=len(request)))[1] is None
    assert parse(request, Limits(header_size=len(request) - 1))[1] == 431
    # Extra whitespace llhttp skips is not counted, however the request is split.
    padded = request.replace(b"X-Long: ", b"X-Long:        ")
    assert parse(padded, Limits(header_size=len(request)))[1] is None


def test_declared_body_over_limit_is_413_before_reading_it():
    parser = RequestParser(Limits(body=1000))
    with pytest.raises(ProtocolError) as info:
        parser.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1001\r\n\r\n")
    assert info.value.status == 413


def test_chunked_body_over_limit_is_413():
    parser = RequestParser(Limits(body=1000))
    parser.feed(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    with pytest.raises(ProtocolError) as info:
        for _ in range(3):
            parser.feed(b"200\r\n" + b"x" * 512 + b"\r\n")
    assert info.value.status == 413


def test_body_limit_zero_means_unlimited():
    requests, error = parse(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000,
                            Limits(body=0))
    assert error is None and len(requests[0][4]) == 5000


def test_large_body_spools_to_a_file():
    parser = RequestParser(Limits(body_buffer=1000))
    parser.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n")
    for _ in range(5):
        parser.feed(b"y" * 1000)
    request = parser.requests.popleft()
    assert not isinstance(request.body, bytes)
    assert request.body.read() == b"y" * 5000
    assert request.body_size == 5000
    request.body.close()


# -- Expect: 100-continue ---------------------------------------------------------------------------


def test_expect_continue_flag_until_body_arrives():
    parser = RequestParser(Limits())
    parser.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    assert parser.expect_continue is True
    parser.feed(b"abc")
    assert parser.expect_continue is False
    assert parser.requests[0].body == b"abc"


def test_no_continue_for_http10_or_bodiless_requests():
    parser = RequestParser(Limits())
    parser.feed(b"POST / HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    assert parser.expect_continue is False
    parser = RequestParser(Limits())
    parser.feed(b"GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n")
    assert parser.expect_continue is False


def test_expect_continue_over_limit_is_413_at_once():
    parser = RequestParser(Limits(body=10))
    with pytest.raises(ProtocolError) as info:
        parser.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n"
                    b"Expect: 100-continue\r\n\r\n")
    assert info.value.status == 413


# -- found in review ---------------------------------------------------------------------------------


def test_upgrade_request_keeps_its_content_length_body():
    """curl --http2 -d sends Upgrade: h2c with a body; llhttp skips it, we must not."""
    data = (b"POST / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nContent-Length: 11\r\n\r\n"
            b"hello=world")
    requests, error = parse(data + b"GET /never HTTP/1.1\r\nHost: h\r\n\r\n")
    assert error is None
    (method, target, _, _, body, keep_alive), = requests
    assert (method, body, keep_alive) == ("POST", b"hello=world", False)


def test_upgrade_with_a_chunked_body_is_501():
    _, error = parse(b"POST / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    assert error == 501


def test_unsupported_transfer_coding_is_501():
    _, error = parse(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                     b"0\r\n\r\n")
    assert error == 501


def test_header_section_limit_holds_within_one_read():
    headers = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 8000) for i in range(25))
    parser = RequestParser(Limits())  # 64 KiB section, 8190 per field
    with pytest.raises(ProtocolError) as info:
        parser.feed(b"GET / HTTP/1.1\r\nHost: h\r\n" + headers + b"\r\n")
    assert info.value.status == 431


# -- found by conformance probes ------------------------------------------------------------------


def test_transfer_encoding_split_over_two_lines_is_400():
    # RFC 9110 §5.3 reads the two lines as `gzip, chunked`; llhttp would see only `chunked`.
    for first in (b"gzip", b"identity", b"chunked"):
        _, error = parse(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: " + first +
                         b"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        assert error == 400, first


@pytest.mark.parametrize("host", [b"a b", b"a/b", b"user@x", b"x:abc", b"[::1", b"", b"x y:80",
                                  b"\xe9vil", b"a%zz", b"[::1]x"])
def test_invalid_host_is_400(host):
    _, error = parse(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert error == 400


@pytest.mark.parametrize("host", [b"example.com", b"example.com:8080", b"127.0.0.1:80", b"[::1]",
                                  b"[::1]:8000", b"xn--bcher-kva.example", b"a_b.local",
                                  b"example.com:", b"[v1.fe80::a+en1]"])
def test_valid_host_is_served(host):
    requests, error = parse(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert error is None and len(requests) == 1


def test_two_host_lines_are_400_on_http10_too():
    _, error = parse(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n")
    assert error == 400
    requests, error = parse(b"GET / HTTP/1.0\r\nHost: a\r\n\r\n")
    assert error is None and len(requests) == 1


@pytest.mark.parametrize("line", [b"GET /x RTSP/1.0", b"GET /x RTSP/1.1", b"OPTIONS * RTSP/1.0",
                                  b"ANNOUNCE /x RTSP/1.0", b"SOURCE /x ICE/1.0"])
def test_other_protocols_on_the_request_line_are_400(line):
    _, error = parse(line + b"\r\nHost: h\r\n\r\n")
    assert error == 400


def test_rtsp_in_a_body_or_header_is_not_mistaken_for_the_protocol():
    requests, error = parse(b"POST /x HTTP/1.1\r\nHost: h\r\nX-Proto: /x RTSP/1.0\r\n"
                            b"Content-Length: 15\r\n\r\n/x RTSP/1.0 ICE\r\nGET /y HTTP/1.1\r\nHost: h\r\n\r\n")
    assert error is None and [r[1] for r in requests] == [b"/x", b"/y"]


def test_http09_request_line_is_400_without_waiting_for_headers():
    # An HTTP/0.9 client sends one line and waits; it gets its answer at once, under any split.
    _, error = parse(b"GET /hello\r\n")
    assert error == 400
    _, error = parse(b"GET /hello\r\n\r\n")
    assert error == 400


def feed_all(*pieces: bytes, limits: Limits | None = None):
    parser = RequestParser(limits or Limits())
    try:
        for piece in pieces:
            parser.feed(piece)
    except ProtocolError as exc:
        return [r.target for r in parser.requests], exc.status
    return [r.target for r in parser.requests], None


def test_rtsp_line_split_where_a_read_also_completes_a_field_is_still_400():
    assert feed_all(b"GET /x RTS", b"P/1.0\r\nHost: h\r\nA: b\r\n", b"\r\n")[1] == 400
    long_target = b"/" + b"a" * 150
    line = b"GET " + long_target + b" RTSP/1.0\r\nHost: h\r\n\r\n"
    assert feed_all(*[line[i:i + 1] for i in range(len(line))])[1] == 400  # 170 reads


def test_earlier_bodies_never_make_a_later_request_look_like_another_protocol():
    for body in (b"\nGET /x\r\n", b"GET /x RTSP/1.0\r\n", b"GET /x ICE/1.0\r\n"):
        first = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
        # the next request split after its target, in the same read as the body before it
        assert feed_all(first + b"GET /x", b" HTTP/1.1\r\nHost: h\r\n\r\n") == ([b"/a", b"/x"], None)
        assert feed_all(first + b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n") == ([b"/a", b"/x"], None)


def test_extra_spaces_in_the_request_line_are_400():
    # RFC 9112 §3: method SP request-target SP HTTP-version, one space each (llhttp is lenient).
    for line in (b"GET /x  HTTP/1.1", b"GET /x HTTP/1.1 "):
        _, error = parse(line + b"\r\nHost: h\r\n\r\n")
        assert error == 400, line


def test_http09_check_is_not_fooled_by_an_earlier_request():
    parser = RequestParser(Limits())
    parser.feed(b"GET /a HTTP/1.1\r\nHost: h\r\nReferer: GET /x\r\n\r\nGET /x HTTP/1.1\r")
    parser.feed(b"\nHost: h\r\n\r\n")
    assert [r.target for r in parser.requests] == [b"/a", b"/x"]


def test_connection_close_wins_over_keep_alive():
    for headers in (b"Connection: close, keep-alive\r\n",
                    b"Connection: keep-alive\r\nConnection: close\r\n"):
        requests, error = parse(b"GET / HTTP/1.0\r\n" + headers + b"\r\n")
        assert error is None and requests[0][5] is False
    requests, error = parse(b"GET / HTTP/1.0\r\nConnection: keep-alive, closed\r\n\r\n")
    assert requests[0][5] is True  # `closed` is not `close`


def test_connection_close_trailer_ends_keep_alive():
    requests, error = parse(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"5\r\nhello\r\n0\r\nConnection: close\r\n\r\n")
    assert error is None and requests[0][4] == b"hello" and requests[0][5] is False


def test_endless_trailer_is_refused_with_bounded_memory():
    parser = RequestParser(Limits(header_size=1000))
    parser.feed(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n0\r\nX-Big: ")
    fed = 0
    with pytest.raises(ProtocolError) as info:
        for _ in range(1000):
            parser.feed(b"a" * 4096)
            fed += 4096
    assert info.value.status == 431
    assert fed <= 1000 + parser_module._STALL_SLACK + 4096


def test_slow_chunked_body_is_not_mistaken_for_a_stall():
    parser = RequestParser(Limits(header_size=100))
    parser.feed(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(2000):  # many small chunks, each read completing some body data
        parser.feed(b"10\r\n" + b"x" * 16 + b"\r\n")
    parser.feed(b"0\r\n\r\n")
    assert parser.requests[0].body_size == 32000
