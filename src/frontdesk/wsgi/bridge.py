"""Runs one request through the WSGI app, in an app thread (PEP 3333 to the letter).

The bridge never touches a socket: response bytes go to the event loop through the worker's
`Outbox`, and the app thread waits only when the connection already holds a bounded amount of
unsent data (back-pressure), so a slow client costs buffer, not a thread, up to that bound.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Callable, Protocol

from frontdesk.logs import given_request_id, request_id
from frontdesk.protocol import serialize
from frontdesk.protocol.parser import Request
from frontdesk.wsgi.environ import build_environ
from frontdesk.wsgi.errors import error_stream
from frontdesk.wsgi.file_wrapper import FileWrapper
from frontdesk.wsgi.proxy import forwarded_client
from frontdesk.wsgi.response import Head, InvalidResponse, validate

log = logging.getLogger("frontdesk.error")

# What the loop does with a reply once its bytes are written.
MORE, DONE_KEEP_ALIVE, DONE_CLOSE = 0, 1, 2

INTERNAL_ERROR = 500
_errors_pending = error_stream.pending  # wsgi.errors' partial lines, per thread


class Channel(Protocol):
    """The connection as an app thread sees it (implemented by the worker's transport)."""

    closed: bool
    environ_base: dict[str, Any]
    proxy_trust: Any  # a ProxyTrust when the peer is a trusted proxy, else None
    access_log: Any  # a logs.AccessLog when access logging is on, else None
    max_queue_time: float  # shed a request that waited longer for a thread (0 = never)
    # Written by the app thread before it hands over the last bytes; read by the loop after.
    status: int
    queued: float

    def reserve(self, nbytes: int) -> bool:
        """Wait for room to queue `nbytes` more (back-pressure); False if the client is gone."""


class Outbox(Protocol):
    def push(self, channel: Any, data: Any, end: int) -> None: ...


class _ClientGone(ConnectionError):
    """The connection closed under the response. A ConnectionError, so an app that catches
    OSError around `write()` sees a familiar type; not to be confused with the app's own
    ConnectionErrors (e.g. to a backend), which are app failures and get a 500."""


def _push(outbox: Outbox, channel: Channel, data: bytes, end: int) -> None:
    if not channel.reserve(len(data)):
        raise _ClientGone
    outbox.push(channel, data, end)


def _body_size(data: bytes) -> int:
    """Body bytes of a complete response the server made itself (for the access log)."""
    return len(data) - data.index(b"\r\n\r\n") - 4


class FileRegion:
    """A file the loop sends with sendfile; it calls `close` when done (safe for plain files)."""

    __slots__ = ("file", "offset", "count", "close")

    def __init__(self, file: Any, offset: int, count: int, close: Callable[[], None] | None):
        self.file = file
        self.offset = offset
        self.count = count
        self.close = close


class _Response:
    """Per-request state behind `start_response` and `write`."""

    __slots__ = (
        "channel",
        "request",
        "outbox",
        "status",
        "headers",
        "head",
        "head_sent",
        "sent",
        "keep_alive",
        "code",
        "overflowed",
    )

    def __init__(self, channel: Channel, request: Request, outbox: Outbox) -> None:
        self.channel = channel
        self.request = request
        self.outbox = outbox
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.head: Head | None = None  # the framing, once decided
        self.head_sent = False  # whether the status line and headers are on their way
        self.sent = 0
        # False once the response itself must end the connection (the app's Connection: close,
        # a body that breaks its framing); `request.keep_alive` is read when the head is made,
        # because the loop clears it when the worker starts draining, even while the app runs.
        self.keep_alive = True
        self.code = 0  # the status actually sent, for the access log
        self.overflowed = False  # the app sent more than its Content-Length (reported once)

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # break the traceback cycle (PEP 3333)
        elif self.status is not None:
            raise AssertionError("start_response called a second time without exc_info")
        validate(status, headers)
        self.status = status
        # A copy: the app may change its list after this call, and what goes out is what was
        # validated (a CR/LF appended later must not reach the wire).
        self.headers = headers[:]
        return self.write

    def _make_head(self, body_length: int | None) -> Head:
        if self.status is None:
            raise InvalidResponse("the app returned a body without calling start_response")
        request = self.request
        head = Head(
            self.status,
            self.headers,
            method=request.method,
            version=request.version,
            keep_alive=self.keep_alive and request.keep_alive,
            body_length=body_length,
        )
        self.head = head
        self.keep_alive = head.keep_alive
        self.code = self.channel.status = head.code
        return head

    def write(self, data: bytes) -> None:
        """PEP 3333's `write` callable: the head goes out on its first call, even with b""."""
        self.send(data, head_now=True)

    def send(self, data: bytes, head_now: bool = False) -> bool:
        """Send one body chunk; True once the response can take no more body (its
        Content-Length is reached, or it has no body: HEAD, 204, 205, 304), so the caller
        stops iterating (PEP 3333). Empty chunks before the head are skipped, so the headers
        go out with the first non-empty chunk, unless `head_now` (the app's `write`)."""
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"WSGI body chunks must be bytes, not {type(data).__name__}")
            data = bytes(data)
        if not data and not self.head_sent and not head_now:
            return False
        head = self.head if self.head is not None else self._make_head(None)
        prefix = b""
        if not self.head_sent:
            self.head_sent = True
            prefix = head.data
        limit = head.content_length
        if head.has_body and data:
            if limit is not None and self.sent + len(data) > limit:
                if not self.overflowed:
                    self.overflowed = True
                    log.error("%s %s: app sent more than its Content-Length (%d); truncated",
                              self.request.method, self.request.target.decode("latin-1"), limit)
                data = data[: limit - self.sent]
                self.keep_alive = False
            self.sent += len(data)
            if head.chunked and data:
                data = b"%x\r\n%b\r\n" % (len(data), data)
        else:
            data = b""
        if prefix or data:
            _push(self.outbox, self.channel, prefix + data if prefix else data, MORE)
        return not head.has_body or (limit is not None and self.sent >= limit)

    def finish(self) -> None:
        tail = b""
        head = self.head
        if not self.head_sent:
            if head is None:
                head = self._make_head(0)
            self.head_sent = True
            tail = head.data
        assert head is not None
        if head.chunked:
            tail += b"0\r\n\r\n"
        elif head.content_length is not None and self.sent < head.content_length:
            log.error(
                "%s %s: app sent %d bytes of its Content-Length %d; closing the connection",
                self.request.method, self.request.target.decode("latin-1"),
                self.sent, head.content_length,
            )
            self.keep_alive = False
        _push(self.outbox, self.channel, tail, self.end())

    def end(self) -> int:
        """What the loop does after the last bytes (the loop may have cleared keep-alive since
        the head went out: then the connection closes after a complete response)."""
        return DONE_KEEP_ALIVE if self.keep_alive and self.request.keep_alive else DONE_CLOSE


class Bridge:
    """Calls the app for one request and hands the response to the loop."""

    def __init__(self, app: Callable[..., Any], outbox: Outbox) -> None:
        self.app = app
        self.outbox = outbox

    def handle(self, channel: Channel, request: Request) -> None:
        waited = time.monotonic() - request.started
        channel.queued = waited
        max_wait = channel.max_queue_time
        if max_wait and waited > max_wait:
            # Waited too long for a thread: the client has likely given up; shed it now.
            log.warning("%s %s: waited over %.3g s for an app thread: answered 503",
                        request.method, request.target.decode("latin-1"), max_wait)
            channel.status = 503
            keep_alive = request.keep_alive
            head_only = request.method == "HEAD"
            data = serialize.overloaded_response(keep_alive, head_only=head_only)
            self.outbox.push(channel, data, DONE_KEEP_ALIVE if keep_alive else DONE_CLOSE)
            if channel.access_log is not None:
                self._log_shed(channel, request, 0 if head_only else _body_size(data))
            return
        response = _Response(channel, request, self.outbox)
        environ = build_environ(request, channel.environ_base, channel.proxy_trust)
        given = environ.get("HTTP_X_REQUEST_ID") if channel.proxy_trust is not None else None
        rid = environ["frontdesk.request_id"] = request_id(given)
        try:
            self._call(response, environ)
        finally:
            if _errors_pending.line:
                error_stream.flush()  # the app's last words without a newline: this request's
            access_log = channel.access_log
            if access_log is not None:
                access_log.record(environ["REMOTE_ADDR"], request, response.code, response.sent,
                                  response.headers, request.started, rid, environ)

    @staticmethod
    def _log_shed(channel: Channel, request: Request, sent: int) -> None:
        """Access-log a shed request as `handle` would have (no environ was built)."""
        trust = channel.proxy_trust
        address = forwarded_client(trust, request.headers) or channel.environ_base["REMOTE_ADDR"]
        rid = request_id(given_request_id(trust, request.headers))
        channel.access_log.record(address, request, 503, sent, [], request.started, rid)

    def _call(self, response: _Response, environ: dict[str, Any]) -> None:
        request = response.request
        try:
            result = self.app(environ, response.start_response)
        except _ClientGone:  # from the app's write(): the client left while the app ran
            self._gone(response)
            return
        except BaseException:  # SystemExit from an app thread must not strand the connection
            self._fail(response, "the app raised")
            return
        loop_closes = False
        try:
            loop_closes = self._send_result(response, result)
        except _ClientGone:
            self._gone(response)
        except BaseException:
            self._fail(response, "the app's response failed")
        finally:
            close = getattr(result, "close", None)
            if close is not None and not loop_closes:
                try:
                    close()
                except BaseException:
                    log.exception("%s %s: close() of the app's iterable raised",
                                  request.method, request.target.decode("latin-1"))

    def _send_result(self, response: _Response, result: Any) -> bool:
        """Send the app's result; True when the loop took over calling its close()."""
        if (type(result) is list or type(result) is tuple) and not response.head_sent:
            # The whole body is known: one write, with Content-Length, no chunking.
            body = b"".join(result)
            head = response._make_head(len(body))
            if head.has_body:
                if head.content_length is not None and len(body) != head.content_length:
                    response.send(body)  # reports and closes on a length mismatch
                    response.finish()
                    return False
                response.sent = len(body)
                data = head.data + body
            else:
                data = head.data
            response.head_sent = True
            _push(self.outbox, response.channel, data, response.end())
            return False
        if type(result) is FileWrapper and not response.head_sent:
            region = result.sendfile_region()
            if region is not None:
                return self._send_file(response, result, *region)
        self._stream(response, result)
        return False

    @staticmethod
    def _stream(response: _Response, iterable: Any) -> None:
        """Iterate the body until it ends or the response can take no more (PEP 3333: "stop
        iterating over the response when enough data has been sent"), so an endless
        generator behind a Content-Length or a HEAD never holds the thread."""
        channel = response.channel
        send = response.send
        for chunk in iterable:
            if channel.closed:
                raise _ClientGone
            if send(chunk):
                break
        response.finish()

    def _send_file(self, response: _Response, wrapper: FileWrapper, file: Any, offset: int,
                   count: int) -> bool:
        head = response._make_head(count)
        if head.content_length is not None and head.content_length != count:
            # The app declared another length than the file has: stream it the careful way.
            self._stream(response, wrapper)
            return False
        response.head_sent = True
        if not head.has_body or not count:  # an empty file: no transfer to hand the loop
            _push(self.outbox, response.channel, head.data, response.end())
            return False
        _push(self.outbox, response.channel, head.data, MORE)
        response.sent = count
        # The loop closes the file after the transfer, so the thread is free at once.
        self.outbox.push(response.channel, FileRegion(file, offset, count, wrapper.close),
                         response.end())
        return True

    def _gone(self, response: _Response) -> None:
        request = response.request
        log.debug("%s %s: the client closed the connection before the response was complete",
                  request.method, request.target.decode("latin-1"))
        self.outbox.push(response.channel, b"", DONE_CLOSE)  # just release the connection

    def _fail(self, response: _Response, what: str) -> None:
        request = response.request
        log.error("%s %s: %s", request.method, request.target.decode("latin-1"), what,
                  exc_info=sys.exc_info())
        if not response.head_sent:
            # Nothing sent yet, and the request was read whole: a plain 500 keeps the connection.
            response.code = response.channel.status = INTERNAL_ERROR
            response.headers = []  # the app's headers were never sent: not for the access log
            end = response.end()
            head_only = request.method == "HEAD"
            data = serialize.error_response(INTERNAL_ERROR, close=end == DONE_CLOSE,
                                            head_only=head_only)
            response.sent = 0 if head_only else _body_size(data)
            self.outbox.push(response.channel, data, end)
        else:
            # Part of the response is on the wire already: the only honest signal left is to
            # cut the connection, so the client sees a truncated response, not a complete one.
            self.outbox.push(response.channel, b"", DONE_CLOSE)
