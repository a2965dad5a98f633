"""Precompressed variants: choosing one (Accept-Encoding) and building them ahead of time.

Theory of operation
-------------------
A file `x.css` may have variants `x.css.br` and `x.css.gz` beside it (put there by the build, as
for nginx's gzip_static / brotli_static). With `precompress=True`, frontdesk also builds the
missing ones for compressible files larger than 1 KiB at startup, into a private cache directory
outside the served tree (`$TMPDIR/frontdesk-static-<uid>-<hash of the directory>`, mode 0700, owner
checked).

The master builds them before forking, as the user it runs as. When workers run as another user
(`--user`), they must still read them, yet root must never work in a directory that user can
write (a planted symlink would make root write or delete where it likes). So the cache stays
owned by the builder and gets the workers' group instead: `frontdesk-static-<uid>-g<gid>-<hash>`,
directories 0750 and files 0640 with group <gid>; nobody else can read them, the workers can.

A built variant's file name carries the source's (inode, size, mtime), so an edited source simply
stops having a variant until the next start; nothing stale is ever served, and nothing is ever
compressed in the event loop.

Negotiation (RFC 9110 §12.5.3): each coding gets the q-value of its own entry, else of "*", else
0 (not acceptable). "x-gzip" is gzip. Among acceptable variants the highest q wins, brotli on a
tie. Identity is used when no variant is acceptable, or when "identity" (or "*") is listed with a
higher q than the best variant. A request without Accept-Encoding gets identity (like nginx).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib
import os
import re
import stat
import tempfile
from collections.abc import Iterable
from typing import Any

from ._mime import content_type, is_compressible
from ._mounts import Mount


def _import_brotli() -> Any:
    try:
        return importlib.import_module("brotli")
    except ImportError:  # pragma: no cover - depends on the environment
        return None


brotli: Any = _import_brotli()  # optional: pip install brotli

MIN_SIZE = 1024  # below this the saving does not pay for a Content-Encoding header
MAX_SIZE = 32 * 1024 * 1024  # startup time bound
MAX_FILES = 20_000

_Q = re.compile(
    rb"[ \t]*([!#$%&'*+\-.^_`|~0-9A-Za-z]+)[ \t]*(?:;[ \t]*[qQ][ \t]*=[ \t]*"
    rb"(0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?))?[ \t]*\Z"
)

# Coding preference, as an index into the (br, gzip) tuple returned below.
BR = 0
GZIP = 1
IDENTITY = 2


def parse_accept_encoding(value: bytes) -> tuple[int, int, int]:
    """(q of br, q of gzip, q of identity) in thousandths; identity is -1 when not ranked.

    Elements that do not parse are skipped (a q-value like "0.5000" or "2" is invalid).
    """
    qs: dict[bytes, int] = {}
    for element in value.split(b","):
        m = _Q.match(element)
        if m is None:
            continue
        coding = m.group(1).lower()
        if coding == b"x-gzip":
            coding = b"gzip"
        q = m.group(2)
        if q is None:
            milli = 1000
        else:
            whole, _, frac = q.partition(b".")
            milli = int(whole) * 1000 + int((frac + b"000")[:3])
        qs.setdefault(coding, milli)
    star = qs.get(b"*")
    br = qs.get(b"br", star if star is not None else 0)
    gz = qs.get(b"gzip", star if star is not None else 0)
    identity = qs.get(b"identity", star if star is not None else -1)
    return br, gz, identity


def choose(q: tuple[int, int, int], have_br: bool, have_gzip: bool) -> int:
    """BR, GZIP or IDENTITY for the parsed Accept-Encoding `q` and the variants at hand."""
    best = IDENTITY
    best_q = 0
    if have_br and q[BR] > 0:
        best, best_q = BR, q[BR]
    if have_gzip and q[GZIP] > best_q:
        best, best_q = GZIP, q[GZIP]
    if best != IDENTITY and q[IDENTITY] > best_q:
        return IDENTITY
    return best


# --- building variants at startup ----------------------------------------------------------------


def build_encoding() -> tuple[str, str]:
    """(suffix, coding) that precompress builds: brotli when importable, else gzip."""
    return (".br", "br") if brotli is not None else (".gz", "gzip")


def cache_dir_for(
    directory_real: str, base: str | None = None, reader_gid: int | None = None
) -> str | None:
    """The private cache directory for a mount's real root; None when none can be had safely.

    `reader_gid`: the group of the workers when they run as another user (module docstring).
    """
    base = base if base is not None else tempfile.gettempdir()
    digest = hashlib.sha256(directory_real.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    group = f"g{reader_gid}-" if reader_gid is not None else ""
    path = os.path.join(base, f"frontdesk-static-{os.getuid()}-{group}{digest}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(path)
    except OSError:  # pragma: no cover - removed between mkdir and lstat
        return None
    # In a shared /tmp someone else could have made it first and planted "variants".
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        return None
    if reader_gid is not None:
        try:  # ours (checked above, and lstat: not through a symlink): make it the workers' too
            _share(path, reader_gid, 0o750)
            st = os.lstat(path)
        except OSError:
            return None
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None
    return path


def _share(path: str, gid: int | None, mode: int) -> None:
    """Give a directory or file we created the workers' group (when they need one), and `mode`."""
    if gid is None:
        return
    os.chown(path, -1, gid, follow_symlinks=False)
    os.chmod(path, mode)


def _makedirs(cache: str, rel_dir: str, gid: int | None) -> None:
    """os.makedirs under the cache, each new directory 0700, or 0750 with the workers' group."""
    path = cache
    for part in rel_dir.split(os.sep) if rel_dir else ():
        path = os.path.join(path, part)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        _share(path, gid, 0o750)


def built_name(rel_real: str, ino: int, size: int, mtime_ns: int, suffix: str) -> str:
    """Path of a built variant inside the cache directory, keyed by the source's identity."""
    return f"{rel_real}.{ino:x}-{size:x}-{mtime_ns:x}{suffix}"


def _compress(data: bytes, coding: str) -> bytes:
    if coding == "br":
        # Quality 11 is what build tools use; it is slow (~1 MB/s), so big files get less.
        return bytes(brotli.compress(data, quality=11 if len(data) <= 1 << 20 else 6))
    return gzip.compress(data, compresslevel=9, mtime=0)


def _walk(root: str) -> Iterable[tuple[int, str, str]]:
    """(fd of its directory, name, path relative to root) of every non-dot file under root.

    os.fwalk opens each directory relative to its parent's descriptor and refuses one that was
    swapped for a symlink, so a name looked up in the yielded directory stays inside the tree
    whatever is renamed meanwhile (a path string would follow a directory symlink planted on
    the way)."""
    for dirpath, dirnames, filenames, dirfd in os.fwalk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = os.path.relpath(dirpath, root)
        for name in filenames:
            if not name.startswith("."):
                yield dirfd, name, name if rel_dir == "." else os.path.join(rel_dir, name)


# The source is read as the user the master runs as (root, with --user): O_NOFOLLOW, and the
# opened file must be the one stat() described, or someone who can write the served tree could
# swap in a symlink to /etc/shadow and have it compressed into the cache. O_NONBLOCK: a FIFO
# swapped in must not block the start.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _read_source(dirfd: int, name: str, st: os.stat_result) -> bytes | None:
    """The bytes of the file `name` in `dirfd` that `st` describes; None if it is another now."""
    fd = os.open(name, _OPEN_FLAGS, dir_fd=dirfd)
    with open(fd, "rb") as f:
        fst = os.fstat(fd)
        if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(fst.st_mode):
            return None
        return f.read(MAX_SIZE + 1)


def _exists(name: str, dirfd: int) -> bool:
    try:
        os.stat(name, dir_fd=dirfd)
    except OSError:
        return False
    return True


def build_variants(
    mount: Mount, cache_base: str | None = None, reader_gid: int | None = None
) -> str | None:
    """Build the missing variants of one mount; returns the cache directory (or None).

    `reader_gid`: see the module docstring (workers running as another user).
    """
    root = os.path.realpath(mount.directory)
    cache = cache_dir_for(root, cache_base, reader_gid)
    if cache is None:
        return None
    suffix, coding = build_encoding()
    wanted: set[str] = set()
    count = 0
    for dirfd, base, rel in _walk(root):
        if count >= MAX_FILES:
            break
        try:
            st = os.stat(base, dir_fd=dirfd, follow_symlinks=False)
        except OSError:  # pragma: no cover - removed while we walk
            continue
        if (
            not stat.S_ISREG(st.st_mode)
            or not MIN_SIZE < st.st_size <= MAX_SIZE
            or not is_compressible(content_type(rel))
            or _exists(base + suffix, dirfd)  # the build made one already
        ):
            continue
        count += 1
        name = built_name(rel, st.st_ino, st.st_size, st.st_mtime_ns, suffix)
        target = os.path.join(cache, name)
        wanted.add(name)
        if os.path.exists(target):
            continue
        try:
            data = _read_source(dirfd, base, st)
            if data is None or len(data) > MAX_SIZE:
                wanted.discard(name)
                continue
            packed = _compress(data, coding)
            if len(packed) >= len(data) * 0.95:
                wanted.discard(name)
                continue
            _makedirs(cache, os.path.dirname(name), reader_gid)
            # Atomic: workers building at the same time never see a half-written file.
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as out:
                    if reader_gid is not None:
                        os.fchown(out.fileno(), -1, reader_gid)
                        os.fchmod(out.fileno(), 0o640)
                    out.write(packed)
                os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError:
            wanted.discard(name)
    _prune(cache, wanted)
    return cache


def _prune(cache: str, wanted: set[str]) -> None:
    """Remove variants of sources that changed or vanished since an earlier start."""
    for dirfd, name, rel in _walk(cache):
        if rel not in wanted and not rel.endswith(".tmp"):
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=dirfd)
