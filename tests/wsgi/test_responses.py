"""Response framing for apps that bend PEP 3333 (run unwrapped: the validator would hide them)."""

from __future__ import annotations

import pytest

from tests.protocol.test_wire import HELLO, error_bytes, normal

NEXT = b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
HELLO_LAST = HELLO.replace(b"Server:", b"Connection: close\r\nServer:")


def get(server, path: bytes, method: bytes = b"GET") -> bytes:
    """`path` then a pipelined /hello: a desynchronised response shows up as garbage."""
    return normal(server.raw(b"%s %s HTTP/1.1\r\nHost: x\r\n\r\n" % (method, path) + NEXT))


def test_list_longer_than_content_length_keeps_its_head_and_is_cut(apps_server):
    out = get(apps_server, b"/list_cl_mismatch")
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 5\r\n" in out
    assert out.endswith(b"\r\n\r\n01234")  # truncated to its length, then closed: no /hello


def test_file_wrapper_with_wrong_length_keeps_its_head(apps_server):
    out = get(apps_server, b"/file_cl_mismatch")
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"\r\n\r\nAAAAAAAAAA")


def test_write_then_list_is_one_response(apps_server):
    out = get(apps_server, b"/write_then_list")
    assert out.count(b"HTTP/1.1 ") == 2 and out.endswith(HELLO_LAST)
    assert b"c\r\nfrom write; \r\n9\r\nfrom list\r\n0\r\n\r\n" in out


@pytest.mark.parametrize("path", [b"/interim", b"/sys_exit", b"/backend_refused",
                                  b"/empty_then_raise"])
def test_app_failures_before_any_body_are_500_and_the_connection_goes_on(apps_server, path):
    out = get(apps_server, path)
    assert out == error_bytes(500, b"Internal Server Error").replace(
        b"Connection: close\r\n", b"") + HELLO_LAST


def test_head_of_a_failing_app_has_no_body(apps_server):
    out = get(apps_server, b"/raise", method=b"HEAD")
    assert out.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert out.endswith(b"Content-Length: 26\r\n\r\n" + HELLO_LAST)


def test_204_never_carries_content_length(apps_server):
    out = get(apps_server, b"/no_content_with_length")
    assert out.startswith(b"HTTP/1.1 204 No Content\r\n") and b"Content-Length" not in out.split(
        b"\r\n\r\n")[0]
    assert out.endswith(HELLO_LAST)
