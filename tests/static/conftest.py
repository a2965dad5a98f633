"""Fixtures: a static tree in a temp directory, and StaticFiles over it with a frozen clock."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from frontdesk.static import StaticFiles, StaticResponse, parse_mount

Headers = list[tuple[bytes, bytes]]


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def write(root: Path, rel: str, data: bytes | str, *, mtime: float | None = None) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def hdr(resp: StaticResponse, name: bytes) -> bytes | None:
    """The single value of header `name` (exact case), None when absent; fails on duplicates."""
    values = [v for n, v in resp.headers if n.lower() == name.lower()]
    assert len(values) <= 1, (name, resp.headers)
    return values[0] if values else None


def body(resp: StaticResponse) -> bytes:
    """The body as bytes, reading FileRegion parts with pread (as the fallback sender does)."""
    out = b""
    for part in resp.body:
        if isinstance(part, bytes):
            out += part
        else:
            out += os.pread(part.file.fileno(), part.count, part.offset)
    return out


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "public"
    r.mkdir()
    return r


@pytest.fixture
def make(root: Path, clock: Clock) -> Callable[..., StaticFiles]:
    def _make(*specs: str, **kwargs: object) -> StaticFiles:
        mounts = [parse_mount(s) for s in (specs or (f"/static={root}",))]
        kwargs.setdefault("clock", clock)
        return StaticFiles(mounts, **kwargs)  # type: ignore[arg-type]

    return _make


@pytest.fixture
def get(make: Callable[..., StaticFiles]) -> Callable[..., StaticResponse | None]:
    """get(path, headers=(), method="GET") on a StaticFiles built on first use."""
    holder: list[StaticFiles] = []

    def _get(
        path: bytes | str, headers: Headers | tuple[()] = (), method: str = "GET"
    ) -> StaticResponse | None:
        if not holder:
            holder.append(make())
        if isinstance(path, str):
            path = path.encode()
        return holder[0].respond(method, path, list(headers))

    return _get
