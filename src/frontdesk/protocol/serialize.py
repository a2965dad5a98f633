"""Bytes the server writes itself: the cached Date header and its own error responses."""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus

SERVER_HEADER = b"Server: frontdesk\r\n"

# The Date header changes once a second; the worker's clock tick calls `refresh_date()`, and
# every response reads the cached line (a module global read is atomic under the GIL).
_date_second = 0
DATE_HEADER = b""


def refresh_date(now: float | None = None) -> None:
    global _date_second, DATE_HEADER
    now = time.time() if now is None else now
    second = int(now)
    if second != _date_second:
        _date_second = second
        DATE_HEADER = b"Date: " + formatdate(second, usegmt=True).encode("ascii") + b"\r\n"


def date_header() -> bytes:
    return DATE_HEADER


refresh_date()


# RFC 9110 §15 phrases; HTTPStatus's differ between Python versions (413, 414, 416, 422).
_PHRASES = {
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    422: "Unprocessable Content",
}


def reason(status: int) -> str:
    phrase = _PHRASES.get(status)
    if phrase is not None:
        return phrase
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def overloaded_response(keep_alive: bool, retry_after: int = 1, *, head_only: bool = False
                        ) -> bytes:
    """503 for a request shed under overload: the client should come back soon."""
    return error_response(503, close=not keep_alive, head_only=head_only,
                          extra=b"Retry-After: %d\r\n" % retry_after)


def probe_response(status: int, body: bytes, keep_alive: bool) -> bytes:
    """The answer to a health or readiness probe (never cached by anything in between)."""
    return b"".join((
        b"HTTP/1.1 %d %s\r\n" % (status, reason(status).encode("ascii")),
        DATE_HEADER,
        SERVER_HEADER,
        b"Content-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\n",
        b"Content-Length: %d\r\n" % len(body),
        b"\r\n" if keep_alive else b"Connection: close\r\n\r\n",
        body,
    ))


def error_response(status: int, *, close: bool = True, extra: bytes = b"",
                   head_only: bool = False) -> bytes:
    """A complete small text/plain response the server sends on its own behalf (without its
    body when answering HEAD)."""
    phrase = reason(status)
    body = f"{status} {phrase}\n".encode("ascii")
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, phrase.encode("ascii")),
            DATE_HEADER,
            SERVER_HEADER,
            b"Content-Type: text/plain; charset=utf-8\r\n",
            b"Content-Length: %d\r\n" % len(body),
            extra,
            b"Connection: close\r\n\r\n" if close else b"\r\n",
            b"" if head_only else body,
        )
    )


CONTINUE_RESPONSE = b"HTTP/1.1 100 Continue\r\n\r\n"


def options_response(keep_alive: bool) -> bytes:
    """The answer to `OPTIONS *` (RFC 9110 §9.3.7): what the server supports in general."""
    return b"".join((
        b"HTTP/1.1 200 OK\r\n",
        DATE_HEADER,
        SERVER_HEADER,
        b"Allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n",
        b"Content-Length: 0\r\n",
        b"\r\n" if keep_alive else b"Connection: close\r\n\r\n",
    ))
