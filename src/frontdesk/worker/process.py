"""A worker: one event loop serving HTTP on inherited listening sockets, plus its app threads.

No HTTP details here (those live in `transport`): this module boots the loop, owns the shared
pieces every connection uses (limits, static files, thread pool, outbox), ticks the clock once a
second, and stops on signals.

Theory of operation
-------------------
The master (`frontdesk.master.arbiter`) forks the worker and gives it the write end of a pipe
(`master_fd`; the messages are in `frontdesk.master.common`). Everything below happens in the loop
thread, most of it in the once-a-second tick, so nothing here costs the hot path a thing except
the pool's one tuple store per request:

    ===============  ===========================================  ============================
    event            what the worker does                          what the master does
    ===============  ===========================================  ============================
    sockets served   `READY`                                       counts it as serving
    every tick       `BEAT`; expire connection deadlines; sweep    restarts it if no beat for
                     the pool for requests past --request-timeout  --timeout (see arbiter)
    --max-requests   `RETIRE` once; keeps serving                  forks a replacement; TERM
    (+ jitter) hit                                                 once the replacement is ready
    request timeout  logs the thread's stack, answers 504, drops   same as `RETIRE`
                     the thread's later output; `STUCK` once
    master gone      (broken pipe, or a new parent) graceful stop  —
    ===============  ===========================================  ============================

(--reload is the master's: `frontdesk.master.reloader` watches the files.)

Signals: TERM stops gracefully (stop accepting; in-flight requests get --graceful-timeout; every
response from then on says `Connection: close`; a connection with nothing in progress gets
`transport.DRAIN_IDLE_GRACE` to send one more request, which is answered, then closes: a client
that was just promised keep-alive may be sending already, and answering it beats racing it with a
close); INT (Ctrl-C, which reaches every process of the group) stops gracefully too, a second INT
fast; QUIT stops fast (connections are cut); USR1 reopens log files; USR2 writes
every thread's stack to the error log (from C, so it works when the loop is stuck); HUP, TTIN and
TTOU are the master's and ignored here.

With --drain-delay the master does not signal the workers at first: it sets the shared
`StopNotice`, which turns the readiness probe to 503 (`ready()`), and sends TERM when the delay is
over. The worker keeps no timer of its own for it.

Why 504 for a request past --request-timeout: frontdesk stands where nginx stood, and nginx
answers 504 Gateway Timeout when the app server is too slow (`proxy_read_timeout`), which is
what dashboards and clients of an nginx + gunicorn stack already expect.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from frontdesk import logs
from frontdesk.master import common
from frontdesk.protocol import serialize
from frontdesk.protocol.parser import Limits
from frontdesk.worker.acceptor import Acceptor
from frontdesk.worker.pool import Outbox, ThreadPool
from frontdesk.worker.transport import (
    DRAIN_IDLE_GRACE,
    NO_DEADLINE,
    HttpConnection,
    RateLimiter,
)
from frontdesk.wsgi.bridge import Bridge

log = logging.getLogger("frontdesk.error")

REQUEST_TIMEOUT_STATUS = 504
# A worker beats once a second; with a --timeout this short it beats 4 times per timeout.
BEAT_EVERY = 1.0
# While draining, deadlines are checked this often (not once a second): idle connections close
# about `DRAIN_IDLE_GRACE` after the drain began, not up to a second later.
DRAIN_POLL = 0.02
# Fast stop and the app threads at exit: how long stuck threads may delay the process exit.
THREAD_EXIT_WAIT = 0.5


def new_event_loop(choice: str = "auto") -> asyncio.AbstractEventLoop:
    """uvloop when installed (or asked for), else the stdlib loop."""
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class Worker:
    """Serves the app on `sockets` until told to stop (see module docstring).

    `master_fd`: the write end of the pipe to the master, or None to run alone (tests).
    `metrics`: this worker's `frontdesk.metrics.WorkerMetrics` slot, or None.
    `stop_notice`: the master's `common.StopNotice` (set: the server is stopping), or None.
    """

    def __init__(
        self,
        config: Any,
        app: Callable[..., Any],
        static: Any = None,
        *,
        master_fd: int | None = None,
        metrics: Any = None,
        stop_notice: common.StopNotice | None = None,
    ) -> None:
        self.config = config
        self.app = app
        self.static = static
        self.limits = Limits.from_config(config)
        self.connections: set[HttpConnection] = set()
        self.draining = False
        self.server_name = "localhost"
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.pool: ThreadPool = None  # type: ignore[assignment]
        self.master_fd = master_fd
        self.metrics = metrics  # read by each connection (transport)
        self.stop_notice = stop_notice
        # --limit-req: one set of buckets per worker, shared by its connections; None when off.
        limit = getattr(config, "limit_req", None)
        self.rate_limiter = RateLimiter(*limit) if limit else None
        self.retiring = False
        # Requests answered 503 for overload since the tick last reported, and the last reason:
        # one warning a second, not one per request, while overloaded.
        self.shed_count = 0
        self.shed_reason = ""
        self._master_pid = os.getppid() if master_fd is not None else 0
        self._acceptors: list[Acceptor] = []
        self._stopped: asyncio.Future[None] | None = None
        self._fast = False
        self._tick_handle: asyncio.TimerHandle | None = None
        self._timed_out: dict[int, tuple[Any, Any, float]] = {}  # pool slot -> request answered

    # -- running ----------------------------------------------------------------------------------

    def run(self, sockets: list[socket.socket], on_ready: Callable[[], None] | None = None) -> int:
        """Serve until stopped (see module docstring). Returns the process exit status."""
        loop = new_event_loop(self.config.loop)
        asyncio.set_event_loop(loop)
        self.loop = loop
        outbox = Outbox(loop)
        handle: Callable[[Any, Any], None] = Bridge(self.app, outbox).handle
        if self.config.max_requests:
            handle = self._counting(handle)
        self.pool = ThreadPool(loop, self.config.threads, handle)
        try:
            return loop.run_until_complete(self._serve(sockets, on_ready))
        finally:
            # Threads still inside the app (past the graceful timeout, or stuck) are daemons:
            # they end with the process. Waiting for each in turn would only delay the exit.
            self.pool.stop(timeout=THREAD_EXIT_WAIT / max(1, len(self.pool.threads)))
            loop.close()
            _flush_access_log()

    def _counting(self, handle: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
        """Wrap the bridge's `handle` to count requests for --max-requests (+ jitter)."""
        config = self.config
        limit = config.max_requests + random.randint(0, config.max_requests_jitter)
        count = itertools.count(1).__next__  # atomic under the GIL: no lost or doubled counts
        loop = self.loop

        def counting_handle(channel: Any, request: Any) -> None:
            if count() == limit:
                loop.call_soon_threadsafe(self.retire, common.RETIRE, f"served {limit} requests")
            handle(channel, request)

        return counting_handle

    async def _serve(self, sockets: list[socket.socket], on_ready: Callable[[], None] | None) -> int:
        loop = self.loop
        self._stopped = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        interrupts = itertools.count(1).__next__
        # The second INT is a fast stop, whatever came between: the master's TERM for the same
        # Ctrl-C may well be handled first.
        loop.add_signal_handler(signal.SIGINT, lambda: self.stop(interrupts() == 1))
        loop.add_signal_handler(signal.SIGQUIT, self.stop, False)
        loop.add_signal_handler(signal.SIGUSR1, self._reopen_logs)
        if self.master_fd is not None:
            for sig in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
                signal.signal(sig, signal.SIG_IGN)
            common.register_stack_dump()
            common.set_title(f"frontdesk: worker [{self.config.app}]")
        for sock in sockets:
            sock.listen(self.config.backlog)  # also for sockets adopted from systemd or a master
            acceptor = Acceptor(loop, sock, lambda: HttpConnection(self))
            acceptor.start()
            self._acceptors.append(acceptor)
        self._tick()
        if self.master_fd is not None and self.config.timeout < 4 * BEAT_EVERY:
            self._beat()
        if self.config.max_queue_time:
            self._shed_stale()
        self._tell_master(common.READY)
        if on_ready is not None:
            on_ready()
        await self._stopped
        return await self._drain()

    def stop(self, graceful: bool = True) -> None:
        """Begin a stop (idempotent); a fast stop may follow a graceful one, not the reverse."""
        if not graceful and not self._fast:
            self._fast = True
            if self.draining:
                self._abort_all()
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    def retire(self, message: bytes, why: str) -> None:
        """Ask the master for a replacement (it sends TERM once that one serves). Loop thread."""
        if self.retiring or self.draining:
            return
        self.retiring = True
        if self.master_fd is None:
            log.info("worker %d: %s; stopping", os.getpid(), why)
            self.stop()
            return
        log.info("worker %d: %s; asking the master for a replacement", os.getpid(), why)
        common.set_title(f"frontdesk: worker [{self.config.app}] (retiring)")
        self._tell_master(message)

    def ready(self) -> bool:
        """For the readiness probe: False once draining, or once the master began to stop."""
        return not self.draining and (self.stop_notice is None or not self.stop_notice.is_set())

    def _tell_master(self, message: bytes) -> None:
        if self.master_fd is not None and not common.send(self.master_fd, message):
            self._master_gone()

    def _master_gone(self) -> None:
        if not self.draining and self._stopped is not None and not self._stopped.done():
            log.warning("worker %d: the master is gone; stopping", os.getpid())
        self.master_fd = None
        self.stop()

    def _reopen_logs(self) -> None:
        logs.reopen_files()
        if self.master_fd is not None:
            common.register_stack_dump()  # faulthandler holds the old file

    # -- stopping ---------------------------------------------------------------------------------

    async def _drain(self) -> int:
        """Stop accepting; finish in-flight requests up to the graceful timeout; close."""
        self.draining = True
        for acceptor in self._acceptors:
            acceptor.close()
        # A connection accepted just before the close gets its connection_made() in a later loop
        # iteration: let those run, or the process could exit holding a connection nobody saw.
        for _ in range(100):
            if not any(acceptor.pending for acceptor in self._acceptors):
                break
            await asyncio.sleep(0)
        if self._fast:
            self._abort_all()
        now = time.monotonic()
        deadline = now + self.config.graceful_timeout
        grace = min(DRAIN_IDLE_GRACE, self.config.graceful_timeout)
        for connection in list(self.connections):
            connection.drain(grace)
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(DRAIN_POLL)
            self._expire_deadlines(time.monotonic())
        if self.connections:
            log.warning("graceful timeout: closing %d connection(s) still busy", len(self.connections))
            self._abort_all()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        await asyncio.sleep(0)  # let the transports finish closing
        return 0

    def _abort_all(self) -> None:
        for connection in list(self.connections):
            connection.abort()

    # -- the tick ---------------------------------------------------------------------------------

    def _tick(self) -> None:
        """Once a second: Date header, connection deadlines, heartbeat, request timeouts."""
        try:
            self._tick_once()
        except Exception:  # a failure here must not stop the heartbeat and the deadlines
            log.exception("worker %d: the once-a-second tick failed", os.getpid())
        # Wake at the next whole second so the Date header turns over on time.
        self._tick_handle = self.loop.call_later(1.0 - time.time() % 1.0 + 0.001, self._tick)

    def _tick_once(self) -> None:
        serialize.refresh_date()
        now = time.monotonic()
        if self.master_fd is not None:  # first: nothing below may keep the beat from going out
            if os.getppid() != self._master_pid:
                self._master_gone()
            else:
                self._tell_master(common.BEAT)
        self._expire_deadlines(now)
        if self.rate_limiter is not None:
            self._tick_rate_limiter(now)
        if self.config.request_timeout:
            self._check_request_times(now)
        if self.shed_count:
            log.warning("overloaded: answered 503 to %d request(s) in the last second (%s)",
                        self.shed_count, self.shed_reason)
            self.shed_count = 0
        if self.metrics is not None:
            pool = self.pool
            busy = len(pool.threads) - pool.running.count(None)
            self.metrics.set_gauges(len(self.connections), busy + pool.queued, busy,
                                    len(pool.threads) - busy, pool.queued)

    def _beat(self) -> None:
        """Extra heartbeats for a --timeout under 4 s (the tick beats once a second)."""
        if self.master_fd is None or self.draining:
            return
        self._tell_master(common.BEAT)
        self.loop.call_later(self.config.timeout / 4, self._beat)

    def note_shed(self, reason: str) -> None:
        """A request was answered 503 for overload (logged by the tick, once a second)."""
        self.shed_count += 1
        self.shed_reason = reason

    def _shed_stale(self) -> None:
        """--max-queue-time: answer 503 at once to requests that waited too long for a thread,
        instead of when a thread frees up to find out (which may be long after the client or
        the router gave up). Runs four times per --max-queue-time, at most once a second."""
        if self.draining:
            return
        now = time.monotonic()

        def too_old(channel: Any, request: Any) -> bool:
            limit = channel.max_queue_time
            return bool(limit) and now - request.started > limit

        for channel, request in self.pool.take_stale(too_old):
            channel.shed_stale(request, now - request.started)
        self.loop.call_later(min(1.0, self.config.max_queue_time / 4), self._shed_stale)

    def _expire_deadlines(self, now: float) -> None:
        send_timeout = self.config.send_timeout
        for connection in [c for c in self.connections
                           if c.phase != NO_DEADLINE or c.write_paused or c.closing]:
            if connection.phase != NO_DEADLINE and now >= connection.deadline:
                connection.on_deadline()
            if connection.write_paused or connection.closing:
                connection.check_send_progress(now, send_timeout)

    def _tick_rate_limiter(self, now: float) -> None:
        """Forget idle clients' buckets; one warning a second for requests refused, not one each
        (a client over its rate would otherwise flood the error log too)."""
        limiter = self.rate_limiter
        assert limiter is not None
        limiter.expire(now)
        if limiter.refused:
            log.warning("--limit-req %s: answered 429 to %d request(s) in the last second, the "
                        "last from %s", limiter.describe(), limiter.refused, limiter.last_refused)
            limiter.refused = 0

    def _check_request_times(self, now: float) -> None:
        limit = self.config.request_timeout
        timed_out = self._timed_out
        for index, slot in enumerate(self.pool.running):
            if slot is None:
                timed_out.pop(index, None)
            elif now - slot[2] >= limit and timed_out.get(index) is not slot:
                timed_out[index] = slot
                self._request_timed_out(index, slot, now)

    def _request_timed_out(self, index: int, slot: tuple[Any, Any, float], now: float) -> None:
        channel, request, started = slot
        thread = self.pool.threads[index]
        frame = sys._current_frames().get(thread.ident or 0)
        if self.pool.running[index] is not slot:
            return  # it finished just now after all
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "  (finished)\n"
        answered = channel.abandon(REQUEST_TIMEOUT_STATUS)
        self.pool.replace(index)  # the requests queued behind it still get a thread
        log.error(
            "request timeout: %s %s from %s has run %.1f s (--request-timeout %g) in thread %s of"
            " worker %d. The thread's stack, most recent call last:\n%s"
            "The client %s. The thread is abandoned (another takes its place); this worker is"
            " replaced once its other requests finish.",
            request.method, request.target.decode("latin-1"),
            channel.environ_base.get("REMOTE_ADDR", "?"), now - started,
            self.config.request_timeout, thread.name, os.getpid(), stack,
            f"got {REQUEST_TIMEOUT_STATUS}" if answered else "connection was closed (the response had begun)",
        )  # fmt: skip
        self.retire(common.STUCK, "a request timed out")


def _flush_access_log() -> None:
    """Write out the access log lines still queued: the process ends with os._exit."""
    logs.flush_access_logs()


def worker_pid() -> int:
    return os.getpid()
