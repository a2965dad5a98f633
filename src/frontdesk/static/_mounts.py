"""Mount specs (`--static PREFIX=DIRECTORY[;OPTION]...`) and the caching policy.

Options, separated by ";" (so no value can hold one), each at most once:

- `cache-control=VALUE`: the Cache-Control of the mount's files. Given explicitly, it is what
  every file gets: fingerprint detection is off unless `fingerprints=on` is given too.
- `fingerprints=on|off`: whether names carrying a content hash (`is_fingerprinted`) get
  IMMUTABLE_CACHE_CONTROL. Default: on, unless `cache-control=` is given.
- `follow-symlinks`: serve files through symlinks that lead out of the directory.
- `allow-dotfiles` (every name starting with ".") or `allow-dotfiles=NAME[,NAME...]` (those
  names only, e.g. `.well-known`): serve path segments starting with ".". Never "." or "..".
"""

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

# A content hash is a dot- or dash-separated part of a name, never its first part (see
# is_fingerprinted), that is either
# - 8 or more hex digits, all one case (webpack, Parcel, Django, Flask-Assets, Rollup < 3), or
# - exactly 8 characters of RFC 4648 base32, uppercase (esbuild's [hash]: A-Z and 2-7),
# with at least one digit and one letter either way, so a date (`report-20240101.pdf`) or a word
# (`deadbeef`, `FEEDBACK`) is not taken for one.
_HEX_RE = re.compile(r"^(?:[0-9a-f]{8,}|[0-9A-F]{8,})\Z")
_BASE32_RE = re.compile(r"^[A-Z2-7]{8}\Z")
_PART_SPLIT_RE = re.compile(r"[.\-]")
_DIGIT_RE = re.compile(r"[0-9]")
_LETTER_RE = re.compile(r"[a-zA-Z]")
_DOTNAME_RE = re.compile(r"^\.[^/\\\x00-\x1f\x7f,;]+\Z")

_OPTIONS = "cache-control=VALUE, fingerprints=on|off, follow-symlinks, allow-dotfiles[=NAMES]"


@dataclasses.dataclass(frozen=True, slots=True)
class Mount:
    """One static directory served under a URL prefix.

    `prefix` has no trailing slash ("" for a mount at "/"); `directory` is absolute;
    `cache_control` is the Cache-Control value of its files, except fingerprinted names when
    `fingerprints` is on. `follow_symlinks`: symlinks may lead out of the directory.
    `allow_dotfiles`: every segment starting with "." is served; `dotfile_names`: these are.
    """

    prefix: str
    directory: str
    cache_control: str = DEFAULT_CACHE_CONTROL
    fingerprints: bool = True
    follow_symlinks: bool = False
    allow_dotfiles: bool = False
    dotfile_names: frozenset[str] = frozenset()

    def allows(self, dotnames: tuple[str, ...]) -> bool:
        """Whether path segments starting with "." (never "." or "..") may be served here."""
        return self.allow_dotfiles or all(n in self.dotfile_names for n in dotnames)


def anchor_mount(spec: str, base: str) -> str:
    """`spec` with a relative DIRECTORY made absolute under `base` (the directory frontdesk
    started in, whatever directory the process is in later); any other spec as it is."""
    prefix, eq, rest = spec.partition("=")
    directory, semicolon, options = rest.partition(";")
    if not eq or not directory.strip() or os.path.isabs(directory.strip()):
        return spec
    return f"{prefix}={os.path.join(base, directory.strip())}{semicolon}{options}"


def parse_mount(spec: str) -> Mount:
    """Parse `PREFIX=DIRECTORY[;OPTION]...`; ValueError (one line) when it is bad."""
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
    given: dict[str, str | None] = {}
    for option in options.split(";") if options else ():
        key, eq, value = option.partition("=")
        key = key.strip().lower()
        if key not in ("cache-control", "fingerprints", "follow-symlinks", "allow-dotfiles"):
            raise ValueError(
                f"static mount {spec!r}: unknown option {option.strip()!r} (known: {_OPTIONS})"
            )
        if key in given:
            raise ValueError(f"static mount {spec!r}: option {key} given twice")
        given[key] = value.strip() if eq else None
    cache_control = DEFAULT_CACHE_CONTROL
    value = given.get("cache-control")
    if "cache-control" in given:
        if value is None or not _FIELD_VALUE_RE.match(value):
            raise ValueError(
                f"static mount {spec!r}: cache-control must be a non-empty printable ASCII value"
            )
        cache_control = value
    fingerprints = "cache-control" not in given
    if "fingerprints" in given:
        value = (given["fingerprints"] or "").lower()
        if value not in ("on", "off"):
            raise ValueError(f"static mount {spec!r}: fingerprints must be 'on' or 'off'")
        fingerprints = value == "on"
    if given.get("follow-symlinks", None) is not None:
        raise ValueError(f"static mount {spec!r}: follow-symlinks takes no value")
    allow_dotfiles = False
    names: frozenset[str] = frozenset()
    if "allow-dotfiles" in given:
        value = given["allow-dotfiles"]
        if value is None:
            allow_dotfiles = True
        else:
            names = frozenset(n.strip() for n in value.split(","))
            bad = sorted(n for n in names if not _DOTNAME_RE.match(n) or n in (".", ".."))
            if bad:
                raise ValueError(
                    f"static mount {spec!r}: allow-dotfiles takes names starting with '.'"
                    f" (not '.' or '..'), separated by ','; got {bad[0]!r}"
                )
    return Mount(
        prefix,
        os.path.abspath(directory),
        cache_control,
        fingerprints,
        "follow-symlinks" in given,
        allow_dotfiles,
        names,
    )


def is_fingerprinted(name: str) -> bool:
    """Whether a file name carries a content hash (`app.3f2a9c1b.css`, `entry-IVRV6JR7.js`).

    The hash must follow a name (`cafe1234.txt` is not fingerprinted, `app.cafe1234.txt` is),
    and the last extension never counts. See the patterns above.
    """
    stem = name.rpartition(".")[0]
    parts = _PART_SPLIT_RE.split(stem)
    for part in parts[1:]:
        if (
            (_HEX_RE.match(part) or _BASE32_RE.match(part))
            and _DIGIT_RE.search(part)
            and _LETTER_RE.search(part)
        ):
            return True
    return False
