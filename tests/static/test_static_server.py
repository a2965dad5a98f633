"""Static mounts through a real frontdesk process: raw bytes over loopback sockets."""

from __future__ import annotations

from pathlib import Path

from .conftest import write


def head_of(response: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head, _, rest = response.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    fields = {}
    for line in lines:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    return status, fields, rest


def test_directory_redirect_keeps_the_query_string(server_factory, tmp_path: Path) -> None:
    write(tmp_path, "docs/index.html", "<p>docs</p>")
    server = server_factory("tests.apps:hello", "--workers", "1", "--static", f"/static={tmp_path}")
    status, fields, _ = head_of(server.raw(
        b"GET /static/docs?page=2&q=a%20b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    ))
    assert status == b"HTTP/1.1 301 Moved Permanently"
    assert fields[b"location"] == b"/static/docs/?page=2&q=a%20b"
    status, _, body = head_of(server.raw(
        b"GET /static/docs/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    ))
    assert status == b"HTTP/1.1 200 OK" and body == b"<p>docs</p>"


def test_precompress_with_user_serves_the_built_variants(server_factory) -> None:
    """The master (root) builds the variants; workers running as nobody must read them."""
    import os
    import shutil
    import tempfile

    if os.geteuid() != 0:
        import pytest

        pytest.skip("needs root")
    # Not under pytest's tmp_path: that is 0700, and nobody could not read the files at all.
    top = tempfile.mkdtemp(prefix="frontdesk-static-test-")
    try:
        os.chmod(top, 0o755)
        site = os.path.join(top, "site")
        tmp = os.path.join(top, "tmp")
        os.mkdir(site, 0o755)
        os.mkdir(tmp, 0o755)
        css = b"body { color: red; margin: 0 auto; }\n" * 100
        with open(os.path.join(site, "app.css"), "wb") as f:
            f.write(css)
        os.chmod(os.path.join(site, "app.css"), 0o644)
        server = server_factory(
            "tests.apps:hello", "--workers", "1", "--preload", "--user", "nobody",
            "--static", f"/static={site}", "--static-precompress", env={"TMPDIR": tmp},
        )
        status, fields, body = head_of(server.raw(
            b"GET /static/app.css HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip, br\r\n"
            b"Connection: close\r\n\r\n"
        ))
        assert status == b"HTTP/1.1 200 OK"
        assert fields.get(b"content-encoding") in (b"gzip", b"br"), fields
        assert len(body) == int(fields[b"content-length"]) < len(css)
        (cache,) = os.listdir(tmp)
        assert os.stat(os.path.join(tmp, cache)).st_uid == 0  # root's, shared by group only
    finally:
        shutil.rmtree(top, ignore_errors=True)
