"""The stat/open-file cache: 1 s revalidation, files changing under us, bounds, open files."""

from __future__ import annotations

import errno
import gc
import os
import weakref
from pathlib import Path

import pytest

from frontdesk.static import FileRegion, _static

from .conftest import body, hdr, write


@pytest.fixture
def stats(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every os.stat call made from now on."""
    calls: list[str] = []
    real_stat = os.stat

    def counting(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counting)
    return calls


def test_stat_at_most_once_per_second(root: Path, get, clock, stats: list[str]) -> None:
    path = write(root, "a.txt", "v1")
    assert body(get("/static/a.txt")) == b"v1"
    path.write_bytes(b"version 2")
    stats.clear()
    for _ in range(100):
        clock.advance(0.009)
        assert body(get("/static/a.txt")) == b"v1"  # within the second: not even a stat
    assert stats == []
    clock.advance(0.1)
    assert body(get("/static/a.txt")) == b"version 2"
    assert len(stats) == 1
    assert body(get("/static/a.txt")) == b"version 2"
    assert len(stats) == 1


def test_unchanged_file_revalidates_without_reloading(
    root: Path, get, clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(root, "a.txt", "v1")
    first = get("/static/a.txt")
    opened: list[str] = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda p, *a: opened.append(p) or real_open(p, *a))
    clock.advance(5)
    second = get("/static/a.txt")
    assert opened == [] and second.headers == first.headers


def test_replaced_same_size_same_mtime_gets_new_etag(root: Path, get, clock) -> None:
    path = write(root, "a.txt", "AAAA", mtime=1_600_000_000)
    old = hdr(get("/static/a.txt"), b"ETag")
    write(root, "a.txt.new", "BBBB", mtime=1_600_000_000)
    os.replace(root / "a.txt.new", path)  # a deploy: new inode, same size and mtime
    clock.advance(1)
    resp = get("/static/a.txt")
    assert body(resp) == b"BBBB" and hdr(resp, b"ETag") != old


def test_deleted_then_recreated(root: Path, get, clock) -> None:
    path = write(root, "a.txt", "v1")
    assert get("/static/a.txt").status == 200
    path.unlink()
    assert get("/static/a.txt").status == 200  # cached until the next check
    clock.advance(1)
    assert get("/static/a.txt").status == 404
    write(root, "a.txt", "v2")
    assert get("/static/a.txt").status == 404  # the miss is cached for a second too
    clock.advance(1)
    assert body(get("/static/a.txt")) == b"v2"


def test_file_vanishing_between_stat_and_open_is_a_404(
    root: Path, get, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(root, "a.txt", "x")
    real_open = os.open

    def racing_open(p, *a):  # type: ignore[no-untyped-def]
        if str(p).endswith("a.txt") and path.exists():
            path.unlink()
        return real_open(p, *a)

    monkeypatch.setattr(os, "open", racing_open)
    assert get("/static/a.txt").status == 404


def test_file_growing_while_read_is_consistent(
    root: Path, get, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(root, "log.txt", "line\n")
    real_pread = os.pread

    def growing_pread(fd: int, n: int, off: int) -> bytes:
        with open(path, "ab") as f:
            f.write(b"more\n")
        return real_pread(fd, n, off)

    monkeypatch.setattr(os, "pread", growing_pread)
    resp = get("/static/log.txt")
    assert resp.status == 200
    assert hdr(resp, b"Content-Length") == b"%d" % len(body(resp))


def test_aliases_share_one_entry(root: Path, make, monkeypatch: pytest.MonkeyPatch) -> None:
    write(root, "a.txt", "x")
    static = make()
    opened: list[str] = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda p, *a: opened.append(p) or real_open(p, *a))
    for alias in (b"/static/a.txt", b"/static//a.txt", b"/static/%61.txt"):
        assert body(static.respond("GET", alias, [])) == b"x"
    assert len(opened) == 1


def test_in_flight_region_survives_replacement_and_is_never_closed_by_us(
    root: Path, get, clock
) -> None:
    old_data = os.urandom(100_000)
    path = write(root, "big.bin", old_data)
    old = get("/static/big.bin")
    (region,) = old.body
    assert isinstance(region, FileRegion)
    new_data = os.urandom(120_000)
    write(root, "big.new", new_data)
    os.replace(root / "big.new", path)
    clock.advance(1)
    assert body(get("/static/big.bin")) == new_data
    # The response still being sent reads the old file, through an fd that is still open.
    assert not region.file.closed
    assert os.pread(region.file.fileno(), region.count, 0) == old_data
    ref = weakref.ref(region.file)
    del old, region
    gc.collect()
    assert ref() is None  # the last reference gone: closed by the GC, not by us


def test_entries_bounded_and_evicted_ones_still_served(root: Path, make) -> None:
    for i in range(20):
        write(root, f"f{i}.txt", f"content {i}")
    static = make(max_entries=8)
    for _ in range(3):
        for i in range(20):
            assert body(static.respond("GET", f"/static/f{i}.txt".encode(), [])) == (
                f"content {i}".encode()
            )
            assert len(static._entries) <= 8


def test_cached_bytes_bounded(root: Path, make) -> None:
    for i in range(10):
        write(root, f"f{i}.bin", bytes([i]) * 60_000)
    static = make(max_cached_bytes=200_000)
    for i in range(10):
        assert body(static.respond("GET", f"/static/f{i}.bin".encode(), [])) == bytes([i]) * 60_000
        assert static._bytes <= 200_000
    assert static._bytes == sum(e.nbytes for e in static._entries.values())


def test_open_files_bounded_without_closing_in_flight_ones(root: Path, make) -> None:
    for i in range(6):
        write(root, f"f{i}.bin", bytes([i]) * 70_000)
    static = make(max_open_files=2)
    responses = [static.respond("GET", f"/static/f{i}.bin".encode(), []) for i in range(6)]
    assert static._files <= 2
    open_now = sum(e.nfiles for e in static._entries.values())
    assert open_now == static._files
    for i, resp in enumerate(responses):
        assert not resp.body[0].file.closed
        assert body(resp) == bytes([i]) * 70_000


def test_missing_and_alias_maps_bounded(root: Path, make) -> None:
    static = make(max_entries=16)
    for i in range(200):
        assert static.respond("GET", b"/static/missing-%d" % i, []).status == 404
        assert static.respond("GET", b"/static" + b"/" * (i + 1) + b"x", []).status == 404
    assert len(static._missing) <= 16
    assert len(static._paths) <= 32
    write(root, "late.txt", "ok")
    assert body(static.respond("GET", b"/static/late.txt", [])) == b"ok"


def test_out_of_file_descriptors_is_503_then_recovers(
    root: Path, get, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(root, "a.txt", "x")
    real_open = os.open

    def no_fds(*a):  # type: ignore[no-untyped-def]
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(os, "open", no_fds)
    resp = get("/static/a.txt")
    assert resp.status == 503 and hdr(resp, b"Retry-After") == b"1"
    monkeypatch.setattr(os, "open", real_open)
    assert body(get("/static/a.txt")) == b"x"  # not remembered as missing


def test_respond_never_raises_on_odd_filesystem_states(root: Path, get, clock) -> None:
    write(root, "d/a.txt", "x")
    assert get("/static/d/a.txt").status == 200
    (root / "d" / "a.txt").unlink()
    (root / "d").rmdir()
    write(root, "d", "now a file")  # a directory replaced by a file
    clock.advance(1)
    assert get("/static/d/a.txt").status == 404
    os.symlink("loop", root / "loop")
    assert get("/static/loop").status == 404
    assert get("/static/" + "x" * 5000).status == 404  # ENAMETOOLONG


def test_ttl_constant() -> None:
    assert _static.TTL == 1.0


def test_read_refuses_what_is_not_a_regular_file(root: Path) -> None:
    (root / "d").mkdir()
    os.mkfifo(root / "p")
    assert _static._read(str(root / "d")) is None
    assert _static._read(str(root / "p")) is None  # O_NONBLOCK: does not hang either
    assert _static._read(str(root / "missing")) is None


def test_read_error_is_a_404_not_an_exception(
    root: Path, get, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(root, "a.txt", "x")

    def failing_pread(*a: object) -> bytes:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "pread", failing_pread)
    assert get("/static/a.txt").status == 404


def test_new_alias_of_a_stale_entry_revalidates_it(root: Path, make, clock) -> None:
    path = write(root, "a.txt", "v1")
    static = make()
    assert body(static.respond("GET", b"/static/a.txt", [])) == b"v1"
    path.write_bytes(b"v2 longer")
    clock.advance(2)
    assert body(static.respond("GET", b"/static//a.txt", [])) == b"v2 longer"


def test_unchanged_missing_entry_stays_missing(root: Path, make, clock) -> None:
    static = make()
    assert static.respond("GET", b"/static/none", []).status == 404
    clock.advance(2)
    assert static.respond("GET", b"/static/none", []).status == 404
    assert len(static._missing) == 1 and not static._entries


def test_index_symlink_out_of_the_root(root: Path, tmp_path: Path, get) -> None:
    write(tmp_path, "outside.html", "SECRET")
    (root / "docs").mkdir()
    os.symlink(tmp_path / "outside.html", root / "docs" / "index.html")
    assert get("/static/docs/").status == 404


def test_an_entry_larger_than_the_budget_is_kept_alone(root: Path, make) -> None:
    write(root, "a.bin", b"a" * 70_000)
    write(root, "b.bin", b"b" * 70_000)
    write(root, "b.bin.gz", b"g" * 70_000)  # two open files for one entry
    static = make(max_open_files=1)
    assert body(static.respond("GET", b"/static/a.bin", [])) == b"a" * 70_000
    resp = static.respond("GET", b"/static/b.bin", [(b"Accept-Encoding", b"gzip")])
    assert body(resp) == b"g" * 70_000
    assert list(static._entries) == [(0, "b.bin", False)]


def test_a_deep_miss_costs_one_stat_not_one_per_segment(
    root: Path, make, monkeypatch: pytest.MonkeyPatch
) -> None:
    (root / "a").mkdir()
    static = make()
    calls: list[str] = []
    real_stat, real_lstat = os.stat, os.lstat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: calls.append(p) or real_stat(p, *a, **k))
    monkeypatch.setattr(os, "lstat", lambda p, *a, **k: calls.append(p) or real_lstat(p, *a, **k))
    deep = b"/static/missing" + b"/a" * 120
    assert static.respond("GET", deep, []).status == 404
    # realpath() of the mount's root lstat()s its few components; the path itself: one stat.
    root_calls = len(str(root).split("/"))
    assert len(calls) <= root_calls + 1, calls
    # Below an existing directory the kernel still stops at the first missing name.
    calls.clear()
    assert static.respond("GET", b"/static/a/nothing" + b"/a" * 120, []).status == 404
    assert len(calls) <= root_calls + 1, calls


def test_more_than_max_segments_is_refused_without_touching_the_disk(
    root: Path, make, monkeypatch: pytest.MonkeyPatch
) -> None:
    from frontdesk.static._paths import MAX_SEGMENTS

    static = make()
    deep = "/".join(["d"] * (MAX_SEGMENTS - 1))
    write(root, deep + "/f.txt", "deep")  # MAX_SEGMENTS segments: still served
    assert body(static.respond("GET", f"/static/{deep}/f.txt".encode(), [])) == b"deep"

    def no_fs(*a: object, **k: object) -> None:
        raise AssertionError("touched the filesystem")

    monkeypatch.setattr(os, "stat", no_fs)
    monkeypatch.setattr(os, "lstat", no_fs)
    resp = static.respond("GET", b"/static" + b"/a" * (MAX_SEGMENTS + 1), [])
    assert resp.status == 404
    # 4,000 segments within an 8 KiB request line: refused at once (the reviewer's probe).
    assert static.respond("GET", b"/static/1" + b"/a" * 4000, []).status == 404


def test_lookup_maps_bounded_by_bytes(root: Path, make) -> None:
    from frontdesk.static._static import MAX_REMEMBERED_PATH

    static = make(max_lookup_bytes=256 * 1024)
    for i in range(2000):
        long = b"/static/%d/" % i + b"b" * 900  # remembered: under MAX_REMEMBERED_PATH
        huge = b"/static/%d/" % i + b"c" * 8000  # never remembered
        assert static.respond("GET", long, []).status == 404
        assert static.respond("GET", huge, []).status == 404
        assert sum(map(len, static._paths)) <= 128 * 1024
        assert sum(len(e.rel) for e in static._missing.values()) <= 128 * 1024
    assert all(len(p) <= MAX_REMEMBERED_PATH for p in static._paths)
    assert 0 < len(static._paths) < 2000
    write(root, "late.txt", "ok")
    assert body(static.respond("GET", b"/static/late.txt", [])) == b"ok"


FD_SCRIPT = r'''
import gc, os, resource, sys
from frontdesk.static import StaticFiles, parse_mount, FileRegion

root, scenario = sys.argv[1], sys.argv[2]
static = StaticFiles([parse_mount(f"/s={root}")], max_open_files=1000)

def get(name):
    return static.respond("GET", b"/s/" + name.encode(), [])

def fds():
    return len(os.listdir("/proc/self/fd")) - 1  # less listdir's own

def check(resp, i):
    assert resp.status == 200, (i, resp.status)
    (region,) = resp.body
    assert isinstance(region, FileRegion) and resp.spare is not None
    assert os.pread(region.file.fileno(), 8, 0) == b"%08d" % i

gc.disable()  # descriptors must go back by refcount alone
base = fds()
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (base + 24, hard))
if scenario == "cache-holds-the-fds":
    # 60 large files through a table of ~24 free descriptors: the cache gives its files back.
    for i in range(60):
        resp = get(f"f{i}.bin")
        check(resp, i)
        del resp
    assert fds() <= base + 24
elif scenario == "no-fd-for-the-spare":
    check(get("f0.bin"), 0)
    fillers = []
    try:
        while True:
            fillers.append(os.dup(0))
    except OSError:
        pass
    resp = get("f0.bin")  # cached; the only cached file is the one at hand: nothing to give back
    assert resp.status == 503 and resp.body == [b"Service Unavailable\n"], resp
    assert dict(resp.headers)[b"Retry-After"] == b"1" and resp.close and resp.spare is None
    os.close(fillers.pop())
    resp = get("f0.bin")
    check(resp, 0)
    spare = resp.spare.fd
    del resp  # dropped without taking it: the reserved descriptor is closed
    os.fstat(fillers[0])
    try:
        os.fstat(spare)
    except OSError:
        pass
    else:
        raise AssertionError("the spare descriptor leaked")
    for fd in fillers:
        os.close(fd)
elif scenario == "recovers-after-exhaustion":
    fillers = []
    try:
        while True:
            fillers.append(os.dup(0))
    except OSError:
        pass
    assert get("f1.bin").status == 503 and get("small.txt").status == 503
    for fd in fillers:
        os.close(fd)
    check(get("f1.bin"), 1)
    assert get("small.txt").status == 200
print("ok")
'''


@pytest.mark.parametrize(
    "scenario", ["cache-holds-the-fds", "no-fd-for-the-spare", "recovers-after-exhaustion"]
)
def test_out_of_descriptors_for_real(root: Path, scenario: str) -> None:
    """RLIMIT_NOFILE lowered in a child process: 503 before any head, and the worker recovers."""
    import subprocess
    import sys

    for i in range(60):
        write(root, f"f{i}.bin", b"%08d" % i + b"x" * 70_000)
    write(root, "small.txt", "small")
    proc = subprocess.run(
        [sys.executable, "-c", FD_SCRIPT, str(root), scenario],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr


def test_large_file_responses_carry_a_spare_descriptor(root: Path, get) -> None:
    write(root, "big.bin", b"b" * 100_000)
    write(root, "small.txt", "s")
    resp = get("/static/big.bin")
    assert isinstance(resp.spare, _static.ReservedFd) and resp.spare.fd >= 0
    fd = resp.spare.take()
    assert resp.spare.take() == -1
    os.fstat(fd)  # ours now
    os.close(fd)
    ranged = get("/static/big.bin", [(b"Range", b"bytes=0-0,50000-50001")])
    assert ranged.status == 206 and ranged.spare is not None
    # Nothing to send with sendfile: no spare.
    assert get("/static/small.txt").spare is None
    assert get("/static/big.bin", method="HEAD").spare is None
    etag = hdr(resp, b"ETag")
    assert get("/static/big.bin", [(b"If-None-Match", etag)]).spare is None
    assert get("/static/big.bin", [(b"Range", b"bytes=999999-")]).spare is None
