"""No request path escapes the mount: traversal, encodings, dotfiles, symlinks, odd bytes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from frontdesk.static._paths import safe_relpath

from .conftest import body, write

SECRET = b"TOP-SECRET-CONTENT"


@pytest.fixture
def tree(root: Path, tmp_path: Path) -> Path:
    write(tmp_path, "secret.txt", SECRET)
    write(tmp_path, "etc/passwd", SECRET)
    write(root, "public.txt", "public")
    write(root, "sub/a.txt", "a")
    write(root, "sub/.hidden", SECRET)
    write(root, ".env", SECRET)
    write(root, ".git/config", SECRET)
    write(root, "café.txt", "cafe")
    write(root, "100%.txt", "percent")
    write(root, "%2e%2e", SECRET)  # a literal, odd name that double-encoding would reach
    os.symlink(tmp_path / "secret.txt", root / "link_out")
    os.symlink(tmp_path, root / "dir_out")
    os.symlink(root / "public.txt", root / "ok_link")
    os.mkfifo(root / "fifo")
    return root


ATTACKS = [
    "/static/../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2E/secret.txt",
    "/static/.%2e/secret.txt",
    "/static/%2e./secret.txt",
    "/static/%2e%2e%2fsecret.txt",
    "/static/..%2fsecret.txt",
    "/static/..%2Fsecret.txt",
    "/static/..%5csecret.txt",
    "/static/..\\secret.txt",
    "/static/sub\\..\\..\\secret.txt",
    "/static/%252e%252e/secret.txt",
    "/static/%252e%252e%252fsecret.txt",
    "/static/%252e%252e",
    "/static/sub/../../secret.txt",
    "/static/sub/%2e%2e/%2e%2e/secret.txt",
    "/static/sub%2f..%2f..%2fsecret.txt",
    "/static/public.txt%00.css",
    "/static/public.txt\x00",
    "/static/%00",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/C:/Windows/win.ini",
    "/static/C:%5cWindows%5cwin.ini",
    "/static/c%3a/secret.txt",
    "/static/public.txt::$DATA",
    "/static/.env",
    "/static/%2eenv",
    "/static/.git/config",
    "/static/sub/.hidden",
    "/static/link_out",
    "/static/dir_out/secret.txt",
    "/static/dir_out/etc/passwd",
    "/static/%c0%ae%c0%ae/secret.txt",
    "/static/..%c0%afsecret.txt",
    "/static/%e0%80%ae%e0%80%ae/secret.txt",
    "/static/%2e",
    "/static/./public.txt",
    "/static/..;/secret.txt",
    "/static/%zz",
    "/static/%2",
    "/static/sub",  # a directory: no listings
    "/static/sub/",  # a directory without index.html
    "/static/public.txt/",  # a file is not a directory
    "/static/fifo",  # not a regular file (opening it would block the loop)
    "/static/\x1b[31m",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_is_404(tree: Path, get, attack: str) -> None:
    resp = get(attack.encode("latin-1"))
    assert resp is not None and resp.status == 404
    assert SECRET not in body(resp)


@pytest.mark.parametrize("attack", ["/static\\..\\secret.txt", "/staticx/../secret.txt", "/"])
def test_outside_the_prefix_is_not_ours(tree: Path, get, attack: str) -> None:
    assert get(attack.encode()) is None


@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("/static/public.txt", b"public"),
        ("/static/%70ublic.txt", b"public"),
        ("/static//sub//a.txt", b"a"),
        ("/static/caf%C3%A9.txt", b"cafe"),
        ("/static/100%25.txt", b"percent"),
        ("/static/ok_link", b"public"),  # a symlink inside the root is fine
    ],
)
def test_legitimate_paths(tree: Path, get, path: str, content: bytes) -> None:
    resp = get(path)
    assert resp is not None and resp.status == 200
    assert body(resp) == content


def test_symlink_escape_allowed_only_through_root_symlink(tmp_path: Path, root: Path, make) -> None:
    # The mount directory itself may be a symlink (deploys swap a `current` link).
    release = tmp_path / "release-1"
    write(release, "app.css", "v1")
    os.symlink(release, tmp_path / "current")
    static = make(f"/s={tmp_path / 'current'}")
    resp = static.respond("GET", b"/s/app.css", [])
    assert resp is not None and resp.status == 200 and body(resp) == b"v1"


@pytest.mark.parametrize(
    ("rest", "expected"),
    [
        (b"", ("", False, ())),
        (b"/", ("", True, ())),
        (b"/a/b.css", ("a/b.css", False, ())),
        (b"/a//b/", ("a/b", True, ())),
        (b"/%41%2d", ("A-", False, ())),
        (b"/a%25b", ("a%b", False, ())),
        (b"/a:b", ("a:b", False, ())),  # POSIX: ":" is an ordinary character
        (b"/.well-known/x/.y", (".well-known/x/.y", False, (".well-known", ".y"))),
        (b"/%2eenv", (".env", False, (".env",))),
        (b"/a...b/...", ("a...b/...", False, ("...",))),
        (b"/caf%c3%a9", ("café", False, ())),
        (b"/a%2", None),
        (b"/a%2x", None),
        (b"/%2e", None),
        (b"/.", None),
        (b"/..", None),
        (b"/.%2e", None),
        (b"/a/%2Fb", None),
        (b"/a%5cb", None),
        (b"/a%5cx41", None),  # a decoded backslash is refused, never read as an escape
        (b"/x%00", None),
        (b"/x%0a", None),
        (b"/%ff", None),
        (b"/%25%32%65", None),  # %252e in another spelling: decodes to "%2e"
        (b"/ok\x7f", None),
        (b"/a" * 128, ("/".join(["a"] * 128), False, ())),
        (b"/a" * 129, None),  # more than MAX_SEGMENTS
    ],
)
def test_safe_relpath(rest: bytes, expected: tuple[str, bool, tuple[str, ...]] | None) -> None:
    assert safe_relpath(rest) == expected


# --- per-mount options: dotfiles and symlinks -----------------------------------------------------


def test_allow_dotfiles_all(tree: Path, make) -> None:
    static = make(f"/static={tree};allow-dotfiles")
    assert body(static.respond("GET", b"/static/.env", [])) == SECRET
    assert body(static.respond("GET", b"/static/sub/.hidden", [])) == SECRET
    assert body(static.respond("GET", b"/static/.git/config", [])) == SECRET
    # Never "." or "..", and still no escape.
    for path in (b"/static/../secret.txt", b"/static/%2e%2e/secret.txt", b"/static/./.env"):
        assert static.respond("GET", path, []).status == 404


def test_allow_dotfiles_by_name(tree: Path, make) -> None:
    write(tree, ".well-known/acme-challenge/token", "proof")
    write(tree, ".well-known/.secret", SECRET)
    static = make(f"/static={tree};allow-dotfiles=.well-known")
    assert body(static.respond("GET", b"/static/.well-known/acme-challenge/token", [])) == b"proof"
    assert body(static.respond("GET", b"/static/%2ewell-known/acme-challenge/token", [])) == (
        b"proof"
    )
    for path in (b"/static/.env", b"/static/.git/config", b"/static/.well-known/.secret"):
        resp = static.respond("GET", path, [])
        assert resp.status == 404 and SECRET not in body(resp)


def test_dotfiles_allowed_in_one_mount_of_a_prefix_only(tree: Path, tmp_path: Path, make) -> None:
    other = tmp_path / "other"
    write(other, ".env", "other env")
    write(other, ".well-known/x", "other x")
    # The first mount (tree) refuses dotfiles; the second allows .well-known only.
    static = make(f"/static={tree}", f"/static={other};allow-dotfiles=.well-known")
    assert body(static.respond("GET", b"/static/.well-known/x", [])) == b"other x"
    assert static.respond("GET", b"/static/.env", []).status == 404


def test_follow_symlinks(tree: Path, make) -> None:
    static = make(f"/static={tree};follow-symlinks")
    assert body(static.respond("GET", b"/static/link_out", [])) == SECRET
    assert body(static.respond("GET", b"/static/dir_out/secret.txt", [])) == SECRET
    # The URL path itself still cannot climb out, and dotfiles are still refused.
    assert static.respond("GET", b"/static/../secret.txt", []).status == 404
    assert static.respond("GET", b"/static/dir_out/../secret.txt", []).status == 404
    assert static.respond("GET", b"/static/.env", []).status == 404
    # Without the option the same links are refused.
    plain = make(f"/static={tree}")
    assert plain.respond("GET", b"/static/link_out", []).status == 404
    assert plain.respond("GET", b"/static/dir_out/secret.txt", []).status == 404


def test_follow_symlinks_variants_and_index(tree: Path, tmp_path: Path, make) -> None:
    write(tmp_path, "out/index.html", "outside index")
    write(tmp_path, "out/app.css", "body{}" * 10)
    write(tmp_path, "out/app.css.gz", "GZ")
    os.symlink(tmp_path / "out", tree / "outdir")
    static = make(f"/static={tree};follow-symlinks")
    assert body(static.respond("GET", b"/static/outdir/", [])) == b"outside index"
    resp = static.respond("GET", b"/static/outdir/app.css", [(b"Accept-Encoding", b"gzip")])
    assert body(resp) == b"GZ"
    plain = make(f"/static={tree}")
    assert plain.respond("GET", b"/static/outdir/", []).status == 404
