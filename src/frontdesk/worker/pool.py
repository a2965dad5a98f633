"""Hand-offs between the event loop and the app threads, in batches.

Theory of operation
-------------------
A cross-thread wake-up (futex, or the loop's self-pipe) costs about as much as parsing, building
the environ and running a hello-world app together (DESIGN.md, "Measured facts"). So neither
direction wakes the other once per request:

* Loop → threads (`ThreadPool`): requests go into one shared deque. At most one wake-up is
  scheduled per loop iteration (`call_soon`), after everything read in that iteration is queued.
  A woken thread keeps taking requests until the deque is empty, then parks. A thread that takes
  a request while more are waiting wakes one idle thread first, so a slow request never holds
  up the requests queued behind it while a thread is free.
* Threads → loop (`Outbox`): replies go into one deque; the first reply after a flush schedules
  one `call_soon_threadsafe(flush)`, later ones ride along. The loop writes them all in one call.

`deque.append`/`popleft` are atomic under the GIL, which is what makes the lock-free paths safe;
each parked thread sleeps on its own lock, so a wake-up is one release of one lock.

For `--request-timeout`, thread i keeps `running[i] = (channel, request, started)` while it runs a
request and `None` otherwise: one tuple store per request, no lock (a list item store is atomic
under the GIL). Only the worker's once-a-second tick reads it (`frontdesk.worker.process`). A
thread given up on (its request timed out) is `replace`d: a new thread takes its slot so the
queue keeps moving, and the stuck one exits if the app ever returns.

For `--max-queue-time`, the loop takes requests that waited too long off the front of the queue
itself (`take_stale`) instead of waiting for a thread to find out: the queue is in arrival order,
and `popleft` is atomic, so each request is taken by exactly one side.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger("frontdesk.error")


class Outbox:
    """Replies from app threads to the loop, flushed in batches (see module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._replies: deque[tuple[Any, Any, int]] = deque()
        self._flush_scheduled = False

    def push(self, channel: Any, data: Any, end: int) -> None:
        """Called from app threads (and from the loop, for replies it makes itself)."""
        self._replies.append((channel, data, end))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        # Clear the flag before draining: a push racing with this drain either lands in it,
        # or sees the flag down and schedules the next flush. No reply is ever stranded.
        self._flush_scheduled = False
        replies = self._replies
        while replies:
            channel, data, end = replies.popleft()
            try:
                channel.deliver(data, end)
            except Exception:  # a bug in one connection must not strand the others' replies
                log.exception("delivering a reply failed; closing that connection")
                channel.abort()


class ThreadPool:
    """A fixed set of app threads fed from one deque (see module docstring)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        size: int,
        handle: Callable[[Any, Any], None],
        name: str = "frontdesk-app",
    ) -> None:
        self._loop = loop
        self._handle = handle
        self._pending: deque[tuple[Any, Any]] = deque()
        self._idle: list[threading.Lock] = []
        self._wake_scheduled = False
        self._stopping = False
        self._name = name
        # What each thread runs, and since when (see module docstring).
        self.running: list[tuple[Any, Any, float] | None] = [None] * size
        self._generation = [0] * size  # bumped when a slot's thread is replaced
        self.threads = [self._thread(i) for i in range(size)]
        for thread in self.threads:
            thread.start()

    def _thread(self, index: int) -> threading.Thread:
        return threading.Thread(target=self._run, args=(index, self._generation[index]),
                                name=f"{self._name}-{index}", daemon=True)

    @property
    def queued(self) -> int:
        return len(self._pending)

    @property
    def waiting(self) -> int:
        """Queued requests beyond those the idle threads take at their next wake-up."""
        return len(self._pending) - len(self._idle)

    def replace(self, index: int) -> None:
        """Loop thread: slot `index`'s thread is given up on; start another in its place."""
        self._generation[index] += 1
        self.running[index] = None
        thread = self.threads[index] = self._thread(index)
        thread.start()

    def take_stale(self, too_old: Callable[[Any, Any], bool]) -> list[tuple[Any, Any]]:
        """Loop thread: take the queued (channel, request) pairs from the front of the queue for
        which `too_old` is true, stopping at the first that is not (module docstring)."""
        pending = self._pending
        taken = []
        while True:
            try:
                entry = pending[0]
            except IndexError:
                break
            if not too_old(*entry):
                break
            try:
                popped = pending.popleft()
            except IndexError:
                break  # a thread took the last one
            if popped is not entry:  # a thread took `entry` meanwhile: this one is its to run
                pending.appendleft(popped)
                if self._idle:
                    self._release_idle()  # nobody may be awake to see it otherwise
                break
            taken.append(entry)
        return taken

    def submit(self, channel: Any, request: Any) -> None:
        """Loop thread only. Queue a request; the wake-up happens once per loop iteration."""
        self._pending.append((channel, request))
        if not self._wake_scheduled and self._idle:
            self._wake_scheduled = True
            self._loop.call_soon(self._wake_one)

    def _wake_one(self) -> None:
        self._wake_scheduled = False
        if self._pending:
            self._release_idle()

    def _release_idle(self) -> None:
        try:
            lock = self._idle.pop()
        except IndexError:
            return  # every thread is already awake
        lock.release()

    def stop(self, timeout: float = 5.0) -> None:
        """Let every thread finish its current request and exit."""
        self._stopping = True
        while self._idle:
            self._release_idle()
        for thread in self.threads:
            thread.join(timeout)

    def _run(self, index: int, generation: int) -> None:
        pending = self._pending
        idle = self._idle
        running = self.running
        generations = self._generation
        clock = time.monotonic
        parked = threading.Lock()
        parked.acquire()
        while not self._stopping:
            try:
                channel, request = pending.popleft()
            except IndexError:
                idle.append(parked)
                if pending or self._stopping:
                    # Work arrived between the pop and the park: take our lock back from the
                    # idle list, or, if a waker already took it, consume its release.
                    try:
                        idle.remove(parked)
                    except ValueError:
                        parked.acquire()
                    continue
                parked.acquire()
                continue
            if pending and idle:
                self._release_idle()
            slot = running[index] = (channel, request, clock())
            try:
                self._handle(channel, request)
            except BaseException:  # the bridge handles app errors; this is a server bug
                log.exception("app thread: unexpected error")
            if generations[index] != generation:
                return  # replaced while stuck in the app: the slot is another thread's now
            if running[index] is slot:
                running[index] = None
            # A parked thread must not pin its last connection or request body.
            channel = request = None
