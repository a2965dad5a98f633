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
        (b"", ("", False)),
        (b"/", ("", True)),
        (b"/a/b.css", ("a/b.css", False)),
        (b"/a//b/", ("a/b", True)),
        (b"/%41%2d", ("A-", False)),
        (b"/a%25b", ("a%b", False)),
        (b"/a%2", None),
        (b"/a%2x", None),
        (b"/%2e", None),
        (b"/a/%2Fb", None),
        (b"/a%5cb", None),
        (b"/x%00", None),
        (b"/x%0a", None),
        (b"/%ff", None),
        (b"/a:b", None),
        (b"/%25%32%65", None),  # %252e in another spelling: decodes to "%2e"
        (b"/ok\x7f", None),
    ],
)
def test_safe_relpath(rest: bytes, expected: tuple[str, bool] | None) -> None:
    assert safe_relpath(rest) == expected
