"""--reload's watcher (`frontdesk.master.reloader`) on its own: what is watched, and that a change
is reported, with watchfiles and with the mtime fallback. The master's use of it is in
test_processes.py."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from frontdesk.master import reloader
from frontdesk.master.reloader import Reloader
from tests.master.conftest import wait_for


def make(base: Path, include: tuple[str, ...] = (), directories: tuple[str, ...] = ()) -> Reloader:
    return Reloader(str(base), [str(base / d) for d in directories], include, lambda path: None)


def test_python_files_below_the_app_directory_are_watched_caches_and_envs_are_not(tmp_path):
    watcher = make(tmp_path)
    root = os.path.realpath(tmp_path)
    assert watcher.wanted(f"{root}/app.py")
    assert watcher.wanted(f"{root}/pkg/views.py")
    assert not watcher.wanted(f"{root}/app.pyc")
    assert not watcher.wanted(f"{root}/README.md")
    for ignored in ("__pycache__", ".git", ".venv", "venv", "node_modules", "site-packages"):
        assert not watcher.wanted(f"{root}/{ignored}/x.py"), ignored
    assert not watcher.wanted("/elsewhere/x.py")
    assert not watcher.wanted(os.path.join(os.path.realpath(sys.prefix), "lib", "x.py"))


def test_include_globs_are_relative_to_the_app_directory_and_their_directories_watched(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "lib").mkdir()
    outside = tmp_path.parent / f"{tmp_path.name}-conf"
    outside.mkdir()
    watcher = make(tmp_path / "lib", include=("../templates/*.html", f"{outside}/*.toml"), directories=("..",))
    root = os.path.realpath(tmp_path)
    assert watcher.wanted(f"{root}/templates/index.html")  # as watchfiles reports it
    assert watcher.wanted(f"{outside}/app.toml")
    assert not watcher.wanted(f"{outside}/app.py")  # not below a root, no glob
    paths = watcher.watched_paths()
    assert root in paths and str(outside) in paths
    assert f"{root}/lib" not in paths  # inside a watched directory already
    outside.rmdir()


def _reported(watcher: Reloader, tmp_path: Path, start: Callable[[], None]) -> None:
    (tmp_path / "app.py").write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("a\n")
    seen: list[str] = []
    watcher.on_change = seen.append
    start()
    try:
        (tmp_path / "notes.txt").write_text("not watched\n")
        edits = iter(range(2, 100))

        def edited() -> bool:  # edit until seen: the watch may take a moment to be in place
            (tmp_path / "app.py").write_text(f"x = {next(edits)}\n")
            return bool(seen)

        wait_for(edited, 5, "the change to be reported", interval=0.2)
        assert all(path.endswith("app.py") for path in seen)
    finally:
        watcher.stop()


def test_a_change_is_reported_with_watchfiles(tmp_path):
    pytest.importorskip("watchfiles")
    watcher = make(tmp_path)
    _reported(watcher, tmp_path, watcher.start)


def test_a_change_is_reported_by_the_fallback_polling(tmp_path, monkeypatch):
    monkeypatch.setattr(reloader, "POLL_INTERVAL", 0.05)
    watcher = make(tmp_path)

    def start() -> None:
        watcher._thread = threading.Thread(target=watcher._poll, daemon=True)
        watcher._thread.start()

    _reported(watcher, tmp_path, start)


def test_an_include_glob_going_up_is_reported_by_watchfiles(tmp_path):
    pytest.importorskip("watchfiles")
    (tmp_path / "lib").mkdir()
    (tmp_path / "templates").mkdir()
    page = tmp_path / "templates" / "index.html"
    page.write_text("<p>1</p>\n")
    seen: list[str] = []
    watcher = Reloader(str(tmp_path / "lib"), [], ("../templates/*.html",), seen.append)
    watcher.start()
    try:
        edits = iter(range(2, 100))

        def edited() -> bool:
            page.write_text(f"<p>{next(edits)}</p>\n")
            return bool(seen)

        wait_for(edited, 5, "the template's change to be reported", interval=0.2)
        assert seen[0] == os.path.join(os.path.realpath(tmp_path), "templates", "index.html")
    finally:
        watcher.stop()
