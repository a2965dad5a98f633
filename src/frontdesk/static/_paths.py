"""Request path -> relative file path, or None when the path must not reach the filesystem.

Theory of operation
-------------------
The path arrives raw: still percent-encoded, exactly as the client sent it. It is split on "/"
*before* decoding, and each segment is decoded exactly once, so an encoded slash (`%2f`) can never
create a new segment and nothing is ever decoded twice. The whole path is refused (None: a 404
from frontdesk, even with fallthrough, since these are attacks or garbage, never a name an app
should see as PATH_INFO) when a segment, after decoding:

- is "." or ".." (in any spelling: `%2e`, `.%2e`; overlong UTF-8 such as `%c0%ae` is refused as
  invalid UTF-8);
- holds "/", "\\", NUL or another control character (`%2f`, `%5c`, `%00`, raw backslashes);
- still holds a valid percent-escape (`%252e` decodes to `%2e`: double encoding is an attack or a
  bug, never a real file name);
- is not valid UTF-8, or has an invalid escape (`%zz`, `%2`).

Segments starting with "." (dotfiles such as `.env`, `.git`, `.well-known`) are not refused here:
they are returned in `dotnames`, and the caller decides per mount (refused unless the mount allows
them). ":" is an ordinary character: frontdesk runs on POSIX systems only, where drive letters and
NTFS streams mean nothing.

A path with more than MAX_SEGMENTS slashes is refused too, before any decoding: no real tree is
that deep, and it bounds the work a request can cost the event loop (an 8 KiB request line could
otherwise carry 4,000 segments to decode and check).

Empty segments (`//`) are dropped, as nginx's merge_slashes does; since no kept segment can hold a
separator, the result is always relative. The caller then joins it to the mount's real root and
checks that `realpath` stays inside (symlinks pointing out are refused there, unless allowed).
"""

from __future__ import annotations

import re

MAX_SEGMENTS = 128

# Anywhere in the raw path: control characters and backslashes are never legitimate.
_RAW_BAD = re.compile(rb"[\x00-\x1f\x7f\\]")
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_DECODED_BAD = re.compile(rb"[\x00-\x1f\x7f/\\]|%[0-9A-Fa-f]{2}")


def _unescape(seg: bytes) -> bytes:
    """Percent-decode a segment in which every "%" starts a valid escape and no raw backslash is.

    As "\\xHH" escapes through the unicode_escape codec, in C: four times faster than
    urllib.parse.unquote_to_bytes, which matters for a request line of 8 KiB of escapes. One pass,
    so a decoded backslash (`%5c`) is never interpreted again. Never empty: one byte per escape.
    """
    return seg.replace(b"%", b"\\x").decode("unicode_escape").encode("latin-1")


def safe_relpath(rest: bytes) -> tuple[str, bool, tuple[str, ...]] | None:
    """Split the part of the path after the mount prefix into a safe relative path.

    `rest` is b"" or starts with b"/". Returns (relative path joined with "/", trailing slash?,
    the segments that start with "."), or None when the path is refused.
    """
    if rest.count(b"/") > MAX_SEGMENTS or _RAW_BAD.search(rest) is not None:
        return None
    parts: list[str] = []
    dotnames: tuple[str, ...] = ()
    for seg in rest.split(b"/"):
        if not seg:
            continue
        if b"%" in seg:
            if _BAD_ESCAPE.search(seg) is not None:
                return None
            seg = _unescape(seg)
        if _DECODED_BAD.search(seg) is not None:
            return None
        try:
            name = seg.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if seg[0] == 0x2E:  # "."
            if name == "." or name == "..":
                return None
            dotnames += (name,)
        parts.append(name)
    return "/".join(parts), rest.endswith(b"/"), dotnames
