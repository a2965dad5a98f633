"""Listening sockets: bind from `--bind` addresses. No event loop here."""

from __future__ import annotations

import os
import socket
import stat

from frontdesk.errors import FrontdeskError


class BindError(FrontdeskError):
    """A listening socket could not be created (address in use, permission, bad fd)."""


def parse_address(spec: str) -> tuple[int, object]:
    """`HOST:PORT`, `[V6]:PORT`, `unix:/path`, `fd://N` → (family, address)."""
    if spec.startswith("unix:"):
        return socket.AF_UNIX, spec[5:]
    if spec.startswith("fd://"):
        return -1, int(spec[5:])
    if spec.startswith("["):
        host, sep, port = spec[1:].partition("]:")
        if not sep:
            raise ValueError(f"bad address {spec!r}: expected [IPv6]:PORT")
        return socket.AF_INET6, (host, int(port))
    host, sep, port = spec.rpartition(":")
    if not sep:
        host, port = spec, "8000"
    return socket.AF_INET, (host or "0.0.0.0", int(port))


def bind(spec: str, *, backlog: int = 2048, reuse_port: bool = False, umask: int | None = None
         ) -> socket.socket:
    """Create, bind and listen on one socket. Raises `BindError` with a one-line reason."""
    try:
        family, address = parse_address(spec)
    except ValueError as exc:
        raise BindError(f"cannot listen on {spec!r}: {exc}") from None
    if family == -1:
        try:
            sock = socket.socket(fileno=int(address))  # type: ignore[arg-type]
        except OSError as exc:
            raise BindError(f"cannot use {spec}: {exc.strerror}") from None
        sock.setblocking(False)
        return sock
    if family == socket.AF_INET and ":" in str(address[0]):  # type: ignore[index]
        family = socket.AF_INET6
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_UNIX:
            _remove_stale_unix_socket(str(address))
            old_umask = os.umask(umask) if umask is not None else None
            try:
                sock.bind(address)
            finally:
                if old_umask is not None:
                    os.umask(old_umask)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port and hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on {spec}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def _remove_stale_unix_socket(path: str) -> None:
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


def describe(sock: socket.socket) -> str:
    """A URL-ish name for logs: http://127.0.0.1:8000, http://[::1]:8000, unix:/path."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name}"
    if sock.family == socket.AF_INET6:
        return f"http://[{name[0]}]:{name[1]}"
    return f"http://{name[0]}:{name[1]}"
