"""Conditional requests (RFC 9110 §13): If-None-Match, If-Modified-Since, If-Match,
If-Unmodified-Since, If-Range, and their order of evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest

from frontdesk.static._conditional import match_etag_list, parse_http_date

from .conftest import body, hdr, write

MTIME = 1_700_000_000  # Tue, 14 Nov 2023 22:13:20 GMT
LM = b"Tue, 14 Nov 2023 22:13:20 GMT"
BEFORE = b"Tue, 14 Nov 2023 22:13:19 GMT"
AFTER = b"Tue, 14 Nov 2023 22:13:21 GMT"


@pytest.fixture
def etag(root: Path, get) -> bytes:
    write(root, "app.css", "0123456789", mtime=MTIME)
    resp = get("/static/app.css")
    value = hdr(resp, b"ETag")
    assert value is not None and value.startswith(b'"') and hdr(resp, b"Last-Modified") == LM
    return value


def status(get, *headers: tuple[bytes, bytes], method: str = "GET") -> int:
    return get("/static/app.css", list(headers), method).status


def test_304_has_validators_and_no_body(get, etag: bytes) -> None:
    resp = get("/static/app.css", [(b"If-None-Match", etag)])
    assert resp.status == 304 and resp.body == []
    assert list(resp.headers) == [
        (b"ETag", etag),
        (b"Last-Modified", LM),
        (b"Cache-Control", b"public, max-age=60"),
    ]


@pytest.mark.parametrize(
    ("inm", "expected"),
    [
        ("{etag}", 304),
        ("W/{etag}", 304),  # weak comparison (§13.1.2)
        ('"nope", {etag}', 304),
        ('"nope",W/{etag} , "other"', 304),
        ("*", 304),
        (" * ", 304),
        ('"nope"', 200),
        ('W/"nope"', 200),
        ("{bare}", 200),  # not quoted: not an entity-tag
        ('"a,b", {etag}', 304),  # a comma inside another tag
        ("garbage {etag}", 200),  # malformed list matches nothing
    ],
)
def test_if_none_match(get, etag: bytes, inm: str, expected: int) -> None:
    value = inm.format(etag=etag.decode(), bare=etag.decode().strip('"')).encode()
    assert status(get, (b"If-None-Match", value)) == expected
    assert status(get, (b"if-none-match", value), method="HEAD") == expected


def test_if_none_match_repeated_fields_are_one_list(get, etag: bytes) -> None:
    assert status(get, (b"If-None-Match", b'"x"'), (b"If-None-Match", etag)) == 304


@pytest.mark.parametrize(
    ("ims", "expected"),
    [
        (LM, 304),
        (AFTER, 304),
        (BEFORE, 200),
        (b"Tuesday, 14-Nov-23 22:13:20 GMT", 304),  # RFC 850
        (b"Tue Nov 14 22:13:20 2023", 304),  # asctime
        (b"Tue Nov 14 22:13:19 2023", 200),
        (b"not a date", 200),  # ignored
        (b"Tue, 14 Nov 2023 22:13:20 UTC", 200),  # not GMT: invalid, ignored
        (b"1700000000", 200),
    ],
)
def test_if_modified_since(get, etag: bytes, ims: bytes, expected: int) -> None:
    assert status(get, (b"If-Modified-Since", ims)) == expected


def test_if_modified_since_ignored_when_if_none_match_present(get, etag: bytes) -> None:
    assert status(get, (b"If-None-Match", b'"other"'), (b"If-Modified-Since", AFTER)) == 200


def test_duplicate_if_modified_since_is_ignored(get, etag: bytes) -> None:
    assert status(get, (b"If-Modified-Since", LM), (b"If-Modified-Since", LM)) == 200


@pytest.mark.parametrize(
    ("im", "expected"),
    [
        ("{etag}", 200),
        ('"x", {etag}', 200),
        ("*", 200),
        ("W/{etag}", 412),  # strong comparison (§13.1.1)
        ('"x"', 412),
    ],
)
def test_if_match(get, etag: bytes, im: str, expected: int) -> None:
    assert status(get, (b"If-Match", im.format(etag=etag.decode()).encode())) == expected


@pytest.mark.parametrize(
    ("ius", "expected"),
    [(LM, 200), (AFTER, 200), (BEFORE, 412), (b"garbage", 200)],
)
def test_if_unmodified_since(get, etag: bytes, ius: bytes, expected: int) -> None:
    assert status(get, (b"If-Unmodified-Since", ius)) == expected


def test_if_unmodified_since_ignored_when_if_match_present(get, etag: bytes) -> None:
    assert status(get, (b"If-Match", etag), (b"If-Unmodified-Since", BEFORE)) == 200


def test_precondition_failure_wins_over_not_modified(get, etag: bytes) -> None:
    # §13.2.2: If-Match is evaluated before If-None-Match.
    resp = get("/static/app.css", [(b"If-Match", b'"x"'), (b"If-None-Match", etag)])
    assert resp.status == 412 and body(resp) == b"Precondition Failed\n"


def test_range_applies_when_if_range_etag_matches(get, etag: bytes) -> None:
    resp = get("/static/app.css", [(b"Range", b"bytes=0-3"), (b"If-Range", etag)])
    assert resp.status == 206 and body(resp) == b"0123"


@pytest.mark.parametrize(
    "if_range", [b'"stale"', b"W/{etag}", b"Mon, 01 Jan 2001 00:00:00 GMT", b"?"]
)
def test_full_response_when_if_range_fails(get, etag: bytes, if_range: bytes) -> None:
    value = if_range.replace(b"{etag}", etag)
    resp = get("/static/app.css", [(b"Range", b"bytes=0-3"), (b"If-Range", value)])
    assert resp.status == 200 and body(resp) == b"0123456789"


def test_if_range_date_must_match_exactly_and_be_old_enough(root: Path, get, etag: bytes) -> None:
    ok = get("/static/app.css", [(b"Range", b"bytes=0-3"), (b"If-Range", LM)])
    later = get("/static/app.css", [(b"Range", b"bytes=0-3"), (b"If-Range", AFTER)])
    assert (ok.status, later.status) == (206, 200)
    # Modified within the last second: its date is a weak validator (§8.8.2.2).
    write(root, "fresh.css", "0123456789")
    lm = hdr(get("/static/fresh.css"), b"Last-Modified")
    fresh = get("/static/fresh.css", [(b"Range", b"bytes=0-3"), (b"If-Range", lm)])
    assert fresh.status == 200


def test_if_none_match_before_range(get, etag: bytes) -> None:
    assert status(get, (b"Range", b"bytes=0-3"), (b"If-None-Match", etag)) == 304


def test_header_names_any_case(get, etag: bytes) -> None:
    assert status(get, (b"IF-NONE-MATCH", etag)) == 304
    assert status(get, (b"iF-mOdIfIeD-sInCe", LM)) == 304


def test_match_etag_list_unit() -> None:
    assert match_etag_list(b'"a", "b"', b'"b"', weak=False)
    assert not match_etag_list(b'W/"b"', b'"b"', weak=False)
    assert match_etag_list(b'W/"b"', b'"b"', weak=True)
    assert not match_etag_list(b'"ab"', b'"b"', weak=True)
    assert not match_etag_list(b'"a" "b"', b'"b"', weak=True)
    assert match_etag_list(b', ,"b",', b'"b"', weak=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"Sun, 06 Nov 1994 08:49:37 GMT", 784111777),
        (b"Sunday, 06-Nov-94 08:49:37 GMT", 784111777),
        (b"Sun Nov  6 08:49:37 1994", 784111777),
        (b"  Sun, 06 Nov 1994 08:49:37 GMT ", 784111777),
        (b"Sun, 06 Nov 1994 08:49:37 GMT+1", None),
        (b"Sun, 31 Feb 1994 08:49:37 GMT", None),
        (b"Sun, 06 Nov 1994 25:49:37 GMT", None),
        (b"Sun, 06 Nov +994 08:49:37 GMT", None),
        (b"Sun, 06 Nov 1_94 08:49:37 GMT", None),
        (b"sun, 06 nov 1994 08:49:37 gmt", None),
        (b"", None),
    ],
)
def test_parse_http_date(value: bytes, expected: int | None) -> None:
    assert parse_http_date(value) == expected


NOW_2025 = 1_750_000_000  # Sun, 15 Jun 2025 15:06:40 GMT


@pytest.mark.parametrize(
    ("value", "year"),
    [
        # RFC 9110 §5.6.7: more than 50 years in the future means the previous century.
        (b"Tuesday, 01-Jan-30 00:00:00 GMT", 2030),
        (b"Monday, 01-Jan-24 00:00:00 GMT", 2024),
        (b"Sunday, 06-Nov-94 08:49:37 GMT", 1994),
        (b"Saturday, 15-Jun-75 15:06:40 GMT", 2075),  # exactly 50 years ahead: still future
        (b"Saturday, 15-Jun-75 15:06:41 GMT", 1975),  # a second more: the past
        (b"Wednesday, 01-Jan-76 00:00:00 GMT", 1976),
    ],
)
def test_rfc850_two_digit_year(value: bytes, year: int) -> None:
    import datetime

    t = parse_http_date(value, now=NOW_2025)
    assert t is not None
    assert datetime.datetime.fromtimestamp(t, datetime.timezone.utc).year == year


def test_rfc850_two_digit_year_late_in_a_century() -> None:
    # In 2090, "10" is 2110 (20 years ahead), not 2010 (80 years back).
    now_2090 = 3_786_912_000  # 01 Jan 2090 00:00:00 GMT
    t = parse_http_date(b"Wednesday, 01-Jan-10 00:00:00 GMT", now=now_2090)
    assert t == 4_417_977_600  # 2110-01-01


def test_rfc850_year_30_is_2030_today() -> None:
    assert parse_http_date(b"Tuesday, 01-Jan-30 00:00:00 GMT") == 1_893_456_000  # 2030-01-01
