"""Precompressed variants: negotiation, headers, and building them at startup."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from frontdesk.static import _precompress, parse_mount
from frontdesk.static._precompress import (
    BR,
    GZIP,
    IDENTITY,
    cache_dir_for,
    choose,
    parse_accept_encoding,
)

from .conftest import body, hdr, write

CSS = ("body { color: red; margin: 0 auto; }\n" * 100).encode()


@pytest.fixture
def variants(root: Path) -> dict[str, bytes]:
    write(root, "app.css", CSS)
    write(root, "app.css.br", b"BROTLI-BYTES")
    write(root, "app.css.gz", gzip.compress(CSS))
    return {"br": b"BROTLI-BYTES", "gzip": gzip.compress(CSS), "identity": CSS}


@pytest.mark.parametrize(
    ("accept", "coding"),
    [
        (b"gzip, deflate, br", "br"),
        (b"gzip, deflate, br, zstd", "br"),
        (b"gzip", "gzip"),
        (b"x-gzip", "gzip"),
        (b"GZIP", "gzip"),
        (b"br;q=0, gzip", "gzip"),
        (b"gzip;q=1, br;q=0.5", "gzip"),
        (b"gzip;q=0.5, br;q=0.5", "br"),
        (b"*", "br"),
        (b"*;q=0", "identity"),
        (b"gzip;q=0, br;q=0", "identity"),
        (b"identity", "identity"),
        (b"", "identity"),
        (None, "identity"),
        (b"br;q=0.5, identity;q=1", "identity"),
        (b"br;q=0.5, *;q=0.8", "gzip"),  # gzip through "*"
        (b"br;q=0.5, gzip;q=0.4, identity;q=0.8", "identity"),
        (b"br;q=1.5, gzip", "gzip"),  # invalid q: that element is skipped
        (b"deflate", "identity"),
    ],
)
def test_negotiation(get, variants: dict[str, bytes], accept: bytes | None, coding: str) -> None:
    headers = [(b"Accept-Encoding", accept)] if accept is not None else []
    resp = get("/static/app.css", headers)
    assert resp.status == 200
    assert body(resp) == variants[coding]
    expected_ce = None if coding == "identity" else coding.encode()
    assert hdr(resp, b"Content-Encoding") == expected_ce
    assert hdr(resp, b"Vary") == b"Accept-Encoding"  # on identity too
    assert hdr(resp, b"Content-Type") == b"text/css; charset=utf-8"
    assert hdr(resp, b"Content-Length") == b"%d" % len(variants[coding])


def test_accept_encoding_split_over_two_fields(get, variants: dict[str, bytes]) -> None:
    resp = get("/static/app.css", [(b"Accept-Encoding", b"deflate"), (b"accept-encoding", b"br")])
    assert hdr(resp, b"Content-Encoding") == b"br"


def test_etag_distinct_per_encoding_and_conditionals_per_variant(
    get, variants: dict[str, bytes]
) -> None:
    tags = {
        c: hdr(get("/static/app.css", [(b"Accept-Encoding", c.encode())]), b"ETag")
        for c in ("br", "gzip", "identity")
    }
    assert len(set(tags.values())) == 3
    assert tags["br"].endswith(b'-br"') and tags["gzip"].endswith(b'-gzip"')
    # The identity tag does not validate the br representation, and vice versa.
    other = get(
        "/static/app.css", [(b"Accept-Encoding", b"br"), (b"If-None-Match", tags["identity"])]
    )
    assert other.status == 200
    same = get("/static/app.css", [(b"Accept-Encoding", b"br"), (b"If-None-Match", tags["br"])])
    assert same.status == 304 and hdr(same, b"Vary") == b"Accept-Encoding"


def test_range_of_a_variant(get, variants: dict[str, bytes]) -> None:
    resp = get("/static/app.css", [(b"Accept-Encoding", b"br"), (b"Range", b"bytes=0-5")])
    assert resp.status == 206 and body(resp) == b"BROTLI"
    assert hdr(resp, b"Content-Encoding") == b"br"
    assert hdr(resp, b"Content-Range") == b"bytes 0-5/12"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([(b"If-Match", b'"nope"')], 412),
        ([(b"If-Unmodified-Since", b"Sun, 06 Nov 1994 08:49:37 GMT")], 412),
        ([(b"Range", b"bytes=99999-")], 416),
    ],
)
@pytest.mark.parametrize("accept", [b"br", b"identity"])
def test_412_and_416_carry_vary(
    root: Path, get, variants: dict[str, bytes], headers: list, status: int, accept: bytes
) -> None:
    # Which representation's validators were compared depends on Accept-Encoding, as for 200/304.
    resp = get("/static/app.css", [(b"Accept-Encoding", accept), *headers])
    assert resp.status == status and hdr(resp, b"Vary") == b"Accept-Encoding"
    write(root, "plain.css", CSS)
    plain = get("/static/plain.css", [(b"Accept-Encoding", accept), *headers])
    assert plain.status == status and hdr(plain, b"Vary") is None


def test_no_variants_no_vary(root: Path, get) -> None:
    write(root, "plain.css", CSS)
    resp = get("/static/plain.css", [(b"Accept-Encoding", b"gzip, br")])
    assert hdr(resp, b"Vary") is None and hdr(resp, b"Content-Encoding") is None


def test_variant_symlink_out_of_root_is_ignored(root: Path, tmp_path: Path, get) -> None:
    write(root, "app.css", CSS)
    write(tmp_path, "evil.gz", b"EVIL")
    os.symlink(tmp_path / "evil.gz", root / "app.css.gz")
    resp = get("/static/app.css", [(b"Accept-Encoding", b"gzip")])
    assert body(resp) == CSS and hdr(resp, b"Content-Encoding") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"br, gzip", (1000, 1000, -1)),
        (b"gzip;q=0.5", (0, 500, -1)),
        (b"gzip ; q=0.25 , br;Q=1.0", (1000, 250, -1)),
        (b"*;q=0.1", (100, 100, 100)),
        (b"identity;q=0, br", (1000, 0, 0)),
        (b"br;q=0.1234", (0, 0, -1)),  # four decimals: invalid
        (b"br;q=-1", (0, 0, -1)),
        (b"br;q=1.001", (0, 0, -1)),
    ],
)
def test_parse_accept_encoding(value: bytes, expected: tuple[int, int, int]) -> None:
    assert parse_accept_encoding(value) == expected


def test_choose() -> None:
    assert choose((1000, 1000, -1), True, False) == BR
    assert choose((1000, 1000, -1), False, True) == GZIP
    assert choose((1000, 1000, -1), False, False) == IDENTITY
    assert choose((0, 1000, 1000), True, True) == GZIP


# --- building variants at startup -----------------------------------------------------------------


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in directory.rglob("*")
    }


@pytest.fixture
def gzip_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_precompress, "brotli", None)


def test_precompress_builds_gzip_outside_the_tree(
    root: Path, tmp_path: Path, make, gzip_only: None
) -> None:
    write(root, "app.css", CSS)
    write(root, "js/app.js", CSS)
    write(root, "small.css", "a{}" * 100)  # under 1 KiB
    write(root, "img.png", os.urandom(4096))
    write(root, ".hidden.css", CSS)
    before = snapshot(root)
    cache = tmp_path / "cache"
    cache.mkdir()
    static = make(precompress=True, cache_dir=str(cache))
    assert snapshot(root) == before  # never write into the user's directory
    built = [p for p in cache.rglob("*") if p.is_file()]
    assert sorted(p.name.split(".")[0] for p in built) == ["app", "app"]
    assert all(p.suffix == ".gz" for p in built)
    for path in (b"/static/app.css", b"/static/js/app.js"):
        resp = static.respond("GET", path, [(b"Accept-Encoding", b"gzip, br")])
        assert hdr(resp, b"Content-Encoding") == b"gzip"
        assert gzip.decompress(body(resp)) == CSS
    for path in (b"/static/small.css", b"/static/img.png"):
        resp = static.respond("GET", path, [(b"Accept-Encoding", b"gzip")])
        assert hdr(resp, b"Content-Encoding") is None and hdr(resp, b"Vary") is None


def test_precompress_builds_brotli_when_importable(root: Path, tmp_path: Path, make) -> None:
    brotli = pytest.importorskip("brotli")
    write(root, "app.svg", CSS)
    static = make(precompress=True, cache_dir=str(tmp_path))
    resp = static.respond("GET", b"/static/app.svg", [(b"Accept-Encoding", b"gzip, br")])
    assert hdr(resp, b"Content-Encoding") == b"br"
    assert brotli.decompress(body(resp)) == CSS
    gz = static.respond("GET", b"/static/app.svg", [(b"Accept-Encoding", b"gzip")])
    assert hdr(gz, b"Content-Encoding") is None and hdr(gz, b"Vary") == b"Accept-Encoding"


def test_precompress_keeps_the_users_variant(
    root: Path, tmp_path: Path, make, gzip_only: None
) -> None:
    write(root, "app.css", CSS)
    write(root, "app.css.gz", b"USER-GZ")
    write(root, "other.css", CSS)
    (tmp_path / "c").mkdir()
    static = make(precompress=True, cache_dir=str(tmp_path / "c"))
    built = [p.name for p in (tmp_path / "c").rglob("*") if p.is_file()]
    assert len(built) == 1 and built[0].startswith("other.css.")
    resp = static.respond("GET", b"/static/app.css", [(b"Accept-Encoding", b"gzip")])
    assert body(resp) == b"USER-GZ"


def test_edited_source_loses_its_stale_variant(
    root: Path, tmp_path: Path, make, clock, gzip_only: None
) -> None:
    path = write(root, "app.css", CSS)
    (tmp_path / "c").mkdir()
    static = make(precompress=True, cache_dir=str(tmp_path / "c"))
    ae = [(b"Accept-Encoding", b"gzip")]
    assert hdr(static.respond("GET", b"/static/app.css", ae), b"Content-Encoding") == b"gzip"
    new = CSS.replace(b"red", b"blu")
    path.write_bytes(new)
    clock.advance(1.0)
    resp = static.respond("GET", b"/static/app.css", ae)
    assert hdr(resp, b"Content-Encoding") is None and body(resp) == new
    # The next start rebuilds it and prunes the stale one.
    make(precompress=True, cache_dir=str(tmp_path / "c"))
    built = [p for p in (tmp_path / "c").rglob("*") if p.is_file()]
    assert len(built) == 1 and gzip.decompress(built[0].read_bytes()) == new


def test_cache_dir_must_be_private(tmp_path: Path, root: Path) -> None:
    real = os.path.realpath(root)
    good = cache_dir_for(real, str(tmp_path))
    assert good is not None and (os.stat(good).st_mode & 0o777) == 0o700
    os.chmod(good, 0o777)  # someone could plant variants in it
    assert cache_dir_for(real, str(tmp_path)) is None
    os.rmdir(good)
    os.symlink(tmp_path, good)
    assert cache_dir_for(real, str(tmp_path)) is None
    assert cache_dir_for(real, str(tmp_path / "no" / "such")) is None


def test_cache_for_workers_of_another_user_is_theirs_by_group(
    root: Path, tmp_path: Path, gzip_only: None
) -> None:
    """--user: built by the master, read by the workers through their group; never writable."""
    import grp

    gid = grp.getgrnam("nogroup").gr_gid if os.geteuid() == 0 else os.getgid()
    write(root, "app.css", CSS)
    write(root, "deep/er/app.js", CSS)
    base = tmp_path / "tmp"
    base.mkdir()
    cache = _precompress.build_variants(parse_mount(f"/s={root}"), str(base), gid)
    assert cache is not None and f"-g{gid}-" in os.path.basename(cache)
    st = os.lstat(cache)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (os.getuid(), gid, 0o750)
    files = [p for p in Path(cache).rglob("*") if p.is_file()]
    dirs = [p for p in Path(cache).rglob("*") if p.is_dir()]
    assert len(files) == 2 and len(dirs) == 2
    for p in files:
        assert (p.stat().st_gid, p.stat().st_mode & 0o777) == (gid, 0o640)
    for p in dirs:
        assert (p.stat().st_gid, p.stat().st_mode & 0o777) == (gid, 0o750)
    # Without a reader group: the private 0700 directory, under another name.
    own = _precompress.cache_dir_for(os.path.realpath(root), str(base))
    assert own is not None and own != cache and (os.stat(own).st_mode & 0o777) == 0o700


def test_unusable_cache_dir_disables_building(
    root: Path, tmp_path: Path, make, gzip_only: None
) -> None:
    write(root, "app.css", CSS)
    write(tmp_path, "not-a-dir", "x")
    static = make(precompress=True, cache_dir=str(tmp_path / "not-a-dir"))
    resp = static.respond("GET", b"/static/app.css", [(b"Accept-Encoding", b"gzip")])
    assert resp.status == 200 and hdr(resp, b"Content-Encoding") is None


def test_variant_symlink_inside_root_and_variant_directory(root: Path, get) -> None:
    write(root, "app.css", CSS)
    write(root, "variants/app.css.gz", b"LINKED-GZ")
    os.symlink(root / "variants" / "app.css.gz", root / "app.css.gz")
    (root / "app.css.br").mkdir()  # not a file: ignored
    resp = get("/static/app.css", [(b"Accept-Encoding", b"br, gzip")])
    assert hdr(resp, b"Content-Encoding") == b"gzip" and body(resp) == b"LINKED-GZ"


def test_many_distinct_accept_encodings(get, variants: dict[str, bytes]) -> None:
    for i in range(300):
        value = b"gzip;q=0.%03d, br;q=0.%03d" % (i % 1000, (i + 1) % 1000)
        resp = get("/static/app.css", [(b"Accept-Encoding", value)])
        assert hdr(resp, b"Content-Encoding") == b"br"


def test_build_limit_and_reuse(
    root: Path, tmp_path: Path, make, gzip_only: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a.css", "b.css", "c.css"):
        write(root, name, CSS)
    cache = tmp_path / "c"
    cache.mkdir()
    monkeypatch.setattr(_precompress, "MAX_FILES", 2)
    make(precompress=True, cache_dir=str(cache))
    built = sorted(p for p in cache.rglob("*") if p.is_file())
    assert len(built) == 2
    before = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in built]
    make(precompress=True, cache_dir=str(cache))  # the next start reuses them
    assert [(p.stat().st_ino, p.stat().st_mtime_ns) for p in built] == before


def test_incompressible_file_gets_no_variant(
    root: Path, tmp_path: Path, make, gzip_only: None
) -> None:
    write(root, "noise.css", os.urandom(4096))
    cache = tmp_path / "c"
    cache.mkdir()
    static = make(precompress=True, cache_dir=str(cache))
    assert [p for p in cache.rglob("*") if p.is_file()] == []
    resp = static.respond("GET", b"/static/noise.css", [(b"Accept-Encoding", b"gzip")])
    assert hdr(resp, b"Content-Encoding") is None


def test_build_write_failure_leaves_nothing_behind(
    root: Path, tmp_path: Path, make, gzip_only: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(root, "a.css", CSS)
    cache = tmp_path / "c"
    cache.mkdir()

    def no_space(*a: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    static = make(precompress=True, cache_dir=str(cache))
    assert [p for p in cache.rglob("*") if p.is_file()] == []
    resp = static.respond("GET", b"/static/a.css", [(b"Accept-Encoding", b"gzip")])
    assert resp.status == 200 and hdr(resp, b"Content-Encoding") is None


def test_two_mounts_of_one_directory_build_once(
    root: Path, tmp_path: Path, make, gzip_only: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(root, "a.css", CSS)
    calls: list[str] = []
    real = _precompress.build_variants
    monkeypatch.setattr(
        "frontdesk.static._static.build_variants",
        lambda m, base, gid: calls.append(m.prefix) or real(m, base, gid),
    )
    cache = tmp_path / "c"
    cache.mkdir()
    static = make(f"/a={root}", f"/b={root}", precompress=True, cache_dir=str(cache))
    assert calls == ["/a"]
    for p in (b"/a/a.css", b"/b/a.css"):
        resp = static.respond("GET", p, [(b"Accept-Encoding", b"gzip")])
        assert hdr(resp, b"Content-Encoding") == b"gzip"


class _SwapAfterStat:
    """`os` for _precompress, whose stat() of `name` swaps that file (as someone who can write
    the served tree could, between the build's stat and its open) by calling `swap`."""

    def __init__(self, name: str, swap) -> None:
        self.name, self.swap, self.swapped = name, swap, False

    def __getattr__(self, attr: str):
        return getattr(os, attr)

    def stat(self, path, *args, **kwargs):
        st = os.stat(path, *args, **kwargs)
        if os.path.basename(path) == self.name and not self.swapped:
            self.swapped = True
            self.swap()
        return st


@pytest.mark.parametrize("how", ["symlink", "other file"])
def test_precompress_never_reads_a_file_swapped_in_after_its_stat(
    root: Path, tmp_path: Path, make, gzip_only: None, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """The master (root, with --user) must not compress what a symlink swapped in points to,
    e.g. /etc/shadow, into a cache the workers' group can read."""
    secret = write(tmp_path, "secret.txt", ("root:SECRET-HASH:19000:0:99999:7:::\n" * 100))
    victim = write(root, "app.css", CSS)

    def swap() -> None:
        other = root / "other.tmp"
        if how == "symlink":
            other.symlink_to(secret)
        else:  # a hard link would be the same: another inode than the one stat() saw
            other.write_bytes(secret.read_bytes())
        other.replace(victim)

    fake = _SwapAfterStat("app.css", swap)
    monkeypatch.setattr(_precompress, "os", fake)
    cache = tmp_path / "c"
    cache.mkdir()
    make(precompress=True, cache_dir=str(cache))
    assert fake.swapped
    built = [p for p in cache.rglob("*") if p.is_file()]
    assert [gzip.decompress(p.read_bytes())[:9] for p in built] == []


def test_precompress_skips_a_symlink_to_a_file_outside(
    root: Path, tmp_path: Path, make, gzip_only: None
) -> None:
    secret = write(tmp_path, "secret.txt", "SECRET\n" * 500)
    os.symlink(secret, root / "linked.txt")
    write(root, "real.txt", CSS)
    cache = tmp_path / "c"
    cache.mkdir()
    make(precompress=True, cache_dir=str(cache))
    built = [p.name for p in cache.rglob("*") if p.is_file()]
    assert len(built) == 1 and built[0].startswith("real.txt.")


def test_precompress_never_follows_a_directory_swapped_for_a_symlink(
    root: Path, tmp_path: Path, make, gzip_only: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory of the tree renamed away and replaced by a symlink to one outside, after
    the build listed and stat()ed a file in it: the file is read from the directory listed."""
    outside = tmp_path / "outside"
    write(outside, "app.css", "SECRET { }\n" * 500)
    write(root, "sub/app.css", CSS)

    def swap() -> None:
        (root / "sub").rename(root / "moved")
        (root / "sub").symlink_to(outside)

    fake = _SwapAfterStat("app.css", swap)
    monkeypatch.setattr(_precompress, "os", fake)
    cache = tmp_path / "c"
    cache.mkdir()
    make(precompress=True, cache_dir=str(cache))
    assert fake.swapped
    built = [p for p in cache.rglob("*") if p.is_file()]
    assert [gzip.decompress(p.read_bytes()) for p in built] == [CSS]
