"""Listening sockets: unix sockets and --umask, fd://N, systemd socket activation and sd_notify,
inheritance across an upgrade. Unit tests on `frontdesk.sockets`, then real processes."""

from __future__ import annotations

import json
import re
import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from frontdesk import sockets
from tests.master.conftest import ENV, ROOT, alive, children, request, wait_for


def listening_tcp() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


# -- frontdesk.sockets ----------------------------------------------------------------------------


def test_a_live_unix_socket_with_a_full_backlog_is_not_waited_for(tmp_path):
    import threading

    path = tmp_path / "busy.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(0)
    clients = []
    try:
        while True:  # fill its backlog: a blocking connect() now waits for an accept()
            client = socket.socket(socket.AF_UNIX)
            client.setblocking(False)
            clients.append(client)
            try:
                client.connect(str(path))
            except BlockingIOError:
                break
        outcome: list[BaseException] = []

        def bind() -> None:
            try:
                sockets.bind(f"unix:{path}")
            except BaseException as exc:  # noqa: BLE001 - checked below
                outcome.append(exc)

        thread = threading.Thread(target=bind, daemon=True)
        thread.start()
        thread.join(5)
        assert not thread.is_alive(), "bind() hung on the probe of a live socket"
        assert isinstance(outcome[0], sockets.BindError) and "address already in use" in str(outcome[0])
        assert path.exists()
    finally:
        for client in clients:
            client.close()
        server.close()


def test_unix_socket_is_created_under_the_umask_and_a_stale_one_replaced(tmp_path):
    path = tmp_path / "fd.sock"
    first = sockets.bind(f"unix:{path}", umask=0o077)
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    # Someone listens there: "address in use", and the file is left alone.
    with pytest.raises(sockets.BindError, match="address already in use"):
        sockets.bind(f"unix:{path}")
    first.close()  # a dead server leaves its file behind: it is replaced
    second = sockets.bind(f"unix:{path}", umask=0o007)
    assert stat.S_IMODE(path.stat().st_mode) == 0o770
    second.close()


def test_a_file_that_is_not_a_socket_is_never_deleted(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("keep me")
    with pytest.raises(sockets.BindError, match="address already in use"):
        sockets.bind(f"unix:{path}")
    assert path.read_text() == "keep me"


def test_fd_spec_takes_a_listening_socket_and_refuses_anything_else(tmp_path):
    sock = listening_tcp()
    adopted = sockets.bind(f"fd://{os.dup(sock.fileno())}")
    assert adopted.getsockname() == sock.getsockname()
    adopted.close()
    sock.close()
    with open(tmp_path / "f", "w") as f, pytest.raises(sockets.BindError, match="cannot use fd://"):
        sockets.bind(f"fd://{f.fileno()}")
    unbound = socket.socket()
    with pytest.raises(sockets.BindError, match="not a listening stream socket"):
        sockets.bind(f"fd://{unbound.fileno()}")
    unbound.close()


def test_adopted_sockets_are_close_on_exec():
    # What a parent passes (fd://N, systemd, a previous master) is inheritable; once adopted, a
    # program the app starts must not inherit it (it would keep the port open after a stop).
    sock = listening_tcp()
    fd = os.dup(sock.fileno())
    os.set_inheritable(fd, True)
    adopted = sockets.bind(f"fd://{fd}")
    assert not adopted.get_inheritable()
    adopted.close()
    fd = os.dup(sock.fileno())
    os.set_inheritable(fd, True)
    env = {sockets.INHERIT_ENV: json.dumps({"master": 4242, "fds": [["127.0.0.1:0", fd]]})}
    [listener], _ = sockets.open_listeners(("127.0.0.1:0",), environ=env)
    assert not listener.sock.get_inheritable()
    sockets.close_all([listener], unlink=False)
    sock.close()


def test_the_metrics_socket_is_passed_beside_the_listeners_and_left_to_its_owner():
    from types import SimpleNamespace

    sock, metrics = listening_tcp(), listening_tcp()
    listener = SimpleNamespace(spec="127.0.0.1:0", fd=os.dup(sock.fileno()))  # what is passed
    env = {sockets.INHERIT_ENV: sockets.inherit_env_value(
        4242, [listener], ("127.0.0.1:9100", metrics.fileno()))}  # type: ignore[list-item]
    assert sockets.inherited_metrics(env) == ("127.0.0.1:9100", metrics.fileno())
    [kept], old = sockets.open_listeners(("127.0.0.1:0",), environ=env)
    assert old == 4242 and sockets.INHERIT_ENV not in env
    os.fstat(metrics.fileno())  # not closed with the listeners nobody wants: start_metrics decides
    adopted = sockets.adopt("127.0.0.1:9100", os.dup(metrics.fileno()))
    assert not adopted.get_inheritable()
    assert sockets.inherited_metrics({sockets.INHERIT_ENV: sockets.inherit_env_value(1, [])}) is None
    assert sockets.inherited_metrics({sockets.INHERIT_ENV: '{"metrics": 3}'}) is None
    assert sockets.inherited_metrics({}) is None
    for s in (kept.sock, adopted, sock, metrics):
        s.close()


def test_systemd_fds_only_for_this_pid_and_the_variables_are_removed():
    env = {"LISTEN_FDS": "2", "LISTEN_PID": str(os.getpid()), "LISTEN_FDNAMES": "a:b", "X": "1"}
    assert sockets.systemd_fds(env) == [3, 4]
    assert env == {"X": "1"}
    env = {"LISTEN_FDS": "2", "LISTEN_PID": "1"}
    assert sockets.systemd_fds(env) == []
    assert env == {}


def test_inherited_sockets_are_matched_by_their_bind_text_and_the_rest_closed():
    kept, dropped = listening_tcp(), listening_tcp()
    kept_fd, dropped_fd = os.dup(kept.fileno()), os.dup(dropped.fileno())
    env = {sockets.INHERIT_ENV: json.dumps(
        {"master": 4242, "fds": [["127.0.0.1:0", kept_fd], ["127.0.0.1:9", dropped_fd]]})}
    listeners, old_master = sockets.open_listeners(("127.0.0.1:0",), environ=env)
    assert old_master == 4242 and env == {}
    [listener] = listeners
    assert listener.fd == kept_fd and listener.sock.getsockname() == kept.getsockname()
    with pytest.raises(OSError):
        os.fstat(dropped_fd)  # closed
    sockets.close_all(listeners, unlink=False)
    kept.close()
    dropped.close()


def test_inherit_variable_is_not_a_setting_name():
    # Unknown FRONTDESK_* variables are configuration errors; this one must never look like one.
    from frontdesk.config import ENV_PREFIX

    assert not sockets.INHERIT_ENV.startswith(ENV_PREFIX)


def test_malformed_inherit_variable_is_a_bind_error():
    with pytest.raises(sockets.BindError, match="malformed"):
        sockets.open_listeners(("127.0.0.1:0",), environ={sockets.INHERIT_ENV: "{nope"})


# -- real processes -------------------------------------------------------------------------------


def _env(**more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FRONTDESK_") and k not in ("LISTEN_FDS", "LISTEN_PID", "NOTIFY_SOCKET")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    env.update(ENV)
    env.update(more)
    return env


class Notifications:
    """A fake systemd: the NOTIFY_SOCKET datagram socket, and what frontdesk sent to it."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.path = path
        self.messages: list[str] = []

    def wait(self, text: str, timeout: float = 10.0) -> None:
        def seen() -> bool:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                pass
            return any(text in m for m in self.messages)

        wait_for(seen, timeout, f"sd_notify {text!r} (got {self.messages})", interval=0)


def test_systemd_socket_activation_and_notify(tmp_path):
    sock = listening_tcp()
    host, port = sock.getsockname()
    notify = Notifications(tmp_path / "notify")
    # What systemd does: the socket as fd 3, LISTEN_PID = the pid of the process it execs.
    wrapper = ("import os, sys; os.dup2(int(sys.argv[1]), 3); os.environ['LISTEN_PID'] = str(os.getpid());"
               " os.execv(sys.executable, [sys.executable, '-m', 'frontdesk', *sys.argv[2:]])")
    proc = subprocess.Popen(
        [sys.executable, "-c", wrapper, str(sock.fileno()), "tests.apps:router", "--workers", "1",
         "--bind", "127.0.0.1:1"],  # ignored: systemd's sockets win
        pass_fds=[sock.fileno()], cwd=ROOT, stderr=subprocess.PIPE, text=True,
        env=_env(LISTEN_FDS="1", NOTIFY_SOCKET=str(notify.path)),
    )
    sock.close()  # only the server holds it now
    try:
        notify.wait("READY=1")
        assert request(host, port, "/hello") == (200, b"Hello, World!")
        proc.send_signal(signal.SIGHUP)
        notify.wait("RELOADING=1")
        assert "MONOTONIC_USEC=" in next(m for m in notify.messages if "RELOADING=1" in m)
        notify.messages.clear()
        notify.wait("READY=1")
        proc.send_signal(signal.SIGTERM)
        notify.wait("STOPPING=1")
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert f"Listening at: http://{host}:{port}" in proc.stderr.read()  # type: ignore[union-attr]


def test_bind_fd_number_inherited_from_the_parent(tmp_path):
    sock = listening_tcp()
    host, port = sock.getsockname()
    proc = subprocess.Popen(
        [sys.executable, "-m", "frontdesk", "tests.apps:router", "--workers", "1",
         "--bind", f"fd://{sock.fileno()}"],
        pass_fds=[sock.fileno()], cwd=ROOT, env=_env(), stderr=subprocess.PIPE, text=True,
    )
    sock.close()
    try:
        wait_for(lambda: len(children(proc.pid)) == 1, 10, "a worker")
        wait_for(lambda: _answers(host, port), 10, "an answer on the inherited socket")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def _answers(host: str, port: int) -> bool:
    try:
        return request(host, port, "/hello")[0] == 200
    except OSError:
        return False


def test_unix_socket_served_survives_usr2_and_is_removed_at_the_end(tmp_path):
    path = tmp_path / "fd.sock"
    pidfile = tmp_path / "fd.pid"
    proc = subprocess.Popen(
        [sys.executable, "-m", "frontdesk", "tests.apps:router", "--workers", "1", "--bind",
         f"unix:{path}", "--umask", "007", "--pid", str(pidfile)],
        cwd=ROOT, env=_env(), stderr=subprocess.DEVNULL,
    )
    new_master = 0
    try:
        wait_for(lambda: _unix_answers(path), 10, "an answer on the unix socket")
        assert stat.S_IMODE(path.stat().st_mode) == 0o770
        inode = path.stat().st_ino
        proc.send_signal(signal.SIGUSR2)
        assert proc.wait(15) == 0  # the old master retires once the new one serves
        new_master = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 5,
                                  "the new master's pid file"))  # type: ignore[arg-type]
        assert new_master != proc.pid and alive(new_master)
        assert path.stat().st_ino == inode  # the same socket, not a new one
        assert _unix_answers(path)
        assert _socket_fds(new_master) and all(_cloexec(new_master, fd) for fd in _socket_fds(new_master))
        os.kill(new_master, signal.SIGTERM)
        wait_for(lambda: not alive(new_master), 10, "the new master to stop")
        assert not path.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if new_master and alive(new_master):
            os.kill(new_master, signal.SIGKILL)


def _socket_fds(pid: int) -> list[int]:
    fds = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                fds.append(int(name))
        except OSError:
            pass
    return fds


def _cloexec(pid: int, fd: int) -> bool:
    for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines():
        if line.startswith("flags:"):
            return bool(int(line.split()[1], 8) & 0o2000000)  # O_CLOEXEC
    raise AssertionError("no flags")


def _unix_answers(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(path))
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        return data.startswith(b"HTTP/1.1 200 ")
    except OSError:
        return False


FLAKY_APP = '''\
import os, time
if os.path.exists("broken"):
    raise RuntimeError("this upgrade is broken")
if os.path.exists("slow"):
    time.sleep(5)

def app(environ, start_response):
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
'''


def test_a_new_master_that_has_not_taken_over_never_removes_the_socket_file(tmp_path):
    # A failed upgrade (the new master cannot load the app), then a new master stopped by TERM
    # before its workers are ready: each time the old master serves on, on the same file.
    (tmp_path / "flaky.py").write_text(FLAKY_APP)
    path = tmp_path / "fd.sock"
    log = tmp_path / "log"
    env = _env()
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{env['PYTHONPATH']}"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "frontdesk", "flaky:app", "--workers", "1", "--bind", f"unix:{path}"],
            cwd=tmp_path, env=env, stderr=out,
        )
    new_masters: list[int] = []
    try:
        wait_for(lambda: _unix_answers(path), 10, "an answer on the unix socket")
        inode = path.stat().st_ino
        (tmp_path / "broken").touch()
        proc.send_signal(signal.SIGUSR2)
        wait_for(lambda: "Upgrade failed" in log.read_text(), 20, "the upgrade to fail")
        assert path.exists() and path.stat().st_ino == inode
        assert _unix_answers(path)

        (tmp_path / "broken").unlink()
        (tmp_path / "slow").touch()
        proc.send_signal(signal.SIGUSR2)
        new = int(wait_for(lambda: re.findall(r"new master (\d+) started", log.read_text())[1:], 5,
                           "a second new master")[0])  # type: ignore[index]
        new_masters.append(new)
        wait_for(lambda: "Booting worker" in log.read_text().split(f"new master {new} started")[1], 5,
                 "the new master to fork")
        os.kill(new, signal.SIGTERM)
        wait_for(lambda: not alive(new), 10, "the new master to stop")
        assert path.exists() and path.stat().st_ino == inode
        assert _unix_answers(path)
        assert proc.poll() is None

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert not path.exists()  # the last master removes it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for pid in new_masters:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
