"""cli.main: exit codes, messages, --help, --print-config, and hand-off to frontdesk.server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import frontdesk
from frontdesk import cli
from frontdesk.cli import build_parser
from frontdesk.config import SETTINGS, Config
from frontdesk.loader import load_app

FIXTURES = str(Path(__file__).resolve().parent / "loader_fixtures")


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No settings from the developer's shell or checkout leak into a test."""
    for var in list(os.environ):
        if var.startswith("FRONTDESK_") or var in ("PORT", "WEB_CONCURRENCY"):
            monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    """A stand-in frontdesk.server whose run() records its Config and returns 3."""
    seen: list[Config] = []

    def run(config: Config) -> int:
        seen.append(config)
        return 3

    monkeypatch.setitem(sys.modules, "frontdesk.server", types.SimpleNamespace(run=run))
    return seen


def main(*argv: str) -> int:
    with pytest.raises(SystemExit) as info:
        cli.main(list(argv))
    return info.value.code


def test_runs_the_server_and_exits_with_its_status(server: list[Config]) -> None:
    assert main("-w", "2", "-b", "127.0.0.1:1", "--bind", "unix:/tmp/x.sock", "myapp:app") == 3
    (config,) = server
    assert (config.app, config.workers, config.bind) == ("myapp:app", 2, ("127.0.0.1:1", "unix:/tmp/x.sock"))


def test_app_and_flags_from_the_file_and_environment(server, monkeypatch, tmp_path: Path) -> None:
    (tmp_path / "frontdesk.toml").write_text('app = "fromfile:app"\nreuse_port = true\n')
    monkeypatch.setenv("FRONTDESK_PRELOAD", "yes")
    assert main("--no-reuse-port", "--keepalive", "2", "--limit-request-field_size", "1k") == 3
    (config,) = server
    assert (config.app, config.reuse_port, config.preload) == ("fromfile:app", False, True)
    assert (config.keepalive, config.limit_request_field_size) == (2.0, 1024)


def test_bad_setting_is_one_line_and_status_2(server, capsys, monkeypatch) -> None:
    monkeypatch.setenv("FRONTDESK_THREADS", "many")
    assert main("myapp:app") == 2
    assert capsys.readouterr().err == (
        "frontdesk: error: setting 'threads' in environment variable FRONTDESK_THREADS is invalid:"
        " expected a whole number, got 'many'\n"
    )
    assert server == []


def test_missing_app(server, capsys) -> None:
    assert main() == 2
    assert capsys.readouterr().err.startswith("frontdesk: error: no application given")
    assert server == []


def test_argparse_errors_are_one_line_status_2_with_a_suggestion(capsys) -> None:
    assert main("--threds", "4", "myapp:app") == 2
    assert capsys.readouterr().err == (
        "frontdesk: error: unknown option --threds (did you mean --threads?); see frontdesk --help\n")
    assert main("--graceful-timeot=3", "myapp:app") == 2
    assert capsys.readouterr().err == ("frontdesk: error: unknown option --graceful-timeot"
                                       " (did you mean --graceful-timeout?); see frontdesk --help\n")
    assert main("--log-level") == 2
    assert capsys.readouterr().err == "frontdesk: error: argument --log-level: expected one argument\n"
    assert main("--thread", "4", "myapp:app") == 2  # no abbreviations: a typo is not a prefix
    assert capsys.readouterr().err.startswith("frontdesk: error: unknown option --thread ")
    assert main("myapp:app", "other:app") == 2
    assert capsys.readouterr().err == (
        "frontdesk: error: unexpected argument 'other:app': give one APP, and options before or"
        " after it\n")


def test_gunicorn_spellings_of_the_same_settings(server) -> None:
    assert main("-m", "027", "--access-logformat", "%(h)s %(s)s", "--log-file", "-",
                "--reload-extra-file", "templates/base.html", "--log-config-json", "",
                "myapp:app") == 3
    (config,) = server
    assert (config.umask, config.access_log_format, config.error_log) == (0o27, "%(h)s %(s)s", "-")
    assert config.reload_include == ("templates/base.html",)


def test_every_gunicorn_flag_named_as_an_equivalent_is_accepted() -> None:
    flags = build_parser()._option_string_actions
    named = {flag for s in SETTINGS
             for flag in re.findall(r"(?:gunicorn |, )(-{1,2}[a-z][a-z_-]*)", s.equiv)}
    assert {"-m", "--access-logformat", "--log-file", "--log-config-json"} <= named
    assert sorted(named - set(flags)) == []


def test_help_groups_settings_and_shows_defaults(capsys) -> None:
    assert main("--help") == 0
    out = capsys.readouterr().out
    groups = ["Server socket:", "Workers:", "Limits:", "Timeouts:", "Static files:", "Proxy:",
              "Logging:", "Process:"]
    positions = [out.index(g) for g in groups]
    assert positions == sorted(positions)
    threads = out[out.index("--threads N"):out.index("--loop")]
    assert "(default: 8)" in threads
    assert "(default: 1g)" in out
    assert "--no-reuse-port" in out and "FRONTDESK_" in out
    assert out.index("--threads") > out.index("Workers:") > out.index("--backlog")


def test_print_config_shows_values_and_sources(server, capsys, monkeypatch, tmp_path: Path) -> None:
    (tmp_path / "frontdesk.toml").write_text("backlog = 100\n")
    monkeypatch.setenv("FRONTDESK_WORKERS", "3")
    assert main("--print-config", "--threads", "4", "myapp:app") == 0
    lines = capsys.readouterr().out.splitlines()

    def line(name: str) -> str:
        (found,) = [x for x in lines if x.startswith(f"{name} = ")]
        return " ".join(found.split())

    assert line("threads") == "threads = 4 # command line"
    assert line("workers") == "workers = 3 # env FRONTDESK_WORKERS"
    assert line("backlog") == "backlog = 100 # frontdesk.toml"
    assert line("timeout") == "timeout = 30.0 # default"
    assert line("app") == 'app = "myapp:app" # command line'
    assert server == []


def test_print_config_still_rejects_bad_settings(capsys) -> None:
    assert main("--print-config", "--umask", "9") == 2
    assert capsys.readouterr().out == ""


def test_app_load_error_prints_the_users_traceback_then_one_line(capsys, monkeypatch) -> None:
    def run(config: Config) -> int:
        load_app(config.app, chdir=config.chdir, pythonpath=config.pythonpath)
        return 0

    monkeypatch.setitem(sys.modules, "frontdesk.server", types.SimpleNamespace(run=run))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "lf_import_error", raising=False)
    assert main("--pythonpath", FIXTURES, "lf_import_error:app") == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):\n")
    assert "lf_import_error.py" in err and "loader.py" not in err
    assert err.splitlines()[-1] == (
        "frontdesk: error: module 'lf_import_error' was found, but importing it failed:"
        " No module named 'lf_definitely_missing_dependency'"
    )


def test_app_not_found_is_one_line(capsys, monkeypatch) -> None:
    def run(config: Config) -> int:
        load_app(config.app)
        return 0

    monkeypatch.setitem(sys.modules, "frontdesk.server", types.SimpleNamespace(run=run))
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert main("lf_not_there:app") == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("frontdesk: error: module 'lf_not_there' not found in ")


# -- real processes --

BIND_DETECTOR = """\
import socket, sys
_bind = socket.socket.bind
def bind(self, address):
    sys.stderr.write("BOUND %r\\n" % (address,))
    return _bind(self, address)
socket.socket.bind = bind
"""


@pytest.fixture
def detecting_env(tmp_path: Path) -> dict[str, str]:
    """An environment in which any socket bind() is reported on stderr, proven by a control run."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(BIND_DETECTOR)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDESK_")}
    # The frontdesk under test, not whichever one the interpreter has installed.
    src = str(Path(frontdesk.__file__).resolve().parent.parent)
    env.update(PYTHONPATH=os.pathsep.join([str(hooks), src]), PORT="", WEB_CONCURRENCY="")
    control = subprocess.run(
        [sys.executable, "-c", "import socket; socket.socket().bind(('127.0.0.1', 0))"],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )
    assert "BOUND" in control.stderr
    return env


def console_script() -> str:
    path = Path(sys.executable).with_name("frontdesk")
    if not path.exists():  # pragma: no cover
        pytest.skip("the frontdesk console script is not installed next to this python")
    return str(path)


@pytest.mark.parametrize("command", [[sys.executable, "-m", "frontdesk"], "script"])
def test_real_process_with_a_bad_setting(command, detecting_env, tmp_path: Path) -> None:
    argv = [console_script()] if command == "script" else command
    (tmp_path / "frontdesk.toml").write_text("threds = 4\n")
    result = subprocess.run(
        [*argv, "-b", "127.0.0.1:0", "myapp:app"],
        env=detecting_env, cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "frontdesk: error: setting 'threds' in frontdesk.toml is unknown (did you mean 'threads'?)\n"
    )
    assert result.stdout == ""


def test_real_process_print_config(detecting_env, tmp_path: Path) -> None:
    env = {**detecting_env, "PORT": "5000"}
    result = subprocess.run(
        [sys.executable, "-m", "frontdesk", "--print-config"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert any(" ".join(x.split()) == 'bind = ["0.0.0.0:5000"] # env PORT' for x in result.stdout.splitlines())


BAD_FILES = {
    "bad.json": b'{"version": 1, bad json',
    "bad.toml": b"version = \n",
    "v2.json": b'{"version": 2}',
    "handler.toml": b'version = 1\n[handlers.x]\nclass = "no.such.Handler"\n',
    "latin1.toml": 'threads = 2 # caf\xe9\n'.encode("latin-1"),
    "inf.toml": b"timeout = inf\n",
}


@pytest.mark.parametrize(("args", "named"), [
    (["--log-config", "missing.json"], "'log_config'"),
    (["--log-config", "bad.json"], "'log_config'"),
    (["--log-config", "bad.toml"], "'log_config'"),
    (["--log-config", "v2.json"], "'log_config'"),
    (["--log-config", "handler.toml"], "'log_config'"),  # only dictConfig itself finds this one
    (["--error-logfile", "nodir/error.log"], "'error_log'"),
    (["--log-file", "nodir/error.log"], "'error_log'"),
    (["--access-logfile", "nodir/access.log"], "'access_log'"),
    (["--pid", "nodir/frontdesk.pid"], "'pid'"),
    (["--chdir", "/nonexistent"], "'chdir'"),
    (["-c", "latin1.toml"], "latin1.toml"),
    (["--access-log-format", "%(h) %(s)s"], "'access_log_format'"),
    (["--access-log-format", "100% of %(r)s"], "'access_log_format'"),
    (["-c", "inf.toml"], "'timeout'"),
])
def test_real_process_bad_files_and_formats_are_one_line_before_binding(
        args, named, detecting_env, tmp_path: Path) -> None:
    for name, data in BAD_FILES.items():
        (tmp_path / name).write_bytes(data)
    result = subprocess.run(
        [sys.executable, "-m", "frontdesk", "-b", "127.0.0.1:0", *args, "myapp:app"],
        env=detecting_env, cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("frontdesk: error: ") and named in line


@pytest.fixture
def keep_logging():
    """--check-config sets up frontdesk's loggers in this process: put them back afterwards."""
    import logging

    loggers = [logging.getLogger(name) for name in ("frontdesk.error", "frontdesk.access")]
    saved = [(lg, lg.handlers[:], lg.propagate, lg.level) for lg in loggers]
    yield
    for lg, handlers, propagate, level in saved:
        lg.handlers[:] = handlers
        lg.propagate = propagate
        lg.setLevel(level)


def test_check_config_loads_the_app_and_exits(capsys, keep_logging) -> None:
    assert main("--check-config", "--pythonpath", FIXTURES, "lf_factory:app") == 0
    assert capsys.readouterr().out == "frontdesk: settings and application 'lf_factory:app' OK\n"
    assert main("--check-config", "--pythonpath", FIXTURES, "lf_factory:nope") == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("frontdesk: error: module 'lf_factory' has no attribute 'nope'")
    assert main("--check-config") == 2
    assert capsys.readouterr().err.startswith("frontdesk: error: no application given")


def test_check_config_applies_the_log_config(capsys, tmp_path: Path, keep_logging) -> None:
    (tmp_path / "handler.toml").write_bytes(BAD_FILES["handler.toml"])
    assert main("--check-config", "--log-config", "handler.toml", "--pythonpath", FIXTURES,
                "lf_factory:app") == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(
        f"frontdesk: error: setting 'log_config' is invalid: {tmp_path / 'handler.toml'}: ")
    assert "no.such.Handler" in line


def test_check_config_in_a_real_process(detecting_env, tmp_path: Path) -> None:
    (tmp_path / "wsgi.py").write_text("def app(environ, start_response):\n    return []\n")
    result = subprocess.run(
        [sys.executable, "-m", "frontdesk", "--check-config", "-b", "127.0.0.1:0", "wsgi:app"],
        env=detecting_env, cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "frontdesk: settings and application 'wsgi:app' OK\n"
