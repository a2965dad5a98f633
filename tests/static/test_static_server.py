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
