"""Range requests (RFC 9110 §14): parse `Range: bytes=...` against a representation's length.

    ranges-specifier = range-unit "=" range-set
    range-set        = 1#range-spec
    range-spec       = int-range / suffix-range
    int-range        = first-pos "-" [ last-pos ]
    suffix-range     = "-" suffix-length

`parse_range` answers one of three ways:

- None: ignore the Range header and send 200 — a unit other than bytes (§14.2 "MUST ignore"),
  a syntax error or an int-range with last < first (invalid: the field is ignored), more than
  MAX_RANGES specs (the Apache Killer defence, like nginx's max_ranges), or an empty file.
- []: no range is satisfiable -> 416 with `Content-Range: bytes */SIZE`.
- [(first, last), ...]: the satisfiable ranges, inclusive, in the order the client listed them,
  with overlapping or nearly adjacent ranges (gap below a part header's size) merged, as §14.6
  allows, so a client can never make us send more than the file plus MAX_RANGES part headers.

Numbers are ASCII digits only (no sign, "_", or spaces: `int()` would accept those); leading zeros
are allowed (`0000000000000000000000001` is 1), and more than 18 significant digits is simply
"larger than any file".
"""

from __future__ import annotations

import re

MAX_RANGES = 16
_COALESCE_GAP = 80  # about the size of a multipart part header
_HUGE = 10**18

_SPEC = re.compile(rb"[ \t]*(?:([0-9]+)-([0-9]*)|-([0-9]+))[ \t]*\Z")
_EMPTY = re.compile(rb"[ \t]*\Z")


def _num(digits: bytes) -> int:
    digits = digits.lstrip(b"0")  # 1*DIGIT: leading zeros are allowed, and change nothing
    return _HUGE if len(digits) > 18 else int(digits or b"0")


def parse_range(value: bytes, size: int) -> list[tuple[int, int]] | None:
    """See the module docstring."""
    unit, eq, range_set = value.partition(b"=")
    if not eq or unit.lower() != b"bytes" or size == 0:
        return None
    specs = range_set.split(b",")
    if len(specs) > MAX_RANGES:
        # Empty list elements are legal (#rule), so count only the real ones before giving up.
        specs = [s for s in specs if _EMPTY.match(s) is None]
        if len(specs) > MAX_RANGES:
            return None
    ranges: list[tuple[int, int]] = []
    seen = False
    for spec in specs:
        m = _SPEC.match(spec)
        if m is None:
            if _EMPTY.match(spec) is not None:
                continue
            return None
        seen = True
        first_s, last_s, suffix_s = m.group(1, 2, 3)
        if suffix_s is not None:
            n = _num(suffix_s)
            if n > 0:
                ranges.append((max(0, size - n), size - 1))
            continue
        first = _num(first_s)
        if last_s:
            last = _num(last_s)
            if last < first:
                return None
            if first < size:
                ranges.append((first, min(last, size - 1)))
        elif first < size:
            ranges.append((first, size - 1))
    if not seen:
        return None
    if len(ranges) > 1:
        ranges = _coalesce(ranges)
    return ranges


def _coalesce(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge ranges that overlap or are less than a part header apart; keep the request order.

    §14.6: parts go "in the same order that the corresponding range-spec appeared in the received
    Range header field, excluding those ranges that were deemed unsatisfiable or that were
    coalesced into other ranges", and a server may coalesce ranges "that overlap, or that are
    separated by a gap that is smaller than the overhead of sending multiple parts, regardless of
    the order". A merged range takes the place of the earliest of its members. At most
    MAX_RANGES ranges, so quadratic is fine.
    """
    out = list(ranges)
    i = 0
    while i < len(out):
        first, last = out[i]
        j = i + 1
        merged = False
        while j < len(out):
            f, l = out[j]
            if f <= last + 1 + _COALESCE_GAP and first <= l + 1 + _COALESCE_GAP:
                first, last = min(first, f), max(last, l)
                del out[j]
                merged = True
            else:
                j += 1
        out[i] = (first, last)
        if not merged:
            i += 1
        # else: the grown range may now reach one it skipped; look again from the same place
    return out
