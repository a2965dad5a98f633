"""One connection in the event loop: `asyncio.Protocol` ↔ parser, dispatch, writes, timers.

Theory of operation
-------------------
Bytes go into the connection's `RequestParser`; complete requests queue on it in order. One
request at a time is *current*: it is answered by the static handler (in the loop) or by the app
(in the thread pool); its reply comes back through the worker's `Outbox` as `deliver(...)` calls,
and when the last one arrives the next queued request becomes current. So pipelined requests are
answered in order, and an app thread never sees more than one request of a connection at once.

A `ProtocolError` ends the parser. Requests before it are still answered; then the error's
status goes out with `Connection: close` and the connection closes. Nothing after it is read.

Timers are deadlines checked by the worker's once-a-second sweep (no timer object per request):

    ========  ==========================  ===============================
    phase     deadline                    on expiry
    ========  ==========================  ===============================
    IDLE      keep-alive (header timeout  close silently
              for a new connection)
    HEADERS   header timeout from the     408, close (slowloris defence)
              first byte of the request
    BODY      body timeout since the      408, close
              last bytes read
    BUSY      none here (app timeouts     —
              belong to the master)
    ========  ==========================  ===============================

Back-pressure: an app thread `reserve()`s room before handing bytes over; past the buffer bound
(or while the transport says its buffer is full) it waits. Static replies, made in the loop, stop
being dispatched while the transport's buffer is full, and pipelined requests then queue up to
`MAX_QUEUED_REQUESTS` before reading pauses: a client that sends requests but never reads holds
one buffer, not one per request. A client that takes none of its unsent response for
`--send-timeout` is reset by the worker's sweep (`check_send_progress`), which also releases a
waiting app thread; a file being sent with sendfile has the same timeout inside `sendfile`.

Draining (the worker's graceful stop): every response from then on says `Connection: close`. A
response whose head was made before the drain began promised keep-alive, so its client may send
the next request at once; closing right after it would race that request (an RST, a failed
request). Such a connection, like one idle when the drain begins, gets `DRAIN_IDLE_GRACE` in the
IDLE phase: a request that arrives is answered, with `Connection: close`; silence closes it.

Operations, all decided in the loop before a request reaches the pool, and all free when off:

* probes (`--health-path`, `--ready-path`); readiness fails once the worker drains or the master
  began to stop (`Worker.ready`);
* `--limit-req`: one `RateLimiter` per worker, keyed by the client address (below); over the
  rate, 429 with Retry-After. Static files and probes are not limited;
* `--backlog-limit`: 503 when too many requests wait for a thread;
* X-Request-Start from a trusted proxy (only read when metrics or `--max-queue-time` are on):
  the time the request spent before reaching us counts as queue time (`upstream`).

The rate limit's client address, and the one the loop's own access-log lines show, is the
address the app sees as REMOTE_ADDR: the connection's (after the PROXY protocol), or from a
trusted proxy the client its believed X-Forwarded-For or Forwarded names. The app's environ is
built later, in the app thread; `frontdesk.wsgi.proxy.forwarded_client` applies the same rule to
the raw headers.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import logging
import math
import os
import re
import socket
import struct
import termios
import threading
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any

from frontdesk import logs, metrics
from frontdesk.errors import ProtocolError
from frontdesk.protocol import parser as parsing
from frontdesk.protocol import proxy_protocol
from frontdesk.protocol import serialize
from frontdesk.worker.sendfile import duplicate_socket, sendfile
from frontdesk.wsgi.bridge import DONE_CLOSE, DONE_KEEP_ALIVE, MORE
from frontdesk.wsgi.environ import connection_environ, split_target
from frontdesk.wsgi.proxy import ProxyTrust, forwarded_client, proxy_trust_for

if TYPE_CHECKING:
    from frontdesk.worker.process import Worker

log = logging.getLogger("frontdesk.error")

NO_DEADLINE, IDLE, HEADERS, BODY, LINGER = 0, 1, 2, 3, 4
# After an error response: how long, and how much, we read and discard before closing, so the
# client reads our answer instead of a reset (nginx's lingering_close).
LINGER_SECONDS = 2.0
LINGER_BYTES = 1 << 20
# Pipelined requests parsed ahead of the current one before reading pauses.
MAX_QUEUED_REQUESTS = 16
# Static bodies up to this size are joined to their head; larger ones go out with writev.
JOIN_MAX = 16 * 1024
# Unsent response bytes a connection may hold before the app thread waits (back-pressure).
BUFFER_LIMIT = 512 * 1024
# Draining: how long a connection with nothing in progress may still send one more request.
DRAIN_IDLE_GRACE = 1.0
# --limit-req: most client buckets one worker keeps (about 300 bytes each); past it the least
# recently seen client is forgotten (nginx's limit_req zone has a fixed size too).
MAX_RATE_CLIENTS = 16384
# X-Request-Start longer ago than this is not a queue but a wrong unit or clock: ignored.
MAX_UPSTREAM_WAIT = 3600.0


class HttpConnection(asyncio.Protocol):
    """The loop's side of one client connection (see module docstring)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.closed = False
        self.closing = False  # closing after what is written; read by the worker's sweep
        self.busy = False
        self.deadline = 0.0
        self.phase = NO_DEADLINE
        self.environ_base: dict[str, Any] = {}
        self.proxy_trust: ProxyTrust | None = None  # set when the peer may speak for clients
        self.access_log = logs.access_log_for(worker.config)
        self.metrics = worker.metrics  # this worker's metrics slot writer, or None
        # The current response, for metrics: set by the loop, or by the app thread before it
        # hands over its last bytes (one request per connection at a time, so no overlap).
        self.status = 0
        self.queued = metrics.NOT_QUEUED
        self._current: parsing.Request | None = None
        self._file_bytes = 0
        self.max_queue_time = worker.config.max_queue_time  # less what X-Request-Start says
        self.upstream = 0.0  # seconds the current request waited before this server (X-Request-Start)
        self._request_start = False  # read X-Request-Start: a trusted peer, and someone cares
        self._probes = probe_paths(worker.config.health_path, worker.config.ready_path)
        self.parser = parsing.RequestParser(worker.limits)
        self.transport: asyncio.Transport | None = None
        self._error: ProtocolError | None = None
        self._lingering = 0  # bytes still to discard after an error response, when > 0
        self._proxy_header: bytes | None = None
        self._eof = False
        self._reading_paused = False
        self._keep_alive = True
        self._dispatching = False
        # Back-pressure: `pushed` is written by the app thread only, `delivered` by the loop
        # only, so their difference is exact without a lock.
        self.pushed = 0
        self.delivered = 0
        self.write_paused = False  # the transport's buffer is over its high-water mark
        self._unsent_mark: tuple[int, float] | None = None  # (unsent bytes, since) for the sweep
        self._thread_waiting = False
        self._drained = threading.Event()
        # Replies that arrive while a file is being sent with sendfile.
        self._sending_file = False
        self._spare_fd = -1  # reserved for the response's socket duplicate, when >= 0
        self._sock_dup = -1  # the socket's duplicate for sendfile, for all regions of a response
        self._backlog: deque[tuple[Any, int]] = deque()

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(high=BUFFER_LIMIT, low=BUFFER_LIMIT // 4)
        worker = self.worker
        peer = _address(transport.get_extra_info("peername"), ("", ""))
        trust = proxy_trust_for(worker.config.forwarded_allow_ips, worker.config.forwarded_headers)
        if trust.trusts(peer[0]):
            self.proxy_trust = trust
            self._request_start = self._wants_request_start()
        self.environ_base = connection_environ(
            server=_address(transport.get_extra_info("sockname"), (worker.server_name, "80")),
            peer=peer,
            url_scheme="http",
            root_path=worker.config.root_path,
            multithread=worker.config.threads > 1,
            multiprocess=worker.config.workers > 1,
        )
        if worker.config.proxy_protocol:
            if not proxy_trust_for(worker.config.proxy_allow_from).trusts(peer[0]):
                # A PROXY header names the client: only a balancer we know may send one.
                log.info("%s: closing: not in --proxy-allow-from", peer[0])
                self.closing = True
                transport.close()
                return
            self._proxy_header = b""  # the balancer's PROXY header comes before any HTTP
        worker.connections.add(self)
        if worker.config.keepalive == 0:
            self._keep_alive = False
        self._set_deadline(IDLE, worker.config.header_timeout)
        if worker.draining:  # accepted just before the listener closed
            self.drain(min(DRAIN_IDLE_GRACE, worker.config.graceful_timeout))

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._lingering -= len(data)
            if self._lingering <= 0:
                self._close()
            return
        if self.closing:
            return
        if self._proxy_header is not None:
            data = self._read_proxy_header(data)
            if not data:
                return
        parser = self.parser
        try:
            parser.feed(data)
        except ProtocolError as exc:
            self._fail(exc)
        if parser.requests and not self.busy:
            self._start_next()
        elif parser.expect_continue and not self.busy and self._error is None:
            self._send_continue()
        if self._error is None:
            state = parser.state
            if state == parsing.HEADERS:
                if self.phase != HEADERS:
                    self._set_deadline(HEADERS, self.worker.config.header_timeout)
            elif state == parsing.BODY:
                if parser.expect_continue and self.busy:
                    self.phase = NO_DEADLINE  # the client waits for our 100, which waits its turn
                else:
                    self._set_deadline(BODY, self.worker.config.body_timeout)
            elif self.phase == HEADERS or self.phase == BODY:
                self.phase = NO_DEADLINE  # the request it timed is complete, queued behind one
            if parser.requests and not self._reading_paused and self._queued_too_much():
                self._pause_reading()

    def _read_proxy_header(self, data: bytes) -> bytes:
        """Consume the PROXY protocol header; returns the HTTP bytes that follow it."""
        buffer = self._proxy_header + data  # type: ignore[operator]
        try:
            parsed = proxy_protocol.parse(buffer)
        except ValueError as exc:
            log.info("%s: closing: %s", self.environ_base["REMOTE_ADDR"], exc)
            self._proxy_header = None
            self._close()
            return b""
        if parsed is None:
            self._proxy_header = buffer
            return b""
        consumed, source = parsed
        self._proxy_header = None
        if source is not None:
            self.environ_base["REMOTE_ADDR"], self.environ_base["REMOTE_PORT"] = source
            config = self.worker.config
            trust = proxy_trust_for(config.forwarded_allow_ips, config.forwarded_headers)
            self.proxy_trust = trust if trust.trusts(source[0]) else None
            self._request_start = self.proxy_trust is not None and self._wants_request_start()
        return buffer[consumed:]

    def _wants_request_start(self) -> bool:
        """Whether X-Request-Start matters: for the queue metric or --max-queue-time only."""
        return self.metrics is not None or bool(self.worker.config.max_queue_time)

    def _queued_too_much(self) -> bool:
        """Pipelined requests waiting their turn: bounded in number and in body bytes held."""
        requests = self.parser.requests
        if len(requests) >= MAX_QUEUED_REQUESTS:
            return True
        return sum(r.body_size for r in requests) > self.worker.limits.body_buffer

    def eof_received(self) -> bool:
        if self._lingering:
            return False  # the client finished sending: close now
        # A client may half-close after sending its last request; it still wants the answer.
        self._eof = True
        if not self.busy and not self.parser.requests:
            if self.parser.state != parsing.IDLE and self._error is None:
                self._error = ProtocolError(400, "connection closed mid-request")
                self.parser.discard()
                self._send_error()  # the client cannot read it if it is gone; it may be half-open
            return False
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._release_sendfile_fds()
        self.worker.connections.discard(self)
        self.parser.discard()
        self.parser.requests.clear()
        self._backlog.clear()
        self._notify_thread()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._unsent_mark = None  # the client took bytes: progress (check_send_progress)
        self._notify_thread()
        if not self.busy and self.parser.requests and not self.closing:
            self._start_next()  # static replies stopped at the high-water mark (module docstring)

    # -- dispatch -------------------------------------------------------------------------------

    def _start_next(self) -> None:
        if self._dispatching:
            return  # a static reply finished inside the loop below; it picks up the next one
        self._dispatching = True
        try:
            self._dispatch_queued()
        finally:
            self._dispatching = False
        if self._reading_paused and not self.busy and not self.parser.requests and (
                self._error is None and not self.closing):
            self._reading_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]

    def _dispatch_queued(self) -> None:
        requests = self.parser.requests
        worker = self.worker
        while requests and not self.busy and not self.closing and not self.write_paused:
            request = requests.popleft()
            request.started = time.monotonic()
            self._current = request
            # No app thread owns the connection now: start the per-response counts afresh.
            self.pushed = self.delivered = self._file_bytes = 0
            self.status = 0
            self.queued = metrics.NOT_QUEUED
            self.busy = True
            self.phase = NO_DEADLINE
            if not self._keep_alive and not (requests and worker.draining):
                # Keep-alive off, or draining: close after this one; while draining, only after
                # the last of the requests already received (module docstring).
                request.keep_alive = False
            if self._probes is not None and self._answer_probe(request):
                continue
            if request.target == b"*":  # OPTIONS * asks about the server, not a resource
                self.status = 200
                self.deliver(serialize.options_response(request.keep_alive),
                             DONE_KEEP_ALIVE if request.keep_alive else DONE_CLOSE)
                continue
            static = worker.static
            if static is not None:
                path, query = split_target(request.target)
                response = static.respond(request.method, path, request.headers, query)
                if response is not None:
                    self._send_static(request, response)
                    continue
            limiter = worker.rate_limiter
            if limiter is not None and self._over_rate(request, limiter):
                continue
            limit = worker.config.backlog_limit
            if limit and worker.pool.waiting >= limit:
                self._shed(request, f"--backlog-limit {limit}")
                continue
            if self._request_start and self._queued_upstream(request):
                continue
            worker.pool.submit(self, request)

    def deliver(self, data: Any, end: int) -> None:
        """A reply for the current request (from the Outbox, in the loop thread)."""
        if self.closed or self.closing:
            close = getattr(data, "close", None)
            if close is not None and type(data) is not bytes:
                close()
            return
        if self._sending_file:
            self._backlog.append((data, end))
            return
        if type(data) is bytes:
            if data:
                self.transport.write(data)  # type: ignore[union-attr]
                self.delivered += len(data)
                if self._thread_waiting:
                    self._notify_thread()
        else:
            self._sending_file = True
            self.worker.loop.create_task(self._send_file(data, end))
            return
        if end != MORE:
            self._finish_response(end == DONE_KEEP_ALIVE)

    def _finish_response(self, keep_alive: bool) -> None:
        self.busy = False
        if self._sock_dup >= 0:
            self._release_sendfile_fds()
        if self.metrics is not None and self._current is not None:
            self._count(self._current, self.status, self.delivered + self._file_bytes)
        self._current = None
        if self.worker.draining:
            self._keep_alive = False  # a request already received gets answered, with close
        if not keep_alive or (self._eof and not self.parser.requests):
            self._close()
            return
        if self.parser.requests:
            self._start_next()
            return
        if self._error is not None:
            self._send_error()
            return
        if self.parser.expect_continue:
            self._send_continue()
        if self.parser.state == parsing.IDLE:
            # Keep-alive was promised; while draining, only for one more request (docstring).
            self._set_deadline(IDLE, self.worker.config.keepalive if self._keep_alive
                               else min(DRAIN_IDLE_GRACE, self.worker.config.graceful_timeout))
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]

    # -- static files -----------------------------------------------------------------------------

    def _send_static(self, request: parsing.Request, response: Any) -> None:
        keep_alive = request.keep_alive and not response.close  # close: out of descriptors
        if response.spare is not None:
            # A descriptor the static layer reserved for sendfile's duplicate of our socket, so
            # nothing can fail for lack of one once the head is out (StaticResponse.spare).
            self._spare_fd = response.spare.take()
        self.status = response.status
        if self.metrics is not None:
            self.metrics.static(response.status)
        lines = [b"HTTP/1.1 %d %s\r\n" % (response.status, serialize.reason(response.status).encode())]
        for name, value in response.headers:
            lines += (name, b": ", value, b"\r\n")
        lines += (serialize.DATE_HEADER, serialize.SERVER_HEADER)
        if not keep_alive:
            lines.append(b"Connection: close\r\n")
        elif request.version == "1.0":
            lines.append(b"Connection: keep-alive\r\n")
        lines.append(b"\r\n")
        end = DONE_KEEP_ALIVE if keep_alive else DONE_CLOSE
        body = response.body
        if self.access_log is not None:
            self._log_static(request, response)
        if not body:
            self.deliver(b"".join(lines), end)
            return
        first = body[0]
        if type(first) is bytes:
            body = body[1:]
            if len(first) <= JOIN_MAX:
                lines.append(first)
            else:
                # A cached file of some size: one writev of head and body, no copy to join them.
                # Nothing else writes now: the connection is not busy with another response.
                head = b"".join(lines)
                self.transport.writelines((head, first))  # type: ignore[union-attr]
                self.delivered += len(head) + len(first)
                lines = []
        head = b"".join(lines)
        if not body:
            self.deliver(head, end)
            return
        self.deliver(head, MORE)
        for part in body[:-1]:
            self.deliver(part, MORE)
        self.deliver(body[-1], end)

    def _log_static(self, request: parsing.Request, response: Any) -> None:
        sent = sum(len(part) if type(part) is bytes else part.count for part in response.body)
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in response.headers]
        self._log_local(request, response.status, sent, headers)

    def _log_local(self, request: parsing.Request, status: int, sent: int,
                   headers: list[tuple[str, str]]) -> None:
        """Access-log a response the loop made itself (static file, shed request)."""
        given = logs.given_request_id(self.proxy_trust, request.headers)
        self.access_log.record(  # type: ignore[union-attr]
            self._client_address(request), request, status, sent, headers,
            request.started, logs.request_id(given),
        )

    # -- operations: probes and overload -----------------------------------------------------------

    def _answer_probe(self, request: parsing.Request) -> bool:
        """Answer a health or readiness probe in the loop; False if `request` is not one."""
        kind = self._probes.get(request.target.partition(b"?")[0])  # type: ignore[union-attr]
        if kind is None or request.method not in ("GET", "HEAD"):
            return False
        if kind == "ready" and not self.worker.ready():
            status, body = 503, b"draining\n"
        else:
            status, body = 200, b"ok\n"
        self.status = status
        data = serialize.probe_response(status, body, request.keep_alive)
        if request.method == "HEAD":
            data = data[: data.index(b"\r\n\r\n") + 4]
        self.deliver(data, DONE_KEEP_ALIVE if request.keep_alive else DONE_CLOSE)
        return True

    def _shed(self, request: parsing.Request, reason: str) -> None:
        """503 + Retry-After at once: better than queueing into a timeout (Heroku's H12)."""
        self.worker.note_shed(reason)
        if self.metrics is not None:
            self.metrics.shed()
        self._answer_local(request, 503, b"Retry-After: 1\r\n")

    def shed_stale(self, request: parsing.Request, waited: float) -> None:
        """--max-queue-time: the worker took this request off the thread queue (it waited
        `waited` seconds for a thread); answer 503 + Retry-After now."""
        self.queued = waited
        self._shed(request, f"waited over --max-queue-time {self.worker.config.max_queue_time:g} s")

    def _answer_local(self, request: parsing.Request, status: int, extra: bytes) -> None:
        """A small text/plain answer the loop makes itself, logged and counted like any other."""
        self.status = status
        data = serialize.error_response(status, close=not request.keep_alive, extra=extra,
                                        head_only=request.method == "HEAD")
        if self.access_log is not None:
            body = data[data.index(b"\r\n\r\n") + 4:]
            self._log_local(request, status, len(body), [])
        self.deliver(data, DONE_KEEP_ALIVE if request.keep_alive else DONE_CLOSE)

    def _over_rate(self, request: parsing.Request, limiter: RateLimiter) -> bool:
        """--limit-req: True if the client is over its rate (answered 429 here)."""
        wait = limiter.check(self._client_address(request), request.started)
        if not wait:
            return False
        if self.metrics is not None:
            self.metrics.limited()
        self._answer_local(request, 429, b"Retry-After: %d\r\n" % math.ceil(wait))
        return True

    def _client_address(self, request: parsing.Request) -> str:
        """The client address the app sees, for the rate limit and the loop's own access-log
        lines (module docstring)."""
        return (forwarded_client(self.proxy_trust, request.headers)
                or self.environ_base["REMOTE_ADDR"])

    def _queued_upstream(self, request: parsing.Request) -> bool:
        """X-Request-Start from a trusted proxy: the time before this server counts as queue time
        (metric and --max-queue-time). True if that alone is over --max-queue-time: then the
        request is answered 503 here, without waiting for a thread to find out."""
        base = self.worker.config.max_queue_time
        self.upstream = 0.0
        self.max_queue_time = base
        for name, value in request.headers:
            if len(name) == 15 and name.lower() == b"x-request-start":
                break
        else:
            return False
        waited = request_start_wait(value, time.time())
        if waited is None:
            return False
        self.upstream = waited
        if not base:
            return False
        if waited < base:
            self.max_queue_time = base - waited  # the bridge compares only its own wait
            return False
        self.queued = 0.0  # observed as `upstream`
        self._shed(request, f"X-Request-Start over --max-queue-time {base:g} s")
        return True

    def _count(self, request: parsing.Request, status: int, sent: int) -> None:
        """One response in this worker's metrics."""
        queued = self.queued
        if queued >= 0.0:
            queued += self.upstream
        self.metrics.request(  # type: ignore[union-attr]
            metrics.method_index(request.method), status, time.monotonic() - request.started,
            queued, request.body_size, sent)

    def _release_sendfile_fds(self) -> None:
        if self._sock_dup >= 0:
            os.close(self._sock_dup)
            self._sock_dup = -1
        if self._spare_fd >= 0:  # a static file's reply never reached sendfile
            os.close(self._spare_fd)
            self._spare_fd = -1

    async def _send_file(self, region: Any, end: int) -> None:
        try:
            if self._sock_dup < 0:  # the response's first region: one duplicate for them all
                self._sock_dup = duplicate_socket(self.transport, self._spare_fd)  # type: ignore[arg-type]
                self._spare_fd = -1
            await sendfile(self.transport, region.file, region.offset, region.count,
                           timeout=self.worker.config.send_timeout, sock_dup=self._sock_dup)
            self._file_bytes += region.count
        except (ConnectionError, OSError) as exc:
            if not self.closed:
                log.info("sendfile stopped: %s", exc)
                if isinstance(exc, TimeoutError):
                    self._reset()
                else:
                    self.transport.abort()  # type: ignore[union-attr]
            end = DONE_CLOSE
        except Exception:  # a bug must not leave the connection busy for ever
            log.exception("sending a file failed")
            if not self.closed:
                self.transport.abort()  # type: ignore[union-attr]
            end = DONE_CLOSE
        finally:
            close = getattr(region, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("closing a sent file failed")
        self._sending_file = False
        if self.closed:
            return
        if end != MORE:
            self._finish_response(end == DONE_KEEP_ALIVE)
        backlog = self._backlog
        while backlog and not self._sending_file and not self.closed:
            data, end = backlog.popleft()
            self.deliver(data, end)

    # -- errors, timeouts, closing ----------------------------------------------------------------

    def _fail(self, error: ProtocolError) -> None:
        self._error = error
        self.parser.expect_continue = False
        self.phase = NO_DEADLINE
        self._pause_reading()
        if not self.busy and not self.parser.requests:
            self._send_error()

    def _send_error(self) -> None:
        error = self._error
        assert error is not None
        # Debug, as gunicorn does: a scanner must not flood the error log. The access log (when
        # on) has a line for it, as nginx's has.
        log.debug("%s: %d %s", self.environ_base.get("REMOTE_ADDR", "?"), error.status, error.reason)
        if self.closed or self.closing:
            return
        data = serialize.error_response(error.status)
        transport = self.transport
        transport.write(data)  # type: ignore[union-attr]
        if self.metrics is not None:
            self.metrics.request(metrics.method_index("other"), error.status, 0.0,
                                 metrics.NOT_QUEUED, 0, len(data))
        if self.access_log is not None:
            request = self.parser.failed_request()
            self.access_log.record(self._client_address(request), request, error.status,
                                   len(data), [], time.monotonic(), logs.request_id(None))
        if self._eof or not transport.can_write_eof():  # type: ignore[union-attr]
            self._close()
            return
        # Lingering close: the client may still be sending (a body over the limit, say);
        # closing with unread data would reset the connection before it read our answer.
        transport.write_eof()  # type: ignore[union-attr]
        self._lingering = LINGER_BYTES
        self._set_deadline(LINGER, LINGER_SECONDS)
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()  # type: ignore[union-attr]

    def _send_continue(self) -> None:
        self.parser.expect_continue = False
        self.transport.write(serialize.CONTINUE_RESPONSE)  # type: ignore[union-attr]
        self._set_deadline(BODY, self.worker.config.body_timeout)

    def on_deadline(self) -> None:
        """Called by the worker's sweep when `deadline` has passed for the current phase."""
        phase = self.phase
        self.phase = NO_DEADLINE
        if phase == IDLE or phase == LINGER:
            self._close()
        elif phase in (HEADERS, BODY):
            self.parser.discard()
            self._fail(ProtocolError(408, "timed out reading the request"))

    def drain(self, grace: float) -> None:
        """Graceful stop: every response from now on closes the connection; one with nothing in
        progress may still send a request for `grace` seconds (module docstring)."""
        self._keep_alive = False
        if self._current is not None and not self.parser.requests:
            # The last request received: a head not made yet says Connection: close. (Requests
            # queued behind it are answered, the last of them with Connection: close.)
            self._current.keep_alive = False
        if self.closing or self._lingering:
            return
        if not self.busy and not self.parser.requests and self.parser.state == parsing.IDLE:
            deadline = time.monotonic() + grace
            if self.phase != IDLE or deadline < self.deadline:
                self._set_deadline(IDLE, grace)

    def _set_deadline(self, phase: int, seconds: float) -> None:
        self.phase = phase
        self.deadline = time.monotonic() + seconds

    def _pause_reading(self) -> None:
        if not self._reading_paused and not self.closed:
            self._reading_paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    def _close(self) -> None:
        """Close after what is written; nothing received after this point is answered."""
        self.phase = NO_DEADLINE
        self.closing = True
        self._lingering = 0
        self.parser.requests.clear()
        if not self.closed and self.transport is not None:
            self.transport.close()

    # -- the app thread's side --------------------------------------------------------------------

    def reserve(self, nbytes: int) -> bool:
        """App thread: wait until `nbytes` more may be queued. False: the client is gone."""
        if self.closed:
            return False
        if self.write_paused or self.pushed - self.delivered > BUFFER_LIMIT:
            if not self._wait_for_room():
                return False
        self.pushed += nbytes
        return True

    def _wait_for_room(self) -> bool:
        """Until the loop has room for more, or the connection is gone. A client that takes
        nothing is reset by the sweep after --send-timeout (`check_send_progress`): the
        connection closes and this returns False."""
        drained = self._drained
        while True:
            drained.clear()
            self._thread_waiting = True
            if self.closed:
                return False
            if not (self.write_paused or self.pushed - self.delivered > BUFFER_LIMIT):
                self._thread_waiting = False
                return True
            drained.wait(1.0)  # woken by resume_writing, deliver and connection_lost

    def abandon(self, status: int) -> bool:
        """The app thread serving this connection is given up on (request timeout): answer
        `status` if none of its response reached the transport yet, else cut the connection
        (a status after a partial response would lie). Whatever the thread still produces is
        dropped. True if the client got `status`."""
        if self.closed or self.transport is None:
            return False
        request = self._current
        sent = 0
        if self.delivered or self._file_bytes or self._sending_file:
            self.transport.abort()
            answered = False
        else:
            data = serialize.error_response(status)
            self.transport.write(data)
            self.transport.close()
            answered, sent, self.status = True, len(data), status
        if self.metrics is not None and request is not None:
            self._count(request, self.status or status, self.delivered + sent)
        self.closed = True  # reserve() refuses and deliver() discards from here on
        return answered

    def abort(self) -> None:
        """Cut the connection now (no more bytes are sent)."""
        if not self.closed and self.transport is not None:
            self.transport.abort()

    def check_send_progress(self, now: float, timeout: float) -> None:
        """Worker's sweep, for a connection whose writes are paused or that is closing: reset it
        if its client took none of the unsent response for `timeout` seconds (nginx's
        send_timeout). Otherwise a closing connection would wait for its buffer to drain
        forever, and a stalled app thread would wait with it."""
        transport = self.transport
        if transport is None or self.closed:
            return
        # Ours, and the kernel's: its send buffer may hold megabytes, and it wakes the transport
        # to refill it only once a third of it is free, so a slow reader can take bytes for
        # seconds while our own buffer does not move.
        unsent = transport.get_write_buffer_size() + _kernel_unsent(transport)
        mark = self._unsent_mark
        if not unsent:
            self._unsent_mark = None
        elif mark is None or unsent < mark[0]:
            self._unsent_mark = (unsent, now)  # new, or the client took some: progress
        elif now - mark[1] >= timeout:
            log.info("%s: the client took none of its response for %.0f s; resetting",
                     self.environ_base.get("REMOTE_ADDR", "?"), timeout)
            self._reset()

    def _reset(self) -> None:
        """Abort with an RST, so the kernel drops the unsent bytes too (nginx's
        reset_timedout_connection): a client that stopped reading must not pin them."""
        if self.closed or self.transport is None:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None and sock.family != socket.AF_UNIX:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.transport.abort()

    def _notify_thread(self) -> None:
        if self._thread_waiting:
            self._thread_waiting = False
            self._drained.set()


@functools.lru_cache(maxsize=4)
def probe_paths(health_path: str, ready_path: str) -> dict[bytes, str] | None:
    """Target path → probe kind, or None when no probe is configured (the common case)."""
    probes = {}
    if health_path:
        probes[health_path.encode()] = "health"
    if ready_path:
        probes[ready_path.encode()] = "ready"
    return probes or None


def _kernel_unsent(transport: asyncio.Transport) -> int:
    """Bytes in the socket's send queue that the peer has not acknowledged (SIOCOUTQ), 0 when
    that cannot be known."""
    sock = transport.get_extra_info("socket")
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except (AttributeError, OSError, ValueError):
        return 0


def _address(info: Any, unix: tuple[str, str]) -> tuple[str, str]:
    """(host, port) of an inet socket address; `unix` for a unix-socket one."""
    if isinstance(info, tuple) and len(info) >= 2:
        return str(info[0]), str(info[1])
    return unix


class RateLimiter:
    """--limit-req RATE,BURST for one worker: nginx's `limit_req ... burst=BURST nodelay`.

    A leaky bucket per client key: `excess` is how many requests ahead of RATE a client is. A
    request adds 1 after the bucket leaked RATE per second since the client's last accepted
    request; over BURST it is refused and changes nothing. A new client starts empty, so a client
    may send 1 + BURST requests at once, then one per 1/RATE s. A bucket idle for `horizon`
    seconds is empty whatever it held, the same as no bucket: `expire` (from the tick) drops
    those. Buckets are kept least recently seen first, at most `max_clients`.
    """

    def __init__(self, rate: float, burst: int, max_clients: int = MAX_RATE_CLIENTS) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self.horizon = (burst + 1) / rate
        self.refused = 0  # since the tick last reported
        self.last_refused = ""
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # key -> [excess, last]

    def check(self, key: str, now: float) -> float:
        """0 if a request from `key` at `now` may go; else seconds until one would."""
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            if len(buckets) >= self.max_clients:
                buckets.popitem(last=False)
            buckets[key] = [0.0, now]
            return 0.0
        buckets.move_to_end(key)  # seen: a client over its rate is the last one to forget
        excess = bucket[0] - self.rate * (now - bucket[1]) + 1.0
        if excess > self.burst + 1e-9:  # slack for float rounding: exactly on time passes
            self.refused += 1
            self.last_refused = key
            return (excess - self.burst) / self.rate
        bucket[0] = max(0.0, excess)
        bucket[1] = now
        return 0.0

    def expire(self, now: float) -> None:
        """Drop the buckets idle for `horizon` from the front; a refused client seen lately
        stops the sweep early, which only keeps a few buckets a little longer."""
        buckets = self._buckets
        cutoff = now - self.horizon
        while buckets:
            key = next(iter(buckets))
            if buckets[key][1] > cutoff:
                return
            del buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)

    def describe(self) -> str:
        return f"{self.rate:g},{self.burst}"


# `t=` then seconds with a fraction (nginx `t=${msec}`), or whole milliseconds (Heroku) or
# microseconds (Apache `%t`) since the epoch.
_REQUEST_START = re.compile(rb"(?:t=)?([0-9]{1,16})(?:\.([0-9]{1,9}))?")


def request_start_wait(value: bytes, now: float) -> float | None:
    """Seconds between an X-Request-Start `value` and `now` (time.time()); None if the value is
    not one of the accepted forms or is implausible. A start in the future (the proxy's clock is
    ahead) counts as no wait."""
    match = _REQUEST_START.fullmatch(value.strip())
    if match is None:
        return None
    whole, fraction = match.groups()
    if fraction is not None:
        started = int(whole) + int(fraction) / 10 ** len(fraction)
    else:
        number = int(whole)
        started = number / 1e6 if number >= 10**14 else number / 1e3 if number >= 10**11 else number
    waited = now - started
    if waited > MAX_UPSTREAM_WAIT:
        return None
    return max(0.0, waited)
