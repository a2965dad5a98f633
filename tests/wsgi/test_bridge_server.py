"""The bridge's edge cases through a real server process."""

from __future__ import annotations

from tests.protocol.test_wire import normal

NEXT = b"GET /errors HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def test_endless_body_behind_content_length_ends_and_the_connection_goes_on(server_factory):
    server = server_factory("tests.wsgi.edge_apps:app", "--workers", "1", "--threads", "1")
    out = normal(server.raw(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n" + NEXT))
    first, _, rest = out.partition(b"0123456789")
    assert first.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 10\r\n" in first
    # the only app thread was released: the pipelined request is answered next
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n") and rest.endswith(b"\r\n\r\nok")
