"""The arbiter's decisions with fake fork, fake kill and a given clock: no processes here."""

from __future__ import annotations

import json
import signal
from types import SimpleNamespace

import pytest

from frontdesk.errors import ConfigError
from frontdesk.master import common
from frontdesk.master.arbiter import BOOT_ATTEMPTS, BOOT_ERROR_STATUS, Arbiter, _Worker


def exited(code: int) -> int:
    return code << 8  # a waitpid status


def killed(sig: int) -> int:
    return sig


class Fake(Arbiter):
    """An arbiter whose forks and kills are recorded, not done."""

    def __init__(self, workers: int = 2, **settings: object) -> None:
        config = SimpleNamespace(workers=workers, timeout=30.0, graceful_timeout=30.0, pid=None,
                                 app="app:app", bind=(), **settings)
        super().__init__(config, [], load_app=lambda config: (lambda e, s: []))
        self.sent: list[tuple[int, int]] = []
        self.next_pid = 100
        self.now = 1000.0
        self.clock = lambda: self.now

    def _spawn(self) -> None:
        self._age += 1
        self.next_pid += 1
        pid = self.next_pid
        self.workers[pid] = _Worker(pid, -1, self.generation, self._age, self.now, self.now)

    def _kill(self, worker: _Worker, sig: int) -> None:
        self.sent.append((worker.pid, sig))

    def tick(self) -> None:
        self._check_liveness(self.now)
        if not self.stopping:
            self._manage(self.now)

    def ready(self, *pids: int) -> None:
        for pid in pids:
            self._on_messages(self.workers[pid], common.READY)

    def exit(self, pid: int, status: int) -> None:
        self._worker_exited(self.workers.pop(pid), status)


def test_spawns_the_target_and_replaces_a_dead_worker_at_once():
    arbiter = Fake(workers=2)
    arbiter.tick()
    assert sorted(arbiter.workers) == [101, 102]
    arbiter.ready(101, 102)
    arbiter.exit(101, killed(signal.SIGKILL))
    arbiter.tick()
    assert sorted(arbiter.workers) == [102, 103]
    assert arbiter.boot_failures == 0


def test_messages_are_parsed_across_reads():
    arbiter = Fake()
    arbiter.tick()
    worker = arbiter.workers[101]
    arbiter.now += 5
    arbiter._on_messages(worker, common.BEAT + common.READY + common.BOOT_FAILED + b"half a ")
    assert worker.ready and worker.buffer == common.BOOT_FAILED + b"half a "
    arbiter._on_messages(worker, worker.buffer + b"line\n" + common.RETIRE)
    assert worker.last_words == "half a line" and worker.retiring and worker.buffer == b""


def test_a_retiring_worker_is_stopped_only_once_its_replacement_is_ready():
    arbiter = Fake(workers=2)
    arbiter.tick()
    arbiter.ready(101, 102)
    arbiter._on_messages(arbiter.workers[101], common.RETIRE)
    arbiter.tick()
    assert 103 in arbiter.workers and arbiter.sent == []  # forked first, nobody stopped yet
    arbiter.ready(103)
    arbiter.tick()
    assert arbiter.sent == [(101, signal.SIGTERM)]
    assert arbiter.workers[101].kill_at == arbiter.now + 30 + 2


def test_reload_retires_old_workers_one_for_one_and_notifies_when_done():
    arbiter = Fake(workers=2)
    arbiter.reload_config = lambda: arbiter.config
    arbiter.tick()
    arbiter.ready(101, 102)
    arbiter.tick()
    assert arbiter.booted
    arbiter.handle_hup()
    arbiter.tick()
    assert sorted(arbiter.workers) == [101, 102, 103, 104]
    arbiter.ready(103)
    arbiter.tick()
    assert arbiter.sent == [(101, signal.SIGTERM)]  # the oldest goes first, one for one
    assert arbiter.reloading
    arbiter.ready(104)
    arbiter.tick()
    assert arbiter.sent == [(101, signal.SIGTERM), (102, signal.SIGTERM)]
    assert not arbiter.reloading


def test_a_reload_with_bad_settings_is_cancelled():
    arbiter = Fake(workers=1)

    def bad() -> object:
        raise ConfigError("setting 'workers' is invalid")

    arbiter.reload_config = bad
    arbiter.tick()
    arbiter.ready(101)
    arbiter.handle_hup()
    assert arbiter.generation == 0
    arbiter.tick()
    assert sorted(arbiter.workers) == [101]


def test_crash_loop_with_nothing_serving_stops_with_the_workers_reason():
    arbiter = Fake(workers=1)
    for attempt in range(1, BOOT_ATTEMPTS + 1):
        arbiter.now = arbiter.next_spawn + 0.001
        arbiter.tick()
        [pid] = arbiter.workers
        arbiter._on_messages(arbiter.workers[pid], common.BOOT_FAILED + b"MemoryError: blew up\n")
        arbiter.exit(pid, exited(1))
        assert arbiter.boot_failures == attempt
    assert arbiter.stopping == "fast"
    assert arbiter.halt_reason == "MemoryError: blew up (workers failed to boot 5 times in a row)"
    assert not arbiter.halt_is_app_error


def app_failed(reason: str, traceback: str = "Traceback...\n") -> bytes:
    return common.APP_FAILED + json.dumps({"reason": reason, "traceback": traceback}).encode() + b"\n"


def test_an_app_that_cannot_be_loaded_before_anything_served_stops_at_once():
    arbiter = Fake(workers=3)
    arbiter.tick()
    first, *others = sorted(arbiter.workers)
    arbiter._on_messages(arbiter.workers[first], app_failed("module 'app' blew up", "TB\n"))
    arbiter.exit(first, exited(BOOT_ERROR_STATUS))
    assert arbiter.stopping == "fast" and arbiter.boot_failures == 0
    assert (arbiter.halt_reason, arbiter.halt_traceback) == ("module 'app' blew up", "TB\n")
    assert arbiter.halt_is_app_error
    assert sorted(arbiter.sent) == [(pid, signal.SIGQUIT) for pid in others]  # no retry


def test_an_app_that_cannot_be_reloaded_keeps_the_old_workers_and_retries():
    arbiter = Fake(workers=1)
    arbiter.reload_config = lambda: arbiter.config
    arbiter.tick()
    arbiter.ready(101)
    arbiter.handle_hup()
    arbiter.tick()
    arbiter._on_messages(arbiter.workers[102], app_failed("SyntaxError: bad"))
    arbiter.exit(102, exited(BOOT_ERROR_STATUS))
    assert not arbiter.stopping and arbiter.boot_failures == 1 and arbiter.sent == []
    arbiter.now = arbiter.next_spawn + 0.001
    arbiter.tick()
    assert sorted(arbiter.workers) == [101, 103]


def test_crash_loop_backs_off_and_keeps_old_workers_serving():
    arbiter = Fake(workers=1)
    arbiter.reload_config = lambda: arbiter.config
    arbiter.tick()
    arbiter.ready(101)
    arbiter.handle_hup()
    delays = []
    for _ in range(BOOT_ATTEMPTS + 2):
        arbiter.now = max(arbiter.now, arbiter.next_spawn) + 0.001
        arbiter.tick()
        new = [pid for pid in arbiter.workers if pid != 101]
        assert len(new) == 1
        arbiter.exit(new[0], exited(1))
        delays.append(round(arbiter.next_spawn - arbiter.now, 3))
    assert not arbiter.stopping and 101 in arbiter.workers and arbiter.sent == []
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4]


def test_a_silent_worker_gets_a_stack_dump_term_then_kill():
    arbiter = Fake(workers=1)
    arbiter.tick()
    arbiter.ready(101)
    arbiter.now += 31
    arbiter.tick()
    assert arbiter.sent == [(101, common.STACK_DUMP_SIGNAL), (101, signal.SIGTERM)]
    assert 102 in arbiter.workers  # its replacement is forked at once
    arbiter.now += 2
    arbiter.tick()
    assert arbiter.sent[-1] == (101, signal.SIGKILL)


def test_a_worker_that_does_not_boot_within_the_timeout_is_reported_as_such(caplog):
    arbiter = Fake(workers=1)
    arbiter.tick()
    arbiter.now += 31  # still importing the app
    arbiter.tick()
    assert arbiter.sent == [(101, common.STACK_DUMP_SIGNAL), (101, signal.SIGTERM)]
    assert "Worker 101 did not boot within --timeout 30 s (still loading the app after 31.0 s)" in caplog.text
    arbiter.exit(101, killed(signal.SIGTERM))
    assert ("Worker 101 failed to boot (1 in a row): worker did not boot within --timeout 30 s (still"
            " loading the app), and was killed by SIGTERM") in caplog.text


@pytest.mark.parametrize("signal_name, want", [("handle_ttin", 3), ("handle_ttou", 1)])
def test_ttin_ttou(signal_name, want):
    arbiter = Fake(workers=2)
    getattr(arbiter, signal_name)()
    assert arbiter.target == want
    arbiter = Fake(workers=1)
    arbiter.handle_ttou()
    assert arbiter.target == 1


def test_a_failing_signal_handler_is_logged_and_the_master_goes_on(caplog):
    arbiter = Fake(workers=2)

    def broken() -> None:
        raise OSError("cannot do it")

    arbiter.handle_usr1 = broken  # type: ignore[method-assign]
    arbiter._signals.extend([signal.SIGUSR1, signal.SIGTTIN])
    arbiter._dispatch_signals()
    assert "Error while handling signal USR1; the master goes on" in caplog.text
    assert arbiter.target == 3  # the signal after it was still handled


def test_ttou_retires_the_oldest_worker():
    arbiter = Fake(workers=2)
    arbiter.tick()
    arbiter.ready(101, 102)
    arbiter.handle_ttou()
    arbiter.tick()
    assert arbiter.sent == [(101, signal.SIGTERM)]


def test_graceful_stop_terms_everyone_with_a_deadline():
    arbiter = Fake(workers=2)
    arbiter.tick()
    arbiter.ready(101)
    arbiter.handle_term()
    assert sorted(arbiter.sent) == [(101, signal.SIGTERM), (102, signal.SIGTERM)]
    arbiter.handle_int()  # a fast stop may follow a graceful one
    assert arbiter.sent[-2:] == [(101, signal.SIGQUIT), (102, signal.SIGQUIT)]
    assert arbiter.workers[101].kill_at == arbiter.now + 2


def test_int_stops_gracefully_and_a_second_int_fast():
    arbiter = Fake(workers=2, drain_delay=5.0)
    arbiter.tick()
    arbiter.ready(101, 102)
    arbiter.handle_int()
    assert arbiter.stopping == "graceful" and not arbiter.drain_until  # no drain delay for Ctrl-C
    assert sorted(arbiter.sent) == [(101, signal.SIGTERM), (102, signal.SIGTERM)]
    arbiter.handle_int()
    assert arbiter.stopping == "fast"
    assert arbiter.sent[-2:] == [(101, signal.SIGQUIT), (102, signal.SIGQUIT)]


def fake_with_metrics(workers: int) -> Fake:
    """A Fake arbiter whose workers each claim a metrics slot when forked, as _spawn does."""
    from frontdesk.metrics import Registry

    arbiter = Fake(workers=workers)
    arbiter.metrics = Registry(4)
    spawn = Fake._spawn

    def spawn_with_slot(self: Fake) -> None:
        spawn(self)
        self.workers[self.next_pid].slot = self.metrics.claim()

    arbiter._spawn = spawn_with_slot.__get__(arbiter)  # type: ignore[method-assign]
    return arbiter


def test_metrics_slots_are_claimed_per_worker_and_retired_with_the_cause():
    arbiter = fake_with_metrics(workers=2)
    arbiter.tick()
    assert [w.slot for w in arbiter.workers.values()] == [0, 1]
    arbiter.ready(101, 102)
    arbiter.exit(101, killed(signal.SIGKILL))  # a crash
    arbiter._on_messages(arbiter.workers[102], common.RETIRE)
    arbiter.tick()
    arbiter.ready(103, 104)
    arbiter.tick()
    arbiter.exit(102, exited(0))  # recycled after max requests
    text = arbiter.metrics.render()
    assert 'frontdesk_worker_restarts_total{cause="crash"} 1' in text
    assert 'frontdesk_worker_restarts_total{cause="max-requests"} 1' in text
    assert sorted(arbiter.metrics._free) == [1, 3]  # 103 took 0, 104 took 2; 102 gave 1 back


def test_a_failed_fork_is_retried_with_backoff_and_leaks_nothing(monkeypatch, caplog):
    import os
    import selectors

    from frontdesk.metrics import Registry

    arbiter = Fake(workers=2)
    arbiter._spawn = Arbiter._spawn.__get__(arbiter)  # type: ignore[method-assign]  # the real one
    arbiter._selector = selectors.DefaultSelector()
    arbiter.metrics = Registry(4)
    fds_before = len(os.listdir("/proc/self/fd"))

    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    try:
        arbiter.tick()  # two workers missing: one attempt, then the backoff
        arbiter.tick()
        assert arbiter.workers == {} and not arbiter.stopping
        assert arbiter.next_spawn == arbiter.now + 0.1 and arbiter.boot_failures == 0
        arbiter.now = arbiter.next_spawn
        arbiter.tick()
        assert arbiter.next_spawn == arbiter.now + 0.2  # the usual backoff, not a boot failure
        assert len(os.listdir("/proc/self/fd")) == fds_before  # both pipe ends closed
        assert sorted(arbiter.metrics._free) == [0, 1, 2, 3]  # the slot was given back
        assert "Cannot fork a worker (2 in a row): Resource temporarily unavailable" in caplog.text
        for _ in range(BOOT_ATTEMPTS + 1):  # never a reason to stop the master
            arbiter.now = arbiter.next_spawn
            arbiter.tick()
        assert not arbiter.stopping and not arbiter.halt_reason
        pids = iter([501, 502])
        monkeypatch.setattr(os, "fork", lambda: next(pids))  # forks again: as the parent sees it
        arbiter.now = arbiter.next_spawn
        arbiter.tick()
        assert sorted(arbiter.workers) == [501, 502] and arbiter.spawn_failures == 0
        assert [w.slot for w in arbiter.workers.values()] == [0, 1]
    finally:
        for worker in arbiter.workers.values():
            os.close(worker.fd)
        arbiter._selector.close()


@pytest.mark.parametrize("reload_watcher", [False, True])
def test_boot_failures_of_a_replaced_generation_do_not_hold_back_the_new_one(reload_watcher, caplog):
    arbiter = Fake(workers=1)
    arbiter.reload_config = lambda: arbiter.config
    if reload_watcher:
        arbiter._reloader = object()  # --reload: an app failure would wait for the next edit
    arbiter.tick()
    arbiter.ready(101)
    arbiter.handle_hup()  # generation 1: 102 boots, and fails to load the app
    arbiter.tick()
    arbiter.handle_hup()  # the fix, reloaded while 102 still boots: generation 2 is 103
    arbiter.tick()
    assert sorted(arbiter.workers) == [101, 102, 103]
    arbiter._on_messages(arbiter.workers[102], app_failed("SyntaxError: bad"))
    arbiter.exit(102, exited(BOOT_ERROR_STATUS))
    assert arbiter.boot_failures == 0 and arbiter.next_spawn == 0.0
    assert "Worker 102 of a replaced generation exited with status 3 before it was ready" in caplog.text
    arbiter.exit(103, killed(signal.SIGKILL))  # the current generation's own failure: retried
    assert arbiter.boot_failures == 1
    arbiter.now = arbiter.next_spawn
    arbiter.tick()
    assert sorted(arbiter.workers) == [101, 104]


def test_a_reload_that_fails_late_is_cancelled_whole_and_systemd_hears_ready(caplog):
    from frontdesk import sockets

    arbiter = Fake(workers=1, backlog=16, reuse_port=False, umask=None)
    kept = sockets.listen("127.0.0.1:0")
    arbiter.listeners = [kept]
    arbiter.config.bind = ("127.0.0.1:0",)
    new_config = Fake(workers=3, backlog=16, reuse_port=False, umask=None).config
    new_config.bind = ("127.0.0.1:0", "127.0.0.1:1")  # the second would need root: never tried
    arbiter.reload_config = lambda: new_config
    logging_set_up: list[object] = []
    notified: list[str] = []
    arbiter._sd_notify = notified.append  # type: ignore[method-assign]

    def configure_logging(config: object) -> None:
        logging_set_up.append(config)
        if config is new_config:
            raise RuntimeError("a handler blew up half-way")

    arbiter.configure_logging = configure_logging  # type: ignore[method-assign]
    try:
        arbiter.tick()
        arbiter.ready(101)
        arbiter.handle_hup()
        assert arbiter.generation == 0 and arbiter.target == 1 and arbiter.listeners == [kept]
        assert kept.sock.fileno() >= 0  # still open
        assert logging_set_up == [new_config, arbiter.config]  # the old logging is restored
        assert notified[-1].startswith("READY=1\n")
        assert "Reload cancelled, the current workers keep serving: a handler blew up" in caplog.text
        assert "Listening at" not in caplog.text
    finally:
        sockets.close_all([kept], unlink=False)


def test_a_reload_names_the_changed_settings_it_cannot_apply(caplog):
    arbiter = Fake(workers=1, umask=0o22, user=None, metrics_bind="127.0.0.1:9100", backlog=2048)
    new_config = Fake(workers=2, umask=0o77, user=None, metrics_bind="127.0.0.1:9200",
                      backlog=64).config
    arbiter.reload_config = lambda: new_config
    arbiter.tick()
    arbiter.ready(101)
    arbiter.handle_hup()
    assert arbiter.generation == 1 and arbiter.target == 2  # the rest is applied
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["HUP does not apply the change of --umask, --metrics-bind, --backlog: "
                        "restart, or upgrade (USR2), for that; --backlog and --reuse-port apply"
                        " to new addresses only"]
    caplog.clear()
    arbiter.handle_hup()  # nothing changed since
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_running_out_of_metrics_slots_is_said_once(monkeypatch, caplog):
    import os
    import selectors

    from frontdesk.metrics import Registry

    arbiter = Fake(workers=3)
    arbiter._spawn = Arbiter._spawn.__get__(arbiter)  # type: ignore[method-assign]  # the real one
    arbiter._selector = selectors.DefaultSelector()
    arbiter.metrics = Registry(1)
    pids = iter(range(501, 510))
    monkeypatch.setattr(os, "fork", lambda: next(pids))  # as the parent sees a fork
    try:
        arbiter.tick()
        arbiter.handle_ttin()
        arbiter.tick()
        assert [w.slot for w in arbiter.workers.values()] == [0, None, None, None]
        assert caplog.text.count("All 1 metrics slots are taken") == 1
    finally:
        for worker in arbiter.workers.values():
            os.close(worker.fd)
        arbiter._selector.close()


def test_the_workers_gauge_counts_ready_workers_until_they_are_told_to_stop():
    arbiter = fake_with_metrics(workers=2)

    def workers() -> float:
        return arbiter.metrics.totals()["workers"]

    arbiter.tick()
    assert workers() == 0  # booting
    arbiter.ready(101)
    assert workers() == 1
    arbiter.ready(102)
    arbiter.handle_ttou()
    arbiter.tick()
    assert arbiter.sent == [(101, signal.SIGTERM)] and workers() == 1  # 101 drains
    arbiter.exit(101, exited(0))
    assert workers() == 1
    arbiter.handle_term()
    assert workers() == 0


def test_a_long_app_failure_report_reaches_the_master_whole(monkeypatch):
    import os

    from frontdesk import loader
    from frontdesk.errors import AppLoadError

    frame = "  " + "\u2603" * 60 + "\n"  # 6 bytes each in JSON: 16,000 characters are 90 KiB
    trace = "Traceback (most recent call last):\n" + frame * 1000 + "ValueError: the end\n"
    monkeypatch.setattr(loader, "app_traceback", lambda exc: trace)
    read_fd, write_fd = os.pipe()
    for fd in (read_fd, write_fd):
        os.set_blocking(fd, False)  # as `_spawn` makes them
    arbiter = Fake(workers=1)
    try:
        arbiter._app_failed(write_fd, AppLoadError("module 'app' blew\nup"))
        data = os.read(read_fd, 1 << 20)
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert data.endswith(b"\n") and 28 * 1024 < len(data) <= 32 * 1024  # cut, not more than needed
    arbiter.tick()
    worker = arbiter.workers[101]
    arbiter._on_messages(worker, data)
    assert worker.app_failed and worker.last_words == "module 'app' blew up"
    assert worker.app_traceback.endswith(frame + "ValueError: the end\n")
    assert len(worker.app_traceback) > 1000


def test_a_burst_of_signals_keeps_the_first_and_sigchld_is_not_queued():
    arbiter = Fake(workers=1)
    arbiter._enqueue(signal.SIGCHLD, None)
    assert not arbiter._signals
    arbiter._enqueue(signal.SIGTERM, None)
    for _ in range(200):
        arbiter._enqueue(signal.SIGTTIN, None)
    assert arbiter._signals[0] == signal.SIGTERM and len(arbiter._signals) == 64
