"""wsgi.file_wrapper: real files go out with sendfile from the loop, and are closed after."""

from __future__ import annotations

import os

import httpx


def expected(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + b"x" * (size % 256)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_file_wrapper_body_is_exact_with_content_length(apps_server):
    with httpx.Client(base_url=apps_server.url) as client:
        for size in (0, 1, 1000, 3 * 1024 * 1024 + 7):
            response = client.get(f"/sendfile?{size}")
            assert response.status_code == 200
            assert response.headers["content-length"] == str(size)
            assert "transfer-encoding" not in response.headers
            assert response.content == expected(size)


def test_file_wrapper_keeps_the_connection_and_closes_the_file(apps_server):
    with httpx.Client(base_url=apps_server.url) as client:
        client.get("/sendfile?5000")
        (worker,) = apps_server.worker_pids()
        before = open_fds(worker)
        for _ in range(20):
            assert client.get("/sendfile?5000").content == expected(5000)
            assert client.get("/hello").text == "Hello, World!"  # same connection, next request
        after = open_fds(worker)
    assert after <= before  # every file handed to sendfile was closed


def test_file_wrapper_head_sends_no_body(apps_server):
    response = httpx.head(apps_server.url + "/sendfile?5000")
    assert response.headers["content-length"] == "5000" and response.content == b""
