"""Validators (RFC 9110 §8.8) and the pieces of conditional requests (§13).

Pure functions over header values; the order in which preconditions are evaluated (§13.2.2)
lives in `_static.StaticFiles._full`.
"""

from __future__ import annotations

import calendar
import datetime
import email.utils
import re
import time

# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE ; etagc = %x21 / %x23-7E / obs-text  (§8.8.3)
_LIST_MEMBER = re.compile(rb'[ \t]*(?:(W/)?("[\x21\x23-\x7e\x80-\xff]*")[ \t]*)?(?:,|\Z)')


def make_etag(ino: int, size: int, mtime_ns: int, suffix: bytes = b"") -> bytes:
    """A strong ETag from the file's identity. Distinct per content-coding through `suffix`.

    The inode is in it because build tools (and Nix, and tar) can reset mtimes: with size and
    mtime alone, an edit that keeps the size would keep the ETag and clients would get 304 for
    stale content. The cost: two hosts serving the same files give different ETags.
    """
    return b'"%x-%x-%x%s"' % (ino, size, mtime_ns, suffix)


def match_etag_list(value: bytes, etag: bytes, *, weak: bool) -> bool:
    """Whether the `If-Match`/`If-None-Match` value lists `etag` (or is `*`).

    `weak=True` is the weak comparison of If-None-Match (W/ prefixes ignored, §13.1.2);
    `weak=False` the strong one of If-Match (§13.1.1). A malformed list matches nothing.
    """
    if etag not in value:  # fast reject; a quoted tag cannot occur inside another one
        return value.strip(b" \t") == b"*"
    pos = 0
    end = len(value)
    while pos < end:
        m = _LIST_MEMBER.match(value, pos)
        if m is None or m.end() == pos:
            return False
        if m.group(2) == etag and (weak or m.group(1) is None):
            return True
        pos = m.end()
    return False


def is_strong_etag(value: bytes) -> bool:
    """Whether an If-Range value is an entity-tag (as opposed to an HTTP-date)."""
    return value.startswith(b'"') or value.startswith(b"W/")


def format_http_date(seconds: float) -> bytes:
    """IMF-fixdate, e.g. b"Sun, 06 Nov 1994 08:49:37 GMT"."""
    return email.utils.formatdate(seconds, usegmt=True).encode("ascii")


_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        (
            b"Jan",
            b"Feb",
            b"Mar",
            b"Apr",
            b"May",
            b"Jun",
            b"Jul",
            b"Aug",
            b"Sep",
            b"Oct",
            b"Nov",
            b"Dec",
        )
    )
}
_DAY = rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_LONG_DAY = rb"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_MONTH = rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_TIME = rb"([0-9]{2}):([0-9]{2}):([0-9]{2})"
# §5.6.7: IMF-fixdate, and the two obsolete forms a recipient must still accept.
_IMF = re.compile(_DAY + rb", ([0-9]{2}) " + _MONTH + rb" ([0-9]{4}) " + _TIME + rb" GMT\Z")
_RFC850 = re.compile(_LONG_DAY + rb", ([0-9]{2})-" + _MONTH + rb"-([0-9]{2}) " + _TIME + rb" GMT\Z")
_ASCTIME = re.compile(_DAY + rb" " + _MONTH + rb" ([ 0-9][0-9]) " + _TIME + rb" ([0-9]{4})\Z")


def _rfc850_year(yy: int, month: int, day: int, hms: tuple[int, int, int], now: float) -> int:
    """The four-digit year of an rfc850-date (§5.6.7): the year with those last two digits that
    puts the timestamp at most 50 years in the future, and as late as possible.

    "MUST interpret a timestamp that appears to be more than 50 years in the future as
    representing the most recent year in the past that had the same last two digits": so in 2025,
    "30" is 2030 and "80" is 1980. Compared as (year, month, day, time) tuples, so 29 February
    needs no special case.
    """
    t = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
    limit = (t.year + 50, t.month, t.day, t.hour, t.minute, t.second)
    year = t.year - t.year % 100 + yy
    if (year, month, day, *hms) > limit:
        year -= 100
    elif (year + 100, month, day, *hms) <= limit:
        year += 100
    return year


def parse_http_date(value: bytes, now: float | None = None) -> int | None:
    """Seconds since the epoch for an HTTP-date, or None when it is not one (§5.6.7).

    `now` (seconds since the epoch, default the current time) only matters for the two-digit
    years of rfc850-date.
    """
    value = value.strip(b" \t")
    m = _IMF.match(value)
    if m is not None:
        day, month, year, hh, mm, ss = m.group(1, 2, 3, 4, 5, 6)
        y = int(year)
    else:
        m = _RFC850.match(value)
        if m is not None:
            day, month, year, hh, mm, ss = m.group(1, 2, 3, 4, 5, 6)
            y = _rfc850_year(
                int(year),
                _MONTHS[month],
                int(day),
                (int(hh), int(mm), int(ss)),
                time.time() if now is None else now,
            )
        else:
            m = _ASCTIME.match(value)
            if m is None:
                return None
            month, day, hh, mm, ss, year = m.group(1, 2, 3, 4, 5, 6)
            y = int(year)
    try:
        # All groups are ASCII digits (the regexes say so); datetime rejects Feb 30 and friends.
        stamp = datetime.datetime(y, _MONTHS[month], int(day), int(hh), int(mm), min(int(ss), 59))
    except ValueError:
        return None
    return calendar.timegm(stamp.timetuple())
