"""Validation and serialisation of what a WSGI app gives `start_response`. No I/O, except a
warning in the error log the first time a worker drops a hop-by-hop header from an app.

Framing is the server's job: hop-by-hop fields from the app (PEP 3333 forbids them; the list is
RFC 9110 §7.6.1's plus the old ones wsgiref.util.is_hop_by_hop knows) are dropped, except that
`Connection: close` is honoured by closing after the response. `Date` and `Server` are the
server's own and replace the app's.
"""

from __future__ import annotations

import logging
import re

from frontdesk.protocol import serialize

log = logging.getLogger("frontdesk.error")

# RFC 9110 §5.1 token; field values (§5.5) hold HTAB, SP, VCHAR and obs-text (0x80-0xff): no
# other control, and no text beyond latin-1, which PEP 3333 sends as the code points' bytes.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# RFC 9110 §15: three digits, 100-599 (1xx is refused below: it is not a final answer).
_STATUS = re.compile(r"[1-5][0-9][0-9] [\t\x20-\x7e\x80-\xff]*")
_HOP_BY_HOP = frozenset((
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "trailers",
    "transfer-encoding", "upgrade", "proxy-authenticate", "proxy-authorization",
))
_DROPPED = _HOP_BY_HOP | {"date", "server"}
# RFC 9110 §15.3.5, §15.3.6, §15.4.5: never a body (205 says so with Content-Length: 0).
_NO_BODY_STATUS = frozenset((204, 205, 304))
_warned: set[str] = set()  # hop-by-hop names already reported by this worker


def _drop_warning(name: str) -> None:
    lname = name.lower()
    if lname not in _warned:
        _warned.add(lname)
        log.warning("the app sent the hop-by-hop header %r: dropped (the server frames "
                    "responses; reported once per worker)", name)


class InvalidResponse(ValueError):
    """The app's status or headers cannot go on the wire (it gets a 500 instead)."""


def validate(status: object, headers: object) -> None:
    if type(status) is not str or not _STATUS.fullmatch(status):
        raise InvalidResponse(f"invalid WSGI status {status!r}")
    if status < "2":
        # A 1xx is interim: sent as the answer, the client would take the next response for it.
        raise InvalidResponse(f"a WSGI app cannot send an interim status: {status!r}")
    if type(headers) is not list:
        raise InvalidResponse(f"WSGI response headers must be a list, not {type(headers).__name__}")
    for item in headers:
        if type(item) is not tuple or len(item) != 2:
            raise InvalidResponse(f"invalid WSGI header {item!r}: expected a (name, value) tuple")
        name, value = item
        if type(name) is not str or not _TOKEN.fullmatch(name):
            raise InvalidResponse(f"invalid header name {name!r}")
        if type(value) is not str or not _FIELD_VALUE.fullmatch(value):
            raise InvalidResponse(f"invalid value for header {name!r}: {value!r}")


class Head:
    """The framing decided for one response, and its serialised status line and headers."""

    __slots__ = ("code", "data", "content_length", "chunked", "keep_alive", "has_body")

    def __init__(
        self,
        status: str,
        headers: list[tuple[str, str]],
        *,
        method: str,
        version: str,
        keep_alive: bool,
        body_length: int | None,
    ) -> None:
        # `validate` let only a final status (200-599) through.
        code = int(status[:3])
        has_body = method != "HEAD" and code not in _NO_BODY_STATUS
        lines = ["HTTP/1.1 ", status, "\r\n"]
        content_length: int | None = None
        for name, value in headers:
            lname = name.lower()
            if lname in _DROPPED:
                if lname == "connection":
                    tokens = [t.strip().lower() for t in value.split(",")]
                    if "close" in tokens:
                        keep_alive = False
                    if any(t != "close" for t in tokens):
                        _drop_warning(name)
                elif lname in _HOP_BY_HOP:
                    _drop_warning(name)
                continue
            if lname == "content-length":
                if not (value.isascii() and value.isdigit()) or content_length is not None:
                    raise InvalidResponse(f"invalid Content-Length from the app: {value!r}")
                if code == 204 or code == 205:
                    continue  # RFC 9110 §8.6: never on a 204; a 205 gets 0 below
                content_length = int(value)
            lines += (name, ": ", value, "\r\n")
        if code == 205:
            lines.append("Content-Length: 0\r\n")  # RFC 9110 §15.3.6
        chunked = False
        if content_length is None and code not in _NO_BODY_STATUS:
            if body_length is not None and (body_length or method != "HEAD"):
                content_length = body_length
                lines += ("Content-Length: ", str(body_length), "\r\n")
            elif body_length is None and has_body:
                if version == "1.1":
                    chunked = True
                    lines.append("Transfer-Encoding: chunked\r\n")
                else:
                    keep_alive = False  # HTTP/1.0: the close delimits the body
        if not keep_alive:
            lines.append("Connection: close\r\n")
        elif version == "1.0":
            lines.append("Connection: keep-alive\r\n")
        self.data = (
            "".join(lines).encode("latin-1")
            + serialize.DATE_HEADER
            + serialize.SERVER_HEADER
            + b"\r\n"
        )
        self.code = code
        self.content_length = content_length if has_body else None
        self.chunked = chunked
        self.keep_alive = keep_alive
        self.has_body = has_body
