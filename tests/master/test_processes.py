"""The master with real processes, real signals and real clients on loopback.

Every wait is bounded; every process started here is stopped by PID at the end (`servers`).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.master.conftest import (
    ROOT,
    Load,
    alive,
    children,
    request,
    rss_kib,
    run_frontdesk,
    wait_for,
    write_app,
)


def ready_workers(server) -> list[int]:
    return [int(p) for p in re.findall(r"Worker (\d+) ready", server.log)]


def serving(server, count: int, timeout: float = 10.0) -> list[int]:
    """Wait until the master has `count` children and that many READY lines; return the pids."""
    master = server.proc.pid
    wait_for(lambda: len(children(master)) == count and set(children(master)) <= set(ready_workers(server)),
             timeout, f"{count} ready workers")
    return children(master)


def replaced(server, old: list[int], count: int, timeout: float = 10.0) -> list[int]:
    """Wait until `count` ready workers serve and none of `old` is among them."""
    master = server.proc.pid

    def done() -> bool:
        now = children(master)
        return len(now) == count and not set(now) & set(old) and set(now) <= set(ready_workers(server))

    wait_for(done, timeout, f"{count} ready workers replacing {old}")
    return children(master)


# -- crashes, timeouts -----------------------------------------------------------------------------


def test_kill9_of_a_worker_under_load_fails_only_its_requests(servers):
    server = servers("tests.apps:router", "--workers", "2", "--threads", "4")
    workers = serving(server, 2)
    load = Load(server, "/sleep?0.2", threads=6)
    load.wait_ok(12)
    victim = workers[0]
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    replacement = wait_for(lambda: [p for p in ready_workers(server) if p not in workers], 1.0,
                           "a ready replacement within 1 s")
    assert time.monotonic() - killed_at < 1.0
    before = dict(load.counts)
    load.wait_ok(30)
    counts = load.stop()
    assert counts["refused"] == 0
    # Only what the killed worker had in flight can fail: at most one request per client.
    assert counts["failed"] <= 6, load.errors
    assert counts["failed"] == before.get("failed", 0), "failures after the replacement"
    assert f"Worker {victim} was killed by SIGKILL unexpectedly; replacing it" in server.log
    assert set(children(server.proc.pid)) == {workers[1], *replacement}


def test_worker_whose_loop_stops_beating_is_killed_and_replaced(servers):
    server = servers("tests.apps:router", "--workers", "1", "--timeout", "1")
    [worker] = serving(server, 1)
    os.kill(worker, signal.SIGSTOP)  # a loop that stops beating (a stopped process beats no more)
    wait_for(lambda: not alive(worker), 6, "the stuck worker to be killed")
    replaced(server, [worker], 1)
    log = server.log
    assert re.search(rf"Worker {worker} timed out: no heartbeat for [\d.]+ s \(--timeout 1\) while its"
                     " event loop is blocked", log)
    assert f"Worker {worker} did not exit in time (timeout); sending SIGKILL" in log
    assert request(server.host, server.port, "/hello")[0] == 200


def test_request_timeout_dumps_the_stack_answers_504_and_recycles(servers):
    server = servers("tests.apps:router", "--workers", "1", "--threads", "4",
                     "--request-timeout", "1")
    [worker] = serving(server, 1)
    start = time.monotonic()
    results: list[tuple[int, bytes]] = []
    hung = threading.Thread(target=lambda: results.append(request(server.host, server.port, "/sleep?30")))
    hung.start()
    # Other requests on that worker are served meanwhile (and after the timeout).
    while time.monotonic() - start < 1.5:
        assert request(server.host, server.port, "/hello") == (200, b"Hello, World!")
    hung.join(5)
    assert results and results[0][0] == 504
    assert time.monotonic() - start < 4
    wait_for(lambda: "this worker is replaced" in server.log, 2, "the timeout's log lines")
    log = server.log
    assert "request timeout: GET /sleep?30 from 127.0.0.1" in log
    assert "in _sleep" in log and "time.sleep(seconds)" in log  # the app's frame, in the stack
    # Recycled gracefully: a replacement is forked first, then the old worker stops.
    replaced(server, [worker], 1)
    assert not alive(worker)
    assert f"Worker {worker} asks to be replaced (request timeout)" in server.log
    assert request(server.host, server.port, "/hello")[0] == 200


def test_signals_sent_while_a_worker_imports_the_app_do_not_kill_it(servers, tmp_path):
    (tmp_path / "slowimport.py").write_text(
        "import time\ntime.sleep(1.5)\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Length', '2')])\n"
        "    return [b'ok']\n")
    server = servers("slowimport:app", "--workers", "1", cwd=tmp_path)
    pid = int(wait_for(lambda: re.search(r"Booting worker with pid: (\d+)", server.log), 5,
                       "a booting worker")[1])  # type: ignore[index]
    time.sleep(0.3)  # it is importing the app now
    server.proc.send_signal(signal.SIGUSR1)  # reopen the logs: forwarded to the workers
    for sig in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1):
        os.kill(pid, sig)  # as a signal to the whole process group would
    assert serving(server, 1) == [pid]
    assert "failed to boot" not in server.log
    assert request(server.host, server.port, "/") == (200, b"ok")


@pytest.mark.parametrize("source, app, error", [
    ("raise RuntimeError('boom at import')\n", "broken:app",
     "module 'broken' was found, but importing it failed: RuntimeError: boom at import"),
    ("def app(environ, start_response:\n", "broken:app",
     "module 'broken' was found, but importing it failed: SyntaxError: "),
    ("x = 1\n", "broken:nosuch", "module 'broken' has no attribute 'nosuch'"),
    ("app = 42\n", "broken:app", "'broken:app' is not a WSGI application: int is not callable"),
])
def test_app_that_fails_to_load_is_one_line_and_exit_2_without_a_retry(tmp_path, source, app, error):
    (tmp_path / "broken.py").write_text(source)
    start = time.monotonic()
    done = run_frontdesk(app, "--bind", "127.0.0.1:0", "--workers", "3", cwd=tmp_path)
    elapsed = time.monotonic() - start
    assert done.returncode == 2, done.stderr
    assert elapsed < 5
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(f"frontdesk: error: {error}"), done.stderr
    assert done.stderr.count("frontdesk: error:") == 1
    assert "[ERROR]" not in done.stderr and "[WARNING]" not in done.stderr, done.stderr
    assert done.stderr.count("Booting worker") == 3  # the first round only: no retry
    if "raise" in source:
        assert done.stderr.count("Traceback") == 1  # once, not once per worker
        assert 'broken.py", line 1, in <module>' in done.stderr


def test_preloaded_app_that_fails_to_import_is_one_error_before_any_fork(tmp_path):
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    done = run_frontdesk("broken:app", "--bind", "127.0.0.1:0", "--preload", cwd=tmp_path)
    assert done.returncode == 2
    assert "Booting worker" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "frontdesk: error: module 'broken' was found, but importing it failed: RuntimeError: boom at import")


# -- stopping -------------------------------------------------------------------------------------


def test_term_lets_the_request_in_flight_finish_then_exits_0(servers):
    server = servers("tests.apps:router", "--workers", "2", "--graceful-timeout", "10")
    serving(server, 2)
    results: list[tuple[int, bytes]] = []
    slow = threading.Thread(target=lambda: results.append(request(server.host, server.port, "/sleep?2")))
    slow.start()
    time.sleep(0.5)
    term_at = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)

    def refused() -> bool:
        try:
            socket.create_connection((server.host, server.port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        return False

    wait_for(refused, 2, "new connections to be refused after TERM")
    assert slow.is_alive(), "the request in flight was cut"
    slow.join(5)
    assert results[0][0] == 200 and b"slept 2.0" in results[0][1]
    assert server.proc.wait(10) == 0
    assert time.monotonic() - term_at < 10
    assert "Handling signal: TERM" in server.log


def test_quit_stops_fast_and_exits_0(servers):
    server = servers("tests.apps:router", "--workers", "2", "--graceful-timeout", "30")
    workers = serving(server, 2)
    results: list[object] = []

    def slow() -> None:
        try:
            results.append(request(server.host, server.port, "/sleep?30"))
        except OSError as exc:
            results.append(exc)

    threading.Thread(target=slow, daemon=True).start()
    time.sleep(0.3)
    start = time.monotonic()
    server.proc.send_signal(signal.SIGQUIT)
    assert server.proc.wait(5) == 0
    assert time.monotonic() - start < 3
    assert not any(alive(pid) for pid in workers)
    wait_for(lambda: results, 5, "the cut request")
    assert isinstance(results[0], OSError)  # cut, not answered


def _start_in_own_group(*args: str) -> tuple[subprocess.Popen[str], int, Path]:
    """A server in its own process group (a terminal's foreground job); (process, port, log)."""
    import tempfile

    log = Path(tempfile.mkstemp(prefix="frontdesk-int-")[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDESK_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "frontdesk", "tests.apps:router", "--bind", "127.0.0.1:0", *args],
            cwd=ROOT, env=env, stderr=out, start_new_session=True, text=True,
        )
    wait_for(lambda: "ready, 2 worker(s) serving" in log.read_text(), 10, "the server")
    port = int(re.search(r"Listening at: http://127.0.0.1:(\d+)", log.read_text())[1])  # type: ignore[index]
    return proc, port, log


@pytest.mark.parametrize("twice", [False, True])
def test_ctrl_c_stops_gracefully_and_a_second_ctrl_c_at_once(twice):
    # Ctrl-C sends INT to every process of the foreground group: the master and its workers.
    proc, port, log = _start_in_own_group("--workers", "2", "--graceful-timeout", "30")
    results: list[object] = []

    def slow() -> None:
        try:
            results.append(request("127.0.0.1", port, "/sleep?2"))
        except OSError as exc:
            results.append(exc)

    try:
        threading.Thread(target=slow, daemon=True).start()
        time.sleep(0.5)
        start = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        if twice:
            time.sleep(0.3)
            os.killpg(proc.pid, signal.SIGINT)
            assert proc.wait(5) == 0
            assert time.monotonic() - start < 3
            wait_for(lambda: results, 5, "the cut request")
            assert isinstance(results[0], OSError)  # cut
        else:
            assert proc.wait(10) == 0
            assert results and results[0][0] == 200 and b"slept 2.0" in results[0][1]  # type: ignore[index]
            assert "INT: graceful shutdown" in log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.unlink()


# -- reload and upgrade under load ----------------------------------------------------------------


def test_hup_under_load_reloads_code_with_no_failed_or_refused_request(servers, app_dir):
    server = servers("versioned:app", "--workers", "2", "--threads", "4", cwd=app_dir)
    old = serving(server, 2)
    load = Load(server, "/sleep?0.05", threads=6)
    load.wait_ok(20)
    assert all(body.startswith(b"v1 ") for body in load.bodies)
    write_app(app_dir, "v2-reloaded")
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: not any(alive(pid) for pid in old), 10, "the old workers to retire")
    load.wait_ok(20)
    counts = load.stop()
    assert counts["refused"] == 0 and counts["failed"] == 0, load.errors
    assert load.bodies[-1].startswith(b"v2-reloaded ")
    assert all(b.startswith((b"v1 ", b"v2-reloaded ")) for b in load.bodies)
    new = children(server.proc.pid)
    assert len(new) == 2 and not set(new) & set(old)
    assert "reload complete, 2 worker(s) serving" in server.log


def test_usr2_under_load_upgrades_with_no_failed_or_refused_request(servers, app_dir):
    pidfile = app_dir / "frontdesk.pid"
    server = servers("versioned:app", "--workers", "2", "--pid", str(pidfile), cwd=app_dir)
    serving(server, 2)
    old_master = server.proc.pid
    assert pidfile.read_text().strip() == str(old_master)
    load = Load(server, "/sleep?0.05", threads=6)
    load.wait_ok(20)
    write_app(app_dir, "v3-upgraded")
    server.proc.send_signal(signal.SIGUSR2)
    new_master = int(wait_for(lambda: re.search(r"new master (\d+) started", server.log), 5,
                              "the new master")[1])  # type: ignore[index]
    server.extra_pids.append(new_master)  # type: ignore[attr-defined]
    # The old master retires by itself once the new one serves, and exits 0.
    assert server.proc.wait(15) == 0
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() == str(new_master), 5,
             "the pid file to name the new master")
    assert not Path(f"{pidfile}.oldbin").exists() and not Path(f"{pidfile}.2").exists()
    load.wait_ok(20)
    counts = load.stop()
    assert counts["refused"] == 0 and counts["failed"] == 0, load.errors
    assert load.bodies[-1].startswith(b"v3-upgraded ")
    assert len(children(new_master)) == 2
    os.kill(new_master, signal.SIGTERM)
    wait_for(lambda: not alive(new_master), 10, "the new master to stop")
    assert not pidfile.exists()


def scrape_requests(port: int) -> float:
    """`frontdesk_requests_total`, summed, from a scrape of the metrics port."""
    status, body = request("127.0.0.1", port, "/metrics", timeout=10)
    assert status == 200
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
               if line.startswith("frontdesk_requests_total{"))


def test_usr2_hands_the_metrics_socket_over_and_one_master_answers_at_a_time(servers, app_dir):
    from tests.conftest import free_port

    port = free_port()
    server = servers("versioned:app", "--workers", "1", "--metrics-bind", f"127.0.0.1:{port}",
                     cwd=app_dir)
    serving(server, 1)
    for _ in range(5):
        assert request(server.host, server.port, "/")[0] == 200
    wait_for(lambda: scrape_requests(port) >= 5, 5, "the requests to be counted")
    # The new master's worker takes a while to import the app: scrapes meanwhile must all come
    # from the old master (its counts), none from the new one's empty registry.
    (app_dir / "versioned.py").write_text("import time\ntime.sleep(1.5)\n" +
                                          (app_dir / "versioned.py").read_text())
    server.proc.send_signal(signal.SIGUSR2)
    new_master = int(wait_for(lambda: re.search(r"new master (\d+) started", server.log), 5,
                              "the new master")[1])  # type: ignore[index]
    server.extra_pids.append(new_master)  # type: ignore[attr-defined]
    before = []
    deadline = time.monotonic() + 15
    while "sending TERM to the old master" not in server.log:
        before.append(scrape_requests(port))
        assert server.proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    # (The last two may have been answered by either master: the new one serves from the moment
    # it sends TERM, which this loop learns a little later, and the old one stops on that TERM.)
    assert len(before) > 10 and min(before[:-2]) >= 5, f"{before}\n{server.log}"
    assert server.proc.wait(15) == 0  # the old master has handed over and exited
    assert request(server.host, server.port, "/")[0] == 200  # one request to the new workers
    wait_for(lambda: scrape_requests(port) == 1, 5, "the new master's count")
    assert "Metrics: handed over to master" in server.log
    assert re.search(rf"Metrics at: http://127.0.0.1:{port}/metrics, served by this master", server.log)
    os.kill(new_master, signal.SIGTERM)
    wait_for(lambda: not alive(new_master), 10, "the new master to stop")
    with pytest.raises(ConnectionRefusedError):
        request("127.0.0.1", port, "/metrics")


def test_max_requests_recycles_gracefully_replacement_first(servers):
    server = servers("tests.apps:router", "--workers", "2", "--max-requests", "20",
                     "--max-requests-jitter", "5")
    first = serving(server, 2)
    load = Load(server, "/hello", threads=4)
    wait_for(lambda: not any(alive(pid) for pid in first), 10, "both first workers recycled")
    load.wait_ok(20)
    counts = load.stop()
    assert counts["refused"] == 0 and counts["failed"] == 0, load.errors
    log = server.log
    for pid in first:
        asked = log.index(f"Worker {pid} asks to be replaced (max requests)")
        stopped = log.index(f"Stopping worker {pid} gracefully: max requests; its replacement is ready")
        assert asked < stopped


def test_master_memory_stays_flat_over_100_recycles(servers):
    server = servers("tests.apps:hello", "--workers", "2", "--threads", "1", "--max-requests", "1")
    serving(server, 2)
    master = server.proc.pid
    load = Load(server, "/", threads=2, max_seconds=60)

    most = 0

    def recycled(count: int) -> bool:
        nonlocal most
        most = max(most, len(children(master)))
        return server.log.count("asks to be replaced") >= count

    wait_for(lambda: recycled(20), 30, "20 recycles")
    early = rss_kib(master)
    wait_for(lambda: recycled(100), 60, "100 recycles")
    late = rss_kib(master)
    load.stop()
    assert load.counts["refused"] == 0 and load.counts["failed"] == 0, load.errors
    assert late - early < 256, f"master RSS grew from {early} to {late} KiB over 80 recycles"
    # 2 serving, a replacement booting for each, plus the ones finishing their drain: no storm,
    # and back to 2 once the load stops.
    assert most <= 10
    wait_for(lambda: len(children(master)) == 2, 10, "2 workers once the load stopped")


# -- worker count, pid file, binding, privileges --------------------------------------------------


def test_ttin_and_ttou_change_the_number_of_workers(servers):
    server = servers("tests.apps:router", "--workers", "1")
    serving(server, 1)
    server.proc.send_signal(signal.SIGTTIN)
    serving(server, 2)
    server.proc.send_signal(signal.SIGTTIN)
    serving(server, 3)
    server.proc.send_signal(signal.SIGTTOU)
    serving(server, 2)
    assert request(server.host, server.port, "/hello")[0] == 200


def test_pid_file_is_written_and_removed(servers, tmp_path):
    pidfile = tmp_path / "run" / "fd.pid"
    pidfile.parent.mkdir()
    server = servers("tests.apps:router", "--workers", "1", "--pid", str(pidfile))
    serving(server, 1)
    assert pidfile.read_text() == f"{server.proc.pid}\n"
    assert server.stop() == 0
    assert not pidfile.exists()


def test_relative_pid_file_is_relative_to_where_frontdesk_started(servers, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "here.py").write_text("def app(environ, start_response):\n"
                                              "    start_response('200 OK', [])\n    return []\n")
    server = servers("here:app", "--workers", "1", "--chdir", "sub", "--preload", "--pid", "fd.pid",
                     cwd=tmp_path)
    serving(server, 1)
    assert (tmp_path / "fd.pid").read_text() == f"{server.proc.pid}\n"
    assert server.stop() == 0
    assert not (tmp_path / "fd.pid").exists() and not (tmp_path / "sub" / "fd.pid").exists()


def test_a_pid_file_that_cannot_be_written_is_one_line_before_binding(tmp_path):
    sock = tmp_path / "fd.sock"
    pidfile = tmp_path / "nodir" / "fd.pid"
    done = run_frontdesk("tests.apps:hello", "--bind", f"unix:{sock}", "--pid", str(pidfile))
    assert done.returncode == 2
    # Caught with the other settings, before anything else happens.
    assert done.stderr == (f"frontdesk: error: setting 'pid' on the command line is invalid: "
                           f"cannot write {pidfile}: no such directory: {pidfile.parent}\n")
    assert not sock.exists()  # nothing was bound


def test_a_pid_file_of_a_running_process_is_refused(tmp_path):
    sock = tmp_path / "fd.sock"
    pidfile = tmp_path / "fd.pid"
    pidfile.write_text(f"{os.getpid()}\n")  # alive: this test
    done = run_frontdesk("tests.apps:hello", "--bind", f"unix:{sock}", "--pid", str(pidfile))
    assert done.returncode == 2
    assert done.stderr == (f"frontdesk: error: --pid {pidfile}: already running on PID {os.getpid()}"
                           " (or the pid file is stale: remove it)\n")
    assert pidfile.read_text() == f"{os.getpid()}\n" and not sock.exists()


def test_a_pid_directory_removed_before_usr2_does_not_stop_the_master(servers, tmp_path):
    import shutil

    piddir = tmp_path / "run"
    piddir.mkdir()
    server = servers("tests.apps:router", "--workers", "1", "--pid", str(piddir / "fd.pid"))
    [worker] = serving(server, 1)
    shutil.rmtree(piddir)
    server.proc.send_signal(signal.SIGUSR2)
    wait_for(lambda: "Upgrade failed" in server.log, 10, "the upgrade to fail")
    # The new master refuses the setting before binding anything; this one goes on.
    assert "setting 'pid'" in server.log and "no such directory" in server.log
    assert server.proc.poll() is None and children(server.proc.pid) == [worker]
    assert request(server.host, server.port, "/hello")[0] == 200
    assert server.stop() == 0


def test_port_in_use_is_one_line_and_exit_2():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_frontdesk("tests.apps:hello", "--bind", f"127.0.0.1:{port}")
    assert done.returncode == 2
    assert done.stderr == f"frontdesk: error: cannot listen on 127.0.0.1:{port}: address already in use\n"


def test_workers_drop_privileges_the_master_keeps_them(servers):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    # --preload: the app is imported as root (nobody may not read this checkout).
    server = servers("tests.apps:router", "--workers", "1", "--user", "nobody", "--group", "nogroup",
                     "--preload")
    [worker] = serving(server, 1)
    import grp
    import pwd

    status = Path(f"/proc/{worker}/status").read_text()
    uid = re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE)[1]  # type: ignore[index]
    gid = re.search(r"^Gid:\s+(\d+)", status, re.MULTILINE)[1]  # type: ignore[index]
    assert int(uid) == pwd.getpwnam("nobody").pw_uid
    assert int(gid) == grp.getgrnam("nogroup").gr_gid
    assert Path(f"/proc/{server.proc.pid}/status").read_text().count("Uid:\t0\t") == 1
    assert request(server.host, server.port, "/hello")[0] == 200


@pytest.mark.parametrize("args", [("--user", "12345"), ("--user", "12345", "--group", "12345"),
                                  ("--user", "nobody")])
def test_workers_give_up_the_masters_supplementary_groups(tmp_path, args):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    import pwd

    env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDESK_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    with open(tmp_path / "log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "frontdesk", "tests.apps:router", "--bind", "127.0.0.1:0",
             "--workers", "1", "--preload", *args],
            cwd=ROOT, env=env, stderr=log, preexec_fn=lambda: os.setgroups([0, 4, 27]),
        )
    try:
        wait_for(lambda: "ready, 1 worker(s) serving" in (tmp_path / "log").read_text(), 10, "a worker")
        [worker] = children(proc.pid)
        status = Path(f"/proc/{worker}/status").read_text()
        uid = int(re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE)[1])  # type: ignore[index]
        groups = {int(g) for g in re.search(r"^Groups:(.*)$", status, re.MULTILINE)[1].split()}  # type: ignore[index]
        if args[1] == "nobody":
            entry = pwd.getpwnam("nobody")
            assert uid == entry.pw_uid
            assert groups == set(os.getgrouplist("nobody", entry.pw_gid))
        else:
            assert uid == 12345
            assert not groups & {4, 27}
            if "--group" in args:
                assert groups == {12345}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_process_titles(servers):
    pytest.importorskip("setproctitle")
    server = servers("tests.apps:router", "--workers", "1")
    [worker] = serving(server, 1)
    assert Path(f"/proc/{server.proc.pid}/cmdline").read_bytes().startswith(b"frontdesk: master [tests.apps:router]")
    assert Path(f"/proc/{worker}/cmdline").read_bytes().startswith(b"frontdesk: worker [tests.apps:router]")


def test_usr1_reopens_the_error_log(tmp_path):
    logfile = tmp_path / "error.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDESK_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [sys.executable, "-m", "frontdesk", "tests.apps:router", "--bind", "127.0.0.1:0",
         "--workers", "1", "--error-logfile", str(logfile)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(lambda: logfile.exists() and "ready, 1 worker(s) serving" in logfile.read_text(),
                 10, "boot lines in the log file")
        port = int(re.search(r"Listening at: http://127.0.0.1:(\d+)", logfile.read_text())[1])  # type: ignore[index]
        os.rename(logfile, tmp_path / "error.log.1")
        proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: logfile.exists() and "reopened 1 log file(s)" in logfile.read_text(), 5,
                 "a fresh log file")
        assert request("127.0.0.1", port, "/hello")[0] == 200
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert "shutting down" in logfile.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def _start_logging_to(directory: Path, *args: str) -> tuple[subprocess.Popen[str], int]:
    """A server whose error and access logs are files in `directory`; (process, port)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDESK_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [sys.executable, "-m", "frontdesk", "tests.apps:router", "--bind", "127.0.0.1:0",
         "--workers", "1", "--error-logfile", str(directory / "error.log"),
         "--access-logfile", str(directory / "access.log"), *args],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
    )
    error_log = directory / "error.log"
    try:
        wait_for(lambda: error_log.exists() and "ready, 1 worker(s) serving" in error_log.read_text(),
                 10, "boot lines in the log file")
    except AssertionError:
        proc.kill()
        proc.wait(5)
        raise
    port = int(re.search(r"Listening at: http://127.0.0.1:(\d+)", error_log.read_text())[1])  # type: ignore[index]
    return proc, port


def test_with_user_the_workers_can_reopen_log_files_the_master_created():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    import pwd
    import shutil
    import tempfile

    nobody = pwd.getpwnam("nobody").pw_uid
    directory = Path(tempfile.mkdtemp(prefix="frontdesk-logs-"))  # not under pytest's 0700 tmp
    directory.chmod(0o755)  # root's: the workers cannot create files in it
    proc, port = _start_logging_to(directory, "--user", "nobody", "--preload")
    try:
        assert (directory / "error.log").stat().st_uid == nobody
        assert (directory / "access.log").stat().st_uid == nobody
        for name in ("error.log", "access.log"):  # logrotate without copytruncate
            os.rename(directory / name, directory / f"{name}.1")
        proc.send_signal(signal.SIGUSR1)  # the master (root) creates the new files
        wait_for(lambda: (directory / "error.log").exists()
                 and "reopened 2 log file(s)" in (directory / "error.log").read_text(), 5, "new logs")
        time.sleep(0.2)  # the worker reopens its files
        assert request("127.0.0.1", port, "/hello")[0] == 200
        wait_for(lambda: "GET /hello" in (directory / "access.log").read_text(), 5,
                 "the access log line in the new file")
        assert (directory / "access.log").stat().st_uid == nobody
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(directory)


def test_a_log_file_that_cannot_be_reopened_does_not_stop_the_master(servers, tmp_path):
    import shutil

    directory = tmp_path / "logs"
    directory.mkdir()
    server = servers("tests.apps:router", "--workers", "1", "--access-logfile", str(directory / "access.log"))
    serving(server, 1)
    shutil.rmtree(directory)
    server.proc.send_signal(signal.SIGUSR1)  # reopening the access log fails: no such directory
    wait_for(lambda: "cannot reopen log file" in server.log, 5, "the failure in the log")
    assert server.proc.poll() is None
    assert request(server.host, server.port, "/hello")[0] == 200
    assert server.stop() == 0


def test_hup_rereads_the_config_file(servers, tmp_path):
    conf = tmp_path / "frontdesk.toml"
    conf.write_text("workers = 1\n")
    server = servers("tests.apps:router", "--config", str(conf))
    [first] = serving(server, 1)
    conf.write_text("workers = 3\n")
    server.proc.send_signal(signal.SIGHUP)
    replaced(server, [first], 3)
    conf.write_text("workers = 'many'\n")
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "Reload cancelled, the current workers keep serving: setting 'workers'" in server.log,
             5, "the reload to be refused")
    assert len(children(server.proc.pid)) == 3


def unix_hello(path: Path) -> int:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        return int(sock.recv(65536)[9:12])


def test_hup_adds_and_removes_binds_and_a_late_failure_keeps_them(servers, tmp_path):
    conf = tmp_path / "frontdesk.toml"

    def configure(sock: str, extra: str = "") -> None:
        conf.write_text(f'workers = 1\nbind = ["127.0.0.1:0", "unix:{tmp_path / sock}"]\n{extra}')

    configure("a.sock")
    server = servers("tests.apps:router", "--config", str(conf), bind=False)
    [first] = serving(server, 1)
    assert unix_hello(tmp_path / "a.sock") == 200
    configure("b.sock")
    server.proc.send_signal(signal.SIGHUP)
    [second] = replaced(server, [first], 1)
    assert unix_hello(tmp_path / "b.sock") == 200
    assert not (tmp_path / "a.sock").exists()
    assert "No longer listening at: unix:" in server.log
    assert request(server.host, server.port, "/hello")[0] == 200  # the same TCP socket
    # A log file that cannot be opened (a dangling link: the settings' check passes, the open
    # fails), found after the new settings were read: nothing of the reload may stay.
    (tmp_path / "error.log").symlink_to(tmp_path / "gone" / "error.log")
    configure("c.sock", f'error_log = "{tmp_path / "error.log"}"\n')
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "Reload cancelled" in server.log or "while handling signal HUP" in server.log,
             5, "the reload to fail")
    assert unix_hello(tmp_path / "b.sock") == 200
    assert "Reload cancelled, the current workers keep serving: setting 'error_log'" in server.log
    assert not (tmp_path / "c.sock").exists()
    assert children(server.proc.pid) == [second]
    assert request(server.host, server.port, "/hello")[0] == 200
    assert server.stop() == 0
    assert not (tmp_path / "b.sock").exists()


def test_reload_option_restarts_workers_when_the_code_changes(servers, app_dir):
    server = servers("versioned:app", "--workers", "1", "--reload", cwd=app_dir)
    [first] = serving(server, 1)
    assert request(server.host, server.port, "/")[1].startswith(b"v1 ")
    time.sleep(0.05)
    write_app(app_dir, "v2-edited")
    replaced(server, [first], 1)
    assert request(server.host, server.port, "/")[1].startswith(b"v2-edited ")
    assert "versioned.py changed; reloading (--reload)" in server.log


def test_reload_keeps_old_workers_serving_while_the_edit_has_a_syntax_error(servers, app_dir):
    server = servers("versioned:app", "--workers", "1", "--reload", cwd=app_dir)
    [first] = serving(server, 1)
    time.sleep(0.05)
    (app_dir / "versioned.py").write_text("def app(environ, start_response:\n")  # broken
    wait_for(lambda: "SyntaxError" in server.log, 10, "the syntax error in the log")
    for _ in range(5):  # the old worker keeps answering with the old code meanwhile
        status, body = request(server.host, server.port, "/")
        assert (status, body.split()[0]) == (200, b"v1")
        time.sleep(0.1)
    assert first in children(server.proc.pid)
    write_app(app_dir, "v3-fixed")
    deadline = time.monotonic() + 15
    while request(server.host, server.port, "/")[1].split()[0] != b"v3-fixed":
        assert time.monotonic() < deadline, "the fixed code was never served"
        time.sleep(0.1)


def test_reload_serves_the_fix_of_a_syntax_error_at_once(servers, app_dir):
    server = servers("versioned:app", "--workers", "2", "--reload", cwd=app_dir)
    first = serving(server, 2)
    time.sleep(0.05)
    (app_dir / "versioned.py").write_text("def app(environ, start_response:\n")  # broken
    wait_for(lambda: "waiting for the next change" in server.log, 10, "the failure in the log")
    assert "SyntaxError" in server.log
    time.sleep(1.0)  # no retries meanwhile: only an edit can fix it
    assert server.log.count("failed to boot") == 2  # the two workers of the new generation
    assert server.log.count('versioned.py", line 1') == 1  # the traceback, once
    assert children(server.proc.pid) == first
    write_app(app_dir, "v3-fixed")
    fixed_at = time.monotonic()
    while request(server.host, server.port, "/")[1].split()[0] != b"v3-fixed":
        assert time.monotonic() - fixed_at < 2, "the fix was not served within 2 s"
        time.sleep(0.05)
    replaced(server, first, 2)


def test_reload_include_globs_and_the_fallback_without_watchfiles(servers, app_dir):
    # A `watchfiles` that cannot be imported: the master polls modification times instead.
    (app_dir / "shadow").mkdir()
    (app_dir / "shadow" / "watchfiles.py").write_text("raise ImportError('not installed')\n")
    (app_dir / "settings.toml").write_text("a = 1\n")
    server = servers("versioned:app", "--workers", "1", "--reload", "--reload-include", "*.toml",
                     cwd=app_dir, env={"PYTHONPATH": f"{app_dir / 'shadow'}{os.pathsep}"
                                                     f"{os.environ.get('PYTHONPATH', '')}"})
    [first] = serving(server, 1)
    assert "--reload: watchfiles is not installed" in server.log
    time.sleep(0.05)
    (app_dir / "settings.toml").write_text("a = 2\n")
    replaced(server, [first], 1)
    assert "settings.toml changed; reloading (--reload)" in server.log


def test_reload_with_preload_is_refused(tmp_path):
    done = run_frontdesk("tests.apps:hello", "--bind", f"unix:{tmp_path / 's'}", "--reload", "--preload")
    assert done.returncode == 2
    assert done.stderr.startswith("frontdesk: error: --reload cannot be used with --preload")
    assert done.stderr.count("\n") == 1 and not (tmp_path / "s").exists()


ORPHANS_APP = '''\
import subprocess

def app(environ, start_response):
    # A shell that leaves a background child behind: the child is re-parented to PID 1.
    subprocess.run(["sh", "-c", "sleep 0.2 &"], check=True)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
'''


def test_as_pid_1_it_reaps_orphans_and_stops_on_term(servers, tmp_path):
    import shutil

    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) for a PID namespace")
    (tmp_path / "orphans.py").write_text(ORPHANS_APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDESK_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-m", "frontdesk",
         "orphans:app", "--bind", "127.0.0.1:0", "--workers", "1"],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines: list[str] = []
        assert proc.stderr is not None
        while "ready, 1 worker(s) serving" not in "".join(lines):
            line = proc.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
        text = "".join(lines)
        assert "Master 1:" in text  # PID 1 in its namespace
        port = int(re.search(r"Listening at: http://127.0.0.1:(\d+)", text)[1])  # type: ignore[index]
        [master] = children(proc.pid)  # unshare's child: the master, as seen from here
        for _ in range(5):
            assert request("127.0.0.1", port, "/") == (200, b"ok")

        def zombies() -> list[int]:
            out = []
            for pid in children(master):
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                if state == "Z":
                    out.append(pid)
            return out

        wait_for(lambda: len(children(master)) == 1 and not zombies(), 5,
                 "the orphaned sleeps to be reaped by PID 1")
        os.kill(master, signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
