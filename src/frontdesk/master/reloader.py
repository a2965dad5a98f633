"""--reload (development): the master watches the app's source files; a change reloads as HUP does.

Theory of operation
-------------------
One thread in the master watches, recursively, the app's directory (`--chdir`, else the directory
frontdesk started in) and every `--pythonpath` directory for `*.py` files, plus the files matching
a `--reload-include` glob (a relative glob is relative to the app's directory; the directory a
glob starts in is watched too). Left out: the Python installation and the virtualenv, and any
directory named like `.git`, `.venv`, `__pycache__`, `node_modules` or `site-packages` below a
watched one (a `pip install` or a test run is not an edit).

With `watchfiles` installed (the `reload` extra), the thread blocks in `watchfiles.watch` (inotify,
FSEvents, ...) and a change is seen some 50 ms after the editor wrote it. Without it, the thread
compares the files' modification times once a second (and says so once, at start).

On a change the thread logs the file and calls `on_change`: the arbiter queues a HUP as if the
signal had come, so new workers import the code afresh and the old ones retire once the new ones
are ready. Code that does not load (a syntax error) leaves the old workers serving; the arbiter
then waits for the next change (the fix) instead of retrying, and reloads at once when it comes.
The watch lives in the master, not in each worker: one watch for any number of workers, and it
keeps watching while no new worker can boot.
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["Reloader"]

log = logging.getLogger("frontdesk.error")

POLL_INTERVAL = 1.0  # seconds between two scans, without watchfiles
_IGNORED_DIRS = frozenset({
    "__pycache__", "node_modules", "site-packages", ".git", ".hg", ".svn", ".tox", ".nox",
    ".venv", "venv", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis", ".idea",
})  # fmt: skip


class Reloader:
    """Watches `directories` for `*.py` and the `include` globs (relative to `base`); calls
    `on_change(path)` from its thread after each change. `start()` and `stop()` in the master."""

    def __init__(self, base: str, directories: Iterable[str], include: Iterable[str],
                 on_change: Callable[[str], None]) -> None:
        self.roots = tuple(dict.fromkeys(os.path.realpath(d) for d in (base, *directories)))
        # Normalised: watchfiles reports normalised paths, so `../templates/*.html` must be too.
        self.globs = tuple(os.path.normpath(os.path.join(os.path.realpath(base), pattern))
                           for pattern in include)
        self.on_change = on_change
        prefixes = {os.path.realpath(p) + os.sep for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
        # ... unless the app itself lives there (an app in /usr/local/app, Python in /usr/local).
        self._skip = tuple(p for p in prefixes if not any((r + os.sep).startswith(p) for r in self.roots))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            import watchfiles
        except ImportError:
            log.warning("--reload: watchfiles is not installed (pip install 'frontdesk[reload]'); "
                        "checking the files' modification times once a second instead")
            target: Callable[[], None] = self._poll
        else:
            target = lambda: self._watch(watchfiles)  # noqa: E731
        self._thread = threading.Thread(target=target, name="frontdesk-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)

    # -- what is watched ----------------------------------------------------------------------------

    def watched_paths(self) -> list[str]:
        """The directories to watch: the roots and where each glob starts, those that exist."""
        paths = list(self.roots)
        for pattern in self.globs:
            parts = pattern.split(os.sep)
            fixed = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts) - 1)
            paths.append(os.sep.join(parts[:fixed]) or os.sep)
        existing = [p for p in dict.fromkeys(paths) if os.path.isdir(p)]
        # A directory inside another watched one is watched already (recursively).
        return [p for p in existing if not any(p.startswith(q + os.sep) for q in existing if q != p)]

    def wanted(self, path: str) -> bool:
        """Does a change of `path` reload? An include glob always wins; then `*.py` files below a
        root, outside the Python installation and the ignored directories."""
        if any(fnmatch.fnmatch(path, pattern) for pattern in self.globs):
            return True
        if not path.endswith(".py") or os.path.realpath(path).startswith(self._skip):
            return False
        for root in self.roots:
            if path.startswith(root + os.sep):
                directories = path[len(root) + 1 :].split(os.sep)[:-1]
                return not any(d in _IGNORED_DIRS for d in directories)
        return False

    # -- watching -----------------------------------------------------------------------------------

    def _changed(self, paths: Iterable[str]) -> None:
        path = min(paths)
        log.info("%s changed; reloading (--reload)", path)
        self.on_change(path)

    def _watch(self, watchfiles: Any) -> None:
        try:
            for changes in watchfiles.watch(
                *self.watched_paths(), watch_filter=lambda change, path: self.wanted(path),
                stop_event=self._stop, step=50, raise_interrupt=False,
            ):
                self._changed(path for _, path in changes)
        except Exception as exc:  # an inotify limit, a root removed: go on, the slow way
            if not self._stop.is_set():
                log.warning("--reload: watchfiles failed (%s); checking modification times once a"
                            " second instead", exc)
                self._poll()

    def _poll(self) -> None:
        mtimes = self._scan()
        while not self._stop.wait(POLL_INTERVAL):
            now = self._scan()
            changed = [p for p in now.keys() | mtimes.keys() if now.get(p) != mtimes.get(p)]
            mtimes = now
            if changed:
                self._changed(changed)

    def _scan(self) -> dict[str, int]:
        mtimes = {}
        files: list[str] = []
        for root in self.roots:
            for directory, subdirs, names in os.walk(root):
                subdirs[:] = [d for d in subdirs if d not in _IGNORED_DIRS]
                files.extend(os.path.join(directory, name) for name in names if name.endswith(".py"))
        for pattern in self.globs:
            files.extend(glob.glob(pattern, recursive=True))
        for path in files:
            if self.wanted(path):
                try:
                    mtimes[path] = os.stat(path).st_mtime_ns
                except OSError:
                    pass
        return mtimes
