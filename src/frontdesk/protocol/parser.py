"""HTTP/1.1 request parsing for one connection, on httptools (llhttp).

Theory of operation
-------------------
`RequestParser.feed(data)` pushes bytes through llhttp. Each complete request becomes one
`Request` appended to `parser.requests`; a request that breaks the protocol or a limit raises
`ProtocolError(status)`, after which the parser is dead and the connection must answer the status
and close (RFC 9112 §11.2: once framing is in doubt, nothing that follows can be trusted).

One message moves through three states::

    IDLE ──on_message_begin──▶ HEADERS ──on_headers_complete──▶ BODY ──on_message_complete──▶ IDLE

llhttp already rejects, with an error we turn into 400: Content-Length together with
Transfer-Encoding, duplicate Content-Length, a Content-Length that is not plain digits, obfuscated
or repeated Transfer-Encoding, bare CR or LF, obs-fold, control characters in names and values,
invalid chunk sizes (``0x``, signs), and unknown methods. This module adds what llhttp leaves to
the application: version checks (0.9 and 2.x are not spoken here, nor RTSP or ICE, which llhttp
also knows), a valid Host (exactly one on HTTP/1.1, at most one on 1.0), one Transfer-Encoding
line at most and none on HTTP/1.0, ``Connection: close`` winning over ``keep-alive``, ``_`` in
header names (dropped: they would alias ``-`` names in the WSGI environ), trailing whitespace in
values (trimmed), trailers (never merged into headers), and every size limit.

Sizes are counted on what the request means, so a request gets the same answer however the
network splits it: the request line is method, target and version with two spaces (CRLF not
counted, as gunicorn does), the header section is that line plus each field as ``name: value``
with its CRLF, and the blank line. llhttp buffers a field until it is complete, so bytes that
arrive without completing anything are bounded too (`_STALL_SLACK` past the limit, plus one read):
an endless header or trailer value, or an endless chunk extension, costs a bounded buffer.

The protocol name and HTTP/0.9 need the raw request line, which llhttp does not hand over. For a
request that begins its read (the usual case: one request per read), the line is at the start of
that read, or of the reads kept until its LF arrives (`_line`): after `method SP target` must come
` HTTP/`, one `startswith`. A request pipelined behind another in the same read is not checked
(an RTSP line there is parsed like HTTP/1.x, with the same framing): where it begins in the read
is not known, and guessing would refuse good requests over bytes of an earlier one.

No socket, loop, clock or thread here: the transport feeds bytes and reads `requests`.
"""

from __future__ import annotations

import re
import tempfile
from collections import deque
from typing import BinaryIO

import httptools

from frontdesk.errors import ProtocolError

IDLE, HEADERS, BODY = 0, 1, 2

# Bytes that may arrive past the header-section limit without completing a field before the
# request is refused: whitespace llhttp skips is not counted by the meaning-based count, and a
# field is counted only once llhttp completes it (module docstring).
_STALL_SLACK = 8192
# `SP target SP HTTP/x.y` around the target, for the request-line length (CRLF not counted).
_REQUEST_LINE_EXTRA = 10

# RFC 9110 §7.2 / RFC 3986 §3.2.2: uri-host [ ":" port ]; the host is an IP-literal, or a
# reg-name (IPv4 addresses are reg-names too) that must not be empty for http (RFC 9110 §4.2.1).
_HOST = re.compile(
    rb"(?:\[(?:[0-9A-Fa-f:.]+|v[0-9A-Fa-f]+\.[A-Za-z0-9._~!$&'()*+,;=:-]+)\]"
    rb"|(?:[A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})+)"
    rb"(?::[0-9]*)?"
)
# Host values seen valid; they repeat, so most requests pay a dict lookup, not a regex.
_VALID_HOSTS: dict[bytes, bool] = {}
_VALID_HOSTS_MAX = 1024

# llhttp hands the method over as bytes; interning the common ones saves a decode per request.
_METHODS = {
    m.encode(): m
    for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")
}


def _valid_host(value: bytes) -> bool:
    if value in _VALID_HOSTS:
        return True
    if _HOST.fullmatch(value) is None:
        return False
    if len(_VALID_HOSTS) >= _VALID_HOSTS_MAX:
        _VALID_HOSTS.clear()
    _VALID_HOSTS[value] = True
    return True


def _is_absolute_form(target: bytes) -> bool:
    scheme, sep, _ = target.partition(b"://")
    return bool(sep) and scheme.lower() in (b"http", b"https")


class Limits:
    """The size limits one connection enforces (from Config; see docs/configuration.md)."""

    __slots__ = ("request_line", "fields", "field_size", "header_size", "body", "body_buffer")

    def __init__(
        self,
        request_line: int = 8190,
        fields: int = 100,
        field_size: int = 8190,
        header_size: int = 65536,
        body: int = 1 << 30,
        body_buffer: int = 1 << 20,
    ) -> None:
        self.request_line = request_line
        self.fields = fields
        self.field_size = field_size
        self.header_size = header_size
        self.body = body  # 0 means unlimited
        self.body_buffer = body_buffer

    @classmethod
    def from_config(cls, config: object) -> Limits:
        return cls(
            request_line=config.limit_request_line,  # type: ignore[attr-defined]
            fields=config.limit_request_fields,  # type: ignore[attr-defined]
            field_size=config.limit_request_field_size,  # type: ignore[attr-defined]
            header_size=config.limit_request_header_size,  # type: ignore[attr-defined]
            body=config.limit_request_body,  # type: ignore[attr-defined]
            body_buffer=config.body_buffer_size,  # type: ignore[attr-defined]
        )


class Request:
    """One complete request: what the WSGI bridge or the static handler needs, nothing more."""

    __slots__ = (
        "method",
        "target",
        "version",
        "headers",
        "keep_alive",
        "body",
        "body_size",
        "chunked",
        "started",
    )

    def __init__(self) -> None:
        self.method = ""
        self.target = b""
        self.version = "1.1"
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = True
        self.body: bytes | BinaryIO = b""
        self.body_size = 0
        self.chunked = False
        self.started = 0.0  # monotonic time the server began answering it (set by the transport)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target!r} HTTP/{self.version}>"


class RequestParser:
    """Turns the bytes of one connection into `Request` objects (see the module docstring)."""

    __slots__ = (
        "requests",
        "state",
        "expect_continue",
        "_limits",
        "_parser",
        "_request",
        "_url",
        "_url_size",
        "_fields",
        "_hosts",
        "_connection_close",
        "_expect",
        "_content_length",
        "_chunked",
        "_upgrade",
        "_upgrade_body_left",
        "_section_bytes",
        "_header_bytes",
        "_stalled_bytes",
        "_began_this_feed",
        "_data",
        "_read_starts_message",
        "_line",
        "_body_parts",
        "_body_file",
        "_error",
        "_upgraded",
    )

    def __init__(self, limits: Limits) -> None:
        self.requests: deque[Request] = deque()
        self.state = IDLE
        # Set when a request asked for `100 Continue` and its body has not started to arrive;
        # the transport sends the interim response when it is this request's turn.
        self.expect_continue = False
        self._limits = limits
        self._parser = httptools.HttpRequestParser(self)
        self._request: Request | None = None
        self._url: list[bytes] = []
        self._url_size = 0
        self._fields = 0
        self._hosts = 0
        self._connection_close = False
        self._expect = False
        self._content_length = -1
        self._chunked = False
        self._upgrade = False
        self._upgrade_body_left = 0
        self._header_bytes = 0
        self._stalled_bytes = 0
        self._section_bytes = 0
        self._began_this_feed = False
        # For the request-line checks (module docstring): the read being parsed (during feed
        # only), whether it begins with a message, and the current message's bytes from its
        # start up to its request line's LF, None when it did not begin its read.
        self._data = b""
        self._read_starts_message = False
        self._line: bytes | None = None
        self._body_parts: list[bytes] = []
        self._body_file: BinaryIO | None = None
        self._error: ProtocolError | None = None
        self._upgraded = False

    # -- the transport's side -------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Parse `data`; complete requests land in `self.requests`. Raises `ProtocolError`."""
        if self._upgraded:
            if self._upgrade_body_left:
                self._take_upgrade_body(data)
            return  # bytes after an Upgrade request are not HTTP/1.1; ignore them
        self._data = data
        self._read_starts_message = self.state == IDLE
        request = self._request
        # Chunked uploads: what this read completed (see the stall count below).
        progress = ((request, request.body_size, self._fields)
                    if request is not None and self._chunked and self.state == BODY else None)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # We do not switch protocols (RFC 9110 §7.8 lets a server ignore Upgrade): the
            # request is answered normally and the connection closes after it, because what
            # follows it on the wire is not ours to parse. llhttp skips an upgrading request's
            # body, so a Content-Length body is read here (curl --http2 -d sends one).
            self._upgraded = True
            if self._upgrade_body_left:
                self._take_upgrade_body(data[exc.args[0]:])
            elif self.requests:
                self.requests[-1].keep_alive = False
            return
        except httptools.HttpParserError as exc:
            self._discard_body()
            error = self._error
            self._error = None
            if error is None:
                error = ProtocolError(400, str(exc) or "malformed request")
            raise error from None
        finally:
            self._data = b""  # not kept past the read: a connection must not pin its last one
        state = self.state
        if state == HEADERS:
            self._head_continues(data)
        elif state == BODY and self._chunked:
            # Chunk framing and trailers: llhttp buffers a trailer field until it is complete,
            # so a read that completes neither body data nor a field of the same request counts
            # as stalled.
            request = self._request
            if progress == (request, request.body_size, self._fields):  # type: ignore[union-attr]
                self._stalled_bytes += len(data)
                if self._stalled_bytes > self._limits.header_size + _STALL_SLACK:
                    self._discard_body()
                    raise ProtocolError(431, "chunk extension or trailer section too large")
            else:
                self._stalled_bytes = 0

    def _head_continues(self, data: bytes) -> None:
        """A header section still open after this read: bound the bytes llhttp holds for it
        (the read in which the message began is not counted, as its start may belong to the
        previous request: the bound is the limit plus slack plus one read), keep the bytes of
        the request line, and refuse HTTP/0.9 as soon as its line ends."""
        if self._began_this_feed:
            self._began_this_feed = False
        else:
            self._header_bytes += len(data)
            if self._header_bytes > self._limits.header_size + _STALL_SLACK:
                self._discard_body()
                raise ProtocolError(431, "request header section too large")
        line = self._line
        if line is None or b"\n" in line or len(line) > self._limits.request_line + 64:
            return  # not at the start of its read, or its line is kept already (or too long)
        # Kept from the method on (llhttp skips CRLFs between requests), so an LF in it is
        # the end of the request line.
        line = self._line = (line + data) if line else data.lstrip(b"\r\n")
        if self._fields == 0 and self._url:
            # HTTP/0.9 (`GET /path` CRLF, no version): llhttp would wait for a header section
            # that never comes. Answer now instead of at the header timeout.
            if line.startswith(b"%b %b\r" % (self._parser.get_method(), b"".join(self._url))):
                raise ProtocolError(400, "HTTP/0.9 is not supported")

    def _take_upgrade_body(self, data: bytes) -> None:
        part = data[: self._upgrade_body_left]
        if part:
            self.on_body(part)  # the same limits and spooling as any body
        self._upgrade_body_left -= len(part)
        if not self._upgrade_body_left:
            self._request.keep_alive = False  # type: ignore[union-attr]
            self._complete()

    def discard(self) -> None:
        """Free a half-received body (the connection is going away)."""
        self._discard_body()

    def failed_request(self) -> Request:
        """For the access log of a request refused mid-way: what is known of it (the method and
        target once its head was read, else the target's bytes so far, else `-`)."""
        request = self._request
        if request is not None and request.method:
            return request
        failed = Request()
        failed.method = "-"
        failed.target = b"".join(self._url)[:1024] if request is not None and self._url else b"-"
        return failed

    # -- llhttp callbacks (raising inside one aborts `feed_data`) ---------------------------------

    def _fail(self, status: int, reason: str) -> None:
        self._error = ProtocolError(status, reason)
        raise self._error

    def on_message_begin(self) -> None:
        self.state = HEADERS
        self._request = Request()
        self._url = []
        self._url_size = 0
        self._fields = 0
        self._hosts = 0
        self._connection_close = False
        self._expect = False
        self._content_length = -1
        self._chunked = False
        self._upgrade = False
        self._header_bytes = 0
        self._stalled_bytes = 0
        self._section_bytes = 0
        self._began_this_feed = True
        # The first message of a read that began between messages starts that read.
        self._line = b"" if self._read_starts_message else None
        self._read_starts_message = False

    def on_url(self, fragment: bytes) -> None:
        self._url_size += len(fragment)
        self._section_bytes += len(fragment)
        if self._url_size > self._limits.request_line:
            self._fail(414, "request-target too long")
        self._url.append(fragment)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        if self._fields > self._limits.fields:
            self._fail(431, "too many header fields")
        size = len(name) + len(value)
        if size > self._limits.field_size:
            self._fail(431, "header field too large")
        self._section_bytes += size + 4  # ": " and CRLF
        if self._section_bytes > self._limits.header_size:
            self._fail(431, "request header section too large")
        if self.state == BODY:
            return  # a chunked trailer: counted against the limits, never merged into headers
        if b"_" in name:
            return  # would alias a '-' name in the environ (HTTP_X_A for both X-A and X_A)
        value = value.rstrip(b" \t")
        lname = name.lower()
        if lname == b"host":
            self._hosts += 1
            if value not in _VALID_HOSTS and not _valid_host(value):
                self._fail(400, "invalid Host header")  # RFC 9112 §3.2
        elif lname == b"content-length":
            self._content_length = int(value)  # llhttp accepted only digits here
        elif lname == b"transfer-encoding":
            # llhttp accepts only a final `chunked`; other codings before it (gzip, chunked)
            # are valid HTTP we do not implement: RFC 9112 §6.1 says 501. A second line would
            # be read as a list with the first (RFC 9110 §5.3), which llhttp does not do: the
            # classic obfuscation, refused.
            if self._chunked:
                self._fail(400, "more than one Transfer-Encoding field")
            if b"," in value:
                self._fail(501, "transfer codings other than chunked are not supported")
            self._chunked = True
        elif lname == b"connection":
            # RFC 9112 §9.3: `close` wins, also over an HTTP/1.0 `keep-alive` (llhttp lets the
            # latter win).
            lowered = value.lower()
            if b"close" in lowered and any(t.strip() == b"close" for t in lowered.split(b",")):
                self._connection_close = True
        elif lname == b"expect":
            self._expect = value.lower() == b"100-continue"
        self._request.headers.append((name, value))  # type: ignore[union-attr]

    def on_headers_complete(self) -> None:
        request = self._request
        assert request is not None
        parser = self._parser
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            if version.startswith("0."):
                self._fail(400, "HTTP/0.9 is not supported")
            self._fail(505, f"HTTP/{version} is not supported")
        method = parser.get_method()
        request.method = _METHODS.get(method) or method.decode("ascii")
        request.target = self._url[0] if len(self._url) == 1 else b"".join(self._url)
        line = self._line
        if line is not None:  # the request began its read: its line can be checked
            self._line = None
            region = self._data if not line else line if b"\n" in line else line + self._data
            if not region.startswith(b" HTTP/", len(method) + 1 + len(request.target)):
                self._check_protocol(region, method, request.target)
        line = len(method) + len(request.target) + _REQUEST_LINE_EXTRA
        limits = self._limits
        if line > limits.request_line:
            self._fail(414, "request line too long")
        if self._section_bytes + line - len(request.target) + 4 > limits.header_size:
            self._fail(431, "request header section too large")
        if request.target[:1] != b"/" and not _is_absolute_form(request.target):
            # RFC 9112 §3.2: authority-form is for CONNECT to a proxy, which this is not;
            # asterisk-form is for OPTIONS only; nothing else is a request-target.
            if request.target != b"*" or request.method != "OPTIONS":
                self._fail(400, f"request-target not allowed here: {request.target[:50]!r}")
        request.version = version
        request.keep_alive = parser.should_keep_alive() and not self._connection_close
        request.chunked = self._chunked
        self._upgrade = parser.should_upgrade()
        if self._upgrade and request.chunked:
            self._fail(501, "a chunked body on an Upgrade request is not supported")
        if self._hosts != 1 and (version == "1.1" or self._hosts):
            self._fail(400, "an HTTP/1.1 request needs exactly one Host header" if self._hosts == 0
                       else "more than one Host header")
        if version == "1.0" and request.chunked:
            # RFC 9112 §6.1: Transfer-Encoding on HTTP/1.0 means faulty framing upstream.
            self._fail(400, "Transfer-Encoding is not allowed in an HTTP/1.0 request")
        if self._limits.body and self._content_length > self._limits.body:
            self._fail(413, "request body too large")
        self.expect_continue = (
            self._expect and version == "1.1" and (self._content_length > 0 or request.chunked)
        )
        self._body_parts = []
        self._body_file = None
        self.state = BODY

    @staticmethod
    def _check_protocol(region: bytes, method: bytes, target: bytes) -> None:
        """`region` begins with the request line, after CRLFs llhttp skips, and ` HTTP/` did not
        follow `method SP target` at its very start: refuse it unless it follows once the CRLFs
        are skipped. llhttp parses RTSP and ICE lines too (RFC 9112 §2.3: the protocol name is
        `HTTP`, case-sensitive); extra spaces, which llhttp tolerates, are refused as well (RFC
        9112 §3: one SP)."""
        end = len(method) + 1 + len(target)
        start = len(region) - len(region.lstrip(b"\r\n"))
        if not (start and region.startswith(b" HTTP/", start + end)):
            raise ProtocolError(400, "not an HTTP/1.x request line")

    def on_body(self, data: bytes) -> None:
        self.expect_continue = False  # the client did not wait for us; no interim reply needed
        request = self._request
        assert request is not None
        request.body_size += len(data)
        if self._limits.body and request.body_size > self._limits.body:
            self._fail(413, "request body too large")
        if self._body_file is not None:
            self._body_file.write(data)
        elif request.body_size > self._limits.body_buffer:
            # Spill to disk, as nginx does past client_body_buffer_size: a large upload costs
            # a file, not memory.
            spool = tempfile.TemporaryFile()
            spool.writelines(self._body_parts)
            spool.write(data)
            self._body_parts = []
            self._body_file = spool
        else:
            self._body_parts.append(data)

    def on_message_complete(self) -> None:
        if self._upgrade and self._content_length > 0 and self._request.body_size == 0:  # type: ignore[union-attr]
            self._upgrade_body_left = self._content_length  # llhttp skipped it: see feed()
            return
        self._complete()

    def _complete(self) -> None:
        request = self._request
        assert request is not None
        if request.chunked and request.keep_alive and not self._parser.should_keep_alive():
            request.keep_alive = False  # a `Connection: close` trailer: llhttp will refuse more
        if self._body_file is not None:
            self._body_file.seek(0)
            request.body = self._body_file
            self._body_file = None
        elif self._body_parts:
            parts = self._body_parts
            request.body = parts[0] if len(parts) == 1 else b"".join(parts)
            self._body_parts = []
        self._request = None
        self.expect_continue = False
        self.state = IDLE
        self.requests.append(request)

    def _discard_body(self) -> None:
        if self._body_file is not None:
            self._body_file.close()
            self._body_file = None
        self._body_parts = []
