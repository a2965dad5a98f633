"""The master process: fork workers, reap them, watch their heartbeats, obey signals.

Theory of operation
-------------------
The master holds the listening sockets (`frontdesk.sockets`), never accepts on them, never runs
an event loop and never speaks HTTP. It is one loop (`_run_loop`), woken by a signal (through
`signal.set_wakeup_fd`), by a worker's pipe (`frontdesk.master.common`) or by a deadline:

    1. dispatch queued signals: the handler only appends the signal number to `_signals`; the
       loop calls `handle_<name>` (gunicorn's arbiter, STYLE.md principle 8). SIGCHLD is not
       queued: its handler is there to wake the loop, which reaps every time round
    2. reap every exited child with waitpid(-1): workers, the new master of an upgrade, and, as
       PID 1 in a container, any orphan
    3. liveness: a worker silent for --timeout gets SIGUSR2 (its threads' stacks go to the error
       log), SIGTERM, and SIGKILL `KILL_GRACE` seconds later; a stopping worker past its
       deadline gets SIGKILL
    4. memory (--max-worker-memory, once a second): a serving worker whose RSS, read from
       /proc, is over its limit is marked retiring, like a worker that asked to be replaced
    5. manage: fork what the current generation lacks, retire what it has too many of, and
       while more than `target` workers serve, TERM the oldest of those being replaced (older
       generations after HUP, workers that asked to retire after max-requests or a request
       timeout, or over their memory limit): one goes for each replacement that is ready, so
       `target` always serve

A worker's life, as the master sees it:

    ==========  ===========================================  =================================
    state       entered when                                 left when
    ==========  ===========================================  =================================
    booting     forked (`_spawn`)                             READY, or exit: a boot failure
    serving     READY received                               RETIRE/STUCK, HUP, TTOU, timeout
    retiring    it asked (RETIRE/STUCK), its memory is over  the current generation is ready:
                the limit, or an older generation after      TERM (→ stopping)
                HUP; still serves
    stopping    TERM/QUIT sent; `kill_at` set                 reaped (or SIGKILL at `kill_at`)
    ==========  ===========================================  =================================

An app that cannot be loaded (`AppLoadError`: an import error, a missing name, not callable) is
reported by the worker (`common.APP_FAILED`, with the traceback) and never retried while no
worker of this master has ever served: it is a setting's error, like with --preload, so the
master stops at once and `run()` prints the traceback once and raises `AppLoadError` (the CLI's
one `frontdesk: error:` line, status 2). Once workers have served, a worker that cannot load
the app (bad code deployed, then HUP) is a boot failure like any other:

Crash loops (granian's `_serve_loop` idea): a worker that exits before READY is a boot failure.
Failures in a row back off exponentially (`BOOT_BACKOFF` doubling to `MAX_BACKOFF`); after
`BOOT_ATTEMPTS` in a row with no worker serving, the master stops with the last worker's reason
and a non-zero status. While older workers still serve (a HUP or a replacement after bad code
was deployed) it keeps them and keeps retrying, slowly. A fork (or pipe) that fails is retried
with the same backoff, but never stops the master: it says nothing about the app.

Stopping (TERM) with `--drain-delay D`: the master sets the shared `StopNotice` (every worker's
readiness probe answers 503 from then on) and tells systemd STOPPING=1, but keeps the listening
sockets and does not signal the workers for D seconds, so load balancers see the failing probe
(or the endpoint's removal) and stop sending, while whatever still arrives is served. Then it
closes its sockets and TERMs the workers as for a stop without a delay: they get the whole
--graceful-timeout (+ `KILL_GRACE`) from that moment. So SIGKILL can come at D +
--graceful-timeout + 2 s after TERM at the latest, which is what a platform's grace period must
exceed. Memory recycling goes one worker at a time: none is marked while another marked for
memory still runs (even draining, it holds its memory), and each worker's limit is drawn at
random between `1 - MEMORY_JITTER` and 1 times the setting, so workers that grow alike do not
all cross it in the same second.

`__init__` only records its arguments: pipes, signal handlers, the pid file and the process title
are set up in `run()`, after which the only way out is `run()` returning.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import random
import selectors
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from frontdesk import logs, sockets
from frontdesk.errors import AppLoadError, FrontdeskError
from frontdesk.master import common

__all__ = ["Arbiter", "Privileges", "check_pidfile", "pidfile_name", "resolve_privileges"]

log = logging.getLogger("frontdesk.error")

KILL_GRACE = 2.0  # after TERM to a worker that missed its heartbeats, or past a stop's deadline
FAST_STOP_GRACE = 2.0  # INT/QUIT: how long workers get before SIGKILL
BOOT_ATTEMPTS = 5
BOOT_BACKOFF = 0.1
MAX_BACKOFF = 10.0
BOOT_ERROR_STATUS = 3  # a worker's exit status when the app cannot be loaded
APP_TRACEBACK_MAX = 16_000  # characters of the app's traceback a worker sends (its end)
APP_REPORT_MAX = 32 * 1024  # bytes of the whole APP_FAILED line: half of what a pipe holds
MEMORY_CHECK_INTERVAL = 1.0  # seconds between two reads of the workers' RSS
LOG_OWNER_CHECK_INTERVAL = 1.0  # --user/--group: seconds between two checks of the log files' owner
MEMORY_JITTER = 0.1  # each worker's memory limit: a random 90 % .. 100 % of --max-worker-memory
MEMORY = "memory limit"  # `_Worker.why` for a worker replaced for its memory
SIGNAL_QUEUE_MAX = 64  # signals waiting for the loop; more in one burst are dropped

_HANDLED = (
    signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGTTIN,
    signal.SIGTTOU, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD,
)  # fmt: skip
# Signals a worker must survive before its event loop handles them (while it imports the app, which
# may take long): the master's own (HUP, TTIN, TTOU reach workers when sent to the process group),
# USR1 (the master forwards it; deferred), USR2 (the stack dump, registered early in `_child`).
_BOOT_DEFERRED = (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1, signal.SIGUSR2)


# Settings a HUP reads but cannot apply: the master set them up once, at start. A new master
# (USR2, or a restart) applies them; --backlog and --reuse-port apply to addresses bound anew.
_NOT_RELOADED = (
    "user", "group", "umask", "pid", "metrics_bind", "statsd_host", "statsd_prefix", "reload",
    "reload_include", "preload", "backlog", "reuse_port",
)  # fmt: skip

# Why a worker stopped (`_Worker.why`) → the metrics' restart cause; others are not restarts.
_RESTART_CAUSES = {
    "timeout": "timeout", "request timeout": "timeout", "max requests": "max-requests",
    "replaced by a reload": "reload", MEMORY: "memory",
}  # fmt: skip


@dataclass
class Privileges:
    """Who workers run as (`--user`/`--group`), resolved in the master before any fork."""

    uid: int | None = None
    gid: int | None = None
    user: str | None = None  # its passwd name, for its supplementary groups

    def drop(self) -> None:
        """In a worker: give up root for the configured user and group. Order matters: the
        supplementary groups first (root's would otherwise stay, even for a uid with no passwd
        entry), then the group, then the user."""
        if self.uid is None and self.gid is None:
            return
        if os.geteuid() == 0:
            gid = self.gid if self.gid is not None else os.getegid()
            os.setgroups(os.getgrouplist(self.user, gid) if self.user is not None else [gid])
        if self.gid is not None:
            os.setgid(self.gid)
        if self.uid is not None:
            os.setuid(self.uid)


def resolve_privileges(user: str | None, group: str | None) -> Privileges:
    """Names or numbers → ids. Raises `FrontdeskError` (one line) for unknown ones or non-root."""
    import grp
    import pwd

    priv = Privileges()
    if user:
        try:
            entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        except KeyError:
            if not user.isdigit():
                raise FrontdeskError(f"--user {user!r}: no such user") from None
            priv.uid = int(user)
        else:
            priv.uid, priv.gid, priv.user = entry.pw_uid, entry.pw_gid, entry.pw_name
    if group:
        try:
            priv.gid = grp.getgrgid(int(group)).gr_gid if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            if not group.isdigit():
                raise FrontdeskError(f"--group {group!r}: no such group") from None
            priv.gid = int(group)
    changes = (priv.uid is not None and priv.uid != os.geteuid()) or (
        priv.gid is not None and priv.gid != os.getegid()
    )
    if changes and os.geteuid() != 0:
        raise FrontdeskError("--user/--group need frontdesk to be started as root")
    return priv


def pidfile_name(pid: str, start_cwd: str, old_master: int = 0) -> str:
    """The file a master writes for `--pid`: relative to where frontdesk started (not to --chdir),
    with `.2` for the new master of an upgrade until it takes over."""
    return os.path.join(start_cwd, pid) + (".2" if old_master else "")


def check_pidfile(name: str, old_master: int = 0) -> None:
    """Before anything is bound: refuse a pid file naming another live process (a master already
    running, as gunicorn does) or one that cannot be written. Raises `FrontdeskError`."""
    other = _pid_in(name)
    if other and other not in (os.getpid(), old_master) and _alive(other):
        raise FrontdeskError(f"--pid {name}: already running on PID {other} (or the pid file is "
                             "stale: remove it)")
    tmp = f"{name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w"):
            pass
        os.unlink(tmp)
    except OSError as exc:
        raise FrontdeskError(f"--pid {name}: cannot write the pid file: {exc.strerror or exc}") from None


def _pid_in(name: str) -> int:
    try:
        with open(name) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's
    return True


@dataclass
class _Worker:
    """The master's record of one worker process."""

    pid: int
    fd: int  # read end of its pipe; -1 once closed
    generation: int
    age: int  # spawn order, to retire the oldest first
    started: float
    last_beat: float
    ready: bool = False
    retiring: bool = False
    why: str = ""  # why it is retiring or stopping, for the logs
    kill_at: float = 0.0  # stopping: SIGKILL at this time; 0 while not stopping
    killed: bool = False
    last_words: str = ""  # BOOT_FAILED or APP_FAILED reason
    app_failed: bool = False  # it sent APP_FAILED: the app cannot be loaded
    app_traceback: str = ""  # with APP_FAILED: the app's traceback
    buffer: bytes = b""
    slot: int | None = None  # its metrics slot
    memory_share: float = 1.0  # its part of --max-worker-memory (jitter, see the module docstring)


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss(pid: int) -> int | None:
    """Resident memory of process `pid` in bytes, from /proc (Linux); None if it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            fields = f.read().split()
        return int(fields[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


def _log_file_handlers() -> list[logging.FileHandler]:
    """The file handlers of frontdesk's error and access loggers (`frontdesk.logs`)."""
    handlers = logging.getLogger(logs.ERROR_LOGGER).handlers + logging.getLogger(logs.ACCESS_LOGGER).handlers
    return [h for h in handlers if isinstance(h, logging.FileHandler)]


def _describe_status(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return f"was killed by {_signame(-code)}" if code < 0 else f"exited with status {code}"


class Arbiter:
    """Supervises workers on `listeners` (see module docstring). `run()` returns the exit status.

    `app`: the app loaded in the master (--preload), else None and each worker calls
    `load_app(config)`. `reload_config()` returns the settings re-read for HUP (raises
    `FrontdeskError`); `build_static(config)` and `configure_logging(config)` are re-run with them.
    `old_master`: the pid of the master this one replaces in a USR2 upgrade, else 0.
    `metrics`/`metrics_server`: a `frontdesk.metrics.Registry` and its `MetricsServer`, or None:
    each worker gets a slot of the registry, which the master retires when it reaps the worker.
    """

    def __init__(
        self,
        config: Any,
        listeners: list[sockets.Listener],
        *,
        load_app: Callable[[Any], Callable[..., Any]],
        app: Callable[..., Any] | None = None,
        static: Any = None,
        build_static: Callable[[Any], Any] = lambda config: None,
        reload_config: Callable[[], Any] | None = None,
        configure_logging: Callable[[Any], None] = lambda config: None,
        privileges: Privileges | None = None,
        old_master: int = 0,
        start_cwd: str | None = None,
        metrics: Any = None,
        metrics_server: Any = None,
    ) -> None:
        self.config = config
        self.listeners = listeners
        self.load_app = load_app
        self.app = app
        self.static = static
        self.build_static = build_static
        self.reload_config = reload_config
        self.configure_logging = configure_logging
        self.privileges = privileges or Privileges()
        self.old_master = old_master
        self.start_cwd = start_cwd
        self.metrics = metrics  # frontdesk.metrics.Registry, when --metrics-bind is set
        self.metrics_server = metrics_server
        self.metrics_bind = getattr(config, "metrics_bind", None)  # its address (HUP keeps it)
        self.clock: Callable[[], float] = time.monotonic  # tests give their own
        self.read_rss: Callable[[int], int | None] = _rss  # tests give their own
        self.workers: dict[int, _Worker] = {}
        self.target = config.workers
        self.generation = 0
        self.stopping = ""  # "", "graceful" or "fast"
        self.halt_reason = ""
        self.halt_is_app_error = False
        self.halt_traceback = ""
        self.ever_ready = False  # some worker of this master has sent READY
        self.boot_failures = 0
        self.spawn_failures = 0  # fork() or pipe() failed, in a row (see `_spawn`)
        self.slots_warned = False  # the metrics slots ran out once (warned then, not again)
        self.next_spawn = 0.0
        self.booted = False  # the first generation became ready
        self.reloading = False
        self.told_old_master = False
        self.reexec_pid = 0  # the new master of a USR2 upgrade, while it lives
        self.stop_notice: common.StopNotice | None = None  # shared with the workers; see run()
        self.drain_until = 0.0  # stopping with --drain-delay: TERM the workers at this time
        self.next_memory_check = 0.0
        self.next_log_owner_check = 0.0
        self.pidfile: str | None = None
        self._age = 0
        self._signals: deque[int] = deque()  # at most SIGNAL_QUEUE_MAX: see `_enqueue`
        self._wake_r = self._wake_w = -1
        self._selector: selectors.BaseSelector | None = None
        self._notify_socket: str | None = None
        self._reloader: Any = None  # frontdesk.master.reloader.Reloader, with --reload

    # -- setup and teardown -----------------------------------------------------------------------

    def run(self) -> int:
        """Supervise until stopped; returns the exit status. Raises `AppLoadError` for a crash loop
        of workers that cannot load the app (the CLI prints it as one line, status 2)."""
        self._setup()
        try:
            self._run_loop()
        finally:
            self._teardown()
        if self.halt_reason:
            if self.halt_is_app_error:
                self._report_app_error()
                raise AppLoadError(self.halt_reason)
            sys.stderr.write(f"frontdesk: error: {self.halt_reason}\n")
            return 1
        return 0

    def _report_app_error(self) -> None:
        """Before the CLI's one line: the app's traceback, once, where the user looks (stderr,
        as with --preload), and the whole story in the error log when that is a file."""
        if self.halt_traceback:
            sys.stderr.write(self.halt_traceback)
            sys.stderr.flush()
        if common.error_stream() is not sys.stderr:
            log.error("Cannot load the app: %s\n%s", self.halt_reason, self.halt_traceback.rstrip())

    def _setup(self) -> None:
        self._notify_socket = os.environ.get("NOTIFY_SOCKET") or None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self.stop_notice = common.StopNotice()
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for sig in _HANDLED:
            signal.signal(sig, self._enqueue)
        if self.config.pid:  # checked by `check_pidfile` before the sockets were bound
            self._write_pidfile(pidfile_name(self.config.pid, self._start_dir(), self.old_master))
        common.set_title(f"frontdesk: master [{self.config.app}]")
        log.info("Master %d: %d worker(s)%s", os.getpid(), self.target,
                 f", replacing master {self.old_master}" if self.old_master else "")
        if getattr(self.config, "reload", False):
            self._start_reloader()

    def _start_reloader(self) -> None:
        """--reload: watch the app's files from a thread of the master (`reloader`); a change
        queues a HUP and wakes the loop, as the signal would."""
        from frontdesk.master.reloader import Reloader

        base = os.path.join(self._start_dir(), self.config.chdir or "")
        wake_w = self._wake_w

        def on_change(path: str) -> None:
            self._signals.append(signal.SIGHUP)
            with contextlib.suppress(OSError):
                os.write(wake_w, b"\0")

        self._reloader = Reloader(base, [os.path.join(base, p) for p in self.config.pythonpath],
                                  self.config.reload_include, on_change)
        self._reloader.start()

    def _teardown(self) -> None:
        if self._reloader is not None:
            self._reloader.stop()
        sockets.close_all(self.listeners, unlink=self._owns_socket_files())
        self.listeners = []
        if self.metrics_server is not None:
            self.metrics_server.stop()
        if self.pidfile:
            self._remove_pidfile(self.pidfile)
        signal.set_wakeup_fd(-1)
        for sig in _HANDLED:
            signal.signal(sig, signal.SIG_DFL)
        if self._selector is not None:
            self._selector.close()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        log.info("Master %d: shutting down", os.getpid())

    def _enqueue(self, signum: int, frame: Any) -> None:
        # The wakeup fd already woke the loop. SIGCHLD needs no entry: the loop reaps every time
        # round. A burst past the bound drops the newest signals, never a TERM or HUP before it.
        if signum != signal.SIGCHLD and len(self._signals) < SIGNAL_QUEUE_MAX:
            self._signals.append(signum)

    # -- the loop ---------------------------------------------------------------------------------

    def _run_loop(self) -> None:
        while True:
            self._dispatch_signals()
            self._reap()
            if self.stopping and not self.workers:
                return
            now = self.clock()
            if self.drain_until and now >= self.drain_until:
                self._end_drain_delay(now)
            self._check_liveness(now)
            if now >= self.next_log_owner_check:
                self.next_log_owner_check = now + LOG_OWNER_CHECK_INTERVAL
                self._chown_logs()
            if not self.stopping:
                if self.config.max_worker_memory and now >= self.next_memory_check:
                    self.next_memory_check = now + MEMORY_CHECK_INTERVAL
                    self._check_memory()
                self._manage(now)
                self._check_upgrade()
            if self.stopping and not self.workers:
                return
            self._wait(self._next_deadline(now) - now)

    def _dispatch_signals(self) -> None:
        """Call `handle_<sig>` for each queued signal. A handler that fails (a log file that cannot
        be reopened, a pid file that cannot be renamed...) is logged; the master goes on."""
        queued: list[int] = []
        while self._signals:
            sig = self._signals.popleft()
            if sig != signal.SIGHUP or sig not in queued:
                queued.append(sig)  # HUPs sent together (an operator's, --reload's) are one
        for sig in queued:
            handler = getattr(self, "handle_" + _signame(sig)[3:].lower(), None)
            if handler is None:
                continue
            try:
                handler()
            except Exception:
                try:
                    log.exception("Error while handling signal %s; the master goes on", _signame(sig)[3:])
                except Exception:  # the error log itself fails
                    traceback.print_exc()

    def _next_deadline(self, now: float) -> float:
        deadline = now + 1.0
        timeout = self.config.timeout
        for worker in self.workers.values():
            if worker.kill_at:
                if not worker.killed:
                    deadline = min(deadline, worker.kill_at)
            else:  # a worker's silence is noticed when it passes --timeout, not up to 1 s later
                deadline = min(deadline, worker.last_beat + timeout + 0.001)
        if self.next_spawn > now:
            deadline = min(deadline, self.next_spawn)
        if self.drain_until:
            deadline = min(deadline, self.drain_until)
        return max(deadline, now + 0.01)

    def _wait(self, timeout: float) -> None:
        assert self._selector is not None
        for key, _ in self._selector.select(timeout):
            if key.data is None:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
            else:
                self._read_pipe(key.data)

    def _read_pipe(self, worker: _Worker) -> None:
        while worker.fd >= 0:
            try:
                data = os.read(worker.fd, 4096)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._close_pipe(worker)
                return
            self._on_messages(worker, worker.buffer + data)

    def _close_pipe(self, worker: _Worker) -> None:
        if worker.fd >= 0:
            assert self._selector is not None
            self._selector.unregister(worker.fd)
            os.close(worker.fd)
            worker.fd = -1

    def _on_messages(self, worker: _Worker, data: bytes) -> None:
        now = self.clock()
        i = 0
        while i < len(data):
            byte = data[i : i + 1]
            if byte in (common.BOOT_FAILED, common.APP_FAILED):
                end = data.find(b"\n", i)
                if end < 0:
                    break  # the rest of the line comes with the next read
                line = data[i + 1 : end].decode("utf-8", "replace")
                i = end + 1
                if byte == common.BOOT_FAILED:
                    worker.last_words = line
                    continue
                worker.app_failed = True
                try:
                    report = json.loads(line)
                    worker.last_words, worker.app_traceback = report["reason"], report["traceback"]
                except (ValueError, KeyError, TypeError):
                    worker.last_words = line
                continue
            i += 1
            if byte == common.BEAT:
                worker.last_beat = now
            elif byte == common.READY:
                worker.ready, worker.last_beat = True, now
                if worker.slot is not None and not worker.kill_at:
                    self.metrics.serving(worker.slot, True)
                self.boot_failures, self.ever_ready = 0, True
                log.info("Worker %d ready (%.2f s to boot)", worker.pid, now - worker.started)
            elif byte in (common.RETIRE, common.STUCK) and not worker.retiring:
                worker.retiring = True
                worker.why = "max requests" if byte == common.RETIRE else "request timeout"
                log.info("Worker %d asks to be replaced (%s)", worker.pid, worker.why)
        worker.buffer = data[i:]

    # -- reaping ----------------------------------------------------------------------------------

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is not None:
                self._worker_exited(worker, status)
            elif self.reexec_pid and pid == self.reexec_pid:
                self._reexec_exited(status)
            else:
                log.debug("Reaped process %d (not a worker): %s", pid, _describe_status(status))

    def _worker_exited(self, worker: _Worker, status: int) -> None:
        self._read_pipe(worker)  # its last words, if any
        self._close_pipe(worker)
        if self.metrics is not None:
            self._count_exit(worker)
        how = _describe_status(status)
        if not worker.ready:
            if self.halt_reason:  # the master stops because of another worker's failure
                log.debug("Worker %d %s before it was ready", worker.pid, how)
                return
            if worker.kill_at and worker.why != "timeout":  # stopped while booting: not its fault
                log.info("Worker %d %s before it was ready (%s)", worker.pid, how, worker.why or "stop")
                return
            if worker.generation != self.generation:
                # Booted for settings or code a reload (HUP) has replaced since: its failure says
                # nothing about the current generation, whose own boots decide backoff and halt.
                log.warning("Worker %d of a replaced generation %s before it was ready%s", worker.pid,
                            how, f": {worker.last_words}" if worker.last_words else "")
                return
            if worker.app_failed and not self.ever_ready and not self.stopping:
                # Nothing has ever served: the app is wrong, not the moment. Retrying only repeats
                # it (module docstring); stop at once, with the traceback once.
                self.halt_reason, self.halt_traceback = worker.last_words, worker.app_traceback
                self.halt_is_app_error = True
                self._stop(graceful=False)
                return
            self.boot_failures += 1
            reason = worker.last_words or self._boot_failure(worker, how)
            delay = min(MAX_BACKOFF, BOOT_BACKOFF * 2 ** (self.boot_failures - 1))
            if self.boot_failures == 1 and worker.app_traceback:  # the first in a row shows it
                reason += "\n" + worker.app_traceback.rstrip()
            if worker.app_failed and self._reloader is not None:
                # --reload: only an edit can fix the code; the watcher reloads (HUP) when it comes.
                delay = float("inf")
                if self.boot_failures == 1:
                    reason += "\n--reload: the old workers keep serving; waiting for the next change"
            self.next_spawn = self.clock() + delay
            log.error("Worker %d failed to boot (%d in a row): %s", worker.pid, self.boot_failures, reason)
            serving = any(w.ready for w in self.workers.values())
            if self.boot_failures >= BOOT_ATTEMPTS and not serving and not self.stopping:
                reason = worker.last_words or self._boot_failure(worker, how)
                self.halt_reason = f"{reason} (workers failed to boot {self.boot_failures} times in a row)"
                self.halt_is_app_error = worker.app_failed
                log.error("Stopping: workers cannot boot")
                self._stop(graceful=False)
            elif self.boot_failures >= BOOT_ATTEMPTS and delay < float("inf"):
                serving_count = sum(w.ready for w in self.workers.values())
                log.error("Keeping the %d worker(s) still serving; next attempt in %.1f s",
                          serving_count, delay)
                if self.boot_failures == BOOT_ATTEMPTS:
                    self._sd_notify(f"READY=1\nSTATUS=new workers fail to boot; {serving_count} old ones serve")
        elif worker.kill_at:
            level = logging.WARNING if worker.killed else logging.INFO
            log.log(level, "Worker %d %s (%s)", worker.pid, how, worker.why or "stopped")
        else:
            log.error("Worker %d %s unexpectedly%s; replacing it", worker.pid, how,
                      f": {worker.last_words}" if worker.last_words else "")

    def _boot_failure(self, worker: _Worker, how: str) -> str:
        """Why a worker that said nothing failed to boot."""
        if worker.why == "timeout":
            return (f"worker did not boot within --timeout {self.config.timeout:g} s (still loading the"
                    f" app), and {how}")
        return f"worker {how} before it was ready"

    def _count_exit(self, worker: _Worker) -> None:
        if worker.slot is not None:
            self.metrics.retire(worker.slot)
        if not worker.kill_at:
            cause = "crash"
        else:
            cause = _RESTART_CAUSES.get(worker.why, "")
        if cause and not self.stopping:
            self.metrics.worker_restart(cause)

    # -- liveness ---------------------------------------------------------------------------------

    def _check_liveness(self, now: float) -> None:
        timeout = self.config.timeout
        for worker in list(self.workers.values()):
            if worker.kill_at:
                if now >= worker.kill_at and not worker.killed:
                    log.warning("Worker %d did not exit in time (%s); sending SIGKILL",
                                worker.pid, worker.why or "stop")
                    self._kill(worker, signal.SIGKILL)
                    worker.killed = True
            elif now - worker.last_beat > timeout:
                if worker.ready:
                    log.error(
                        "Worker %d timed out: no heartbeat for %.1f s (--timeout %g) while its event"
                        " loop is blocked; its threads' stacks follow; sending TERM, then KILL in %g s",
                        worker.pid, now - worker.last_beat, timeout, KILL_GRACE,
                    )
                else:
                    log.error(
                        "Worker %d did not boot within --timeout %g s (still loading the app after"
                        " %.1f s); its threads' stacks follow; sending TERM, then KILL in %g s",
                        worker.pid, timeout, now - worker.last_beat, KILL_GRACE,
                    )
                self._kill(worker, common.STACK_DUMP_SIGNAL)
                self._terminate(worker, signal.SIGTERM, "timeout", now + KILL_GRACE)

    def _check_memory(self) -> None:
        """--max-worker-memory: mark the largest serving worker over its limit for replacement;
        one at a time (see the module docstring)."""
        if any(w.why == MEMORY for w in self.workers.values()):
            return  # the last one replaced for its memory has not exited yet
        mib = self.config.max_worker_memory
        worst: tuple[int, _Worker] | None = None
        for worker in self.workers.values():
            if not worker.ready or worker.retiring or worker.kill_at:
                continue
            rss = self.read_rss(worker.pid)
            if rss is None:
                log.warning("--max-worker-memory: cannot read the memory use of worker %d from "
                            "/proc; not checking memory any more", worker.pid)
                self.next_memory_check = float("inf")
                return
            if rss > mib * worker.memory_share * 2**20 and (worst is None or rss > worst[0]):
                worst = rss, worker
        if worst is not None:
            rss, worker = worst
            worker.retiring, worker.why = True, MEMORY
            log.warning("Worker %d uses %d MiB (resident), over its limit of %d MiB "
                        "(--max-worker-memory %d); replacing it gracefully",
                        worker.pid, rss >> 20, int(mib * worker.memory_share), mib)

    def _kill(self, worker: _Worker, sig: int) -> None:
        try:
            os.kill(worker.pid, sig)
        except ProcessLookupError:
            pass  # exited already; the reaper will see it

    def _terminate(self, worker: _Worker, sig: int, why: str, kill_at: float) -> None:
        if worker.killed:
            return
        self._kill(worker, sig)
        if worker.slot is not None and not worker.kill_at:
            self.metrics.serving(worker.slot, False)  # it drains: no longer counted as serving
        worker.why = worker.why if worker.kill_at else why
        worker.kill_at = min(worker.kill_at, kill_at) if worker.kill_at else kill_at

    # -- managing the workers ---------------------------------------------------------------------

    def _current(self) -> list[_Worker]:
        return [
            w for w in self.workers.values()
            if w.generation == self.generation and not w.retiring and not w.kill_at
        ]  # fmt: skip

    def _manage(self, now: float) -> None:
        current = self._current()
        missing = self.target - len(current)
        if missing > 0 and now >= self.next_spawn:
            for _ in range(missing):
                self._spawn()
                if self.next_spawn > now:
                    break  # a fork failed: back off
        elif missing < 0:
            graceful = self.config.graceful_timeout + KILL_GRACE
            for worker in sorted(current, key=lambda w: w.age)[:-missing]:
                log.info("Retiring worker %d (%d workers wanted)", worker.pid, self.target)
                self._terminate(worker, signal.SIGTERM, "fewer workers wanted", now + graceful)
        # Retire outgoing workers (older generation, or asked to go) one for one as replacements
        # become ready, so `target` workers serve at every moment.
        serving = [w for w in self.workers.values() if w.ready and not w.kill_at]
        excess = len(serving) - self.target
        if excess > 0:
            outgoing = [w for w in serving if w.generation != self.generation or w.retiring]
            graceful = self.config.graceful_timeout + KILL_GRACE
            for worker in sorted(outgoing, key=lambda w: w.age)[:excess]:
                why = worker.why or "replaced by a reload"
                log.info("Stopping worker %d gracefully: %s; its replacement is ready", worker.pid, why)
                self._terminate(worker, signal.SIGTERM, why, now + graceful)
        ready = sum(1 for w in self._current() if w.ready)
        if ready < self.target:
            return
        if self.reloading and any(w.generation != self.generation and not w.kill_at
                                  for w in self.workers.values()):
            return
        if not self.booted or self.reloading:
            what = "reload complete" if self.booted else "ready"
            self.booted, self.reloading = True, False
            log.info("Master %d: %s, %d worker(s) serving", os.getpid(), what, ready)
            self._sd_notify(f"READY=1\nSTATUS=serving with {ready} worker(s)")

    def _spawn(self) -> None:
        now = self.clock()
        slot = self.metrics.claim() if self.metrics is not None else None
        if self.metrics is not None and slot is None and not self.slots_warned:
            self.slots_warned = True
            log.warning("All %d metrics slots are taken: workers forked while none is free serve,"
                        " but their requests are not counted (said once; see docs/metrics.md)",
                        self.metrics.max_workers)
        fds: list[int] = []
        try:
            fds += os.pipe()
            for fd in fds:
                os.set_blocking(fd, False)
            pid = os.fork()
        except OSError as exc:
            # Out of processes or file descriptors (EAGAIN, ENOMEM, EMFILE): the master must not
            # go down for it. Not a boot failure (no worker ran): retry with the same backoff.
            for fd in fds:
                os.close(fd)
            if slot is not None:
                self.metrics.release(slot)
            self.spawn_failures += 1
            delay = min(MAX_BACKOFF, BOOT_BACKOFF * 2 ** (self.spawn_failures - 1))
            self.next_spawn = now + delay
            log.error("Cannot fork a worker (%d in a row): %s; next attempt in %.1f s",
                      self.spawn_failures, exc.strerror or exc, delay)
            return
        read_fd, write_fd = fds
        if pid == 0:
            os.close(read_fd)
            self._child(write_fd, slot)
        self.spawn_failures = 0
        self._age += 1
        os.close(write_fd)
        worker = _Worker(pid, read_fd, self.generation, self._age, now, now, slot=slot,
                         memory_share=random.uniform(1.0 - MEMORY_JITTER, 1.0))
        self.workers[pid] = worker
        assert self._selector is not None
        self._selector.register(read_fd, selectors.EVENT_READ, worker)
        log.info("Booting worker with pid: %d", pid)

    def _child(self, fd: int, slot: int | None = None) -> NoReturn:
        """The forked worker: forget the master's state, drop privileges, load, serve, exit."""
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            # Not SIG_IGN: a program the app starts while importing would inherit that across exec.
            deferred: list[int] = []
            for sig in _HANDLED:
                signal.signal(sig, (lambda signum, frame: deferred.append(signum))
                              if sig in _BOOT_DEFERRED else signal.SIG_DFL)
            for record in self.workers.values():
                if record.fd >= 0:
                    os.close(record.fd)
            if self._selector is not None:
                self._selector.close()  # closes the epoll fd only; the master's is untouched
            os.close(self._wake_r)
            os.close(self._wake_w)
            self.workers.clear()
            worker_metrics = None
            if self.metrics is not None:
                if self.metrics_server is not None:
                    self.metrics_server.close_after_fork()
                worker_metrics = self.metrics.worker(slot)
                worker_metrics.reset()
            common.register_stack_dump()
            self.privileges.drop()
            app = self.app
            if app is None:
                try:
                    app = self.load_app(self.config)
                except AppLoadError as exc:
                    self._app_failed(fd, exc)
                    status = BOOT_ERROR_STATUS
            if app is not None:
                from frontdesk.worker.process import Worker

                if signal.SIGUSR1 in deferred:  # the logs were rotated while this worker booted
                    with contextlib.suppress(OSError):
                        logs.reopen_files()
                worker = Worker(self.config, app, self.static, master_fd=fd, metrics=worker_metrics,
                                stop_notice=self.stop_notice)
                status = worker.run([listener.sock for listener in self.listeners])
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:
            log.exception("Worker %d crashed", os.getpid())
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line, whatever it says
            common.send_last(fd, common.BOOT_FAILED + reason.encode()[:400] + b"\n")
        finally:
            for handler in logging.getLogger("frontdesk.error").handlers + logging.getLogger().handlers:
                with contextlib.suppress(OSError, ValueError):
                    handler.flush()
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            os._exit(status)

    def _app_failed(self, fd: int, exc: AppLoadError) -> None:
        """Tell the master why the app cannot be loaded, with its traceback; print nothing (the
        master decides what to show: one traceback for N workers failing alike)."""
        from frontdesk.loader import app_traceback

        reason = " ".join(str(exc).split())[:1000]
        trace = app_traceback(exc)[-APP_TRACEBACK_MAX:]
        while True:  # a character may take up to 12 bytes in JSON: cut the start until it fits
            report = common.APP_FAILED + json.dumps({"reason": reason, "traceback": trace}).encode() + b"\n"
            if len(report) <= APP_REPORT_MAX or not trace:
                break
            keep = min(len(trace) - 1, len(trace) * APP_REPORT_MAX // len(report))
            trace = trace[len(trace) - keep :]
        common.send_last(fd, report)

    # -- stopping ---------------------------------------------------------------------------------

    def _stop(self, graceful: bool, drain: bool = True) -> None:
        """Begin a stop; with `drain`, a graceful one waits --drain-delay first."""
        if self.stopping == "fast" or (graceful and self.stopping):
            return
        self.stopping = "graceful" if graceful else "fast"
        self.drain_until = 0.0  # a fast stop cuts a drain delay short
        delay = getattr(self.config, "drain_delay", 0.0) if drain else 0.0
        if self.reexec_pid:
            self._sd_notify(f"MAINPID={self.reexec_pid}\nSTATUS=handing over to master {self.reexec_pid}")
            if self.metrics_server is not None:  # the new master answers scrapes from now on
                self.metrics_server.stop()
                log.info("Metrics: handed over to master %d", self.reexec_pid)
        elif graceful and delay:
            # The new master of an upgrade serves on: no delay then. Otherwise readiness fails
            # now, and the workers serve on until the balancers have noticed (module docstring).
            self._sd_notify(f"STOPPING=1\nSTATUS=draining: serving {delay:g} s more, then stopping")
            if self.stop_notice is not None:
                self.stop_notice.set()
            self.drain_until = self.clock() + delay
            log.info("Draining: readiness probes answer 503; serving %g s more (--drain-delay), "
                     "then stopping gracefully", delay)
            return
        else:
            self._sd_notify("STOPPING=1")
        self._stop_workers(graceful, self.clock())

    def _end_drain_delay(self, now: float) -> None:
        self.drain_until = 0.0
        log.info("Drain delay over: stopping the workers gracefully (--graceful-timeout %g)",
                 self.config.graceful_timeout)
        self._stop_workers(True, now)

    def _stop_workers(self, graceful: bool, now: float) -> None:
        # New connections are refused from now on (each worker closes its copy on TERM too),
        # unless the other master of an upgrade holds the sockets: then it serves them.
        sockets.close_all(self.listeners, unlink=self._owns_socket_files())
        self.listeners = []
        if graceful:
            sig, kill_at = signal.SIGTERM, now + self.config.graceful_timeout + KILL_GRACE
        else:
            sig, kill_at = signal.SIGQUIT, now + FAST_STOP_GRACE
        for worker in list(self.workers.values()):
            self._terminate(worker, sig, "shutdown", kill_at)

    def handle_term(self) -> None:
        log.info("Handling signal: TERM: graceful shutdown")
        self._stop(graceful=True)

    def handle_int(self) -> None:
        # Ctrl-C, as uvicorn: the first is a graceful stop (without --drain-delay: Ctrl-C reaches
        # the workers too, and they begin draining at once), a second one, a fast stop.
        if self.stopping:
            log.info("Handling signal: INT while stopping: fast shutdown")
            self._stop(graceful=False)
            return
        log.info("Handling signal: INT: graceful shutdown (send INT again, or Ctrl-C, to stop at once)")
        self._stop(graceful=True, drain=False)

    def handle_quit(self) -> None:
        log.info("Handling signal: QUIT: fast shutdown")
        self._stop(graceful=False)

    # -- more or fewer workers, log files ---------------------------------------------------------

    def handle_ttin(self) -> None:
        if self.stopping:
            return
        self.target += 1
        log.info("Handling signal: TTIN: %d worker(s) wanted", self.target)

    def handle_ttou(self) -> None:
        if self.stopping:
            return
        if self.target <= 1:
            log.info("Handling signal: TTOU: already at 1 worker")
            return
        self.target -= 1
        log.info("Handling signal: TTOU: %d worker(s) wanted", self.target)

    def handle_usr1(self) -> None:
        try:
            count = logs.reopen_files()
        finally:  # the workers reopen theirs even if one of the master's failed
            self._chown_logs()
            for worker in list(self.workers.values()):
                self._kill(worker, signal.SIGUSR1)
        log.info("Handling signal: USR1: reopened %d log file(s); told the workers", count)

    def _chown_logs(self) -> None:
        """--user/--group: the error and access log files belong to the workers' user, as in
        gunicorn, so a worker can reopen a file the master (root) created: at start, on USR1,
        or when the master's handler recreated a file logrotate moved away (checked once a
        second). A file that cannot be changed (/dev/null, another filesystem) is left alone."""
        uid, gid = self.privileges.uid, self.privileges.gid
        if (uid is None and gid is None) or os.geteuid() != 0:
            return
        for handler in _log_file_handlers():
            path = handler.baseFilename
            try:
                st = os.stat(path)
                if (uid is not None and st.st_uid != uid) or (gid is not None and st.st_gid != gid):
                    os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
            except OSError:
                pass

    # -- reload (HUP) -----------------------------------------------------------------------------

    def handle_hup(self) -> None:
        """Reload: everything that can fail comes first (settings, static mounts, logging, new
        sockets); only then is the new configuration committed and are removed sockets closed.
        A failure anywhere cancels the reload and leaves the old one whole."""
        if self.stopping:
            return
        log.info("Handling signal: HUP: reloading")
        self._sd_notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        logging_changed = False
        try:
            config = self.reload_config() if self.reload_config is not None else self.config
            static = self.build_static(config)
            logging_changed = True
            self.configure_logging(config)
            listeners, gone = self._rebind(config)
        except Exception as exc:
            if logging_changed:  # it may have been applied in part: back to the old logs
                try:
                    self.configure_logging(self.config)
                except Exception as again:
                    log.error("Cannot restore the previous logging: %s", again)
            detail = isinstance(exc, (FrontdeskError, ValueError, OSError))
            log.error("Reload cancelled, the current workers keep serving: %s", exc,
                      exc_info=not detail)
            self._sd_notify("READY=1\nSTATUS=reload failed; serving the previous configuration")
            return
        unapplied = [f"--{name.replace('_', '-')}" for name in _NOT_RELOADED
                     if getattr(config, name, None) != getattr(self.config, name, None)]
        if unapplied:
            log.warning("HUP does not apply the change of %s: restart, or upgrade (USR2), for that"
                        "%s", ", ".join(unapplied),
                        "; --backlog and --reuse-port apply to new addresses only"
                        if {"--backlog", "--reuse-port"} & set(unapplied) else "")
        for listener in gone:
            log.info("No longer listening at: %s", listener.spec)
        # The old workers keep their copies until they exit.
        sockets.close_all(gone, unlink=self._owns_socket_files())
        self._chown_logs()
        self.config, self.static, self.listeners = config, static, listeners
        self.target = config.workers
        if self.app is not None:
            log.warning("--preload: the app was loaded by the master, so HUP reloads settings but"
                        " not the app's code; use USR2 for that")
        self.generation += 1
        self.reloading = True
        self.boot_failures = 0
        self.next_spawn = 0.0

    def _rebind(self, config: Any) -> tuple[list[sockets.Listener], list[sockets.Listener]]:
        """The listeners for a reloaded config (same addresses kept, new ones bound), and those
        to close once it is committed. Raises `BindError`, having closed what it bound."""
        if any(ls.spec.startswith(("systemd:",)) for ls in self.listeners):
            return self.listeners, []  # systemd decides the sockets
        have = {ls.spec: ls for ls in self.listeners}
        new = []
        try:
            for spec in config.bind:
                if spec in have:
                    new.append(have[spec])
                else:
                    listener = sockets.listen(spec, backlog=config.backlog,
                                              reuse_port=config.reuse_port, umask=config.umask)
                    new.append(listener)
                    log.info("Listening at: %s (%d)", sockets.describe(listener.sock), os.getpid())
        except BaseException:
            sockets.close_all([ls for ls in new if ls.spec not in have], unlink=True)
            raise
        return new, [ls for ls in self.listeners if ls.spec not in config.bind]

    def _owns_socket_files(self) -> bool:
        """May this master remove its unix socket files when it closes them? Not while the other
        master of an upgrade lives: the new one it started (`reexec_pid`) serves on, and a new
        master whose old master still lives (its parent) may fail, and the old one serves on."""
        return not self.reexec_pid and not (self.old_master and os.getppid() == self.old_master)

    # -- upgrade (USR2) ---------------------------------------------------------------------------

    def handle_usr2(self) -> None:
        if self.stopping:
            return
        if self.reexec_pid:
            log.warning("Handling signal: USR2: an upgrade to master %d is already under way", self.reexec_pid)
            return
        if self.old_master:
            log.warning("Handling signal: USR2 ignored: this master is itself still replacing master %d",
                        self.old_master)
            return
        if os.getpid() == 1:
            log.error("Handling signal: USR2 ignored: as PID 1 the container would end with the old"
                      " master; use HUP to reload the app, or restart the container")
            return
        log.info("Handling signal: USR2: starting a new master on the same sockets")
        env = dict(os.environ)
        fds = [listener.fd for listener in self.listeners]
        metrics = None
        if self.metrics_server is not None and self.metrics_bind:
            metrics = (self.metrics_bind, self.metrics_server.fileno())
            fds.append(metrics[1])
        env[sockets.INHERIT_ENV] = sockets.inherit_env_value(os.getpid(), self.listeners, metrics)
        argv = [sys.executable, *sys.orig_argv[1:]]
        if self.pidfile:
            self._rename_pidfile(self.pidfile + ".oldbin")
        try:
            # The sockets are close-on-exec (`sockets`); pass_fds makes them inheritable in the
            # child only, for this one exec.
            proc = subprocess.Popen(argv, env=env, cwd=self.start_cwd, pass_fds=fds)
        except OSError as exc:
            log.error("Upgrade failed: cannot start %s: %s", argv[0], exc)
            self._restore_pidfile()
            return
        proc.returncode = 0  # `_reap` waits for it, with waitpid(-1); Popen must never do it too
        self.reexec_pid = proc.pid
        log.info("Upgrade: new master %d started; this master retires once it serves", proc.pid)

    def _reexec_exited(self, status: int) -> None:
        if not self.stopping:
            log.error("Upgrade failed: new master %d %s; this master (%d) goes on serving",
                      self.reexec_pid, _describe_status(status), os.getpid())
            self._restore_pidfile()
        self.reexec_pid = 0

    def _check_upgrade(self) -> None:
        """In a new master (USR2): once serving, retire the old one; then take its pid file name."""
        if not self.old_master:
            return
        if os.getppid() != self.old_master:
            log.info("Master %d: the old master %d is gone; this master takes over", os.getpid(), self.old_master)
            self.old_master = 0
            self._serve_metrics()
            if self.pidfile and self.config.pid:
                self._rename_pidfile(pidfile_name(self.config.pid, self._start_dir()))
            return
        if self.booted and not self.told_old_master:
            self.told_old_master = True
            log.info("Upgrade: workers ready; sending TERM to the old master %d", self.old_master)
            try:
                os.kill(self.old_master, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self._serve_metrics()  # the old master stops serving them on that TERM

    def _serve_metrics(self) -> None:
        """Take over the metrics socket inherited from the old master (see `server.start_metrics`)."""
        if self.metrics_server is not None and not self.metrics_server.serving:
            self.metrics_server.serve()
            log.info("Metrics at: http://%s:%d/metrics, served by this master from now on",
                     *self.metrics_server.address)

    # -- pid file, systemd --------------------------------------------------------------------------

    def _start_dir(self) -> str:
        return self.start_cwd or os.getcwd()

    def _write_pidfile(self, name: str) -> None:
        """Write our pid to `name` (atomically). A failure is logged, never fatal: the pid file
        serves the operator, the master goes on without it (`self.pidfile` is left as it was)."""
        tmp = f"{name}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w") as f:
                f.write(f"{os.getpid()}\n")
            os.replace(tmp, name)
        except OSError as exc:
            log.error("Cannot write pid file %s: %s", name, exc.strerror or exc)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return
        self.pidfile = name

    def _rename_pidfile(self, name: str) -> None:
        assert self.pidfile is not None
        try:
            os.replace(self.pidfile, name)
        except OSError as exc:
            log.error("Cannot rename pid file %s to %s: %s; writing it anew", self.pidfile, name,
                      exc.strerror or exc)
            self._write_pidfile(name)
            return
        self.pidfile = name

    def _restore_pidfile(self) -> None:
        if self.pidfile and self.config.pid:
            name = pidfile_name(self.config.pid, self._start_dir())
            if self.pidfile != name:
                self._rename_pidfile(name)

    def _remove_pidfile(self, name: str) -> None:
        try:
            with open(name) as f:
                if int(f.read().strip() or 0) != os.getpid():
                    return  # another master wrote it since
            os.unlink(name)
        except (OSError, ValueError):
            pass

    def _sd_notify(self, message: str) -> None:
        """Tell systemd (Type=notify) about readiness, reloads and stops; nothing without it."""
        address = self._notify_socket
        if not address:
            return
        if address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(address)
                sock.sendall(message.encode())
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ECONNREFUSED):
                log.warning("sd_notify to %s failed: %s", self._notify_socket, exc)
