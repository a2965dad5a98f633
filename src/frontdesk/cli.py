"""`frontdesk [OPTIONS] APP`: argv/env/TOML -> Config -> server. The only place that exits."""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from frontdesk import __version__
from frontdesk.config import GROUPS, SETTINGS, Config, format_config, resolve
from frontdesk.errors import AppLoadError, ConfigError
from frontdesk.loader import app_traceback

__all__ = ["build_parser", "main"]

_EPILOG = """\
Every option can also be set in the environment as FRONTDESK_<NAME> (like FRONTDESK_THREADS=4)
or in frontdesk.toml / [tool.frontdesk] in pyproject.toml as <name> (like threads = 4).
The command line wins over the environment, which wins over the file. PORT and WEB_CONCURRENCY
are honoured. Sizes take k, m and g suffixes; durations are seconds.
See docs/configuration.md, or run with --print-config to see what is in effect."""


class _Parser(argparse.ArgumentParser):
    """argparse, with every mistake reported as the one `frontdesk: error:` line (status 2) that
    bad settings get, rather than the usage text and a differently worded error."""

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        namespace, extra = self.parse_known_args(args, namespace)
        if extra:
            flag = next((a.split("=")[0] for a in extra if a.startswith("-") and a != "-"), None)
            if flag is None:
                self.error(f"unexpected argument {extra[0]!r}: give one APP, and options before"
                           " or after it")
            close = difflib.get_close_matches(flag, list(self._option_string_actions), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            self.error(f"unknown option {flag}{hint}; see frontdesk --help")
        return namespace

    def error(self, message: str) -> NoReturn:
        _fail(message)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser, derived from `config.SETTINGS`; only given options end up in it."""
    parser = _Parser(
        prog="frontdesk",
        usage="frontdesk [OPTIONS] APP",
        description="Serve a WSGI application: static files, slow clients and workers in one program.",
        epilog=_EPILOG,
        allow_abbrev=False,
        formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, max_help_position=34),
    )
    parser.add_argument("--version", action="version", version=f"frontdesk {__version__}")
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    for s in SETTINGS:
        help_ = f"{s.doc} (default: {s.describe_default()})".replace("%", "%%")
        group = groups[s.group]
        if not s.flags:  # the positional APP
            group.add_argument(s.name, nargs="?", metavar=s.metavar, default=argparse.SUPPRESS, help=help_)
        elif s.type.metavar == "":  # a boolean
            action = "store_true" if not (s.env or s.file) else argparse.BooleanOptionalAction
            group.add_argument(*s.flags, dest=s.name, action=action, default=argparse.SUPPRESS, help=help_)
        else:
            group.add_argument(
                *s.flags,
                dest=s.name,
                action="append" if s.repeatable else "store",
                metavar=s.metavar or s.type.metavar,
                default=argparse.SUPPRESS,
                help=help_,
            )
    return parser


def _fail(message: str) -> NoReturn:
    sys.stderr.write(f"frontdesk: error: {message}\n")
    sys.exit(2)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run frontdesk with `argv` (default: sys.argv[1:]); always exits.

    Exit status: the server's, 0 after --print-config or a successful --check-config, 2 for a
    bad setting or an app that does not load (one `frontdesk: error:` line on stderr, after the
    app's traceback if it raised).
    """
    given = vars(build_parser().parse_args(argv))
    try:
        config, sources = resolve(given)
        if not config.app and (config.check_config or not config.print_config):
            raise ConfigError("no application given: frontdesk [OPTIONS] APP (or 'app' in frontdesk.toml)")
    except ConfigError as exc:
        _fail(str(exc))
    if config.print_config:
        sys.stdout.write(format_config(config, sources))
    if config.check_config:
        sys.exit(_check(config))
    if config.print_config:
        sys.exit(0)
    sys.exit(_serve(config))


def _check(config: Config) -> int:
    """--check-config: what the server does before it binds, short of user and group changes:
    set up logging (opening the log files) and import the app, as a worker would."""
    from frontdesk import logs
    from frontdesk.loader import load_app

    try:
        logs.configure(config)
        load_app(config.app, chdir=config.chdir, pythonpath=tuple(config.pythonpath))
    except AppLoadError as exc:
        sys.stderr.write(app_traceback(exc))
        _fail(str(exc))
    except ConfigError as exc:
        _fail(str(exc))
    if not config.print_config:  # whose output must stay TOML
        sys.stdout.write(f"frontdesk: settings and application {config.app!r} OK\n")
    return 0


def _serve(config: Config) -> int:
    server = importlib.import_module("frontdesk.server")
    try:
        status: int = server.run(config)
        return status
    except AppLoadError as exc:
        sys.stderr.write(app_traceback(exc))
        _fail(str(exc))
    except ConfigError as exc:
        _fail(str(exc))
