"""The settings table, the four sources and their precedence, validation, docs."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest

import frontdesk.static
from frontdesk.config import SETTINGS, Config, format_config, resolve, update_docs
from frontdesk.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def run(tmp_path: Path, cli: dict[str, object] | None = None, env: dict[str, str] | None = None):
    return resolve(cli or {}, environ=env or {}, cwd=tmp_path)


def error(tmp_path: Path, cli=None, env=None) -> str:
    with pytest.raises(ConfigError) as info:
        run(tmp_path, cli, env)
    message = str(info.value)
    assert "\n" not in message
    return message


# -- the table itself --


def test_defaults_match_the_dataclass_and_parse_as_their_own_type() -> None:
    config = Config()
    for s in SETTINGS:
        assert getattr(config, s.name) == s.default_value(), s.name
        if s.default_value() is not None:
            assert s.type(s.default_value()) == s.default_value(), s.name
        assert s.doc and s.group, s.name


def test_every_flag_is_declared_once() -> None:
    flags = [f for s in SETTINGS for f in s.flags]
    assert len(flags) == len(set(flags))
    assert [s.name for s in SETTINGS if not s.flags] == ["app"]


def test_defaults_alone(tmp_path: Path) -> None:
    config, sources = run(tmp_path)
    assert config.bind == ("127.0.0.1:8000",)
    assert config.workers == len(os.sched_getaffinity(0))
    assert config.limit_request_body == 1 << 30
    assert set(sources.values()) == {"default"}


def test_docs_are_up_to_date() -> None:
    text = DOCS.read_text()
    assert update_docs(text) == text, (
        "docs/configuration.md is out of date; regenerate it with the command it shows"
    )
    for s in SETTINGS:
        assert f"| `{s.name}`" in text


# -- precedence --


def test_precedence_across_all_four_sources(tmp_path: Path) -> None:
    (tmp_path / "frontdesk.toml").write_text(
        "threads = 2\nbacklog = 10\ntimeout = 5\n"
    )
    env = {"FRONTDESK_THREADS": "3", "FRONTDESK_BACKLOG": "20"}
    config, sources = run(tmp_path, {"threads": "4"}, env)
    assert (config.threads, sources["threads"]) == (4, "command line")
    assert (config.backlog, sources["backlog"]) == (20, "env FRONTDESK_BACKLOG")
    assert (config.timeout, sources["timeout"]) == (5.0, "frontdesk.toml")
    assert (config.graceful_timeout, sources["graceful_timeout"]) == (30.0, "default")


def test_a_higher_source_replaces_a_list(tmp_path: Path) -> None:
    (tmp_path / "frontdesk.toml").write_text('bind = ["127.0.0.1:1", "127.0.0.1:2"]\n')
    config, _ = run(tmp_path, {"bind": ["127.0.0.1:3"]})
    assert config.bind == ("127.0.0.1:3",)


def test_overridden_sources_are_still_checked(tmp_path: Path) -> None:
    message = error(tmp_path, {"threads": "4"}, {"FRONTDESK_THREADS": "many"})
    assert "FRONTDESK_THREADS" in message


def test_config_file_discovery_order(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.frontdesk]\nthreads = 2\n")
    config, sources = run(tmp_path)
    assert (config.threads, sources["threads"]) == (2, "pyproject.toml [tool.frontdesk]")

    (tmp_path / "frontdesk.toml").write_text("threads = 3\n")
    assert run(tmp_path).config.threads == 3

    (tmp_path / "other.toml").write_text("threads = 5\n")
    config, sources = run(tmp_path, env={"FRONTDESK_CONFIG": "other.toml"})
    assert (config.threads, sources["threads"], sources["config"]) == (5, "other.toml", "env FRONTDESK_CONFIG")
    (tmp_path / "cli.toml").write_text("threads = 6\n")
    config, _ = run(tmp_path, {"config": "cli.toml"}, {"FRONTDESK_CONFIG": "other.toml"})
    assert config.threads == 6


def test_pyproject_without_a_frontdesk_table_is_no_source(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert set(run(tmp_path).sources.values()) == {"default"}


def test_toml_keys_may_use_dashes(tmp_path: Path) -> None:
    (tmp_path / "frontdesk.toml").write_text("graceful-timeout = 7\nlimit-request-body = '10m'\n")
    config = run(tmp_path).config
    assert (config.graceful_timeout, config.limit_request_body) == (7.0, 10 << 20)


def test_a_key_given_twice_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "frontdesk.toml").write_text("graceful-timeout = 7\ngraceful_timeout = 8\n")
    assert error(tmp_path) == "setting 'graceful_timeout' in frontdesk.toml is given twice"


def test_default_workers_are_the_cpus_this_process_may_use(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {2, 5, 7}, raising=False)
    assert run(tmp_path).config.workers == 3  # taskset -c 2,5,7, or a cpuset
    monkeypatch.delattr(os, "sched_getaffinity")  # not Linux
    assert run(tmp_path).config.workers == 64


# -- PORT and WEB_CONCURRENCY --


def test_port_binds_all_interfaces(tmp_path: Path) -> None:
    config, sources = run(tmp_path, env={"PORT": "5000"})
    assert (config.bind, sources["bind"]) == (("0.0.0.0:5000",), "env PORT")


def test_port_beats_the_file_but_not_explicit_binds(tmp_path: Path) -> None:
    (tmp_path / "frontdesk.toml").write_text('bind = ["127.0.0.1:9000"]\n')
    assert run(tmp_path, env={"PORT": "5000"}).config.bind == ("0.0.0.0:5000",)
    env = {"PORT": "5000", "FRONTDESK_BIND": "unix:/tmp/a.sock 127.0.0.1:1"}
    assert run(tmp_path, env=env).config.bind == ("unix:/tmp/a.sock", "127.0.0.1:1")
    cli = {"bind": ["[::1]:8080"]}
    assert run(tmp_path, cli, {"PORT": "5000"}).config.bind == ("[::1]:8080",)


@pytest.mark.parametrize("port", ["http", "0", "70000", "-1"])
def test_bad_port(tmp_path: Path, port: str) -> None:
    assert error(tmp_path, env={"PORT": port}).startswith(
        "setting 'bind' in environment variable PORT is invalid"
    )


def test_web_concurrency(tmp_path: Path) -> None:
    config, sources = run(tmp_path, env={"WEB_CONCURRENCY": "3"})
    assert (config.workers, sources["workers"]) == (3, "env WEB_CONCURRENCY")
    env = {"WEB_CONCURRENCY": "3", "FRONTDESK_WORKERS": "5"}
    assert run(tmp_path, env=env).config.workers == 5
    assert run(tmp_path, {"workers": "7"}, {"WEB_CONCURRENCY": "3"}).config.workers == 7
    message = error(tmp_path, env={"WEB_CONCURRENCY": "lots"})
    assert message.startswith("setting 'workers' in environment variable WEB_CONCURRENCY is invalid")


def test_empty_environment_variables_count_as_unset(tmp_path: Path) -> None:
    sources = run(tmp_path, env={"FRONTDESK_THREADS": "", "PORT": "", "WEB_CONCURRENCY": ""}).sources
    assert set(sources.values()) == {"default"}


# -- unknown and misplaced settings --


def test_unknown_toml_key_suggests_a_name(tmp_path: Path) -> None:
    (tmp_path / "frontdesk.toml").write_text("threds = 4\n")
    assert error(tmp_path) == "setting 'threds' in frontdesk.toml is unknown (did you mean 'threads'?)"


def test_unknown_pyproject_key(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.frontdesk]\nxyzzy = 4\n")
    assert error(tmp_path) == "setting 'xyzzy' in pyproject.toml [tool.frontdesk] is unknown"


def test_unknown_environment_variable_suggests_a_name(tmp_path: Path) -> None:
    assert error(tmp_path, env={"FRONTDESK_WORKRES": "2"}) == (
        "setting 'workres' in environment variable FRONTDESK_WORKRES is unknown"
        " (did you mean FRONTDESK_WORKERS?)"
    )


def test_unknown_programmatic_cli_name(tmp_path: Path) -> None:
    assert "is unknown" in error(tmp_path, {"no_such": "1"})


def test_settings_in_the_wrong_place(tmp_path: Path) -> None:
    (tmp_path / "frontdesk.toml").write_text("config = 'x.toml'\n")
    assert error(tmp_path) == "setting 'config' in frontdesk.toml is not allowed in a config file"
    (tmp_path / "frontdesk.toml").unlink()
    assert "only be given on the command line" in error(tmp_path, env={"FRONTDESK_PRINT_CONFIG": "1"})


def test_missing_config_file(tmp_path: Path) -> None:
    assert error(tmp_path, {"config": "nope.toml"}) == (
        "setting 'config' on the command line is invalid: no such file: nope.toml"
    )
    assert "environment variable FRONTDESK_CONFIG" in error(tmp_path, env={"FRONTDESK_CONFIG": "nope.toml"})


def test_invalid_toml(tmp_path: Path) -> None:
    (tmp_path / "frontdesk.toml").write_text("threads = \n")
    assert error(tmp_path).startswith("config file frontdesk.toml is not valid TOML: ")


# -- values and validation --


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("limit_request_body", "10k", 10 * 1024),
        ("limit_request_body", "1M", 1 << 20),
        ("limit_request_body", "2g", 2 << 30),
        ("limit_request_body", "0", 0),
        ("limit_request_body", 4096, 4096),
        ("timeout", "0.5", 0.5),
        ("timeout", 3, 3.0),
        ("keepalive", "0", 0.0),
        ("reuse_port", "yes", True),
        ("reuse_port", "off", False),
        ("reuse_port", True, True),
        ("umask", "027", 0o27),
        ("umask", "0o022", 0o22),
        ("umask", 0o77, 0o77),
        ("loop", "UVLOOP", "uvloop"),
        ("forwarded_allow_ips", "*", "*"),
        ("forwarded_allow_ips", " 10.0.0.0/8, ::1 ", "10.0.0.0/8,::1"),
        ("pythonpath", "src, lib,", ("src", "lib")),
        ("pythonpath", ["a", "b"], ("a", "b")),
        ("bind", ["unix:/run/a.sock", "fd://3", "[::]:0", "localhost:80"],
         ("unix:/run/a.sock", "fd://3", "[::]:0", "localhost:80")),
        ("bind", "0.0.0.0:8000", ("0.0.0.0:8000",)),
        ("root_path", "/app", "/app"),
        # PEP 3333 form: percent-decoded, UTF-8 bytes as latin-1 text, as PATH_INFO is.
        ("root_path", "/café", "/caf\xc3\xa9"),
        ("root_path", "/caf%C3%A9", "/caf\xc3\xa9"),
        ("root_path", "/a%20b/c", "/a b/c"),
        ("timeout", 86400, 86400.0),
        ("access_log_format", "%(h)s 100%% %({x-y}i)s %({REMOTE_USER}e)s", "%(h)s 100%% %({x-y}i)s %({REMOTE_USER}e)s"),
        ("access_log", "", None),
        ("access_log", "-", "-"),
        ("metrics_bind", "127.0.0.1:9100", "127.0.0.1:9100"),
        ("metrics_bind", "[::1]:0", "[::1]:0"),
        # StatsD's own port when none is given (gunicorn's default), not --bind's 8000.
        ("statsd_host", "localhost", "localhost:8125"),
        ("statsd_host", "[::1]", "[::1]:8125"),
        ("statsd_host", "10.0.0.1:9125", "10.0.0.1:9125"),
    ],
)
def test_values_are_parsed(tmp_path: Path, name: str, raw: object, expected: object) -> None:
    assert getattr(run(tmp_path, {name: raw}).config, name) == expected


@pytest.mark.parametrize(
    ("name", "raw", "complaint"),
    [
        ("threads", "abc", "expected a whole number, got 'abc'"),
        ("threads", "0", "must be at least 1 and at most 4096, got 0"),
        ("threads", True, "expected a whole number, got True"),
        ("threads", "4.5", "expected a whole number"),
        ("timeout", "0", "must be more than 0"),
        ("timeout", "-1", "expected a number of seconds"),
        ("timeout", "nan", "expected a number of seconds"),
        ("graceful_timeout", "30s", "expected a number of seconds"),
        ("limit_request_body", "10x", "expected a size in bytes"),
        ("limit_request_line", "1m", "at most 64k, got 1m"),
        ("bind", ["8000"], "expected HOST:PORT"),
        ("bind", ["::1:8000"], "put IPv6 addresses in brackets"),
        ("bind", ["[nope]:80"], "is not an IPv6 address"),
        ("bind", ["127.0.0.1:70000"], "port 70000 is out of range"),
        ("bind", ["unix:"], "needs a socket path"),
        ("bind", ["fd://x"], "needs a file descriptor number"),
        ("bind", [], "needs at least one value"),
        ("root_path", "app", "must be empty or start with '/'"),
        ("root_path", "/app/", "must be empty or start with '/'"),
        ("root_path", "/app%2F", "must be empty or start with '/'"),
        ("root_path", "/a%0Ab", "must not contain control characters"),
        ("timeout", "86401", "must be at most 86400 seconds"),
        ("graceful_timeout", float("inf"), "must be at most 86400 seconds, got inf"),
        ("keepalive", float("nan"), "expected a number of seconds, got nan"),
        ("request_timeout", 1e300, "must be at most 86400 seconds"),
        ("max_requests", 1 << 64, "at most 9223372036854775807"),
        ("limit_request_body", -1, "must be at least 0, got -1"),
        ("access_log_format", "%(h) %(s)s", "unsupported format character"),
        ("access_log_format", "100% of %(r)s", "'%' at offset 3 of '100% of %(r)s' is not an atom"),
        ("access_log_format", "%s", "is not an atom"),
        ("access_log_format", "%(s)d", "is not a valid access log format"),
        ("access_log_format", "%(h)s %(", "'%' at offset 6 of '%(h)s %(' is not an atom"),
        ("loop", "trio", "expected one of auto, uvloop, asyncio, got 'trio'"),
        ("log_level", "loud", "expected one of debug"),
        ("forwarded_allow_ips", "10.0.0.300", "'10.0.0.300' is not an IP address"),
        ("umask", "999", "expected an octal mode"),
        ("umask", "1777", "at most 0o777"),
        ("access_log_json", "maybe", "expected true/false"),
        ("error_log", 3, "expected a string, got 3"),
        # Without a port it bound 8000 (--bind's default), with --reuse-port beside the app.
        ("metrics_bind", "127.0.0.1", "expected HOST:PORT or [IPv6]:PORT, got '127.0.0.1' (a port"
         " is required)"),
        ("metrics_bind", "[::1]", "(a port is required)"),
        ("metrics_bind", "::1", "put IPv6 addresses in brackets"),
        ("metrics_bind", "unix:/run/m.sock", "expected HOST:PORT"),
        ("metrics_bind", "localhost:70000", "port 70000 is out of range"),
        ("statsd_host", "[nope]", "is not an IPv6 address"),
        ("statsd_host", "a b", "expected HOST:PORT"),
        ("statsd_host", "8125", "expected HOST:PORT or [IPv6]:PORT, got '8125'"),
        ("bind", ["localhost"], "(a port is required)"),
    ],
)
def test_bad_values_name_setting_and_source(tmp_path: Path, name: str, raw: object, complaint: str) -> None:
    message = error(tmp_path, {name: raw})
    assert message.startswith(f"setting '{name}' on the command line is invalid: ")
    assert complaint in message


def test_wrong_toml_type_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "frontdesk.toml").write_text('threads = "four"\n')
    assert error(tmp_path) == (
        "setting 'threads' in frontdesk.toml is invalid: expected a whole number, got 'four'"
    )


def test_environment_lists_are_shell_words(tmp_path: Path) -> None:
    env = {"FRONTDESK_RELOAD_INCLUDE": "*.html 'my dir/*.css'", "FRONTDESK_RELOAD": "true"}
    config = run(tmp_path, env=env).config
    assert config.reload_include == ("*.html", "my dir/*.css")
    assert config.reload is True


def test_static_mounts_are_checked_by_the_static_package(tmp_path: Path, monkeypatch) -> None:
    seen = []

    def parse_mount(spec: str) -> object:
        seen.append(spec)
        if "=" not in spec:
            raise ValueError(f"expected PREFIX=DIRECTORY, got {spec!r}")
        return spec

    monkeypatch.setattr(frontdesk.static, "parse_mount", parse_mount, raising=False)
    mount = f"/static={tmp_path};cache-control=public, max-age=60"
    assert run(tmp_path, {"static": [mount]}).config.static == (mount,)
    assert seen == [mount]
    assert error(tmp_path, {"static": ["/static"]}) == (
        "setting 'static' on the command line is invalid: expected PREFIX=DIRECTORY, got '/static'"
    )


# -- --print-config output --


def test_print_config_round_trips_as_toml(tmp_path: Path) -> None:
    cli = {"threads": "3", "static_fallthrough": True, "umask": "027", "bind": ["[::1]:9"],
           "access_log_format": 'a "quoted" %(h)s', "app": "myapp:app"}
    config, sources = run(tmp_path, cli, {"PORT": "5000", "FRONTDESK_ACCESS_LOG": "-"})
    text = format_config(config, sources)
    lines = text.splitlines()
    assert any(line.startswith("threads = 3 ") and line.endswith("# command line") for line in lines)
    assert any(line.startswith("access_log = \"-\"") and line.endswith("# env FRONTDESK_ACCESS_LOG")
               for line in lines)
    assert any(line.startswith("# pid is unset") and line.endswith("# default") for line in lines)
    assert len(lines) == len(SETTINGS) + 1

    (tmp_path / "saved.toml").write_text(text)
    again, again_sources = run(tmp_path, {"config": "saved.toml"})
    assert dataclasses.replace(again, config=None) == config
    assert again_sources["umask"] == "saved.toml"
    assert tomllib.loads(text)["umask"] == 0o27


def test_durations_from_toml_are_finite_and_bounded(tmp_path: Path) -> None:
    for raw in ("inf", "nan", "-inf", "1e300"):
        (tmp_path / "frontdesk.toml").write_text(f"timeout = {raw}\n")
        assert error(tmp_path).startswith("setting 'timeout' in frontdesk.toml is invalid: ")


def test_config_file_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "frontdesk.toml").write_bytes("threads = 2  # caf\xe9\n".encode("latin-1"))
    assert error(tmp_path) == (
        "config file frontdesk.toml is not valid TOML: it is not UTF-8 (byte 0xe9 at offset 18)")


# -- files and directories named by settings --


@pytest.mark.parametrize(("name", "value", "complaint"), [
    ("chdir", "nowhere", "no such directory: nowhere"),
    ("chdir", "a-file", "no such directory: a-file"),
    ("pid", "nowhere/x.pid", "cannot write nowhere/x.pid: no such directory: "),
    ("pid", "a-dir", "cannot write a-dir: it is a directory"),
    ("error_log", "nowhere/e.log", "cannot write nowhere/e.log: no such directory: "),
    ("access_log", "a-file/a.log", "cannot write a-file/a.log: no such directory: "),
    ("log_config", "nowhere.toml", "cannot read "),
])
def test_missing_directories_and_files(tmp_path: Path, name: str, value: str, complaint: str) -> None:
    (tmp_path / "a-file").write_text("")
    (tmp_path / "a-dir").mkdir()
    message = error(tmp_path, {name: value})
    assert message.startswith(f"setting '{name}' on the command line is invalid: {complaint}")


def test_paths_that_are_fine(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "old.log").write_text("kept\n")
    cli = {"chdir": "logs", "pid": "logs/x.pid", "error_log": "logs/old.log",
           "access_log": str(tmp_path / "logs" / "new.log")}
    config = run(tmp_path, cli).config
    assert (config.chdir, config.pid, config.error_log) == (
        "logs", str(tmp_path / "logs/x.pid"), str(tmp_path / "logs/old.log"))
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["old.log"]  # nothing created


def test_relative_paths_are_made_absolute_against_the_start_directory(
    tmp_path: Path, monkeypatch
) -> None:
    """The master may chdir (--chdir with --preload) before it binds a unix socket, and reopens
    the logs on HUP; the settings are read again then, from the directory it is in by now."""
    start = tmp_path / "start"
    (start / "logs").mkdir(parents=True)
    (start / "public").mkdir()
    (start / "app").mkdir()
    (start / "log.json").write_text('{"version": 1}')
    monkeypatch.chdir(start / "app")  # where the process is: not where relative paths start
    cli = {"chdir": "app", "pid": "x.pid", "error_log": "logs/e.log", "access_log": "./a.log",
           "bind": ["unix:app.sock", "127.0.0.1:0", "unix:/run/abs.sock", "fd://3"],
           "static": ["/s=public;cache-control=no-cache", f"/t={start / 'logs'}"]}
    config, sources = run(start, cli)
    assert config.chdir == "app"
    assert (config.pid, config.error_log, config.access_log) == (
        f"{start}/x.pid", f"{start}/logs/e.log", f"{start}/a.log")
    assert config.bind == (f"unix:{start}/app.sock", "127.0.0.1:0", "unix:/run/abs.sock", "fd://3")
    assert config.static == (f"/s={start}/public;cache-control=no-cache", f"/t={start}/logs")
    assert run(start, {"log_config": "log.json"}).config.log_config == f"{start}/log.json"
    # Standard streams stay streams; --print-config shows the paths in effect.
    assert run(start, {"error_log": "-", "access_log": "-"}).config.error_log == "-"
    assert f'pid = "{start}/x.pid"' in format_config(config, sources)


def test_unwritable_directories(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "logs").mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # tests run as root here
    assert error(tmp_path, {"access_log": "logs/a.log"}) == (
        f"setting 'access_log' on the command line is invalid: cannot write logs/a.log:"
        f" permission denied in directory {tmp_path / 'logs'}")


def test_log_files_are_not_checked_when_log_config_replaces_them(tmp_path: Path) -> None:
    (tmp_path / "log.toml").write_text("version = 1\n")
    config = run(tmp_path, {"log_config": "log.toml", "error_log": "nowhere/e.log"}).config
    assert config.error_log == str(tmp_path / "nowhere/e.log")


@pytest.mark.parametrize(("file", "data", "complaint"), [
    ("bad.json", b'{"version": 1, bad', "bad.json is not valid JSON: "),
    ("bad.toml", b"version = \n", "bad.toml is not valid TOML (JSON files must end in .json): "),
    ("logging.ini", b"[loggers]\nkeys=root\n", "logging.config.fileConfig files are not read"),
    ("v2.json", b'{"version": 2}', "v2.json is not a logging.config.dictConfig: it needs version = 1"),
    ("list.json", b"[1]", "list.json is not a logging.config.dictConfig"),
    ("latin1.toml", "version = 1 # \xe9\n".encode("latin-1"), "latin1.toml is not UTF-8 (byte 0xe9"),
])
def test_bad_log_config_files(tmp_path: Path, file: str, data: bytes, complaint: str) -> None:
    (tmp_path / file).write_bytes(data)
    message = error(tmp_path, env={"FRONTDESK_LOG_CONFIG": file})
    assert message.startswith(
        "setting 'log_config' in environment variable FRONTDESK_LOG_CONFIG is invalid: ")
    assert complaint in message


# -- --print-config output is TOML that reads back as the same settings --


def test_print_config_round_trips_any_value(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    cli = {
        "app": "myäpp:app",
        "access_log_format": 'tab\t nl\n quote" backslash\\ del\x7f nul\x00 emoji\U0001F600 %(h)s',
        "access_log": "logs/äccess.log",
        "root_path": "/café/%25",
        "timeout": "86400", "graceful_timeout": "0.000001", "keepalive": "0",
        "limit_request_body": str((1 << 63) - 1), "max_requests": "0",
        "limit_req": "0.5,3", "umask": "0", "bind": ["[::1]:0", "unix:/tmp/a b.sock"],
        "reload_include": ["*.html", "it's \"quoted\""],
    }
    config, sources = run(tmp_path, cli)
    text = format_config(config, sources)
    tomllib.loads(text)
    (tmp_path / "saved.toml").write_text(text, encoding="utf-8")
    again = run(tmp_path, {"config": "saved.toml"}).config
    assert dataclasses.replace(again, config=None) == config
    assert config.root_path == "/caf\xc3\xa9/%"
    assert 'root_path = "/caf%C3%A9/%25"' in text


def test_print_config_comments_out_what_toml_cannot_hold(tmp_path: Path) -> None:
    config, sources = run(tmp_path, {"app": "m\udcff:app"})  # a byte of argv that is not UTF-8
    text = format_config(config, sources)
    text.encode("utf-8")
    assert "app" not in tomllib.loads(text)
    assert "# app cannot be written as TOML: 'm\\udcff:app'" in text


# -- --root-path through a real server --


def test_root_path_in_pep3333_form_through_the_server(server_factory) -> None:
    import json

    server = server_factory("tests.apps:router", "--workers", "1", "--root-path", "/café")
    for target in (b"/caf%C3%A9/environ", b"/caf%c3%a9/environ?x=1"):
        response = server.raw(b"GET " + target + b" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), response
        environ = json.loads(body)
        assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/caf\xc3\xa9", "/environ")


# -- relative paths with --preload --chdir, in a real master --


def test_preload_chdir_keeps_relative_paths_in_the_start_directory(server_factory, tmp_path):
    import signal
    import time

    import httpx

    start = tmp_path
    (start / "sub").mkdir()
    (start / "sub" / "pathapp.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Length', '2')])\n"
        "    return [b'ok']\n")
    server = server_factory("pathapp:app", "--preload", "--chdir", "sub", "--workers", "1",
                            "--bind", "unix:app.sock", "--pid", "app.pid",
                            "--access-logfile", "access.log", cwd=start)

    def wait_for(what, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not what():
            time.sleep(0.05)
        return what()

    assert (start / "app.sock").is_socket()
    assert wait_for((start / "app.pid").is_file)  # written once the master runs
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(start / "app.sock"))) as client:
        assert client.get("http://h/first").text == "ok"
    assert wait_for(lambda: "/first" in (start / "access.log").read_text())
    server.proc.send_signal(signal.SIGHUP)  # the logs are reopened from the --chdir directory
    assert wait_for(lambda: "reload complete" in server.log)
    assert httpx.get(server.url + "/second").text == "ok"
    assert wait_for(lambda: "/second" in (start / "access.log").read_text())
    assert {p.name for p in (start / "sub").iterdir()} - {"__pycache__"} == {"pathapp.py"}
