"""respond(): status, exact headers, methods, mounts, content types, caching policy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from frontdesk.static import (
    DEFAULT_CACHE_CONTROL,
    IMMUTABLE_CACHE_CONTROL,
    FileRegion,
    Mount,
    StaticFiles,
    parse_mount,
)
from frontdesk.static._conditional import format_http_date
from frontdesk.static._mime import content_type
from frontdesk.static._mounts import is_fingerprinted

from .conftest import body, hdr, write

MTIME = 1_700_000_000


def test_get_small_file_exact_headers(root: Path, get) -> None:
    path = write(root, "app.css", "body{}", mtime=MTIME)
    st = path.stat()
    resp = get("/static/app.css")
    etag = b'"%x-%x-%x"' % (st.st_ino, st.st_size, st.st_mtime_ns)
    assert resp.status == 200
    assert list(resp.headers) == [
        (b"Content-Type", b"text/css; charset=utf-8"),
        (b"Content-Length", b"6"),
        (b"ETag", etag),
        (b"Last-Modified", b"Tue, 14 Nov 2023 22:13:20 GMT"),
        (b"Cache-Control", DEFAULT_CACHE_CONTROL.encode()),
        (b"Accept-Ranges", b"bytes"),
        (b"X-Content-Type-Options", b"nosniff"),
    ]
    assert resp.body == [b"body{}"]


def test_head_has_headers_and_no_body(root: Path, get) -> None:
    write(root, "app.js", "x" * 100)
    resp = get("/static/app.js", method="HEAD")
    assert resp.status == 200 and resp.body == []
    assert hdr(resp, b"Content-Length") == b"100"
    assert hdr(resp, b"Content-Type") == b"text/javascript; charset=utf-8"


def test_large_file_is_a_region_of_the_cached_file(root: Path, get) -> None:
    data = os.urandom(200_000)
    write(root, "big.bin", data)
    first = get("/static/big.bin")
    second = get("/static/big.bin")
    (region,) = first.body
    assert isinstance(region, FileRegion)
    assert (region.offset, region.count) == (0, 200_000)
    assert second.body[0].file is region.file  # one open file, shared
    assert body(first) == data
    assert hdr(first, b"Content-Length") == b"200000"
    assert get("/static/big.bin", method="HEAD").body == []


def test_empty_file(root: Path, get) -> None:
    write(root, "empty.txt", b"")
    resp = get("/static/empty.txt")
    assert resp.status == 200 and hdr(resp, b"Content-Length") == b"0" and body(resp) == b""


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "get"])
def test_other_methods_405(root: Path, get, method: str) -> None:
    write(root, "a.txt", "a")
    resp = get("/static/a.txt", method=method)
    assert resp.status == 405
    assert hdr(resp, b"Allow") == b"GET, HEAD"


def test_missing_file_404_with_small_text_body(root: Path, get) -> None:
    resp = get("/static/nope.css")
    assert resp.status == 404
    assert hdr(resp, b"Content-Type") == b"text/plain; charset=utf-8"
    assert body(resp) == b"Not Found\n"
    assert hdr(resp, b"Content-Length") == b"10"
    head = get("/static/nope.css", method="HEAD")
    assert head.status == 404 and head.body == []


def test_no_mount_matches_returns_none(root: Path, get) -> None:
    write(root, "a.txt", "a")
    assert get("/app/a.txt") is None
    assert get("/staticfiles/a.txt") is None
    assert get("/stati") is None


def test_fallthrough(root: Path, make) -> None:
    write(root, "a.txt", "a")
    static = make(fallthrough=True)
    assert static.respond("GET", b"/static/missing", []) is None
    assert static.respond("POST", b"/static/missing", []) is None
    assert static.respond("GET", b"/static/a.txt", []).status == 200
    assert static.respond("POST", b"/static/a.txt", []).status == 405
    # Names that are not refused but name no file still reach the app: ":" included.
    assert static.respond("GET", b"/static/wiki/Special:Search", []) is None
    assert static.respond("GET", b"/static/caf%C3%A9", []) is None


@pytest.mark.parametrize(
    "path",
    [
        b"/../x",
        b"/%2e%2e/x",
        b"/.%2E/x",
        b"/a/%2e%2e/%2e%2e/x",
        b"/a%2f..%2fb",  # the app would see PATH_INFO /a/../b
        b"/a%5cb",
        b"/%252e%252e/x",  # double encoding: a second decode by the app makes ".."
        b"/%00",
        b"/%c0%ae%c0%ae/x",
        b"/%zz",
        b"/.env",
        b"/.git/config",
        b"/a/.htpasswd",
        b"/.well-known/acme-challenge/x",  # unless the mount allows it (below)
        b"/a" * 200,  # more than MAX_SEGMENTS
    ],
)
def test_refused_paths_are_404_even_with_fallthrough(root: Path, make, path: bytes) -> None:
    """Fallthrough is for names that name no file, never for attacks or refused names."""
    write(root, "a.txt", "a")
    for prefix in (b"/static", b""):
        spec = f"{prefix.decode() or '/'}={root}"
        static = make(spec, fallthrough=True)
        resp = static.respond("GET", prefix + path, [])
        assert resp is not None and resp.status == 404, (prefix, path)


def test_allowed_dotfile_names_fall_through_when_missing(root: Path, make) -> None:
    static = make(f"/={root};allow-dotfiles=.well-known", fallthrough=True)
    write(root, ".well-known/security.txt", "contact")
    assert body(static.respond("GET", b"/.well-known/security.txt", [])) == b"contact"
    assert static.respond("GET", b"/.well-known/openid-configuration", []) is None  # the app
    assert static.respond("GET", b"/.env", []).status == 404


def test_mount_at_root_and_longest_prefix_wins(tmp_path: Path, make) -> None:
    site = tmp_path / "site"
    assets = tmp_path / "assets"
    write(site, "index.html", "<h1>home</h1>")
    write(site, "assets/x.css", "from site")
    write(assets, "x.css", "from assets")
    static = make(f"/={site}", f"/assets/={assets}")
    assert body(static.respond("GET", b"/assets/x.css", [])) == b"from assets"
    assert body(static.respond("GET", b"/", [])) == b"<h1>home</h1>"
    assert body(static.respond("GET", b"/index.html", [])) == b"<h1>home</h1>"


def test_mounts_with_the_same_prefix_are_searched_in_order(tmp_path: Path, make) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, "one.txt", "a1")
    write(b, "one.txt", "b1")
    write(b, "two.txt", "b2")
    static = make(f"/s={a}", f"/s={b}")
    assert body(static.respond("GET", b"/s/one.txt", [])) == b"a1"
    assert body(static.respond("GET", b"/s/two.txt", [])) == b"b2"
    assert static.respond("GET", b"/s/three.txt", []).status == 404


def test_directory_index(root: Path, get) -> None:
    write(root, "docs/index.html", "<p>docs</p>")
    resp = get("/static/docs/")
    assert resp.status == 200 and body(resp) == b"<p>docs</p>"
    assert hdr(resp, b"Content-Type") == b"text/html; charset=utf-8"
    assert get("/static").status == 404  # the root has no index.html


def test_directory_without_slash_redirects_like_nginx(root: Path, make) -> None:
    write(root, "docs/index.html", "<p>docs</p>")
    write(root, "a b/café/index.html", "x")
    write(root, "noindex/file.txt", "x")
    static = make()

    def go(path: bytes, query: bytes = b"", method: str = "GET") -> object:
        return static.respond(method, path, [], query)

    resp = go(b"/static/docs")
    assert resp.status == 301 and hdr(resp, b"Location") == b"/static/docs/"
    assert hdr(resp, b"Content-Length") == b"%d" % len(body(resp))
    resp = go(b"/static/docs", b"a=1&b=%2F")  # the query string is kept as it came
    assert hdr(resp, b"Location") == b"/static/docs/?a=1&b=%2F"
    assert go(b"/static//docs").status == 301  # an alias: the Location is normalised
    assert hdr(go(b"/static//docs"), b"Location") == b"/static/docs/"
    resp = go(b"/static/a%20b/caf%C3%A9")
    assert hdr(resp, b"Location") == b"/static/a%20b/caf%C3%A9/"
    head = go(b"/static/docs", method="HEAD")
    assert head.status == 301 and head.body == [] and hdr(head, b"Location") == b"/static/docs/"
    assert go(b"/static/docs", method="POST").status == 405
    assert go(b"/static/noindex").status == 404  # no index.html: nothing to redirect to
    assert go(b"/static/noindex/").status == 404
    assert go(b"/static/docs/").status == 200


def test_mount_root_without_slash_redirects(root: Path, make) -> None:
    write(root, "index.html", "home")
    static = make()
    assert hdr(static.respond("GET", b"/static", []), b"Location") == b"/static/"


def test_redirect_never_leaves_the_site(tmp_path: Path, make) -> None:
    site = tmp_path / "site"
    write(site, "evil.com/index.html", "x")
    static = make(f"/={site}")
    resp = static.respond("GET", b"//evil.com", [])
    assert resp.status == 301 and hdr(resp, b"Location") == b"/evil.com/"  # not //evil.com/


def test_redirect_follows_the_index_appearing_and_going(root: Path, make, clock) -> None:
    (root / "d").mkdir()
    static = make(fallthrough=True)
    assert static.respond("GET", b"/static/d", []) is None  # names no file: the app answers
    write(root, "d/index.html", "x")
    clock.advance(1)
    assert static.respond("GET", b"/static/d", []).status == 301
    (root / "d" / "index.html").unlink()
    clock.advance(1)
    assert static.respond("GET", b"/static/d", []) is None


@pytest.mark.parametrize(
    ("name", "ctype"),
    [
        ("a.html", b"text/html; charset=utf-8"),
        ("a.htm", b"text/html; charset=utf-8"),
        ("a.css", b"text/css; charset=utf-8"),
        ("a.js", b"text/javascript; charset=utf-8"),
        ("a.mjs", b"text/javascript; charset=utf-8"),
        ("a.json", b"application/json; charset=utf-8"),
        ("a.js.map", b"application/json; charset=utf-8"),
        ("a.svg", b"image/svg+xml; charset=utf-8"),
        ("a.png", b"image/png"),
        ("a.jpg", b"image/jpeg"),
        ("a.JPEG", b"image/jpeg"),
        ("a.gif", b"image/gif"),
        ("a.webp", b"image/webp"),
        ("a.avif", b"image/avif"),
        ("favicon.ico", b"image/x-icon"),
        ("a.woff", b"font/woff"),
        ("a.woff2", b"font/woff2"),
        ("a.txt", b"text/plain; charset=utf-8"),
        ("a.xml", b"application/xml; charset=utf-8"),
        ("a.wasm", b"application/wasm"),
        ("a.pdf", b"application/pdf"),
        ("a.mp4", b"video/mp4"),
        ("a.webm", b"video/webm"),
        ("a.unknownext", b"application/octet-stream"),
        ("Makefile", b"application/octet-stream"),
        ("a.css.gz", b"application/gzip"),
        ("a.tar", b"application/x-tar"),
        # Missing from (some versions of) Python's built-in table: fixed here.
        ("a.m4a", b"audio/mp4"),
        ("a.m4v", b"video/mp4"),
        ("a.flac", b"audio/flac"),
        ("a.xhtml", b"application/xhtml+xml; charset=utf-8"),
        ("feed.rss", b"application/rss+xml; charset=utf-8"),
        ("feed.atom", b"application/atom+xml; charset=utf-8"),
        ("a.eot", b"application/vnd.ms-fontobject"),
        ("site.webmanifest", b"application/manifest+json; charset=utf-8"),
        ("a.opus", b"audio/ogg"),
        ("a.ogg", b"audio/ogg"),
        ("a.oga", b"audio/ogg"),
        ("a.ogv", b"video/ogg"),
        ("a.weba", b"audio/webm"),
        ("a.mp3", b"audio/mpeg"),
        ("a.wav", b"audio/wav"),
        ("a.mov", b"video/quicktime"),
        ("a.mkv", b"video/x-matroska"),
        ("a.apng", b"image/apng"),
        ("a.jxl", b"image/jxl"),
        ("a.ttf", b"font/ttf"),
        ("a.otf", b"font/otf"),
        ("a.ics", b"text/calendar; charset=utf-8"),
        ("a.vtt", b"text/vtt; charset=utf-8"),
        ("a.yaml", b"application/yaml; charset=utf-8"),
        ("a.jsonld", b"application/ld+json; charset=utf-8"),
        ("a.m3u8", b"application/vnd.apple.mpegurl"),
        ("a.mpd", b"application/dash+xml; charset=utf-8"),
        ("a.ts", b"video/mp2t"),
        ("a.7z", b"application/x-7z-compressed"),
        ("a.docx", b"application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        ("a.epub", b"application/epub+zip"),
        ("a.cjs", b"text/javascript; charset=utf-8"),
        ("a.ass", b"application/octet-stream"),  # stdlib 3.11 says audio/aac (a subtitle format)
    ],
)
def test_content_type(name: str, ctype: bytes) -> None:
    assert content_type(name) == ctype


def test_content_types_ignore_the_host_and_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing from the mimetypes module: the table is complete in itself (docs/static-files.md)."""
    import importlib
    import mimetypes

    from frontdesk.static import _mime

    monkeypatch.setattr(mimetypes, "MimeTypes", None)
    monkeypatch.setattr(mimetypes, "types_map", {".tar": "application/x-bogus"})
    monkeypatch.setattr(mimetypes, "guess_type", None)
    fresh = importlib.reload(_mime)
    try:
        assert fresh.content_type("a.tar") == b"application/x-tar"
        assert fresh.content_type("a.py") == b"text/x-python; charset=utf-8"
        extensions = [e for exts in fresh._TYPES.values() for e in exts]
        assert len(extensions) == len(set(extensions))  # each extension has one type
        assert all(e == e.lower() and "." not in e for e in extensions)
    finally:
        monkeypatch.undo()
        importlib.reload(_mime)


def test_content_type_reaches_the_response(root: Path, get) -> None:
    write(root, "logo.svg", "<svg/>")
    assert hdr(get("/static/logo.svg"), b"Content-Type") == b"image/svg+xml; charset=utf-8"


@pytest.mark.parametrize(
    "name",
    [
        "app.3f2a9c1b.css",
        "main-5d41402abc4b2a76.js",
        "style.5d41402abc4b.css",
        "chunk-vendors.e0f2a3b1.js",
        "font.ABCDEF0123.woff2",
        "app.3f2a9c1b.min.js",
        "entry-IVRV6JR7.js",  # esbuild: 8 characters of uppercase base32
        "chunk-2ZQZ7TFK.js",
        "main.KXCB5R3E.css",
        "index-4ed993c7.js",  # Rollup < 3: hex
    ],
)
def test_fingerprinted(name: str) -> None:
    assert is_fingerprinted(name)


@pytest.mark.parametrize(
    "name",
    [
        "app.css",
        "jquery-3.6.0.min.js",
        "report-20240101.pdf",  # a date: digits only
        "deadbeefcafe.txt",  # letters only: a word, not a hash
        "app.3f2a9c1.css",  # 7 characters
        "app.3f2a9C1b.css",  # mixed case
        "index-BkQ3xZ_a.js",  # base64 (Vite): not hex
        "x.3f2a9c1b",  # the hash is the extension
        "cafe1234.txt",  # a hash-like name with nothing before it: not a fingerprint
        "1234567a.csv",
        "3f2a9c1b4d.js",  # webpack's bare [contenthash].js: indistinguishable from the above
        "entry-IVRV6JR.js",  # base32, 7 characters
        "entry-IVRV6JR78.js",  # base32, 9 characters
        "entry-ivrv6jr7.js",  # base32 is uppercase
        "entry-IVRV8JR7.js",  # 8 and 9 are not base32 digits (and mixed with letters: not hex)
        "app-FEEDBACK.js",  # letters only
        "app-23456723.js",  # digits only: a number
        "photo-ABCDEFGH.jpg",  # letters only
    ],
)
def test_not_fingerprinted(name: str) -> None:
    assert not is_fingerprinted(name)


def test_cache_control_default_fingerprint_and_per_mount(tmp_path: Path, make) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, "app.css", "x")
    write(a, "app.3f2a9c1b.css", "x")
    write(b, "app.css", "x")
    static = make(f"/a={a}", f"/b={b};cache-control=public, max-age=600")
    cc = [
        hdr(static.respond("GET", p, []), b"Cache-Control")
        for p in (b"/a/app.css", b"/a/app.3f2a9c1b.css", b"/b/app.css")
    ]
    assert cc == [
        DEFAULT_CACHE_CONTROL.encode(),
        IMMUTABLE_CACHE_CONTROL.encode(),
        b"public, max-age=600",
    ]
    assert IMMUTABLE_CACHE_CONTROL == "public, max-age=31536000, immutable"


def test_explicit_cache_control_wins_over_fingerprints(tmp_path: Path, make) -> None:
    names = ("app.3f2a9c1b.css", "entry-IVRV6JR7.js", "app.css")
    dirs = {}
    for d in ("auto", "explicit", "both", "off"):
        dirs[d] = tmp_path / d
        for n in names:
            write(dirs[d], n, "x")
    static = make(
        f"/auto={dirs['auto']}",
        f"/explicit={dirs['explicit']};cache-control=no-cache",
        f"/both={dirs['both']};cache-control=public, max-age=600;fingerprints=on",
        f"/off={dirs['off']};fingerprints=off",
    )

    def cc(prefix: str) -> list[bytes | None]:
        return [
            hdr(static.respond("GET", f"/{prefix}/{n}".encode(), []), b"Cache-Control")
            for n in names
        ]

    immutable, default = IMMUTABLE_CACHE_CONTROL.encode(), DEFAULT_CACHE_CONTROL.encode()
    assert cc("auto") == [immutable, immutable, default]
    assert cc("explicit") == [b"no-cache"] * 3
    assert cc("both") == [immutable, immutable, b"public, max-age=600"]
    assert cc("off") == [default] * 3


def test_fingerprint_is_judged_on_the_url_name_not_a_symlink_target(root: Path, get) -> None:
    write(root, "app.3f2a9c1b.css", "x")
    os.symlink(root / "app.3f2a9c1b.css", root / "app.css")
    assert hdr(get("/static/app.css"), b"Cache-Control") == DEFAULT_CACHE_CONTROL.encode()


def test_last_modified_never_in_the_future(root: Path, get) -> None:
    import time

    write(root, "future.txt", "x", mtime=time.time() + 86400 * 365)
    lm = hdr(get("/static/future.txt"), b"Last-Modified")
    assert lm == format_http_date(int(time.time())) or lm == format_http_date(int(time.time()) - 1)


def test_headers_are_shared_and_immutable_and_body_lists_fresh(root: Path, get) -> None:
    write(root, "a.txt", "a")
    first = get("/static/a.txt")
    with pytest.raises(AttributeError):
        first.headers.append((b"X-Mutated", b"1"))  # type: ignore[attr-defined]
    first.body.clear()
    second = get("/static/a.txt")
    assert second.headers is first.headers and second.body == [b"a"]


# --- parse_mount ----------------------------------------------------------------------------------


def test_parse_mount(root: Path) -> None:
    assert parse_mount(f"/static={root}") == Mount("/static", str(root), DEFAULT_CACHE_CONTROL)
    assert parse_mount(f"/static/={root}").prefix == "/static"
    assert parse_mount(f"/={root}").prefix == ""
    m = parse_mount(f"/assets={root};cache-control=public, max-age=600")
    assert m.cache_control == "public, max-age=600"
    assert parse_mount(f"/a={root};Cache-Control= no-cache ").cache_control == "no-cache"


def test_parse_mount_options(root: Path) -> None:
    m = parse_mount(f"/s={root}")
    assert (m.follow_symlinks, m.allow_dotfiles, m.dotfile_names) == (False, False, frozenset())
    m = parse_mount(f"/s={root};follow-symlinks;allow-dotfiles")
    assert m.follow_symlinks and m.allow_dotfiles
    m = parse_mount(f"/s={root}; allow-dotfiles=.well-known, .foo ;cache-control=no-cache")
    assert not m.allow_dotfiles and m.dotfile_names == frozenset({".well-known", ".foo"})
    assert m.cache_control == "no-cache"
    assert m.allows((".well-known",)) and m.allows((".foo", ".well-known"))
    assert not m.allows((".env",)) and not m.allows((".well-known", ".env"))
    assert parse_mount(f"/s={root};allow-dotfiles").allows((".env", ".git"))


def test_parse_mount_relative_directory_becomes_absolute(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(root.parent)
    assert parse_mount("/s=public").directory == str(root)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("static=DIR", "prefix must start with '/'"),
        ("/static", "expected PREFIX=DIRECTORY"),
        ("/static=", "directory is empty"),
        ("/static=DIR/missing", "is not an existing directory"),
        ("/static=DIR/file.txt", "is not an existing directory"),
        ("/a b=DIR", "unreserved URL path characters"),
        ("/a%20b=DIR", "unreserved URL path characters"),
        ("/a?x=DIR", "unreserved URL path characters"),
        ("//a=DIR", "unreserved URL path characters"),
        ("/a\n=DIR", "unreserved URL path characters"),
        ("/a/../b=DIR", "'.' or '..'"),
        ("/static=DIR;max-age=5", "unknown option"),
        ("/static=DIR;cache-control=", "non-empty printable ASCII"),
        ("/static=DIR;cache-control=a\nb", "non-empty printable ASCII"),
        ("/static=DIR;cache-control=a;cache-control=b", "given twice"),
        ("/static=DIR;follow-symlinks=yes", "takes no value"),
        ("/static=DIR;allow-dotfiles=well-known", "names starting with '.'"),
        ("/static=DIR;allow-dotfiles=..", "names starting with '.'"),
        ("/static=DIR;allow-dotfiles=.a/b", "names starting with '.'"),
        ("/static=DIR;allow-dotfiles=", "names starting with '.'"),
        ("/static=DIR;allow-dotfiles=.a,,.b", "names starting with '.'"),
        ("/static=DIR;fingerprints=maybe", "'on' or 'off'"),
        ("/static=DIR;fingerprints", "'on' or 'off'"),
        ("/static=DIR;follow-symlink", "unknown option 'follow-symlink'"),
    ],
)
def test_parse_mount_errors(root: Path, spec: str, message: str) -> None:
    write(root, "file.txt", "x")
    with pytest.raises(ValueError, match=message) as info:
        parse_mount(spec.replace("DIR", str(root)))
    assert "\n" not in str(info.value)


def test_staticfiles_exposes_mounts(root: Path) -> None:
    m = parse_mount(f"/s={root}")
    assert StaticFiles([m]).mounts == (m,)


def test_realistic_browser_headers(root: Path, get) -> None:
    write(root, "a.css", "x")
    headers = [
        (b"Host", b"example.com"),
        (b"User-Agent", b"Mozilla/5.0"),
        (b"Accept", b"text/css,*/*;q=0.1"),
        (b"Accept-Language", b"en-US,en;q=0.5"),  # same length as Accept-Encoding
        (b"Cache-Control", b"no-cache"),  # same length as If-None-Match
        (b"RANGE-X", b"bytes=0-0"),
        (b"sec-fetch-dest", b"style"),
        (b"If-None-Match-Not", b"*"),
    ]
    resp = get("/static/a.css", headers)
    assert resp.status == 200 and body(resp) == b"x"
