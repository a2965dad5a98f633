"""Listening sockets: bind from `--bind` addresses, or inherit them. No event loop here.

Where listening sockets come from, first match wins:

1. **A previous master** (USR2 upgrade): it puts `{"master": PID, "fds": [[ADDRESS, FD], ...]}` in
   the `INHERIT_ENV` environment variable and execs the new master, which keeps each inherited
   socket whose ADDRESS is still in `--bind` and closes the others (ADDRESS is the `--bind` text,
   so `127.0.0.1:0` keeps its kernel-chosen port). Sockets the old master had from systemd are
   listed as `systemd:N` and kept. Its metrics socket, if any, is `"metrics": [ADDRESS, FD]`
   (`inherited_metrics`), kept by the new master when its `--metrics-bind` is the same text. The variable is not `FRONTDESK_`-prefixed on purpose: those
   are settings, and an unknown setting is an error.
2. **systemd socket activation**: when `LISTEN_PID` is this process and `LISTEN_FDS` is N, the
   sockets are fds 3 .. 3+N-1 and `--bind` is ignored (as in gunicorn). Both variables (and
   `LISTEN_FDNAMES`) are removed from the environment, so workers and re-execs do not see them.
3. **`--bind`**: `HOST:PORT`, `[IPv6]:PORT`, `unix:PATH` (created under `--umask`; a stale socket
   file nobody answers on is replaced, a live one is "address in use") or `fd://N` (an already
   listening socket this process inherited).
"""

from __future__ import annotations

import json
import os
import socket
import stat
from dataclasses import dataclass

from frontdesk.errors import FrontdeskError

__all__ = [
    "INHERIT_ENV",
    "BindError",
    "Listener",
    "adopt",
    "bind",
    "close_all",
    "describe",
    "inherit_env_value",
    "inherited_metrics",
    "listen",
    "open_listeners",
    "parse_address",
    "systemd_fds",
    "upgrading_from",
]

INHERIT_ENV = "_FRONTDESK_INHERIT"
STALE_PROBE_TIMEOUT = 1.0  # seconds: a unix socket file whose server does not answer is kept
_SD_LISTEN_FDS_START = 3


class BindError(FrontdeskError):
    """A listening socket could not be created (address in use, permission, bad fd)."""


@dataclass
class Listener:
    """A listening socket and where it came from: `spec` is its `--bind` text or `systemd:N`.

    For a `unix:` socket, `path` and `inode` let the last master to stop remove the socket file,
    unless someone replaced the file since.
    """

    spec: str
    sock: socket.socket
    path: str | None = None
    inode: int = 0

    @property
    def fd(self) -> int:
        return self.sock.fileno()


def parse_address(spec: str) -> tuple[int, object]:
    """`HOST:PORT`, `[V6]:PORT`, `unix:/path`, `fd://N` → (family, address); -1 for fd://."""
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
        return _from_fd(spec, int(address))  # type: ignore[call-overload]
    if family == socket.AF_INET and ":" in str(address[0]):  # type: ignore[index]
        family = socket.AF_INET6
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_UNIX:
            _remove_stale_unix_socket(str(address))
            old_umask = os.umask(umask) if umask is not None else None
            try:
                sock.bind(str(address))
            finally:
                if old_umask is not None:
                    os.umask(old_umask)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port and hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)  # type: ignore[arg-type]
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on {spec}: {_reason(exc)}") from None
    sock.setblocking(False)
    return sock


def _reason(exc: OSError) -> str:
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


def _from_fd(spec: str, fd: int) -> socket.socket:
    """Adopt an inherited listening socket (fd://N, systemd, a previous master). It came to us
    inheritable, as it had to; from now on it is close-on-exec like every socket Python creates,
    so a program the app runs (os.system, subprocess) does not hold the listening socket open
    after frontdesk stops. The USR2 upgrade passes it on explicitly (`pass_fds`)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise BindError(f"cannot use {spec}: {_reason(exc)}") from None
    try:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    except OSError:
        listening = 1  # platforms without SO_ACCEPTCONN: trust the caller
    if sock.type != socket.SOCK_STREAM or not listening:
        sock.detach()
        raise BindError(f"cannot use {spec}: fd {fd} is not a listening stream socket")
    sock.set_inheritable(False)
    sock.setblocking(False)
    return sock


def _remove_stale_unix_socket(path: str) -> None:
    """Remove a socket file left by a dead server; a live one is left for bind() to refuse."""
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return  # not a socket: bind() fails with "address in use", nothing is deleted
    except FileNotFoundError:
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(STALE_PROBE_TIMEOUT)  # a live server whose backlog is full makes it wait
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)  # nobody listens: stale
    except OSError:
        pass
    finally:
        probe.close()


def describe(sock: socket.socket) -> str:
    """A URL-ish name for logs: http://127.0.0.1:8000, http://[::1]:8000, unix:/path."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name.decode() if isinstance(name, bytes) else name}"
    if sock.family == socket.AF_INET6:
        return f"http://[{name[0]}]:{name[1]}"
    return f"http://{name[0]}:{name[1]}"


def systemd_fds(environ: dict[str, str] | os._Environ[str] | None = None) -> list[int]:
    """The fds systemd passed (LISTEN_FDS for this pid), removing its variables. [] if none."""
    env = os.environ if environ is None else environ
    fds_text, pid_text = env.get("LISTEN_FDS", ""), env.get("LISTEN_PID", "")
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        env.pop(name, None)
    if not fds_text.isdigit() or not pid_text.isdigit() or int(pid_text) != os.getpid():
        return []
    return list(range(_SD_LISTEN_FDS_START, _SD_LISTEN_FDS_START + int(fds_text)))


def inherit_env_value(master_pid: int, listeners: list[Listener],
                      metrics: tuple[str, int] | None = None) -> str:
    """The `INHERIT_ENV` value a master passes to the master it execs (USR2); `metrics`: the
    `--metrics-bind` text and fd of its metrics socket, if it has one."""
    value: dict[str, object] = {"master": master_pid, "fds": [[ls.spec, ls.fd] for ls in listeners]}
    if metrics is not None:
        value["metrics"] = list(metrics)
    return json.dumps(value)


def inherited_metrics(environ: dict[str, str] | os._Environ[str] | None = None
                      ) -> tuple[str, int] | None:
    """The metrics socket the master this one replaces passed (USR2): its `--metrics-bind` text
    and fd, read from `INHERIT_ENV` without consuming it (call it before `open_listeners`);
    None if there is none."""
    env = os.environ if environ is None else environ
    try:
        spec, fd = json.loads(env.get(INHERIT_ENV) or "{}")["metrics"]
        return str(spec), int(fd)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def adopt(spec: str, fd: int) -> socket.socket:
    """An inherited listening socket (not for `--bind`: the metrics socket), made close-on-exec.
    Raises `BindError` if `fd` is not a listening stream socket."""
    return _from_fd(spec, fd)


def upgrading_from(environ: dict[str, str] | os._Environ[str] | None = None) -> int:
    """The pid of the master this one replaces (USR2), read from `INHERIT_ENV` without consuming
    it (`open_listeners` does that); 0 if none or malformed."""
    env = os.environ if environ is None else environ
    try:
        return int(json.loads(env.get(INHERIT_ENV) or "{}").get("master", 0))
    except (ValueError, TypeError, AttributeError):
        return 0


def _read_inherited(environ: dict[str, str] | os._Environ[str]) -> tuple[int, list[tuple[str, int]]]:
    raw = environ.pop(INHERIT_ENV, "")
    if not raw:
        return 0, []
    try:
        data = json.loads(raw)
        pairs = [(str(spec), int(fd)) for spec, fd in data["fds"]]
        return int(data["master"]), pairs
    except (ValueError, KeyError, TypeError):
        raise BindError(f"cannot inherit sockets: {INHERIT_ENV} is malformed: {raw[:80]!r}") from None


def open_listeners(
    specs: tuple[str, ...],
    *,
    backlog: int = 2048,
    reuse_port: bool = False,
    umask: int | None = None,
    environ: dict[str, str] | os._Environ[str] | None = None,
) -> tuple[list[Listener], int]:
    """All listening sockets for this master, and the pid of the master it replaces (else 0).

    See the module docstring for the order. On a `BindError` every socket opened so far is
    closed (inherited ones too: the process is about to exit with the error).
    """
    env = os.environ if environ is None else environ
    old_master, inherited = _read_inherited(env)
    from_systemd = systemd_fds(env)
    opened: list[Listener] = []
    try:
        if inherited:
            by_spec = dict(inherited)
            systemd = [(s, fd) for s, fd in inherited if s.startswith("systemd:")]
            wanted = [(s, by_spec.get(s)) for s in specs] if not systemd else systemd
            for spec, fd in wanted:
                if fd is None:
                    opened.append(listen(spec, backlog=backlog, reuse_port=reuse_port, umask=umask))
                else:
                    opened.append(_adopt(spec, fd))
            kept = {ls.fd for ls in opened}
            for _, fd in inherited:
                if fd not in kept:
                    _close_fd(fd)
        elif from_systemd:
            opened = [_adopt(f"systemd:{fd}", fd) for fd in from_systemd]
        else:
            opened = [listen(spec, backlog=backlog, reuse_port=reuse_port, umask=umask) for spec in specs]
    except BindError:
        close_all(opened, unlink=False)
        raise
    return opened, old_master


def listen(spec: str, *, backlog: int = 2048, reuse_port: bool = False, umask: int | None = None
           ) -> Listener:
    """`bind` one `--bind` address, as a `Listener`."""
    sock = bind(spec, backlog=backlog, reuse_port=reuse_port, umask=umask)
    return _with_path(Listener(spec, sock))


def _adopt(spec: str, fd: int) -> Listener:
    return _with_path(Listener(spec, _from_fd(spec, fd)))


def _with_path(listener: Listener) -> Listener:
    if listener.spec.startswith("unix:"):
        path = listener.spec[len("unix:") :]
        try:
            listener.path, listener.inode = path, os.stat(path).st_ino
        except OSError:
            pass
    return listener


def _close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def close_all(listeners: list[Listener], *, unlink: bool) -> None:
    """Close the sockets; with `unlink`, remove the unix socket files this server created."""
    for listener in listeners:
        listener.sock.close()
        if unlink and listener.path:
            try:
                if os.stat(listener.path).st_ino == listener.inode:
                    os.unlink(listener.path)
            except OSError:
                pass
