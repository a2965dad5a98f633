"""Range requests (RFC 9110 §14): single, suffix, open, multipart, 416, invalid, limits."""

from __future__ import annotations

import email.parser
import email.policy
import os
from pathlib import Path

import pytest

from frontdesk.static import FileRegion
from frontdesk.static._ranges import MAX_RANGES, parse_range

from .conftest import body, hdr, write

DATA = bytes(range(256)) * 4  # 1024 bytes, every offset distinguishable


@pytest.mark.parametrize(
    ("value", "size", "expected"),
    [
        (b"bytes=0-0", 10, [(0, 0)]),
        (b"bytes=0-", 10, [(0, 9)]),
        (b"bytes=3-5", 10, [(3, 5)]),
        (b"bytes=3-500", 10, [(3, 9)]),
        (b"bytes=-3", 10, [(7, 9)]),
        (b"bytes=-30", 10, [(0, 9)]),
        (b"BYTES=1-2", 10, [(1, 2)]),
        (b"bytes= 1-2 , 4-5", 10, [(1, 5)]),  # merged: the gap is tiny
        (b"bytes=0-1,,", 10, [(0, 1)]),
        (b"bytes=0-8,2-3", 10, [(0, 8)]),  # contained in the previous one
        (b"bytes=10-", 10, []),
        (b"bytes=-0", 10, []),
        (b"bytes=10-20,-0", 10, []),
        (b"bytes=99999999999999999999999-", 10, []),
        (b"bytes=0-99999999999999999999999", 10, [(0, 9)]),
        (b"bytes=5-3", 10, None),  # invalid: last < first
        (b"bytes=+1-2", 10, None),
        (b"bytes=1_0-20", 10, None),
        (b"bytes=1 0-20", 10, None),
        (b"bytes=0x1-2", 10, None),
        (b"bytes=-", 10, None),
        (b"bytes=", 10, None),
        (b"bytes=,", 10, None),
        (b"bytes=1-2;", 10, None),
        (b"bytes 1-2", 10, None),
        (b"items=1-2", 10, None),  # unknown unit: ignored
        (b"bytes=0-5", 0, None),  # empty representation: served whole
        (b"bytes=\xd9\xa1-2", 10, None),  # a non-ASCII digit that int() would accept
    ],
)
def test_parse_range(value: bytes, size: int, expected: list[tuple[int, int]] | None) -> None:
    assert parse_range(value, size) == expected


def test_parse_range_coalesces_overlapping_and_keeps_request_order() -> None:
    # RFC 9110 §14.6: parts in request order, except where coalesced (in the earliest's place).
    assert parse_range(b"bytes=500-600,0-10,5-20,550-700", 1000) == [(500, 700), (0, 20)]
    assert parse_range(b"bytes=200-299,0-99", 1000) == [(200, 299), (0, 99)]
    assert parse_range(b"bytes=-1,0-0", 1000) == [(999, 999), (0, 0)]
    assert parse_range(b"bytes=0-0,-1", 1000) == [(0, 0), (999, 999)]
    # A merged range can reach one listed before it: 700-800 joins 0-10 only through 20-690.
    assert parse_range(b"bytes=700-800,0-10,20-690", 1000) == [(0, 800)]
    assert parse_range(b"bytes=0-10,500-600,20-400", 1000) == [(0, 400), (500, 600)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"bytes=00000000000000000000000000-1", [(0, 1)]),  # nginx: 206 0-1
        (b"bytes=0-000000000000000000000000001", [(0, 1)]),
        (b"bytes=-0000000000000000000000000002", [(8, 9)]),
        (b"bytes=0005-0006", [(5, 6)]),
        (b"bytes=-000", []),
        (b"bytes=0000000000000000000010000000000000000000-", []),  # 19 significant digits
    ],
)
def test_parse_range_leading_zeros(value: bytes, expected: list[tuple[int, int]]) -> None:
    assert parse_range(value, 10) == expected


def test_parse_range_limit() -> None:
    many = b"bytes=" + b",".join(b"%d-%d" % (i * 1000, i * 1000) for i in range(MAX_RANGES + 1))
    assert parse_range(many, 10**6) is None
    exactly = b"bytes=" + b",".join(b"%d-%d" % (i * 1000, i * 1000) for i in range(MAX_RANGES))
    assert len(parse_range(exactly, 10**6)) == MAX_RANGES
    assert parse_range(exactly + b"," * 40, 10**6) is not None  # empty elements don't count


@pytest.fixture(params=["small", "large"])
def data(request: pytest.FixtureRequest, root: Path) -> bytes:
    """The same checks for an in-memory file and a FileRegion one."""
    content = DATA if request.param == "small" else os.urandom(300_000)
    write(root, "f.bin", content)
    return content


def test_single_range(get, data: bytes) -> None:
    resp = get("/static/f.bin", [(b"Range", b"bytes=10-19")])
    assert resp.status == 206
    assert hdr(resp, b"Content-Range") == b"bytes 10-19/%d" % len(data)
    assert hdr(resp, b"Content-Length") == b"10"
    assert hdr(resp, b"Content-Type") == b"application/octet-stream"
    assert hdr(resp, b"ETag") is not None and hdr(resp, b"Cache-Control") is not None
    assert body(resp) == data[10:20]
    if len(data) > 65536:
        (part,) = resp.body
        assert isinstance(part, FileRegion) and (part.offset, part.count) == (10, 10)


@pytest.mark.parametrize(
    ("spec", "first", "last"),
    [(b"bytes=-100", -100, None), (b"bytes=1000-", 1000, None), (b"bytes=0-0", 0, 1)],
)
def test_suffix_and_open_ranges(
    get, data: bytes, spec: bytes, first: int, last: int | None
) -> None:
    resp = get("/static/f.bin", [(b"range", spec)])
    expected = data[first:last]
    start = first % len(data)
    assert resp.status == 206 and body(resp) == expected
    assert hdr(resp, b"Content-Range") == b"bytes %d-%d/%d" % (
        start,
        start + len(expected) - 1,
        len(data),
    )


def parse_multipart(resp_body: bytes, content_type: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """(Content-Type, Content-Range, payload) of each part, by the stdlib's MIME parser."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type + b"\r\n\r\n" + resp_body
    )
    assert message.is_multipart()
    return [
        (
            part["Content-Type"].encode(),
            part["Content-Range"].encode(),
            part.get_payload(decode=True),
        )
        for part in message.iter_parts()
    ]


def test_multipart_byteranges(get, data: bytes) -> None:
    size = len(data)
    resp = get("/static/f.bin", [(b"Range", b"bytes=0-9, 500-509, -5")])
    assert resp.status == 206
    ctype = hdr(resp, b"Content-Type")
    assert ctype.startswith(b"multipart/byteranges; boundary=")
    raw = body(resp)
    assert hdr(resp, b"Content-Length") == b"%d" % len(raw)
    assert hdr(resp, b"Content-Range") is None
    parts = parse_multipart(raw, ctype)
    assert parts == [
        (b"application/octet-stream", b"bytes 0-9/%d" % size, data[0:10]),
        (b"application/octet-stream", b"bytes 500-509/%d" % size, data[500:510]),
        (b"application/octet-stream", b"bytes %d-%d/%d" % (size - 5, size - 1, size), data[-5:]),
    ]
    boundary = ctype.split(b"boundary=")[1]
    assert raw.endswith(b"\r\n--" + boundary + b"--\r\n")
    if size > 65536:  # large files: bytes interleaved with regions, nothing read into memory
        kinds = [type(p).__name__ for p in resp.body]
        assert kinds == ["bytes", "FileRegion"] * 3 + ["bytes"]


def test_multipart_parts_in_request_order(get, data: bytes) -> None:
    resp = get("/static/f.bin", [(b"Range", b"bytes=200-299,0-99")])
    assert resp.status == 206
    parts = parse_multipart(body(resp), hdr(resp, b"Content-Type"))
    size = len(data)
    assert [(r, p) for _, r, p in parts] == [
        (b"bytes 200-299/%d" % size, data[200:300]),
        (b"bytes 0-99/%d" % size, data[0:100]),
    ]


def test_leading_zeros_range(get, data: bytes) -> None:
    resp = get("/static/f.bin", [(b"Range", b"bytes=00000000000000000000000000-1")])
    assert resp.status == 206 and hdr(resp, b"Content-Range") == b"bytes 0-1/%d" % len(data)
    assert body(resp) == data[:2]


def test_multipart_boundaries_differ(get, data: bytes) -> None:
    one = get("/static/f.bin", [(b"Range", b"bytes=0-1,500-501")])
    two = get("/static/f.bin", [(b"Range", b"bytes=0-1,500-501")])
    assert hdr(one, b"Content-Type") != hdr(two, b"Content-Type")


def test_overlapping_ranges_coalesce_to_one_part(get, data: bytes) -> None:
    resp = get("/static/f.bin", [(b"Range", b"bytes=0-99,50-149,100-199")])
    assert resp.status == 206 and hdr(resp, b"Content-Range") == b"bytes 0-199/%d" % len(data)
    assert body(resp) == data[:200]


def test_unsatisfiable_416(get, data: bytes) -> None:
    resp = get("/static/f.bin", [(b"Range", b"bytes=%d-" % len(data))])
    assert resp.status == 416
    assert hdr(resp, b"Content-Range") == b"bytes */%d" % len(data)
    assert hdr(resp, b"Content-Length") == b"%d" % len(body(resp))


@pytest.mark.parametrize(
    "value", [b"bytes=5-3", b"bytes=abc", b"pages=1-2", b"bytes=-1-2", b"bytes=1-2-3"]
)
def test_invalid_range_is_ignored(get, data: bytes, value: bytes) -> None:
    resp = get("/static/f.bin", [(b"Range", value)])
    assert resp.status == 200 and body(resp) == data
    assert hdr(resp, b"Accept-Ranges") == b"bytes"


def test_too_many_ranges_serves_the_whole_file(get, data: bytes) -> None:
    spec = b"bytes=" + b",".join(b"%d-%d" % (i * 200, i * 200) for i in range(MAX_RANGES + 1))
    resp = get("/static/f.bin", [(b"Range", spec)])
    assert resp.status == 200 and body(resp) == data


def test_range_ignored_for_head_and_when_repeated(get, data: bytes) -> None:
    head = get("/static/f.bin", [(b"Range", b"bytes=0-1")], method="HEAD")
    assert head.status == 200 and hdr(head, b"Content-Length") == b"%d" % len(data)
    twice = get("/static/f.bin", [(b"Range", b"bytes=0-1"), (b"Range", b"bytes=0-1")])
    assert twice.status == 200
