#!/usr/bin/env python3
"""frontdesk benchmark harness -- one command: ``python bench/run.py``.

Sets up ``bench/.venv-peers`` (gunicorn, waitress, granian, uvicorn + a2wsgi,
Flask, and frontdesk itself installed editable from this repo), installs wrk
and nginx with apt-get when they are missing, then starts each server in turn
with the same app and worker count, pinned to CPU 0, loads it with wrk pinned
to CPU 1 (127.0.0.1 only, every load bounded in time), and writes a Markdown
report to stdout and to ``bench/results/<date>.md``.

See docs/benchmarks.md for the scenarios and the method.  Never run in CI.

    python bench/run.py                      # everything (about 25-30 min)
    python bench/run.py --quick              # hello, hello-1000, static-1k; < 2 min
    python bench/run.py --servers gunicorn,granian --scenarios hello,flask-json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import hashlib
import json
import os
import platform
import random
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENV = BENCH / ".venv-peers"
VBIN = VENV / "bin"
RESULTS = BENCH / "results"
HOST = "127.0.0.1"  # loopback only, by design: there is no option to change it

SERVER_CPU = "0"
CLIENT_CPU = "1"

# What goes into bench/.venv-peers (frontdesk itself is added with -e REPO).
PEER_REQUIREMENTS = [
    "gunicorn",
    "waitress",
    "granian",
    "uvicorn",
    "uvloop",
    "httptools",
    "a2wsgi",
    "flask",
]
VERSION_PACKAGES = [
    "frontdesk", "gunicorn", "waitress", "granian", "uvicorn", "uvloop",
    "httptools", "a2wsgi", "flask", "werkzeug", "jinja2",
]

ALL_SERVERS = ["frontdesk", "gunicorn", "waitress", "granian", "uvicorn", "nginx"]

MiB = 1024 * 1024
STATIC_FILES = {"file-1k": 1024, "file-64k": 64 * 1024, "file-4m": 4 * MiB}
STATIC_SEED = 20240601
TRANSFER_BYTES = 100 * MiB


@dataclass
class Scenario:
    name: str
    kind: str  # wrk | transfer | slow | rss
    app: str  # hello | flask | static | transfer
    path: str = "/"
    conns: int = 64
    close: bool = False
    mbps: bool = False
    mode: str = ""  # transfer: upload | download
    what: str = ""


SCENARIOS = [
    Scenario("hello", "wrk", "hello", "/", 64,
             what="plain WSGI hello world, 64 keep-alive connections"),
    Scenario("hello-1000", "wrk", "hello", "/", 1000,
             what="plain WSGI hello world, 1,000 keep-alive connections"),
    Scenario("hello-close", "wrk", "hello", "/", 64, close=True,
             what="plain WSGI hello world, 64 connections, `Connection: close` (new TCP connection per request)"),
    Scenario("flask-json", "wrk", "flask", "/json", 64,
             what="Flask `jsonify` endpoint, 64 keep-alive connections"),
    Scenario("flask-page", "wrk", "flask", "/page", 64,
             what="Flask Jinja template page (20-row table), 64 keep-alive connections"),
    Scenario("static-1k", "wrk", "static", "/static/file-1k", 64, mbps=True,
             what="1 KiB static file, 64 keep-alive connections"),
    Scenario("static-64k", "wrk", "static", "/static/file-64k", 64, mbps=True,
             what="64 KiB static file, 64 keep-alive connections"),
    Scenario("static-4m", "wrk", "static", "/static/file-4m", 8, mbps=True,
             what="4 MiB static file, 8 keep-alive connections"),
    Scenario("upload-100m", "transfer", "transfer", mode="upload",
             what="one 100 MiB POST body read by the app in 64 KiB chunks; time and peak RSS"),
    Scenario("download-100m", "transfer", "transfer", mode="download",
             what="one 100 MiB response streamed by the app in 64 KiB chunks; time and peak RSS"),
    Scenario("slow-clients", "slow", "hello", "/", 64,
             what="hello with 64 connections, without and with 500 slowloris connections (1 header byte/s)"),
    Scenario("rss", "rss", "hello", "/", 1000,
             what="RSS of the server processes idle, and after a 1,000-connection hello run"),
]
SCENARIO_BY_NAME = {s.name: s for s in SCENARIOS}
QUICK_SCENARIOS = ["hello", "hello-1000", "static-1k"]


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Setup: tools, venv, machine info


def ensure_tools():
    """wrk and nginx from apt when missing; returns a dict of notes."""
    missing = [t for t in ("wrk", "nginx") if not _which(t)]
    if not missing:
        return
    log(f"installing missing tools with apt-get: {missing}")
    pkgs = ["wrk", "nginx-light"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends"]
    if subprocess.run(cmd + pkgs, env=env).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env)
        if subprocess.run(cmd + pkgs, env=env).returncode != 0:
            # newer Debian releases dropped nginx-light
            subprocess.run(cmd + ["wrk", "nginx"], env=env)
    if not _which("wrk"):
        sys.exit("wrk is required and could not be installed (apt-get install -y wrk)")


def _which(name):
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None)


def ensure_venv(skip_setup):
    """Create/refresh bench/.venv-peers.  Reinstalls when the requirement list or
    the repo's pyproject.toml changed (marker file with a hash)."""
    py = VBIN / "python"
    if skip_setup:
        if not py.exists():
            sys.exit(f"{VENV} does not exist; run without --skip-setup once")
        return
    pyproject = (REPO / "pyproject.toml").read_bytes() if (REPO / "pyproject.toml").exists() else b""
    digest = hashlib.sha256(
        json.dumps(PEER_REQUIREMENTS).encode() + pyproject + sys.version.encode()).hexdigest()
    marker = VENV / ".bench-installed"
    if py.exists() and marker.exists() and marker.read_text().strip() == digest:
        return
    log(f"setting up {VENV.relative_to(REPO)} (peers + frontdesk -e {REPO})")
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check"]
    pip_log = VENV / "pip-install.log"
    with open(pip_log, "w") as fh:
        subprocess.run(pip + ["--upgrade", "pip"], stdout=fh, stderr=subprocess.STDOUT)
        if subprocess.run(pip + PEER_REQUIREMENTS, stdout=fh, stderr=subprocess.STDOUT).returncode:
            sys.exit(f"installing the peers failed; see {pip_log}")
        rc = subprocess.run(pip + ["-e", str(REPO)], stdout=fh, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        log(f"WARNING: `pip install -e {REPO}` failed (see {pip_log}); frontdesk rows will fail to start")
        return  # no marker: try again next time
    marker.write_text(digest + "\n")


def _run_text(cmd, **kw):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, **kw)
        return (out.stdout + out.stderr).strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unavailable ({exc})"


def collect_versions():
    code = (
        "import json, importlib.metadata as m\n"
        f"names = {VERSION_PACKAGES!r}\n"
        "out = {}\n"
        "for n in names:\n"
        "    try: out[n] = m.version(n)\n"
        "    except Exception: out[n] = 'not installed'\n"
        "import sys; out['python (bench venv)'] = sys.version.split()[0]\n"
        "print(json.dumps(out))\n"
    )
    try:
        versions = json.loads(_run_text([str(VBIN / "python"), "-c", code]).splitlines()[-1])
    except (ValueError, IndexError):
        versions = {}
    wrk = _run_text([_which("wrk") or "wrk", "-v"]).splitlines()
    versions["wrk"] = wrk[0] if wrk else "?"
    versions["nginx"] = _run_text([_which("nginx") or "nginx", "-v"]).replace("nginx version: ", "")
    commit = _run_text(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    if "fatal" in commit or "unavailable" in commit:
        commit = "no commit yet"
    else:
        dirty = _run_text(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"])
        commit += " (src/ has uncommitted changes)" if dirty else ""
    versions["frontdesk commit"] = commit
    return versions


def machine_info():
    info = {}
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    info["CPU model"] = model
    info["nproc"] = str(os.cpu_count())
    info["kernel"] = platform.release()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                info["OS"] = line.split("=", 1)[1].strip('"')
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        info["memory"] = f"{kb / MiB:.1f} GiB"
    info["python (harness)"] = platform.python_version()
    info["ulimit -n (servers and wrk)"] = str(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    with contextlib.suppress(OSError):
        info["net.core.somaxconn"] = Path("/proc/sys/net/core/somaxconn").read_text().strip()
    info["load average at start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return info


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536
    try:
        nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
    except (OSError, ValueError):
        nr_open = want
    target = min(max(want, soft), nr_open)
    for new in ((target, max(hard, target)), (min(target, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, new)
            return
        except (ValueError, OSError):
            continue


# --------------------------------------------------------------------------
# Processes: start pinned, readiness, stop by process group, RSS of the tree


class StartFailed(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _proc_stat(pid):
    raw = Path(f"/proc/{pid}/stat").read_text()
    rest = raw[raw.rindex(")") + 2:].split()
    return int(rest[1]), int(rest[3])  # ppid, session id


def tree_pids(root):
    """root plus its descendants plus anything left in its session."""
    ppid, sid = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid[int(entry)], sid[int(entry)] = _proc_stat(entry)
    pids = {p for p, s in sid.items() if s == root}
    if root in ppid:
        pids.add(root)
    changed = True
    while changed:
        changed = False
        for p, pp in ppid.items():
            if pp in pids and p not in pids:
                pids.add(p)
                changed = True
    return sorted(pids)


def proc_mem(pid):
    """(VmRSS, VmHWM) in KiB for one process, or None if it is gone / a kernel thread."""
    rss = hwm = None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    except OSError:
        return None
    if rss is None:
        return None
    return rss, hwm or rss


def unpinned_tasks(root, cpu_list):
    """Threads of the server tree whose CPU affinity is not exactly cpu_list."""
    bad = []
    for pid in tree_pids(root):
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
                        if line.startswith("Cpus_allowed_list:"):
                            if line.split(":", 1)[1].strip() != cpu_list:
                                bad.append(f"{pid}/{tid}:{line.split(':', 1)[1].strip()}")
    return bad


def tree_mem(root):
    """[(pid, rss_kib, hwm_kib)] for every process of the server tree, root first."""
    out = []
    for pid in tree_pids(root):
        m = proc_mem(pid)
        if m:
            out.append((pid, m[0], m[1]))
    out.sort(key=lambda t: (t[0] != root, t[0]))
    return out


class Server:
    """One server process group: taskset -c 0 <argv>, started in its own session."""

    def __init__(self, name, argv, logpath, env, cwd=BENCH):
        self.name = name
        self.argv = ["taskset", "-c", SERVER_CPU, *argv]
        self.logpath = logpath
        self.env = env
        self.cwd = cwd
        self.proc = None
        self._log = None

    def start(self):
        self._log = open(self.logpath, "wb")
        try:
            self.proc = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise StartFailed(f"could not execute: {exc}") from exc

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, port, path, deadline_s=30.0):
        """Poll a TCP connect + one HTTP GET until the server answers or the deadline."""
        deadline = time.monotonic() + deadline_s
        last = "no answer"
        while time.monotonic() < deadline:
            if not self.alive():
                raise StartFailed(f"exited with code {self.proc.returncode} before answering")
            try:
                with socket.create_connection((HOST, port), timeout=0.5) as s:
                    s.settimeout(max(0.1, min(2.0, deadline - time.monotonic())))
                    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
                    head = s.recv(64)
                if head.startswith(b"HTTP/1."):
                    return int(head.split()[1])
                last = f"unexpected answer {head[:30]!r}"
            except (OSError, ValueError, IndexError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.05)  # poll interval, not a fixed wait
        raise StartFailed(f"not ready after {deadline_s:.0f} s ({last})")

    def stop(self, grace=10.0):
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the group is ours
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if self.proc.poll() is not None and not self._group_alive(pgid):
                break
            time.sleep(0.05)
        else:
            log(f"{self.name}: still running {grace:.0f} s after SIGTERM, sending SIGKILL")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        if self._log:
            self._log.close()

    @staticmethod
    def _group_alive(pgid):
        try:
            os.killpg(pgid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def log_tail(self, lines=15):
        try:
            data = Path(self.logpath).read_bytes().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(data.splitlines()[-lines:])


# --------------------------------------------------------------------------
# Server command lines


@dataclass
class Ctx:
    workers: int
    threads: int
    static_dir: Path
    workdir: Path


def _rel(path):
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def server_argv(server, app, port, ctx):
    """argv (without taskset) for server running app, or None when not applicable.
    May also return a reason string when the combination is skipped."""
    addr = f"{HOST}:{port}"
    w, t = str(ctx.workers), str(ctx.threads)
    wsgi_target = {"hello": "apps:hello", "flask": "apps:flask_app",
                   "transfer": "apps:transfer", "static": "apps:hello"}[app]
    if server == "frontdesk":
        argv = [str(VBIN / "frontdesk"), wsgi_target, "--bind", addr, "--workers", w, "--threads", t]
        if app == "static":
            argv += ["--static", f"/static={ctx.static_dir}"]
        return argv
    if server == "gunicorn":
        target = "apps:flask_app" if app == "static" else wsgi_target  # Flask send_from_directory
        return [str(VBIN / "gunicorn"), "-k", "gthread", "--threads", t, "-w", w, "-b", addr, target]
    if server == "waitress":
        if app == "static":
            return "static files: not part of the comparison (nginx, frontdesk, gunicorn+Flask, granian)"
        if ctx.workers != 1:
            return "waitress has no worker processes (single process only)"
        return [str(VBIN / "waitress-serve"), "--threads", t, "--listen", addr, wsgi_target]
    if server == "granian":
        argv = [str(VBIN / "granian"), "--interface", "wsgi", "--workers", w, "--blocking-threads", t,
                "--host", HOST, "--port", str(port)]
        if app == "static":
            argv += ["--static-path-route", "/static", "--static-path-mount", str(ctx.static_dir)]
        return argv + [wsgi_target]
    if server == "uvicorn":
        if app == "static":
            return "static files: not part of the comparison (nginx, frontdesk, gunicorn+Flask, granian)"
        target = {"hello": "apps_asgi:app", "flask": "apps_asgi:flask_asgi",
                  "transfer": "apps_asgi:transfer_asgi"}[app]
        return [str(VBIN / "uvicorn"), "--workers", w, "--loop", "uvloop", "--http", "httptools",
                "--no-access-log", "--host", HOST, "--port", str(port), target]
    if server == "nginx":
        if app != "static":
            return "nginx only serves the static-file scenarios"
        nginx = _which("nginx")
        if not nginx:
            return "nginx not installed"
        conf_dir = Path(tempfile.mkdtemp(prefix="nginx-", dir=ctx.workdir))
        conf_dir.chmod(0o755)
        (conf_dir / "nginx.conf").write_text(nginx_conf(conf_dir, port, ctx))
        return [nginx, "-p", str(conf_dir), "-c", str(conf_dir / "nginx.conf"),
                "-e", str(conf_dir / "error.log")]
    raise ValueError(server)


def nginx_conf(d, port, ctx):
    return f"""# generated by bench/run.py
worker_processes {ctx.workers};
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    default_type application/octet-stream;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen {HOST}:{port};
        location /static/ {{ alias {ctx.static_dir}/; }}
        location / {{ return 404; }}
    }}
}}
"""


def server_env(ctx):
    # Drop settings any server would pick up from the environment, so every
    # server runs with its defaults plus the flags shown in the report.
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH", "WEB_CONCURRENCY", "PORT",
                        "GUNICORN_CMD_ARGS")
           and not k.startswith(("FRONTDESK_", "GRANIAN_", "UVICORN_", "WAITRESS_"))}
    env["PATH"] = f"{VBIN}:{env.get('PATH', '/usr/bin:/bin')}"
    env["PYTHONPATH"] = str(BENCH)
    env["BENCH_STATIC_DIR"] = str(ctx.static_dir)
    env["BENCH_THREADS"] = str(ctx.threads)  # a2wsgi's thread pool for uvicorn (apps_asgi.py)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def make_static_dir(workdir):
    d = workdir / "static"
    d.mkdir()
    rnd = random.Random(STATIC_SEED)
    for name, size in STATIC_FILES.items():
        (d / name).write_bytes(rnd.randbytes(size))
        (d / name).chmod(0o644)
    d.chmod(0o755)
    workdir.chmod(0o755)  # nginx workers run as an unprivileged user
    return d


# --------------------------------------------------------------------------
# Load generators


def wrk_argv(port, path, conns, duration, close):
    argv = ["taskset", "-c", CLIENT_CPU, _which("wrk") or "wrk", "-t", "1", "-c", str(conns),
            "-d", f"{duration}s", "--timeout", "5s", "--latency", "-s", str(BENCH / "report.lua")]
    if close:
        argv += ["-H", "Connection: close"]
    return argv + [f"http://{HOST}:{port}{path}"]


def run_wrk(argv, duration):
    t0 = time.monotonic()
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    except subprocess.TimeoutExpired:
        return {"error": "wrk did not finish in time"}
    if time.monotonic() - t0 > duration + 5:
        log(f"  note: wrk took {time.monotonic() - t0:.1f} s for a {duration} s run")
    for line in out.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            r = json.loads(line[len("BENCHJSON "):])
            secs = r["duration_us"] / 1e6 or 1e-9
            r["rps"] = r["requests"] / secs
            r["mbps"] = r["bytes"] / secs / MiB
            r["sockerr"] = r["connect"] + r["read"] + r["write"] + r["timeout"]
            return r
    tail = (out.stdout + out.stderr).strip().splitlines()[-5:]
    return {"error": f"wrk exit {out.returncode}: " + " | ".join(tail)}


@dataclass
class Row:
    server: str
    scenario: str
    status: str = "ok"  # ok | failed | skipped
    note: str = ""
    server_cmd: str = ""
    client_cmd: str = ""
    log_tail: str = ""
    runs: list = field(default_factory=list)
    data: dict = field(default_factory=dict)


def measure_wrk(port, scen, args, row, conns=None, warmup=True):
    conns = conns or scen.conns
    if warmup and args.warmup > 0:
        run_wrk(wrk_argv(port, scen.path, conns, args.warmup, scen.close), args.warmup)
    argv = wrk_argv(port, scen.path, conns, args.duration, scen.close)
    row.client_cmd = row.client_cmd or shlex.join(argv)
    runs = []
    for i in range(args.repeats):
        r = run_wrk(argv, args.duration)
        runs.append(r)
        if "error" in r:
            log(f"  {row.server} {scen.name}: run {i + 1}: {r['error']}")
        else:
            log(f"  {row.server} {scen.name}: run {i + 1}: {r['rps']:.0f} req/s, "
                f"p99 {r['p99'] / 1000:.2f} ms, errors {r['sockerr']}, non-2xx {r['status']}")
    return runs


def summarize(runs):
    good = [r for r in runs if "error" not in r]
    if not good:
        return None
    med = lambda k: statistics.median(r[k] for r in good)  # noqa: E731
    served = [r for r in good if r["requests"] > 0]  # latency only exists for completed requests
    lat = lambda k: statistics.median(r[k] for r in served) if served else None  # noqa: E731
    return {
        "rps": med("rps"), "p50": lat("p50"), "p99": lat("p99"), "mbps": med("mbps"),
        "requests": sum(r["requests"] for r in good),
        "status": sum(r["status"] for r in good), "connect": sum(r["connect"] for r in good),
        "read": sum(r["read"] for r in good), "write": sum(r["write"] for r in good),
        "timeout": sum(r["timeout"] for r in good), "all_rps": [r["rps"] for r in good],
        "failed_runs": len(runs) - len(good),
    }


# --------------------------------------------------------------------------
# One (server, scenario) measurement


def run_one(server_name, scen, args, ctx, env):
    row = Row(server_name, scen.name)
    port = free_port()
    argv = server_argv(server_name, scen.app, port, ctx)
    if argv is None or isinstance(argv, str):
        row.status, row.note = "skipped", argv or "not applicable"
        return row
    row.server_cmd = shlex.join(["taskset", "-c", SERVER_CPU, *argv])
    if server_name == "uvicorn":  # its thread count comes from the environment (apps_asgi.py)
        row.server_cmd = f"BENCH_THREADS={ctx.threads} {row.server_cmd}"
    logpath = ctx.workdir / f"{server_name}-{scen.name}.log"
    srv = Server(server_name, argv, logpath, env)
    try:
        srv.start()
        t0 = time.monotonic()
        code = srv.wait_ready(port, scen.path if scen.kind == "wrk" else "/")
        row.data["startup_s"] = time.monotonic() - t0
        log(f"  {server_name} {scen.name}: ready in {row.data['startup_s']:.2f} s")
        if code != 200:
            row.note = f"readiness probe got HTTP {code}"
        expected = expected_body(scen, ctx)
        if expected is not None:
            problem = verify_body(port, scen.path, expected)
            if problem:
                row.note = (row.note + "; " if row.note else "") + f"WRONG RESPONSE: {problem}"
        bad = unpinned_tasks(srv.pid, SERVER_CPU)
        if bad:
            row.note = (row.note + "; " if row.note else "") + \
                f"NOT pinned to CPU {SERVER_CPU}: {', '.join(bad[:4])}"
        if scen.kind == "wrk":
            row.runs = measure_wrk(port, scen, args, row)
            row.data["summary"] = summarize(row.runs)
        elif scen.kind == "transfer":
            run_transfer(srv, port, scen, args, row)
        elif scen.kind == "slow":
            run_slow(srv, port, scen, args, row)
        elif scen.kind == "rss":
            run_rss(srv, port, scen, args, row)
        if not srv.alive():
            row.note = (row.note + "; " if row.note else "") + \
                f"server exited during the run (code {srv.proc.returncode})"
            row.log_tail = srv.log_tail()
    except StartFailed as exc:
        row.status, row.note = "failed", f"failed to start: {exc}"
        row.log_tail = srv.log_tail()
    except Exception as exc:  # keep going with the next server
        row.status, row.note = "failed", f"harness error: {type(exc).__name__}: {exc}"
        row.log_tail = srv.log_tail()
    finally:
        srv.stop()
    return row


def expected_body(scen, ctx):
    if scen.app == "hello":
        return b"Hello, World!"
    if scen.app == "static":
        return (ctx.static_dir / scen.path.rsplit("/", 1)[1]).read_bytes()
    return None


def verify_body(port, path, expected):
    """One GET before the load: the server must answer 200 with exactly the expected body."""
    import http.client
    try:
        conn = http.client.HTTPConnection(HOST, port, timeout=10)
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"
    if resp.status != 200:
        return f"HTTP {resp.status}"
    if body != expected:
        return f"body of {len(body)} bytes differs from the expected {len(expected)} bytes"
    return ""


def run_transfer(srv, port, scen, args, row):
    idle = tree_mem(srv.pid)
    row.data["idle_rss_kib"] = sum(m[1] for m in idle)
    argv = ["taskset", "-c", CLIENT_CPU, sys.executable, str(BENCH / "transfer.py"),
            "--port", str(port), "--mode", scen.mode, "--bytes", str(TRANSFER_BYTES)]
    row.client_cmd = shlex.join(argv)
    results = []
    peak = 0
    for i in range(args.repeats):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
            line = next(x for x in out.stdout.splitlines() if x.startswith("TRANSFERJSON "))
            r = json.loads(line[len("TRANSFERJSON "):])
        except (subprocess.TimeoutExpired, StopIteration, ValueError) as exc:
            r = {"ok": False, "error": f"{type(exc).__name__}"}
        mem = tree_mem(srv.pid)
        peak = max(peak, sum(m[2] for m in mem))
        results.append(r)
        log(f"  {row.server} {scen.name}: run {i + 1}: {r}")
    row.runs = results
    good = [r for r in results if r.get("ok")]
    row.data["peak_hwm_kib"] = peak
    row.data["ok_runs"] = len(good)
    if good:
        row.data["seconds"] = statistics.median(r["seconds"] for r in good)
    errors = [r.get("error") or f"status {r.get('status')}, {r.get('bytes')} bytes, echo {r.get('echo')!r}"
              for r in results if not r.get("ok")]
    if errors:
        row.note = (row.note + "; " if row.note else "") + f"{len(errors)} failed: {errors[0]}"


def run_slow(srv, port, scen, args, row):
    base = measure_wrk(port, scen, args, row)
    row.data["base"] = summarize(base)
    total = 15 + args.repeats * (args.duration + 5) + 30
    slow_argv = ["taskset", "-c", CLIENT_CPU, sys.executable, str(BENCH / "slowloris.py"),
                 "--port", str(port), "--connections", str(args.slow_connections),
                 "--duration", str(total)]
    row.data["slow_cmd"] = shlex.join(slow_argv)
    slow = subprocess.Popen(slow_argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        ready = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = slow.stdout.readline()
            if not line or line.startswith("READY"):
                ready = line.strip()
                break
        row.data["slow_ready"] = ready
        log(f"  {row.server} slow-clients: slowloris {ready or 'did not report'}")
        with_slow = measure_wrk(port, scen, args, row, warmup=False)
        row.runs = base + with_slow
        row.data["slow"] = summarize(with_slow)
    finally:
        with contextlib.suppress(ProcessLookupError):
            slow.send_signal(signal.SIGTERM)
        try:
            rest, _ = slow.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(slow.pid, signal.SIGKILL)
            rest, _ = slow.communicate()
    for line in (rest or "").splitlines():
        if line.startswith("SLOWJSON "):
            row.data["slow_stats"] = json.loads(line[len("SLOWJSON "):])


def run_rss(srv, port, scen, args, row):
    idle = tree_mem(srv.pid)
    row.data["idle"] = [m[1] for m in idle]
    argv = wrk_argv(port, scen.path, scen.conns, args.duration, False)
    row.client_cmd = shlex.join(argv)
    r = run_wrk(argv, args.duration)
    row.runs = [r]
    after = tree_mem(srv.pid)
    row.data["after"] = [m[1] for m in after]
    row.data["hwm"] = [m[2] for m in after]
    row.data["rps"] = r.get("rps")
    log(f"  {row.server} rss: idle {row.data['idle']} KiB, after {row.data['after']} KiB")


# --------------------------------------------------------------------------
# Report


def fmt_ms(us):
    return f"{us / 1000:.2f} ms" if us is not None else "-"


def fmt_mib(kib):
    return f"{kib / 1024:.1f}"


def sockerr(s):
    parts = [f"{k[0]}{s[k]}" for k in ("connect", "read", "write", "timeout") if s[k]]
    return " ".join(parts) if parts else "0"


def status_cell(row):
    text = row.note or row.status
    return text.replace("|", "\\|").replace("\n", " ")


def ratio(value, ref):
    if value is None or not ref:
        return "-"
    return f"{value / ref:.2f}x"


def render_scenario(scen, rows, args):
    what = scen.what.replace("500 slowloris", f"{args.slow_connections} slowloris")
    out = [f"### {scen.name}", "", what + ".", ""]
    active = [r for r in rows if r.status != "skipped"]
    if not active:
        return out + ["(no applicable server selected)", ""]
    fd = next((r for r in rows if r.server == "frontdesk" and r.status == "ok"), None)
    if scen.kind == "wrk":
        fd_rps = fd.data["summary"]["rps"] if fd and fd.data.get("summary") else None
        head = "| server | req/s (median) | p50 | p99 | non-2xx/3xx | socket errors | vs frontdesk |"
        sep = "|---|--:|--:|--:|--:|--:|--:|"
        if scen.mbps:
            head += " MB/s |"
            sep += "--:|"
        out += [head + " req/s of each run | notes |", sep + "---|---|"]
        for r in active:
            s = r.data.get("summary")
            if r.status != "ok" or not s:
                out.append(f"| {r.server} | {status_cell(r) if r.status != 'ok' else 'no successful run'} "
                           f"|  |  |  |  |  |{'  |' if scen.mbps else ''}  |  |")
                continue
            cells = [r.server, f"{s['rps']:,.0f}", fmt_ms(s["p50"]), fmt_ms(s["p99"]), str(s["status"]),
                     sockerr(s), "1.00x" if r.server == "frontdesk" else ratio(s["rps"], fd_rps)]
            if scen.mbps:
                cells.append(f"{s['mbps'] * MiB / 1e6:,.1f}")
            cells.append(", ".join(f"{x:,.0f}" for x in s["all_rps"]))
            notes = [status_cell(r)] if r.note else []
            if s["requests"] == 0:
                notes.append("no request completed")
            if s["failed_runs"]:
                notes.append(f"{s['failed_runs']} wrk run(s) failed")
            cells.append("; ".join(notes))
            out.append("| " + " | ".join(cells) + " |")
    elif scen.kind == "transfer":
        fd_s = fd.data.get("seconds") if fd else None
        out += ["| server | time (median) | MB/s | peak RSS, server tree (MiB) | idle RSS (MiB) | "
                "time vs frontdesk | time of each run | notes |", "|---|--:|--:|--:|--:|--:|---|---|"]
        for r in active:
            if r.status != "ok" or "seconds" not in r.data:
                out.append(f"| {r.server} | {status_cell(r) if r.status != 'ok' else 'no successful run'} "
                           "|  |  |  |  |  | " + (status_cell(r) if r.status == "ok" else "") + " |")
                continue
            secs = r.data["seconds"]
            cells = [r.server, f"{secs:.2f} s", f"{TRANSFER_BYTES / secs / 1e6:,.0f}",
                     fmt_mib(r.data["peak_hwm_kib"]), fmt_mib(r.data["idle_rss_kib"]),
                     "1.00x" if r.server == "frontdesk" else ratio(secs, fd_s),
                     ", ".join(f"{x['seconds']:.2f} s" if x.get("ok") else "failed" for x in r.runs),
                     status_cell(r) if r.note else ""]
            out.append("| " + " | ".join(cells) + " |")
        out += ["", "Peak RSS is the sum of VmHWM over every process of the server's tree "
                "(read from /proc/PID/status after the transfer); idle RSS is the sum of VmRSS before it."]
    elif scen.kind == "slow":
        out += [f"| server | req/s without | req/s with {args.slow_connections} slow clients | kept | p99 without | p99 with | "
                "socket errors with | slow conns open / closed by server | notes |",
                "|---|--:|--:|--:|--:|--:|--:|--:|---|"]
        for r in active:
            b, w = r.data.get("base"), r.data.get("slow")
            if r.status != "ok" or not b:
                out.append(f"| {r.server} | {status_cell(r) if r.status != 'ok' else 'no successful run'} "
                           "|  |  |  |  |  |  |  |")
                continue
            st = r.data.get("slow_stats") or {}
            conns = f"{st.get('open_at_stop', '?')} / {st.get('closed_by_server', 0) + st.get('answered', 0)}"
            w_rps = w["rps"] if w else 0.0
            kept = f"{100 * w_rps / b['rps']:.0f}%" if b["rps"] else "-"
            cells = [r.server, f"{b['rps']:,.0f}", f"{w_rps:,.0f}", kept, fmt_ms(b["p99"]), fmt_ms(w["p99"]) if w else "-",
                     sockerr(w) if w else "all runs failed", conns,
                     "; ".join(([status_cell(r)] if r.note else []) +
                               (["no request completed with slow clients"] if w and w["requests"] == 0 else []))]
            out.append("| " + " | ".join(cells) + " |")
    elif scen.kind == "rss":
        out += ["| server | processes | idle RSS per process (MiB) | idle total | RSS after 1,000-conn run "
                "| total after | peak (sum VmHWM) | req/s during run | socket errors | notes |",
                "|---|--:|---|--:|---|--:|--:|--:|--:|---|"]
        for r in active:
            if r.status != "ok" or "idle" not in r.data:
                out.append(f"| {r.server} | {status_cell(r)} |  |  |  |  |  |  |  |  |")
                continue
            d = r.data
            cells = [r.server, str(len(d["idle"])), " + ".join(fmt_mib(x) for x in d["idle"]),
                     fmt_mib(sum(d["idle"])), " + ".join(fmt_mib(x) for x in d["after"]),
                     fmt_mib(sum(d["after"])), fmt_mib(sum(d["hwm"])),
                     f"{d['rps']:,.0f}" if d.get("rps") is not None else "-",
                     sockerr(r.runs[0]) if r.runs and "error" not in r.runs[0] else "-",
                     status_cell(r) if r.note else ""]
            out.append("| " + " | ".join(cells) + " |")
        out += ["", "Processes are listed master/main process first. RSS = VmRSS, peak = VmHWM, "
                "from /proc/PID/status."]
    skipped = [r for r in rows if r.status == "skipped"]
    if skipped:
        out += ["", "Not run: " + "; ".join(f"{r.server} ({r.note})" for r in skipped)]
    return out + [""]


def render_report(args, rows_by_scen, machine, versions, started, finished):
    L = [f"# frontdesk benchmark -- {started:%Y-%m-%d %H:%M} (local time)", ""]
    L += ["Command: `" + shlex.join(["python", "bench/run.py", *sys.argv[1:]]) + "`", ""]
    if "frontdesk" not in args.server_list:
        L += ["**Peer-only run: frontdesk was not measured.**", ""]
    elif all(r.status != "ok" for rows in rows_by_scen.values() for r in rows if r.server == "frontdesk"):
        L += ["**frontdesk did not run in this report (see its rows); the figures are peer-only.**", ""]
    L += ["## Machine", ""] + [f"- {k}: {v}" for k, v in machine.items()]
    L += [f"- load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
          f"- wall time: {(finished - started).total_seconds() / 60:.1f} min", ""]
    L += ["## Versions", "", "| component | version |", "|---|---|"]
    L += [f"| {k} | {v} |" for k, v in versions.items()] + [""]
    L += ["## Method", "",
          f"- Every server: {args.workers} worker process(es), {args.threads} threads, the same app objects "
          "from `bench/apps.py` (uvicorn through `bench/apps_asgi.py`, a2wsgi with the same thread count).",
          f"- Server pinned to CPU {SERVER_CPU} (`taskset -c {SERVER_CPU}`), load generator pinned to CPU "
          f"{CLIENT_CPU} (`wrk -t 1`), all traffic on 127.0.0.1.",
          "- Readiness: TCP connect + one HTTP GET polled every 50 ms, 30 s deadline.",
          f"- Warm-up {args.warmup} s (discarded), then {args.repeats} run(s) of {args.duration} s; the table "
          "shows the median req/s, p50 and p99 latency over the runs (each taken from wrk's own histogram "
          "via `bench/report.lua`), and errors summed over the runs.",
          "- Socket errors: c = connect, r = read, w = write, t = timeout (wrk `--timeout 5s`).",
          "- A fresh server process is started for each (server, scenario) and stopped with SIGTERM "
          "(SIGKILL after 10 s).", ""]
    L += ["## Results", ""]
    for scen in args.scenario_list:
        L += render_scenario(SCENARIO_BY_NAME[scen], rows_by_scen.get(scen, []), args)
    L += ["## Command lines", "",
          "Ports are chosen free at run time; temp paths are those of this run.", ""]
    for scen in args.scenario_list:
        rows = [r for r in rows_by_scen.get(scen, []) if r.server_cmd]
        if not rows:
            continue
        L += [f"### {scen}", "", "```"]
        for r in rows:
            L.append(f"# {r.server}")
            L.append(r.server_cmd)
            if r.client_cmd:
                L.append(r.client_cmd)
            if r.data.get("slow_cmd"):
                L.append(r.data["slow_cmd"])
        L += ["```", ""]
    failures = [r for rows in rows_by_scen.values() for r in rows if r.log_tail]
    if failures:
        L += ["## Server log tails (failures)", ""]
        for r in failures:
            L += [f"### {r.server} / {r.scenario}: {r.note}", "", "```", r.log_tail, "```", ""]
    return "\n".join(L) + "\n"


# --------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="frontdesk vs peers benchmark (loopback only). See docs/benchmarks.md.")
    p.add_argument("--servers", default=",".join(ALL_SERVERS),
                   help=f"comma list from {','.join(ALL_SERVERS)} (default: all)")
    p.add_argument("--scenarios", default=None,
                   help=f"comma list from {','.join(s.name for s in SCENARIOS)} (default: all)")
    p.add_argument("--quick", action="store_true",
                   help="1 repeat, 5 s runs, 1 s warm-up, scenarios hello,hello-1000,static-1k")
    p.add_argument("--repeats", type=int, default=None, help="measured runs per cell (default 3)")
    p.add_argument("--duration", type=int, default=None, help="seconds per wrk run (default 10)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up seconds (default 2)")
    p.add_argument("--workers", type=int, default=1, help="worker processes for every server")
    p.add_argument("--threads", type=int, default=8, help="threads per worker for every server")
    p.add_argument("--slow-connections", type=int, default=500)
    p.add_argument("--skip-setup", action="store_true", help="do not create/refresh bench/.venv-peers")
    p.add_argument("--output", default=None, help="report path (default bench/results/<date>.md)")
    args = p.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.duration = args.duration or (5 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    if args.duration > 600 or args.repeats > 20:
        p.error("bounded runs only: --duration <= 600, --repeats <= 20")
    scen = args.scenarios or (",".join(QUICK_SCENARIOS) if args.quick else ",".join(s.name for s in SCENARIOS))
    args.scenario_list = [s.strip() for s in scen.split(",") if s.strip()]
    args.server_list = [s.strip() for s in args.servers.split(",") if s.strip()]
    bad = [s for s in args.scenario_list if s not in SCENARIO_BY_NAME] + \
          [s for s in args.server_list if s not in ALL_SERVERS]
    if bad:
        p.error(f"unknown scenario/server: {', '.join(bad)}")
    return args


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    args = parse_args(argv)
    if (os.cpu_count() or 1) < 2:
        log("WARNING: fewer than 2 CPUs; server and wrk pinning will overlap")
    # SIGTERM to the harness -> KeyboardInterrupt, so every finally: stops its server
    signal.signal(signal.SIGTERM, _sigterm)
    raise_nofile()
    ensure_tools()
    ensure_venv(args.skip_setup)
    machine = machine_info()
    versions = collect_versions()
    started = _dt.datetime.now()
    workdir = Path(tempfile.mkdtemp(prefix="frontdesk-bench-"))
    rows_by_scen = {}
    interrupted = False
    try:
        ctx = Ctx(args.workers, args.threads, make_static_dir(workdir), workdir)
        env = server_env(ctx)
        for scen_name in args.scenario_list:
            scen = SCENARIO_BY_NAME[scen_name]
            rows = rows_by_scen.setdefault(scen_name, [])
            for server in args.server_list:
                log(f"{scen_name}: {server}")
                row = run_one(server, scen, args, ctx, env)
                if row.status != "ok" or row.note:
                    log(f"  {server} {scen_name}: {row.status} {row.note}")
                rows.append(row)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted; writing the partial report")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    finished = _dt.datetime.now()
    report = render_report(args, rows_by_scen, machine, versions, started, finished)
    if interrupted:
        report = report.replace("\n", "\n**Interrupted: partial results.**\n\n", 1)
    RESULTS.mkdir(exist_ok=True)
    out = Path(args.output) if args.output else RESULTS / f"{started:%Y-%m-%d}.md"
    if not args.output and out.exists():
        out = RESULTS / f"{started:%Y-%m-%d-%H%M%S}.md"
    out.write_text(report)
    raw = {"command": sys.argv, "machine": machine, "versions": versions,
           "rows": {k: [dataclasses.asdict(r) for r in v] for k, v in rows_by_scen.items()}}
    out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str))
    sys.stdout.write(report)
    log(f"report written to {_rel(out)}")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
