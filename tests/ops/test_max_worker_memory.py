"""--max-worker-memory: a worker over its RSS limit is replaced gracefully, replacement first,
one worker at a time."""

from __future__ import annotations

import re
import signal
from types import SimpleNamespace

import httpx

from frontdesk.master import common
from frontdesk.master.arbiter import MEMORY, MEMORY_JITTER, Arbiter, _rss, _Worker
from tests.ops.conftest import (
    APP,
    Load,
    alive,
    children,
    metric,
    metrics_text,
    serving,
    wait_for,
)

MiB = 1 << 20


class FakeArbiter(Arbiter):
    """Forks and kills recorded, RSS given by the test (`rss[pid]`), time given."""

    def __init__(self, workers: int, limit: int) -> None:
        config = SimpleNamespace(workers=workers, timeout=30.0, graceful_timeout=30.0, pid=None,
                                 app="app:app", bind=(), max_worker_memory=limit, drain_delay=0.0)
        super().__init__(config, [], load_app=lambda config: (lambda e, s: []))
        self.sent: list[tuple[int, int]] = []
        self.rss: dict[int, int] = {}
        self.read_rss = lambda pid: self.rss.get(pid, 10 * MiB)
        self.next_pid = 100

    def _spawn(self) -> None:
        self._age += 1
        self.next_pid += 1
        self.workers[self.next_pid] = _Worker(self.next_pid, -1, self.generation, self._age, 0.0,
                                              0.0)

    def _kill(self, worker: _Worker, sig: int) -> None:
        self.sent.append((worker.pid, sig))

    def step(self) -> None:
        self._check_memory()
        self._manage(0.0)

    def ready(self, *pids: int) -> None:
        for pid in pids:
            self._on_messages(self.workers[pid], common.READY)


def test_the_largest_worker_over_the_limit_goes_first_and_one_at_a_time():
    arbiter = FakeArbiter(workers=3, limit=100)
    arbiter.step()
    arbiter.ready(101, 102, 103)
    arbiter.rss.update({101: 150 * MiB, 102: 300 * MiB, 103: 50 * MiB})
    arbiter.step()
    assert arbiter.workers[102].retiring and arbiter.workers[102].why == MEMORY
    assert not arbiter.workers[101].retiring  # it waits its turn
    assert 104 in arbiter.workers and arbiter.sent == []  # the replacement first
    arbiter.ready(104)
    arbiter.step()
    assert arbiter.sent == [(102, signal.SIGTERM)]  # then the old one drains
    assert not arbiter.workers[101].retiring  # 102 still holds its memory while it drains
    del arbiter.workers[102]  # reaped
    arbiter.step()
    assert arbiter.workers[101].retiring


def test_each_worker_is_held_to_its_own_share_of_the_limit():
    arbiter = FakeArbiter(workers=2, limit=100)
    arbiter.step()
    arbiter.ready(101, 102)
    arbiter.workers[101].memory_share = 1.0 - MEMORY_JITTER
    arbiter.rss.update({101: 95 * MiB, 102: 95 * MiB})  # under the setting, over 101's share
    arbiter.step()
    assert arbiter.workers[101].retiring and not arbiter.workers[102].retiring


def test_rss_is_read_from_proc():
    import os

    assert 1 * MiB < (_rss(os.getpid()) or 0) < 64 * 1024 * MiB
    assert _rss(2**22 + 12345) is None


def test_a_worker_over_its_memory_limit_is_replaced_with_no_failed_request(servers):
    server = servers(APP, "--workers", "1", "--threads", "4", "--max-worker-memory", "80",
                     "--metrics-bind", "127.0.0.1:0")
    [old] = serving(server, 1)
    load = Load(server, "/hello", threads=2)
    load.wait_ok(20)
    grown = [httpx.get(server.url + "/grow?60", timeout=10) for _ in range(2)]  # ~23 + 120 MiB
    assert all(r.status_code == 200 for r in grown) and grown[0].text.split()[1] == str(old)
    wait_for(lambda: f"Worker {old} uses" in server.log, 5, "the master to notice")
    wait_for(lambda: not alive(old), 10, "the old worker to exit")
    load.wait_ok(20)
    counts = load.stop()
    assert counts["failed"] == 0 and counts["refused"] == 0, load.errors
    [new] = children(server.proc.pid)
    assert new != old and httpx.get(server.url + "/hello").text.split()[1] == str(new)
    log = server.log
    assert re.search(rf"Worker {old} uses \d+ MiB \(resident\), over its limit of \d+ MiB "
                     r"\(--max-worker-memory 80\); replacing it gracefully", log)
    assert log.index(f"Booting worker with pid: {new}") < log.index(
        f"Stopping worker {old} gracefully: memory limit; its replacement is ready")
    text = metrics_text(server)
    assert metric(text, 'frontdesk_worker_restarts_total{cause="memory"}') == 1
