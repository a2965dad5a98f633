"""StaticFiles: answer a request under a static prefix from the filesystem, without any I/O on
the network (the server writes the StaticResponse; FileRegion parts go out with sendfile).

Theory of operation
-------------------
`respond` runs in the event loop for every request, so the common case is one dict lookup, one
clock read, a scan of the request headers and one small allocation:

    raw path ──_paths──▶ _Entry ──(fresh?)──▶ _Rep (identity | br | gzip) ──▶ prebuilt headers

- `_paths` maps the raw request path (still percent-encoded) to an `_Entry`. Aliases of one file
  (`/s/a.css`, `/s//a.css`, `/s/%61.css`) share the entry, which `_entries` keys by the decoded,
  validated path `(mount group, relative path, trailing slash)`.
- An `_Entry` is revalidated at most once per TTL (1 s of the injected monotonic clock): the path
  is resolved again (realpath, containment, stat of the file and of its variants) and compared
  with the `(dev, ino, size, mtime_ns, ctime_ns)` the loaded representations were built from.
  Unchanged costs a few stat calls; changed reloads.
- A `_Rep` is one file on disk served with one content-coding: its bytes when small (<= 64 KiB),
  else an open file object and a FileRegion over all of it, plus its header tuples built once.
- Open file objects are never closed by us: when an entry is reloaded or evicted we drop our
  reference, and a FileRegion still being sent keeps the file (and its fd) alive until it is done.
- File descriptors: a response with FileRegion parts carries one more descriptor, reserved by
  `respond` (`StaticResponse.spare`), for the sender's duplicate of the socket, so nothing can run
  out after the head is decided: no descriptor is a 503 before any byte, never a 200 cut short.
  When an open() or that dup() fails for lack of descriptors, the cached open files (all but the
  entry at hand) are given back first and the call tried once more.
- Everything is bounded: the raw-path map and the missing-file map (by count and by bytes,
  cleared when full; paths over MAX_REMEMBERED_PATH bytes are never remembered), and the loaded
  entries by count, cached bytes and open files (oldest evicted first; revalidation moves an entry
  to the back, so hot entries are the last to go). An evicted entry is marked dead; a raw path
  still pointing at it resolves again.
- A directory named without its trailing slash resolves to an entry with a `location` (a 301),
  when it has an index.html; refused paths share `_REJECTED`, a 404 even with fallthrough.

Request evaluation follows RFC 9110 §13.2.2: If-Match, else If-Unmodified-Since (412); then
If-None-Match, else If-Modified-Since (304); then Range with If-Range for GET (206/416).
"""

from __future__ import annotations

import dataclasses
import errno
import itertools
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterable
from typing import BinaryIO
from urllib.parse import quote

from ._conditional import (
    format_http_date,
    is_strong_etag,
    make_etag,
    match_etag_list,
    parse_http_date,
)
from ._mime import content_type
from ._mounts import IMMUTABLE_CACHE_CONTROL, Mount, is_fingerprinted
from ._paths import safe_relpath
from ._precompress import (
    BR,
    GZIP,
    build_encoding,
    build_variants,
    built_name,
    choose,
    parse_accept_encoding,
)
from ._ranges import parse_range

Headers = list[tuple[bytes, bytes]]  # request headers, as the parser gives them
# Response headers: tuples, so a _Rep's prebuilt ones are handed to every response as they are.
ResponseHeaders = tuple[tuple[bytes, bytes], ...]

SMALL_FILE_MAX = 64 * 1024
TTL = 1.0  # seconds between two stats of one path
# The lookup maps (raw paths, missing files) are bounded by bytes as well as by count: a request
# line of 8 KiB makes 8 KiB keys. Longer paths than this are resolved every time, never remembered
# (a miss costs one stat), and a remembered one is counted with this much for its objects.
MAX_REMEMBERED_PATH = 1024
_OVERHEAD = 256


@dataclasses.dataclass(frozen=True, slots=True)
class FileRegion:
    """`count` bytes of `file` from `offset`, to be sent with sendfile.

    `file` is shared with the cache and with other responses: use its fd with an explicit offset
    (`os.sendfile`, `os.pread`), never seek or read it, and never close it.
    """

    file: BinaryIO
    offset: int
    count: int


class ReservedFd:
    """A file descriptor reserved for the sender of a response: see `StaticResponse.spare`.

    The sender calls `take()` once and then owns the descriptor. One never taken is closed when
    this object is dropped (or by `close()`), so a sender that ignores it leaks nothing.
    """

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def take(self) -> int:
        """The descriptor, now the caller's to close (or -1 if it was taken or closed before)."""
        fd, self.fd = self.fd, -1
        return fd

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: S110 - at interpreter exit os may already be gone
            pass


@dataclasses.dataclass(slots=True)
class StaticResponse:
    """What to send: every header except Date, Server and Connection, then the body parts.

    `body` is empty for HEAD, 304 and 412; for HEAD the headers still carry Content-Length.
    `headers` is a tuple shared with the cache and other responses; the `body` list is fresh
    for each response, the bytes and FileRegion objects in it are shared.

    `spare` is set exactly when `body` holds a FileRegion: a descriptor reserved by `respond`
    (a duplicate, made before anything was decided, so running out of descriptors is a 503
    *before* any head and never a 200 cut short). The sender needs one new descriptor after the
    head, its own duplicate of the socket; it must make it with
    `os.dup2(sock_fd, spare.take(), inheritable=False)`, which reuses the reserved number and so
    cannot fail for lack of descriptors, use it for every FileRegion of the response, and close it
    after the last one (or on abort). A sender without a socket fd calls `spare.close()`.

    `close`: the server should close the connection after this response (the 503 for lack of
    descriptors: a closed connection is a descriptor given back).
    """

    status: int
    headers: ResponseHeaders
    body: list[bytes | FileRegion]
    spare: ReservedFd | None = None
    close: bool = False


_NOSNIFF = (b"X-Content-Type-Options", b"nosniff")
_TEXT_PLAIN = (b"Content-Type", b"text/plain; charset=utf-8")
_VARY = (b"Vary", b"Accept-Encoding")
_ACCEPT_RANGES = (b"Accept-Ranges", b"bytes")
_ALLOW = ((b"Allow", b"GET, HEAD"),)

# The request headers respond() looks at, by index. Most clients send the canonical case, found
# with one dict lookup; other spellings are lowered only when their length could match.
_INM, _IMS, _IM, _IUS, _IF_RANGE, _RANGE, _AE = range(7)
_NAMES = (
    b"if-none-match",
    b"if-modified-since",
    b"if-match",
    b"if-unmodified-since",
    b"if-range",
    b"range",
    b"accept-encoding",
)
_WANTED: dict[bytes, int] = {}
for _i, _n in enumerate(_NAMES):
    _WANTED[_n] = _i
    _WANTED[b"-".join(p.capitalize() for p in _n.split(b"-"))] = _i
_LENGTHS = frozenset(len(n) for n in _NAMES)
# A second If-Range/Range/If-(Un)Modified-Since is an error; this value fails every parser, which
# makes the field ignored (dates, Range) or false (If-Range), as RFC 9110 asks.
_INVALID = b"\x00"


def _plain(status: int, text: bytes, method: str, extra: ResponseHeaders = ()) -> StaticResponse:
    headers = (_TEXT_PLAIN, (b"Content-Length", b"%d" % len(text)), _NOSNIFF, *extra)
    return StaticResponse(status, headers, [text] if method != "HEAD" else [])


def _unavailable(method: str) -> StaticResponse:
    """Out of file descriptors: 503, try again in a second, and close (one descriptor back)."""
    response = _plain(503, b"Service Unavailable\n", method, ((b"Retry-After", b"1"),))
    response.close = True
    return response


class _Rep:
    """One file on disk served with one content-coding (identity, br or gzip)."""

    __slots__ = (
        "ctype",
        "data",
        "etag",
        "headers",
        "key",
        "last_modified",
        "lm_seconds",
        "meta",
        "mtime_ns",
        "nm_headers",
        "region",
        "size",
        "vary",
    )

    def __init__(
        self,
        key: tuple[int, int, int, int, int],
        data: bytes | None,
        file: BinaryIO | None,
        ctype: bytes,
        cache_control: bytes,
        coding: bytes | None,
        vary: bool,
    ) -> None:
        self.key = key
        _dev, ino, size, mtime_ns, _ctime = key
        self.size = size
        self.mtime_ns = mtime_ns
        # RFC 9110 §8.8.2.1: never announce a modification time in the future.
        self.lm_seconds = min(mtime_ns // 1_000_000_000, int(time.time()))
        self.etag = make_etag(ino, size, mtime_ns, b"-" + coding if coding else b"")
        self.last_modified = format_http_date(self.lm_seconds)
        self.ctype = ctype
        self.vary = vary
        self.data = data
        self.region = FileRegion(file, 0, size) if file is not None else None
        validators = ((b"ETag", self.etag), (b"Last-Modified", self.last_modified),
                      (b"Cache-Control", cache_control))
        vary_header = (_VARY,) if vary else ()
        encoding = ((b"Content-Encoding", coding),) if coding else ()
        self.meta = (*validators, _ACCEPT_RANGES, *encoding, *vary_header, _NOSNIFF)
        self.headers = ((b"Content-Type", ctype), (b"Content-Length", b"%d" % size), *self.meta)
        # §15.4.5: a 304 carries the validators and caching fields the 200 would have had.
        self.nm_headers = (*validators, *vary_header)


_Key = tuple[int, int, int, int, int]
_VariantSig = tuple[str, _Key] | None
# (mount index, real path, identity key, br variant, gzip variant, name served); for a directory
# named without its trailing slash, the index.html that the slash URL would serve, and name None.
_Sig = tuple[int, str, _Key, _VariantSig, _VariantSig, str | None]


def _key(st: os.stat_result) -> _Key:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class _Entry:
    """What one validated request path resolves to, possibly nothing (identity is None)."""

    __slots__ = (
        "br",
        "checked",
        "dead",
        "dots",
        "group",
        "gzip",
        "identity",
        "key",
        "location",
        "nbytes",
        "nfiles",
        "rel",
        "sig",
        "trailing",
        "variants",
    )

    def __init__(
        self, key: tuple[int, str, bool], group: tuple[int, ...], dots: tuple[str, ...] = ()
    ) -> None:
        self.key = key
        self.group = group
        self.dots = dots  # the path's segments starting with "."
        self.rel = key[1]
        self.trailing = key[2]
        self.checked = float("-inf")
        self.dead = False
        self.sig: _Sig | None = None
        self.identity: _Rep | None = None
        self.br: _Rep | None = None
        self.gzip: _Rep | None = None
        self.location: bytes | None = None  # a directory named without its slash: redirect here
        self.variants = False
        self.nbytes = 0
        self.nfiles = 0


# Shared answer for refused paths (by safe_relpath, or dotfiles no mount of the prefix allows):
# never revalidated, never evicted, and a 404 even with fallthrough (docs/static-files.md).
_REJECTED = _Entry((-1, "", False), ())
_REJECTED.checked = float("inf")

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_OPEN_FLAGS |= getattr(os, "O_NOFOLLOW", 0)  # the path is a realpath: a symlink now is a race


class _Overloaded(Exception):
    """Out of file descriptors: answer 503 now and try again on the next request."""


_NO_FDS = (errno.EMFILE, errno.ENFILE)


def _read(path: str) -> tuple[_Key, bytes | None, BinaryIO | None] | None:
    """(key, bytes, None) for a small file, (key, None, open file) for a large one, else None.

    O_NONBLOCK: if a FIFO was swapped in after the stat, open() must not block the loop.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno in _NO_FDS:
            raise _Overloaded from exc
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size > SMALL_FILE_MAX:
            f = open(fd, "rb", buffering=0)  # noqa: SIM115 - lives in the cache, closed by GC
            fd = -1
            return _key(st), None, f
        data = b""
        for _ in range(3):
            # One byte more than expected: a file that grew is noticed like one that shrank.
            data = os.pread(fd, st.st_size + 1, 0)
            st2 = os.fstat(fd)
            if len(data) == st.st_size and _key(st2) == _key(st):
                return _key(st), data, None
            st = st2
        # Still changing under us: serve what we read, described by what we read.
        key = _key(st)
        return (key[0], key[1], len(data), key[3], key[4]), data, None
    except OSError:
        return None
    finally:
        if fd >= 0:
            os.close(fd)


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root + os.sep)


def _resolve(base: str, rel: str) -> tuple[str, os.stat_result]:
    """(real path, its stat) of `rel` under the real directory `base`; OSError when missing.

    stat() first: the kernel stops at the first missing component (or refuses a path longer than
    PATH_MAX at once), so a miss costs one system call however deep the path. Only a path that
    exists is resolved component by component, and the caller checks where it leads.
    """
    path = os.path.join(base, rel) if rel else base
    st = os.stat(path)
    real = os.path.realpath(path)
    if real != path:  # symlinks on the way: describe the file they lead to now
        st = os.stat(real)
    return real, st


def _variant(path: str, root: str, follow: bool) -> tuple[str, _Key] | None:
    """A variant file beside the real path; one lstat in the common case (absent)."""
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            path = os.path.realpath(path)
            if not (follow or _inside(path, root)):
                return None
            st = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return path, _key(st)


class StaticFiles:
    """Static file mounts, answered with `respond`. See docs/static-files.md."""

    def __init__(
        self,
        mounts: Iterable[Mount],
        *,
        fallthrough: bool = False,
        precompress: bool = False,
        clock: Callable[[], float] = time.monotonic,
        cache_dir: str | None = None,
        max_cached_bytes: int = 16 * 1024 * 1024,
        max_open_files: int = 128,
        max_entries: int = 4096,
        max_lookup_bytes: int = 4 * 1024 * 1024,
        cache_group: int | None = None,
    ) -> None:
        self._mounts = tuple(mounts)
        self._fallthrough = fallthrough
        self._clock = clock
        self._max_bytes = max_cached_bytes
        self._max_files = max_open_files
        self._max_entries = max_entries
        self._max_lookup_bytes = max_lookup_bytes // 2  # each of the two maps
        # Longest prefix first; mounts sharing a prefix are searched in the order given.
        prefixes: list[str] = []
        for m in self._mounts:
            if m.prefix not in prefixes:
                prefixes.append(m.prefix)
        prefixes.sort(key=len, reverse=True)
        self._groups = [
            (
                p.encode("ascii"),
                p.encode("ascii") + b"/",
                gi,
                tuple(i for i, m in enumerate(self._mounts) if m.prefix == p),
            )
            for gi, p in enumerate(prefixes)
        ]
        self._cc = [m.cache_control.encode("ascii") for m in self._mounts]
        self._build_suffix, coding = build_encoding()
        self._build_is_br = coding == "br"
        self._cache_dirs: list[str | None] = [None] * len(self._mounts)
        if precompress:
            built: dict[str, str | None] = {}
            for i, m in enumerate(self._mounts):
                if m.directory not in built:
                    built[m.directory] = build_variants(m, cache_dir, cache_group)
                self._cache_dirs[i] = built[m.directory]
        self._paths: dict[bytes, _Entry] = {}
        self._entries: dict[tuple[int, str, bool], _Entry] = {}
        self._missing: dict[tuple[int, str, bool], _Entry] = {}
        self._paths_bytes = self._missing_bytes = 0
        self._ae_cache: dict[bytes, tuple[int, int, int]] = {}
        self._bytes = 0
        self._files = 0

    @property
    def mounts(self) -> tuple[Mount, ...]:
        return self._mounts

    # --- the hot path -----------------------------------------------------------------------------

    def respond(
        self, method: str, path: bytes, headers: Headers, query: bytes = b""
    ) -> StaticResponse | None:
        """Answer a request whose raw path (before "?", still percent-encoded) is `path`.

        `query` (after "?") is only used to keep it in a redirect. None: no mount prefix matches,
        or (with fallthrough) no file is found: the app answers.
        """
        entry = self._paths.get(path)
        if entry is None or self._clock() - entry.checked >= TTL:
            try:
                entry = self._lookup(path, entry)
            except _Overloaded:
                return _unavailable(method)
            if entry is None:
                return None
        rep = entry.identity
        if rep is None:
            if entry.location is not None:
                return self._redirect(method, entry.location, query)
            if self._fallthrough and entry is not _REJECTED:
                return None
            return _plain(404, b"Not Found\n", method)
        if method != "GET" and method != "HEAD":
            return _plain(405, b"Method Not Allowed\n", method, _ALLOW)

        inm = ims = im = ius = if_range = rng = ae = None
        wanted = _WANTED.get
        for name, value in headers:
            k = wanted(name)
            if k is None:
                if len(name) not in _LENGTHS:
                    continue
                k = wanted(name.lower())
                if k is None:
                    continue
            if k == _AE:
                ae = value if ae is None else ae + b"," + value
            elif k == _INM:
                inm = value if inm is None else inm + b"," + value
            elif k == _IMS:
                ims = value if ims is None else _INVALID
            elif k == _RANGE:
                rng = value if rng is None else _INVALID
            elif k == _IM:
                im = value if im is None else im + b"," + value
            elif k == _IUS:
                ius = value if ius is None else _INVALID
            else:
                if_range = value if if_range is None else _INVALID

        if ae is not None and entry.variants:
            q = self._ae_cache.get(ae)
            if q is None:
                q = parse_accept_encoding(ae)
                if len(ae) <= 256:  # real browsers send under 60 bytes; keep the cache small
                    if len(self._ae_cache) >= 256:
                        self._ae_cache.clear()
                    self._ae_cache[ae] = q
            c = choose(q, entry.br is not None, entry.gzip is not None)
            chosen = entry.br if c == BR else entry.gzip if c == GZIP else None
            if chosen is not None:
                rep = chosen

        if not (inm is None and ims is None and im is None and ius is None and rng is None):
            response = self._conditional(method, rep, inm, ims, im, ius, if_range, rng)
            if response is not None:
                if rep.data is not None or response.status >= 300 or not response.body:
                    return response
                return self._reserve(response, rep, entry, method)
        # The whole representation: no preconditions, or they hold and no Range applies.
        if method == "HEAD":
            return StaticResponse(200, rep.headers, [])
        if rep.data is not None:
            return StaticResponse(200, rep.headers, [rep.data])
        response = StaticResponse(200, rep.headers, [rep.region])  # type: ignore[list-item]
        return self._reserve(response, rep, entry, method)

    def _reserve(
        self, response: StaticResponse, rep: _Rep, entry: _Entry, method: str
    ) -> StaticResponse:
        """Give a response with FileRegion parts its spare descriptor, or make it a 503."""
        assert rep.region is not None
        fd = rep.region.file.fileno()
        try:
            response.spare = ReservedFd(os.dup(fd))
        except OSError as exc:
            if exc.errno not in _NO_FDS or not self._release_files(entry):
                return _unavailable(method)
            try:
                response.spare = ReservedFd(os.dup(fd))
            except OSError:
                return _unavailable(method)
        return response

    @staticmethod
    def _redirect(method: str, location: bytes, query: bytes) -> StaticResponse:
        """301 to the slash URL of a directory that has an index.html, like nginx."""
        if method != "GET" and method != "HEAD":
            return _plain(405, b"Method Not Allowed\n", method, _ALLOW)
        if query:
            location += b"?" + query
        return _plain(301, b"Moved Permanently\n", method, ((b"Location", location),))

    # --- preconditions and ranges -----------------------------------------------------------------

    def _conditional(
        self,
        method: str,
        rep: _Rep,
        inm: bytes | None,
        ims: bytes | None,
        im: bytes | None,
        ius: bytes | None,
        if_range: bytes | None,
        rng: bytes | None,
    ) -> StaticResponse | None:
        """The answer the preconditions and Range call for; None for the whole 200."""
        # §13.2.2 steps 1-2: If-Match, else If-Unmodified-Since (an invalid date is ignored,
        # §13.1.4). The answer depended on the chosen variant's validators, so 412 and 416
        # carry Vary like 200 and 304 do.
        if im is not None:
            failed = not match_etag_list(im, rep.etag, weak=False)
        else:
            t = parse_http_date(ius) if ius is not None else None
            failed = t is not None and rep.lm_seconds > t
        vary = (_VARY,) if rep.vary else ()
        if failed:
            return _plain(412, b"Precondition Failed\n", method, vary)
        # Steps 3-4: If-None-Match, else If-Modified-Since.
        if inm is not None:
            if match_etag_list(inm, rep.etag, weak=True):
                return StaticResponse(304, rep.nm_headers, [])
        elif ims is not None:
            if ims == rep.last_modified:  # the usual case: the client echoes our value
                return StaticResponse(304, rep.nm_headers, [])
            t = parse_http_date(ims)
            if t is not None and rep.lm_seconds <= t:
                return StaticResponse(304, rep.nm_headers, [])
        # Step 5: Range, only for GET (§14.2), only when If-Range (if any) holds.
        if (
            rng is not None
            and method == "GET"
            and (if_range is None or self._if_range_holds(if_range, rep))
        ):
            ranges = parse_range(rng, rep.size)
            if ranges is not None:
                if not ranges:
                    content_range = (b"Content-Range", b"bytes */%d" % rep.size)
                    return _plain(416, b"Range Not Satisfiable\n", method, (content_range, *vary))
                if len(ranges) == 1:
                    return self._single_range(rep, *ranges[0])
                return self._multipart(rep, ranges)
        return None

    @staticmethod
    def _if_range_holds(value: bytes, rep: _Rep) -> bool:
        value = value.strip(b" \t")
        if is_strong_etag(value):
            return value == rep.etag  # strong comparison: a W/ tag never matches (§13.1.5)
        t = parse_http_date(value)
        # A date is a strong validator only for a file last modified more than a second before
        # now (§8.8.2.2: it cannot have changed twice within the second the client saw).
        return (
            t is not None and t == rep.lm_seconds and rep.mtime_ns + 1_000_000_000 < time.time_ns()
        )

    @staticmethod
    def _part(rep: _Rep, first: int, last: int) -> bytes | FileRegion:
        if rep.data is not None:
            return rep.data[first : last + 1]
        assert rep.region is not None
        return FileRegion(rep.region.file, first, last - first + 1)

    def _single_range(self, rep: _Rep, first: int, last: int) -> StaticResponse:
        headers = (
            (b"Content-Type", rep.ctype),
            (b"Content-Length", b"%d" % (last - first + 1)),
            (b"Content-Range", b"bytes %d-%d/%d" % (first, last, rep.size)),
            *rep.meta,
        )
        return StaticResponse(206, headers, [self._part(rep, first, last)])

    def _multipart(self, rep: _Rep, ranges: list[tuple[int, int]]) -> StaticResponse:
        boundary = secrets.token_hex(12).encode("ascii")
        body: list[bytes | FileRegion] = []
        length = 0
        for first, last in ranges:
            head = b"\r\n--%s\r\nContent-Type: %s\r\nContent-Range: bytes %d-%d/%d\r\n\r\n" % (
                boundary,
                rep.ctype,
                first,
                last,
                rep.size,
            )
            body.append(head)
            body.append(self._part(rep, first, last))
            length += len(head) + last - first + 1
        tail = b"\r\n--%s--\r\n" % boundary
        body.append(tail)
        length += len(tail)
        if rep.data is not None:
            body = [b"".join(body)]  # type: ignore[arg-type]
        headers = (
            (b"Content-Type", b"multipart/byteranges; boundary=" + boundary),
            (b"Content-Length", b"%d" % length),
            *rep.meta,
        )
        return StaticResponse(206, headers, body)

    # --- the cache --------------------------------------------------------------------------------

    def _lookup(self, path: bytes, entry: _Entry | None) -> _Entry | None:
        """The entry for a raw path, resolved or revalidated; None when no prefix matches."""
        now = self._clock()
        if entry is not None and not entry.dead:
            self._refresh(entry, now)
            return entry
        for candidate in self._groups:
            if path.startswith(candidate[1]) or path == candidate[0]:
                prefix, _, gi, group = candidate
                break
        else:
            return None
        found = safe_relpath(path[len(prefix) :])
        if found is None or (found[2] and not any(self._mounts[i].allows(found[2]) for i in group)):
            entry = _REJECTED
        else:
            key = (gi, found[0], found[1])
            entry = self._entries.get(key) or self._missing.get(key)
            if entry is None:
                entry = _Entry(key, group, found[2])
                self._refresh(entry, now)
            elif now - entry.checked >= TTL:
                self._refresh(entry, now)
        if len(path) <= MAX_REMEMBERED_PATH and path not in self._paths:
            size = len(path) + _OVERHEAD
            if (
                len(self._paths) >= self._max_entries * 2
                or self._paths_bytes + size > self._max_lookup_bytes
            ):
                self._paths.clear()
                self._paths_bytes = 0
            self._paths_bytes += size
            self._paths[path] = entry
        return entry

    def _refresh(self, entry: _Entry, now: float) -> None:
        entry.checked = now
        sig = self._scan(entry)
        if sig is not None and sig == entry.sig:
            # Unchanged. Move it to the back: eviction takes the front (least recently checked).
            if self._entries.pop(entry.key, None) is entry:  # pragma: no branch
                self._entries[entry.key] = entry
            return
        self._unload(entry)
        if sig is not None:
            try:
                self._load(entry, sig)
            except _Overloaded:
                self._unload(entry)
                entry.checked = float("-inf")  # not known missing: look again next time
                raise
        self._place(entry)

    def _scan(self, entry: _Entry) -> _Sig | None:
        """Resolve an entry's path in its mounts: what would be served now (no file opened)."""
        rel = entry.rel
        for mi in entry.group:
            mount = self._mounts[mi]
            if entry.dots and not mount.allows(entry.dots):
                continue
            follow = mount.follow_symlinks
            try:
                root = os.path.realpath(mount.directory)
                real, st = _resolve(root, rel)
                if not (follow or _inside(real, root)):
                    continue  # a symlink pointing out of the mount
                name = rel.rpartition("/")[2]
                if stat.S_ISDIR(st.st_mode):
                    real, st = _resolve(real, "index.html")
                    if not (follow or _inside(real, root)) or not stat.S_ISREG(st.st_mode):
                        continue
                    if not entry.trailing:
                        return (mi, real, _key(st), None, None, None)  # redirect to the slash
                    name = "index.html"
                elif entry.trailing:
                    continue  # "file.css/" is not the file
                if not stat.S_ISREG(st.st_mode):
                    continue
            except (OSError, ValueError):
                continue
            br = _variant(real + ".br", root, follow)
            gz = _variant(real + ".gz", root, follow)
            cache = self._cache_dirs[mi]
            inside = _inside(real, root)  # only files inside the tree have built variants
            if cache is not None and inside and (gz if not self._build_is_br else br) is None:
                built = _variant(
                    os.path.join(
                        cache,
                        built_name(
                            real[len(root) + 1 :],
                            st.st_ino,
                            st.st_size,
                            st.st_mtime_ns,
                            self._build_suffix,
                        ),
                    ),
                    cache,
                    False,
                )
                if self._build_is_br:
                    br = built
                else:
                    gz = built
            return (mi, real, _key(st), br, gz, name)
        return None

    def _load(self, entry: _Entry, sig: _Sig) -> None:
        mi, real, _key_now, br_sig, gz_sig, name = sig
        if name is None:
            # Absolute path, from the mount's prefix and the decoded path re-encoded: never "//"
            # (no empty segments), so never a protocol-relative URL to another host.
            prefix = self._groups[entry.key[0]][0]
            rel = quote(entry.rel, safe="/!$&'()*+,;=:@~").encode("ascii")
            entry.location = prefix + b"/" + rel + b"/" if rel else prefix + b"/"
            entry.sig = sig
            return
        loaded = self._read(real, entry)
        if loaded is None:
            return
        br = self._read(br_sig[0], entry) if br_sig is not None else None
        gz = self._read(gz_sig[0], entry) if gz_sig is not None else None
        ctype = content_type(name)
        if self._mounts[mi].fingerprints and is_fingerprinted(name):
            cc = IMMUTABLE_CACHE_CONTROL.encode()
        else:
            cc = self._cc[mi]
        vary = br is not None or gz is not None
        entry.identity = _Rep(*loaded, ctype, cc, None, vary)
        entry.br = _Rep(*br, ctype, cc, b"br", vary) if br is not None else None
        entry.gzip = _Rep(*gz, ctype, cc, b"gzip", vary) if gz is not None else None
        entry.variants = vary
        entry.sig = (
            mi,
            real,
            loaded[0],
            (br_sig[0], br[0]) if br_sig is not None and br is not None else None,
            (gz_sig[0], gz[0]) if gz_sig is not None and gz is not None else None,
            name,
        )
        for rep in (entry.identity, entry.br, entry.gzip):
            if rep is not None:
                if rep.data is not None:
                    entry.nbytes += len(rep.data)
                else:
                    entry.nfiles += 1

    def _read(self, path: str, entry: _Entry) -> tuple[_Key, bytes | None, BinaryIO | None] | None:
        """`_read`, and once more after giving back the cached open files if out of descriptors."""
        try:
            return _read(path)
        except _Overloaded:
            if not self._release_files(entry):
                raise
            return _read(path)

    def _release_files(self, keep: _Entry) -> bool:
        """Out of descriptors: drop every cached entry holding open files, but `keep`.

        Their files close as soon as no response in flight still uses them (refcounting), and
        they are opened again on demand. Without this a worker whose cache held the descriptors
        answered 503 for every other file until the cached entries changed. True if any went.
        """
        victims = [e for e in self._entries.values() if e.nfiles and e is not keep]
        for victim in victims:
            self._unload(victim)
            del self._entries[victim.key]
            victim.dead = True
            victim.checked = float("-inf")
        return bool(victims)

    def _unload(self, entry: _Entry) -> None:
        if entry.identity is not None and self._entries.get(entry.key) is entry:
            self._bytes -= entry.nbytes
            self._files -= entry.nfiles
        entry.identity = entry.br = entry.gzip = None
        entry.location = None
        entry.variants = False
        entry.sig = None
        entry.nbytes = entry.nfiles = 0

    def _place(self, entry: _Entry) -> None:
        """File the (re)loaded entry with the found or the missing ones, within the bounds."""
        key = entry.key
        if entry.identity is None:
            self._entries.pop(key, None)
            if self._missing.get(key) is not entry and len(entry.rel) <= MAX_REMEMBERED_PATH:
                size = len(entry.rel) + _OVERHEAD
                if (
                    len(self._missing) >= self._max_entries
                    or self._missing_bytes + size > self._max_lookup_bytes
                ):
                    for dead in self._missing.values():
                        dead.dead = True
                    self._missing.clear()
                    self._missing_bytes = 0
                self._missing_bytes += size
                self._missing[key] = entry
            return
        if self._missing.pop(key, None) is not None:
            self._missing_bytes -= len(entry.rel) + _OVERHEAD
        self._entries.pop(key, None)
        self._entries[key] = entry
        self._bytes += entry.nbytes
        self._files += entry.nfiles
        if (
            len(self._entries) > self._max_entries
            or self._bytes > self._max_bytes
            or self._files > self._max_files
        ):
            self._evict(entry)

    def _evict(self, keep: _Entry) -> None:
        """Drop the oldest entries until every bound is back under three quarters."""
        max_entries = self._max_entries * 3 // 4
        max_bytes = self._max_bytes * 3 // 4
        max_files = self._max_files * 3 // 4
        victims = []
        n, b, f = len(self._entries), self._bytes, self._files
        for entry in itertools.islice(self._entries.values(), len(self._entries)):
            if n <= max_entries and b <= max_bytes and f <= max_files:
                break
            if entry is keep:
                continue
            victims.append(entry)
            n -= 1
            b -= entry.nbytes
            f -= entry.nfiles
        for entry in victims:
            self._unload(entry)
            del self._entries[entry.key]
            entry.dead = True
            entry.checked = float("-inf")
