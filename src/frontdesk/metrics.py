"""Prometheus metrics: per-worker counters in shared memory, summed and served by the master.

Theory of operation
-------------------
The master creates one `Registry` before it forks: a single anonymous `mmap` (MAP_SHARED, so
every child sees the same pages) cut into fixed *slots* of 8-byte cells:

    slot 0 .. max_workers-1   one per worker process; written by that worker's loop thread only
    slot max_workers          "retired": the counters of workers that have exited
    slot max_workers + 1      the master's own counters (worker restarts by cause)

Each cell is an int64 or a float64, read and written through `memoryview.cast("q")` and
`cast("d")` views of the same pages. There are no locks on the writing side: a slot has exactly
one writer (the worker's loop thread), and an aligned 8-byte store is atomic on every platform
CPython runs on, so a reader in another process sees each cell either before or after an update,
never torn. Cells may be seen out of step with each other (a request counted before its latency
is), which a scrape tolerates; a histogram's `_count` is computed from its own bucket cells, so it
always equals its `+Inf` bucket.

A slot's life, driven by the master:

    ==========  ==============================================  =================================
    state       entered when                                    left when
    ==========  ==============================================  =================================
    free        start; `retire(i)`; `release(i)` (no fork)      `claim()` returns i
    claimed     `claim()`, before the fork                      the worker calls `reset()`
    live        the new worker's `reset()`                      the master reaped it and called
                                                                `retire(i)`
    ==========  ==============================================  =================================

`frontdesk_workers` counts the workers that serve: the master sets a live slot's `_LIVE` cell
when its worker sends READY and clears it when it tells the worker to stop (`serving(i, ...)`),
so booting and draining workers are not counted. That cell is the one the master writes in a
worker's slot; the worker only zeroes it in `reset()`, before READY.

`retire(i)` adds the dead worker's counters to the retired slot and zeroes its slot, under a lock
shared with `render()`, so a scrape never sees them twice or not at all: the totals stay monotonic
however often workers are replaced. Only the master's threads take that lock; workers never do.

The worker's side (`WorkerMetrics`) is a handful of list-index additions per call: no allocation,
no formatting, no I/O. Formatting happens only when the master renders a scrape.
"""

from __future__ import annotations

import errno
import logging
import mmap
import socket
import socketserver
import threading
import time
from bisect import bisect_left
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "CAUSES",
    "CONTENT_TYPE",
    "LATENCY_BUCKETS",
    "METHODS",
    "NOT_QUEUED",
    "MetricsServer",
    "Registry",
    "StatsdPusher",
    "WorkerMetrics",
    "method_index",
]

log = logging.getLogger("frontdesk.error")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other")
CAUSES = ("timeout", "crash", "max-requests", "memory", "reload")
# Upper bounds (seconds) of the latency and queue-wait buckets; +Inf is implicit.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
NOT_QUEUED = -1.0  # `queued` for a response that never waited for an app thread

_METHOD_INDEX: dict[str | bytes, int] = {name: i for i, name in enumerate(METHODS[:-1])}
_METHOD_INDEX.update({name.encode(): i for i, name in enumerate(METHODS[:-1])})
_OTHER = len(METHODS) - 1
_CLASSES = 10  # status // 100 % 10: cell 1 is 1xx ... cell 9 is 9xx; 0 only for a bogus status
_BUCKETS = len(LATENCY_BUCKETS) + 1

# Slot layout: cell offsets. Counters first (folded by `retire`), then gauges.
_REQUESTS = 0  # [method][status class]
_LATENCY = _REQUESTS + len(METHODS) * _CLASSES  # bucket counts, not cumulative; last is +Inf
_LATENCY_SUM = _LATENCY + _BUCKETS  # float
_QUEUE = _LATENCY_SUM + 1
_QUEUE_SUM = _QUEUE + _BUCKETS  # float
_BYTES_IN = _QUEUE_SUM + 1
_BYTES_OUT = _BYTES_IN + 1
_STATIC = _BYTES_OUT + 1  # [status class]
_NOT_MODIFIED = _STATIC + _CLASSES
_SHED = _NOT_MODIFIED + 1
_LIMITED = _SHED + 1
_CODES = _LIMITED + 1  # [status % 1000]: exact codes, for StatsD (`Registry(status_codes=True)`)
_COUNTERS = _CODES + 1000  # cells [0, _COUNTERS) are counters
_GAUGES = _COUNTERS  # open connections, in flight, busy threads, idle threads, queue depth
_LIVE = _GAUGES + 5
_SLOT = _LIVE + 1
_FLOATS = (_LATENCY_SUM, _QUEUE_SUM)
# The master slot: restarts by cause in its first cells.
_RESTARTS = 0


def method_index(method: str | bytes) -> int:
    """The index of `method` in `METHODS` for `WorkerMetrics.request` (unknown ones: "other")."""
    return _METHOD_INDEX.get(method, _OTHER)


class WorkerMetrics:
    """The writer of one worker slot. Call only from the worker's loop thread."""

    __slots__ = ("_d", "_q")

    def __init__(self, q: memoryview[int], d: memoryview[float]) -> None:
        self._q = q
        self._d = d

    def request(self, method_index: int, status: int, duration: float, queued: float,
                bytes_in: int, bytes_out: int) -> None:
        """One response sent: its method index, status (100-999), seconds from dispatch to the
        last byte handed to the transport, seconds waiting for an app thread (`NOT_QUEUED` if it
        never went to the pool), request body bytes, response bytes (head and body)."""
        q = self._q
        d = self._d
        q[method_index * _CLASSES + status // 100 % _CLASSES] += 1  # _REQUESTS is cell 0
        q[_LATENCY + bisect_left(LATENCY_BUCKETS, duration)] += 1
        d[_LATENCY_SUM] += duration
        if queued >= 0.0:
            q[_QUEUE + bisect_left(LATENCY_BUCKETS, queued)] += 1
            d[_QUEUE_SUM] += queued
        if bytes_in:  # most requests have no body: skip a shared-memory update (~40 ns)
            q[_BYTES_IN] += bytes_in
        q[_BYTES_OUT] += bytes_out

    def static(self, status: int) -> None:
        """A response from a static mount (also counted by `request`)."""
        q = self._q
        q[_STATIC + status // 100 % _CLASSES] += 1
        if status == 304:
            q[_NOT_MODIFIED] += 1

    def shed(self) -> None:
        """A request answered 503 because the backlog was full (also counted by `request`)."""
        self._q[_SHED] += 1

    def limited(self) -> None:
        """A request answered 429 by --limit-req (also counted by `request`)."""
        self._q[_LIMITED] += 1

    def set_gauges(self, open_connections: int, in_flight: int, busy_threads: int,
                   idle_threads: int, queue_depth: int) -> None:
        """The worker's current load; call once a second from its tick."""
        q = self._q
        q[_GAUGES] = open_connections
        q[_GAUGES + 1] = in_flight
        q[_GAUGES + 2] = busy_threads
        q[_GAUGES + 3] = idle_threads
        q[_GAUGES + 4] = queue_depth

    def reset(self) -> None:
        """A fresh worker takes the slot: zero it (before it tells the master it is ready, so
        before the master counts it as serving: `Registry.serving`)."""
        q = self._q
        for i in range(_SLOT):
            q[i] = 0


class _CodeCounting(WorkerMetrics):
    """A writer that also counts each exact status code (gunicorn's `request.status.<code>` for
    StatsD). A subclass, so that without StatsD the loop thread pays nothing for it."""

    __slots__ = ()

    def request(self, method_index: int, status: int, duration: float, queued: float,
                bytes_in: int, bytes_out: int) -> None:
        self._q[_CODES + status % 1000] += 1
        WorkerMetrics.request(self, method_index, status, duration, queued, bytes_in, bytes_out)


class Registry:
    """Shared-memory counters for up to `max_workers` workers (see the module docstring).

    Create it in the master before forking. Master side: `claim`, `retire`, `worker_restart`,
    `render`, `totals`; worker side: `worker(index)`. With `status_codes`, workers also count
    each exact status code (one more shared-memory addition per response), for StatsD.
    """

    def __init__(self, max_workers: int, status_codes: bool = False) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, not {max_workers}")
        self.max_workers = max_workers
        self.status_codes = status_codes
        self._writer = _CodeCounting if status_codes else WorkerMetrics
        self._retired = max_workers * _SLOT
        self._master = (max_workers + 1) * _SLOT
        # mmap(-1, ...) is anonymous and MAP_SHARED: the pages stay shared across fork().
        self._map = mmap.mmap(-1, (max_workers + 2) * _SLOT * 8)
        self._q = memoryview(self._map).cast("q")
        self._d = memoryview(self._map).cast("d")
        self._lock = threading.Lock()  # master threads only: retire/restarts vs render
        self._free = set(range(max_workers))  # the master's bookkeeping; children ignore it
        self._used = 0  # slots 0 .. _used-1 have been claimed at least once: only those are read

    def _slot(self, base: int) -> tuple[memoryview[int], memoryview[float]]:
        return self._q[base : base + _SLOT], self._d[base : base + _SLOT]

    def claim(self) -> int | None:
        """Master: the lowest free slot for a worker about to be forked; None when all are taken
        (that worker then runs without metrics: `worker(None)`)."""
        if not self._free:
            return None
        index = min(self._free)
        self._free.discard(index)
        self._used = max(self._used, index + 1)
        return index

    def release(self, index: int) -> None:
        """Master: give back a slot `claim()` returned whose worker was never forked."""
        self._free.add(index)

    def worker(self, index: int | None) -> WorkerMetrics:
        """Worker: the writer for slot `index`; for None, one whose counts go nowhere."""
        if index is None:
            scratch = memoryview(bytearray(_SLOT * 8))
            return self._writer(scratch.cast("q"), scratch.cast("d"))
        if not 0 <= index < self.max_workers:
            raise IndexError(f"worker slot {index} out of range 0..{self.max_workers - 1}")
        return self._writer(*self._slot(index * _SLOT))

    def retire(self, index: int) -> None:
        """Master, after reaping the worker of slot `index`: fold its counters into the retired
        slot, zero the slot (its gauges drop out) and free it. Never while its worker may run."""
        q, d = self._slot(index * _SLOT)
        rq, rd = self._slot(self._retired)
        with self._lock:
            for i in range(_COUNTERS):
                if i in _FLOATS:
                    rd[i] += d[i]
                else:
                    rq[i] += q[i]
            for i in range(_SLOT):
                q[i] = 0
        self._free.add(index)

    def serving(self, index: int, serving: bool) -> None:
        """Master: count the worker of slot `index` in `frontdesk_workers` (it sent READY) or no
        more (it was told to stop, and drains)."""
        self._q[index * _SLOT + _LIVE] = int(serving)

    def worker_restart(self, cause: str) -> None:
        """Master: a worker was replaced; `cause` is one of `CAUSES`."""
        if cause not in CAUSES:
            raise ValueError(f"unknown restart cause {cause!r}; one of {', '.join(CAUSES)}")
        cell = self._master + _RESTARTS + CAUSES.index(cause)
        with self._lock:
            self._q[cell] += 1

    def _sum(self) -> tuple[list[int], list[int], list[float]]:
        """A snapshot: the master slot's int cells, the int cells summed over the worker slots
        and the retired one, and the sums of the float cells (`_FLOATS` order). Only the slots
        ever claimed are read: the others are zero, and their pages stay untouched."""
        used = self._used * _SLOT
        with self._lock:
            ints = self._q[:used].tolist() + self._q[self._retired :].tolist()
            floats = self._d[:used].tolist() + self._d[self._retired : self._master].tolist()
        end = used + _SLOT  # the claimed worker slots and the retired one, not the master's
        total = [sum(ints[i:end:_SLOT]) for i in range(_SLOT)]
        sums = [sum(floats[i:end:_SLOT]) for i in _FLOATS]
        return ints[end:], total, sums

    def totals(self) -> dict[str, float]:
        """Master: the summed counters and gauges as a plain dict (for pushing, e.g. StatsD).

        Keys: `requests`, `requests_<class>` (`requests_2xx`, ..., `requests_other`),
        `request_duration_seconds_sum`/`_count`, `requests_shed`, `requests_limited`, the gauges
        by their metric names without the prefix (`open_connections`, `busy_threads`, ...),
        `workers`, and with `status_codes`, `status_<code>` (`status_200`, ...) for each code
        counted at least once.
        """
        _, total, sums = self._sum()
        out: dict[str, float] = {}
        classes = [sum(total[m * _CLASSES + c] for m in range(len(METHODS)))
                   for c in range(_CLASSES)]
        out["requests"] = sum(classes)
        for c, value in enumerate(classes):
            out[f"requests_{_cls(c)}"] = value
        out["request_duration_seconds_sum"] = sums[0]
        out["request_duration_seconds_count"] = sum(total[_LATENCY : _LATENCY + _BUCKETS])
        out["requests_shed"] = total[_SHED]
        out["requests_limited"] = total[_LIMITED]
        for offset, (name, _text) in enumerate(_GAUGE_NAMES):
            out[name] = total[_GAUGES + offset]
        out["workers"] = total[_LIVE]
        for code in range(100, 1000):
            if total[_CODES + code]:
                out[f"status_{code}"] = total[_CODES + code]
        return out

    def render(self) -> str:
        """All metrics in the Prometheus text format 0.0.4: live slots plus retired ones."""
        workers = self.max_workers
        master, total, sums = self._sum()
        out: list[str] = []
        family = _Family(out)
        family("requests_total", "counter", "HTTP responses sent, by request method and status "
               "class (app, static, probes, shed and protocol errors alike).")
        for m, method in enumerate(METHODS):
            for c in range(_CLASSES):
                value = total[m * _CLASSES + c]
                if 1 <= c <= 5 or value:
                    out.append(f'frontdesk_requests_total{{method="{method}",status="{_cls(c)}"}}'
                               f" {value}\n")
        family.histogram("request_duration_seconds", "Seconds from dispatching a request to "
                         "handing its last byte to the transport.", total, _LATENCY, sums[0])
        family.histogram("request_queue_seconds", "Seconds a request waited for an app "
                         "thread.", total, _QUEUE, sums[1])
        family("request_body_bytes_total", "counter", "Bytes of request bodies received.")
        out.append(f"frontdesk_request_body_bytes_total {total[_BYTES_IN]}\n")
        family("response_bytes_total", "counter", "Bytes of responses sent, heads and bodies.")
        out.append(f"frontdesk_response_bytes_total {total[_BYTES_OUT]}\n")
        family("static_responses_total", "counter", "Responses from static mounts, by status "
               "class.")
        for c in range(_CLASSES):
            value = total[_STATIC + c]
            if 1 <= c <= 5 or value:
                out.append(f'frontdesk_static_responses_total{{status="{_cls(c)}"}} {value}\n')
        family("static_not_modified_total", "counter", "Static responses 304 Not Modified.")
        out.append(f"frontdesk_static_not_modified_total {total[_NOT_MODIFIED]}\n")
        family("requests_shed_total", "counter", "Requests answered 503 because the backlog "
               "of requests waiting for an app thread was full.")
        out.append(f"frontdesk_requests_shed_total {total[_SHED]}\n")
        family("requests_limited_total", "counter", "Requests answered 429 because their client "
               "went over --limit-req.")
        out.append(f"frontdesk_requests_limited_total {total[_LIMITED]}\n")
        family("worker_restarts_total", "counter", "Workers replaced, by cause.")
        for k, cause in enumerate(CAUSES):
            value = master[_RESTARTS + k]
            out.append(f'frontdesk_worker_restarts_total{{cause="{cause}"}} {value}\n')
        # Gauges: the retired slot's are always zero, so the totals are the live workers' sums.
        for offset, (name, text) in enumerate(_GAUGE_NAMES):
            family(name, "gauge", text)
            out.append(f"frontdesk_{name} {total[_GAUGES + offset]}\n")
        family("workers", "gauge", "Worker processes serving: ready and not stopping (up to "
               f"the registry's {workers} slots).")
        out.append(f"frontdesk_workers {total[_LIVE]}\n")
        return "".join(out)


_GAUGE_NAMES = (
    ("open_connections", "Client connections open."),
    ("in_flight_requests", "Requests dispatched and not yet answered."),
    ("busy_threads", "App threads running a request."),
    ("idle_threads", "App threads waiting for a request."),
    ("queued_requests", "Requests waiting for an app thread."),
)


def _cls(c: int) -> str:
    return f"{c}xx" if c else "other"


class _Family:
    """Appends HELP/TYPE lines, and whole histograms, to a list of output lines."""

    def __init__(self, out: list[str]) -> None:
        self.out = out

    def __call__(self, name: str, kind: str, text: str) -> None:
        self.out.append(f"# HELP frontdesk_{name} {text}\n# TYPE frontdesk_{name} {kind}\n")

    def histogram(self, name: str, text: str, total: list[int], base: int, sum_: float) -> None:
        self(name, "histogram", text)
        cumulative = 0
        for k, bound in enumerate((*LATENCY_BUCKETS, "+Inf")):
            cumulative += total[base + k]
            self.out.append(f'frontdesk_{name}_bucket{{le="{bound}"}} {cumulative}\n')
        self.out.append(f"frontdesk_{name}_sum {sum_!r}\nfrontdesk_{name}_count {cumulative}\n")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # a stalled scraper holds a thread for at most this long
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        if self.path.partition("?")[0] == "/metrics":
            status, ctype, body = 200, CONTENT_TYPE, self.server.registry.render().encode()
        else:
            status, ctype, body = 404, "text/plain; charset=utf-8", b"not found; try /metrics\n"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics: %s " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    # No SO_REUSEPORT: across a USR2 upgrade the new master inherits this very socket (see
    # `MetricsServer`), and no other process may bind beside it and take half the scrapes.
    daemon_threads = True

    def __init__(self, address: tuple[str, int], registry: Registry,
                 sock: socket.socket | None = None) -> None:
        self.registry = registry
        if sock is not None:
            self.address_family = sock.family
        elif ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler, bind_and_activate=sock is None)
        if sock is not None:  # adopt the inherited listening socket instead of the one made
            self.socket.close()
            self.socket = sock
            self.server_address = sock.getsockname()
            self.server_name = str(self.server_address[0])
            self.server_port = int(self.server_address[1])
        # Two masters hold the socket for a moment during an upgrade: a connection the other
        # one accepted first must not leave this thread blocked in accept() (and stop() hung).
        self.socket.setblocking(False)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(): a DNS lookup the master can do without.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])


class MetricsServer:
    """`GET /metrics` for Prometheus, served by a daemon thread of the master.

    `start()` binds (OSError with the address if it cannot) and serves; `open()` and `serve()`
    are its two halves. With `sock`, a listening socket inherited from the old master of a USR2
    upgrade, `open()` adopts it instead of binding, and the new master calls `serve()` only once
    it takes over: until then the old master alone answers on it, from its own registry.
    `address` is the bound (host, port), `fileno()` the listening socket's fd (passed to the next
    master), `stop()` stops and closes. In a forked child, call `close_after_fork()` instead: the
    serving thread does not exist there.
    """

    def __init__(self, registry: Registry, host: str, port: int,
                 sock: socket.socket | None = None) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self._sock = sock
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port): with port 0, the one the kernel chose."""
        if self._server is None:
            raise RuntimeError("the metrics server is not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def serving(self) -> bool:
        return self._thread is not None

    def fileno(self) -> int:
        if self._server is None:
            raise RuntimeError("the metrics server is not started")
        return self._server.socket.fileno()

    def start(self) -> None:
        self.open()
        self.serve()

    def open(self) -> None:
        try:
            self._server = _Server((self.host, self.port), self.registry, self._sock)
        except OSError as exc:
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else (
                exc.strerror or str(exc))
            raise OSError(exc.errno, f"cannot serve metrics on {self.host}:{self.port}: "
                          f"{reason}") from exc
        self._sock = None

    def serve(self) -> None:
        if self._server is None or self._thread is not None:
            return
        # serve_forever notices stop() at its next poll: 0.1 s bounds how long stop() waits.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,),
                                         name="frontdesk-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            if self._thread is not None:  # shutdown() waits for serve_forever: only if it runs
                self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def close_after_fork(self) -> None:
        """In a forked worker: close the inherited listening socket (no shutdown: no thread)."""
        if self._server is not None:
            self._server.socket.close()
            self._server = None
        self._thread = None


# StatsD names of `Registry.totals()` keys. Those gunicorn also sends keep its names exactly
# (gunicorn/instrument/statsd.py, and the arbiter's `gunicorn.workers`), so dashboards built on
# gunicorn's keep working; the rest live under `frontdesk.`. Both after the --statsd-prefix.
_STATSD_COUNTERS = (("requests", "gunicorn.requests"),
                    ("requests_shed", "frontdesk.requests.shed"),
                    ("requests_limited", "frontdesk.requests.limited"))
_STATSD_STATUS = "gunicorn.request.status."  # + the exact code: `status_<code>` keys
_STATSD_DURATION = "gunicorn.request.duration"
_STATSD_GAUGES = (("workers", "gunicorn.workers"),
                  ("open_connections", "frontdesk.connections"),
                  ("busy_threads", "frontdesk.threads.busy"),
                  ("queued_requests", "frontdesk.queue.depth"))
_DATAGRAM = 1400  # bytes: fits an Ethernet MTU with IP and UDP headers


class StatsdPusher:
    """Pushes `Registry.totals()` to a StatsD server over UDP from a daemon thread of the master.

    Every `interval` seconds: the counters' increase since the previous push (`|c`, only when
    non-zero), among them one per exact status code (`Registry(status_codes=True)` counts
    them), the mean duration of that interval's requests (`|ms`) and the gauges (`|g`), several
    lines per datagram. Errors are logged (once until a push works again), never raised.
    `stop()` pushes a last time and joins the thread.

    `prefix` goes before every name, with one dot after it as gunicorn adds (`service.app` and
    `service.app.` alike give `service.app.gunicorn.requests`); empty (the default, as in
    gunicorn) gives `gunicorn.requests`.
    """

    def __init__(self, registry: Registry, host: str, port: int, prefix: str = "",
                 interval: float = 1.0) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self.prefix = prefix.rstrip(".") + "." if prefix.rstrip(".") else ""
        self.interval = interval
        self._last: dict[str, float] = registry.totals()
        self._sock: socket.socket | None = None
        self._target: Any = None
        self._failing = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="frontdesk-statsd", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        self.push()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _run(self) -> None:
        next_at = time.monotonic() + self.interval
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            next_at += self.interval
            self.push()

    def lines(self) -> list[str]:
        """The metric lines for the change since the last call (advancing its baseline)."""
        now = self.registry.totals()
        last, self._last = self._last, now
        p = self.prefix
        out = []
        counters = list(_STATSD_COUNTERS)
        counters += [(key, _STATSD_STATUS + key[7:]) for key in now if key.startswith("status_")]
        for key, name in counters:
            delta = now[key] - last.get(key, 0)
            if delta > 0:  # < 0 only if the registry was replaced: then send nothing for it
                out.append(f"{p}{name}:{int(delta)}|c")
        count = now["request_duration_seconds_count"] - last["request_duration_seconds_count"]
        if count > 0:
            spent = now["request_duration_seconds_sum"] - last["request_duration_seconds_sum"]
            out.append(f"{p}{_STATSD_DURATION}:{max(0.0, spent) / count * 1000:.3f}|ms")
        for key, name in _STATSD_GAUGES:
            out.append(f"{p}{name}:{int(now[key])}|g")
        return out

    def push(self) -> None:
        """Send one round now. Never raises."""
        try:
            datagrams: list[bytes] = []
            for line in self.lines():
                data = line.encode()
                if datagrams and len(datagrams[-1]) + 1 + len(data) <= _DATAGRAM:
                    datagrams[-1] += b"\n" + data
                else:
                    datagrams.append(data)
            if self._sock is None:
                family, _, _, _, self._target = socket.getaddrinfo(
                    self.host, self.port, type=socket.SOCK_DGRAM)[0]
                self._sock = socket.socket(family, socket.SOCK_DGRAM)
            for data in datagrams:
                self._sock.sendto(data, self._target)
            self._failing = False
        except Exception as exc:  # noqa: BLE001 - never raise into the master
            if not self._failing:
                log.warning("statsd: cannot push to %s:%d: %s", self.host, self.port, exc)
            self._failing = True
