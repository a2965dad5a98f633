"""Mount specs (`--static PREFIX=DIRECTORY[;cache-control=VALUE]`) and the caching policy."""

from __future__ import annotations

import dataclasses
import os
import re

# Unfingerprinted files may change on the next deploy under the same URL, so caches keep them for
# a minute only (whitenoise's choice): a CDN still absorbs the load, and a deploy shows within a
# minute. Revalidation after that is a cheap 304. Fingerprinted names never change content.
DEFAULT_CACHE_CONTROL = "public, max-age=60"
IMMUTABLE_CACHE_CONTROL = "public, max-age=31536000, immutable"

# A URL path prefix is compared with the raw (still percent-encoded) request path, so it may only
# hold characters that appear unencoded in a path (RFC 3986 pchar, minus "%").
_PREFIX_RE = re.compile(r"^(?:/[A-Za-z0-9\-._~!$&'()*+,;=:@]+)*/?\Z")
_FIELD_VALUE_RE = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?\Z")

# A content hash: 8+ hex digits, one case, with at least one digit and one letter, so a date
# (`report-20240101.pdf`) or a word (`deadbeef`) is not mistaken for one.
_HASH_RE = re.compile(r"^(?:[0-9a-f]{8,}|[0-9A-F]{8,})\Z")
_PART_SPLIT_RE = re.compile(r"[.\-]")
_DIGIT_RE = re.compile(r"[0-9]")
_LETTER_RE = re.compile(r"[a-fA-F]")


@dataclasses.dataclass(frozen=True, slots=True)
class Mount:
    """One static directory served under a URL prefix.

    `prefix` has no trailing slash ("" for a mount at "/"); `directory` is absolute;
    `cache_control` is the Cache-Control value for files whose names carry no content hash.
    """

    prefix: str
    directory: str
    cache_control: str = DEFAULT_CACHE_CONTROL


def parse_mount(spec: str) -> Mount:
    """Parse `PREFIX=DIRECTORY[;cache-control=VALUE]`; ValueError (one line) when it is bad."""
    prefix, eq, rest = spec.partition("=")
    if not eq:
        raise ValueError(f"static mount {spec!r}: expected PREFIX=DIRECTORY")
    directory, _, options = rest.partition(";")
    if not prefix.startswith("/"):
        raise ValueError(f"static mount {spec!r}: prefix must start with '/'")
    if "//" in prefix or not _PREFIX_RE.match(prefix):
        raise ValueError(
            f"static mount {spec!r}: prefix may only hold unreserved URL path characters"
        )
    segments = prefix.split("/")
    if any(seg in (".", "..") for seg in segments):
        raise ValueError(f"static mount {spec!r}: prefix may not contain '.' or '..' segments")
    prefix = prefix.rstrip("/")
    directory = directory.strip()
    if not directory:
        raise ValueError(f"static mount {spec!r}: directory is empty")
    if not os.path.isdir(directory):
        raise ValueError(f"static mount {spec!r}: {directory!r} is not an existing directory")
    cache_control = DEFAULT_CACHE_CONTROL
    if options:
        key, eq, value = options.partition("=")
        if key.strip().lower() != "cache-control" or not eq:
            raise ValueError(
                f"static mount {spec!r}: unknown option {options!r} (known: cache-control=VALUE)"
            )
        value = value.strip()
        if not _FIELD_VALUE_RE.match(value):
            raise ValueError(
                f"static mount {spec!r}: cache-control must be a non-empty printable ASCII value"
            )
        cache_control = value
    return Mount(prefix, os.path.abspath(directory), cache_control)


def is_fingerprinted(name: str) -> bool:
    """Whether a file name carries a content hash (`app.3f2a9c1b.css`, `main-5d41402abc.js`)."""
    stem = name.rpartition(".")[0]  # the last extension never counts
    for part in _PART_SPLIT_RE.split(stem):
        if _HASH_RE.match(part) and _DIGIT_RE.search(part) and _LETTER_RE.search(part):
            return True
    return False
