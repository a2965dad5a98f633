"""Settings: one declaration per setting, from which the CLI, env vars, TOML keys and docs derive.

Theory of operation
-------------------
Every field of `Config` is declared with `_setting(...)`, which keeps the setting's type, command
line flags, help group, one-line doc and gunicorn/nginx equivalent in the field's metadata.
`SETTINGS` lists them in declaration order; `frontdesk.cli` builds argparse from it,
`render_settings_doc` builds the table in docs/configuration.md, and `resolve` reads the TOML keys
and `FRONTDESK_<NAME>` environment variables it names. Nothing else lists settings.

`resolve` layers four sources, lowest first: defaults, TOML file, environment, command line. Each
value from each source is parsed by its setting's type even when a higher source overrides it (a
typo is an error wherever it is), and every failure is a one-line `ConfigError` naming the setting
and the source. This module imports no user code, opens no socket and never exits the process.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import math
import os
import re
import shlex
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, cast
from urllib.parse import quote, unquote_to_bytes

from frontdesk.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "ENV_PREFIX",
    "GROUPS",
    "SETTINGS",
    "Config",
    "Resolved",
    "Setting",
    "format_config",
    "render_settings_doc",
    "resolve",
    "update_docs",
]

ENV_PREFIX = "FRONTDESK_"
GROUPS = (
    "Application",
    "Configuration",
    "Server socket",
    "Workers",
    "Limits",
    "Timeouts",
    "Static files",
    "Proxy",
    "Logging",
    "Process",
    "Operations",
)
# Apache combined, then the request time in microseconds and the request id.
_COMBINED = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)s %(rid)s'


_INT64_MAX = (1 << 63) - 1


def _toml_literal(value: object) -> str:
    """A TOML literal for a string, number, bool or list of them.

    JSON's are TOML's, given real characters instead of surrogate-pair escapes (`ensure_ascii`,
    which TOML's \\u does not take), DEL escaped (TOML forbids it raw) and no NaN or Infinity.
    """
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value, ensure_ascii=False, allow_nan=False).replace("\x7f", "\\u007f")


# -- value types: a raw value (str from argv/env, or a TOML value) -> typed value, or ValueError --


class _Type:
    metavar: ClassVar[str] = "TEXT"

    def __call__(self, raw: object) -> Any:
        raise NotImplementedError

    def show(self, value: Any) -> str:
        """Human form for --help and the docs."""
        return "unset" if value is None else str(value)

    def toml(self, value: Any) -> str:
        """TOML literal for --print-config (see `_toml_literal`)."""
        return _toml_literal(value)


class _Bool(_Type):
    metavar = ""
    _WORDS: ClassVar[dict[str, bool]] = {
        "1": True, "true": True, "yes": True, "on": True,
        "0": False, "false": False, "no": False, "off": False,
    }  # fmt: skip

    def __call__(self, raw: object) -> bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in self._WORDS:
            return self._WORDS[raw.strip().lower()]
        raise ValueError(f"expected true/false, 1/0 or yes/no, got {raw!r}")

    def show(self, value: Any) -> str:
        return "on" if value else "off"


@dataclasses.dataclass(frozen=True)
class _Int(_Type):
    lo: int = 0
    hi: int | None = None
    metavar = "N"
    _WHAT: ClassVar[str] = "a whole number"

    def __call__(self, raw: object) -> int:
        value = self._number(raw.strip()) if isinstance(raw, str) else raw
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"expected {self._WHAT}, got {raw!r}")
        hi = _INT64_MAX if self.hi is None else self.hi  # what a TOML integer can hold
        if value < self.lo or value > hi:
            top = f" and at most {self.show(hi)}" if self.hi is not None or value > hi else ""
            raise ValueError(f"must be at least {self.show(self.lo)}{top}, got {self.show(value)}")
        return value

    def _number(self, text: str) -> int | None:
        return int(text) if re.fullmatch(r"[0-9]+", text) else None


class _Size(_Int):
    """Bytes; strings may end in k, m or g (powers of 1024, as in nginx)."""

    metavar = "BYTES"
    _WHAT = "a size in bytes (like 8190, 64k, 1m or 1g)"
    _UNITS: ClassVar[dict[str, int]] = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}

    def _number(self, text: str) -> int | None:
        match = re.fullmatch(r"([0-9]+)\s*([kmg]?)", text.lower())
        return int(match[1]) * self._UNITS[match[2]] if match else None

    def show(self, value: Any) -> str:
        for unit in "gmk":
            if value and value % self._UNITS[unit] == 0:
                return f"{value // self._UNITS[unit]}{unit}"
        return str(value)


class _Octal(_Int):
    metavar = "MODE"
    _WHAT = "an octal mode like 022"

    def _number(self, text: str) -> int | None:
        match = re.fullmatch(r"(?:0o)?([0-7]+)", text.lower())
        return int(match[1], 8) if match else None

    def show(self, value: Any) -> str:
        return "inherited" if value is None else f"0o{value:03o}"

    def toml(self, value: Any) -> str:
        return self.show(value)


@dataclasses.dataclass(frozen=True)
class _Duration(_Type):
    """Seconds, as a float; `positive` forbids 0. At most `hi` (a day): TOML can spell `inf`,
    `nan` and `1e300`, which no timer or select() can take and --print-config cannot write."""

    positive: bool = True
    hi: float = 86400.0
    metavar = "SECONDS"

    def __call__(self, raw: object) -> float:
        value: object = raw
        if isinstance(raw, str):
            text = raw.strip()
            value = float(text) if re.fullmatch(r"[0-9]+(\.[0-9]*)?|\.[0-9]+", text) else None
        if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
            raise ValueError(f"expected a number of seconds, got {raw!r}")
        if value < 0 or (self.positive and value == 0):
            raise ValueError(f"must be {'more than' if self.positive else 'at least'} 0, got {raw!r}")
        if value > self.hi:
            raise ValueError(f"must be at most {self.hi:g} seconds, got {raw!r}")
        return float(value)

    def show(self, value: Any) -> str:
        return f"{value:g}"


class _RateBurst(_Type):
    """`RATE[,BURST]` for --limit-req: requests per second (> 0) and a whole burst (nginx's
    `limit_req zone=... rate=RATEr/s burst=BURST nodelay`). Off is None (empty string)."""

    metavar = "RATE,BURST"

    def __call__(self, raw: object) -> tuple[float, int] | None:
        if not isinstance(raw, str):
            raise ValueError(f"expected a string like '10,20' (rate per second, burst), got {raw!r}")
        text = raw.strip()
        if text == "":
            return None
        match = re.fullmatch(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?:,\s*([0-9]+))?", text)
        if not match:
            raise ValueError(f"expected RATE,BURST like '10,20' (requests per second, extra burst),"
                             f" got {raw!r}")
        rate, burst = float(match[1]), int(match[2] or 0)
        if not 0 < rate <= 1e6 or burst > 1_000_000:
            raise ValueError(f"rate must be more than 0 and at most 1000000, burst at most 1000000,"
                             f" got {raw!r}")
        return rate, burst

    def show(self, value: Any) -> str:
        return "off" if value is None else f"{value[0]:g},{value[1]}"

    def toml(self, value: Any) -> str:
        return json.dumps(self.show(value))


@dataclasses.dataclass(frozen=True)
class _Choice(_Type):
    options: tuple[str, ...]

    @property
    def metavar(self) -> str:  # type: ignore[override]
        return "{" + ",".join(self.options) + "}"

    def __call__(self, raw: object) -> str:
        if isinstance(raw, str) and raw.strip().lower() in self.options:
            return raw.strip().lower()
        raise ValueError(f"expected one of {', '.join(self.options)}, got {raw!r}")


@dataclasses.dataclass(frozen=True)
class _Str(_Type):
    """A string, checked by `check` (which returns it, maybe normalised, or raises ValueError).

    `optional`: the default is None and an empty string means "unset" again.
    """

    check: Callable[[str], str] | None = None
    optional: bool = False

    def __call__(self, raw: object) -> str | None:
        if not isinstance(raw, str):
            raise ValueError(f"expected a string, got {raw!r}")
        if self.optional and raw == "":
            return None
        return self.check(raw) if self.check else raw


@dataclasses.dataclass(frozen=True)
class _List(_Type):
    """A tuple of strings. `sep=None`: repeatable flag, TOML array, shell-quoted words in env.

    With `sep`, one string holds the whole list (like `--pythonpath a,b`).
    """

    item: _Str
    sep: str | None = None
    required: bool = False  # at least one item

    def __call__(self, raw: object) -> tuple[str, ...]:
        if isinstance(raw, str):
            raw = [p.strip() for p in raw.split(self.sep) if p.strip()] if self.sep else [raw]
        if not isinstance(raw, (list, tuple)):
            raise ValueError(f"expected a list of strings, got {raw!r}")
        if self.required and not raw:
            raise ValueError("needs at least one value")
        return tuple(cast(str, self.item(part)) for part in raw)  # items are never optional

    def show(self, value: Any) -> str:
        return (self.sep or " ").join(value) if value else "none"


# -- checks for string settings --

_HOST = re.compile(r"(?:\[(?P<v6>[^\]]+)\]|(?P<host>[A-Za-z0-9._-]+)):(?P<port>[0-9]+)")
_HOST_ONLY = re.compile(r"\[[^\]]+\]|[A-Za-z0-9._-]+")


def _check_bind(value: str) -> str:
    if value.startswith("unix:"):
        if not value[len("unix:") :]:
            raise ValueError("unix: needs a socket path, like unix:/run/frontdesk.sock")
        return value
    if value.startswith("fd://"):
        if not re.fullmatch(r"[0-9]+", value[len("fd://") :]):
            raise ValueError(f"fd:// needs a file descriptor number, got {value!r}")
        return value
    return _check_host_port(value, "HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N")


def _check_host_port(value: str, expected: str = "HOST:PORT or [IPv6]:PORT") -> str:
    match = _HOST.fullmatch(value)
    if not match:
        hint = " (put IPv6 addresses in brackets: [::1]:8000)" if value.count(":") > 1 else ""
        if _HOST_ONLY.fullmatch(value) and not value.isdigit():
            hint = " (a port is required)"
        raise ValueError(f"expected {expected}, got {value!r}{hint}")
    if match["v6"]:
        try:
            ipaddress.IPv6Address(match["v6"])
        except ValueError:
            raise ValueError(f"{match['v6']!r} is not an IPv6 address in {value!r}") from None
    if int(match["port"]) > 65535:
        raise ValueError(f"port {match['port']} is out of range 0-65535 in {value!r}")
    return value


class _RootPath(_Type):
    """--root-path in PEP 3333 form, as SCRIPT_NAME must be: percent-decoded, and its UTF-8 bytes
    as latin-1 text (so `/café` and `/caf%C3%A9` are both '/cafÃ©'). wsgi/environ.py strips it
    from PATH_INFO, which is in that same form. Written back percent-encoded (--print-config),
    so that reading the output again gives the same value."""

    metavar = "PATH"

    def __call__(self, raw: object) -> str:
        if not isinstance(raw, str):
            raise ValueError(f"expected a string, got {raw!r}")
        try:  # argv bytes that are not UTF-8 arrive surrogate-escaped: back to those bytes
            data = raw.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raise ValueError(f"is not text, got {raw!r}") from None
        value = unquote_to_bytes(data).decode("latin-1")
        if value and (not value.startswith("/") or value.endswith("/")):
            raise ValueError(f"must be empty or start with '/' and not end with '/', got {raw!r}")
        if re.search(r"[\x00-\x1f\x7f]", value):
            raise ValueError(f"must not contain control characters, got {raw!r}")
        return value

    def show(self, value: Any) -> str:
        return quote(value.encode("latin-1"), safe="/:@!$&'()*+,;=")

    def toml(self, value: Any) -> str:
        return _toml_literal(self.show(value))


def _check_url_path(value: str) -> str:
    if value and (not value.startswith("/") or any(c in value for c in "?# \t")):
        raise ValueError(f"must be empty or a URL path starting with '/', got {value!r}")
    return value


def _check_forwarded_headers(value: str) -> str:
    from frontdesk.wsgi.proxy import parse_forwarded_headers

    parse_forwarded_headers(value)
    return value


def _check_statsd_host(value: str) -> str:
    """HOST:PORT; without a port, StatsD's own 8125 (as gunicorn), never the --bind default."""
    if _HOST_ONLY.fullmatch(value) and not value.isdigit():
        value += ":8125"
    return _check_host_port(value)


def _check_statsd_prefix(value: str) -> str:
    if any(c in value for c in ":|@\n\r\t "):
        raise ValueError(f"must be a name without ':', '|', '@' or spaces, got {value!r}")
    return value


def _check_ips(value: str) -> str:
    if value.strip() == "*":
        return "*"
    parts = [p.strip() for p in value.split(",") if p.strip()]
    for part in parts:
        try:
            ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise ValueError(f"{part!r} is not an IP address, a CIDR network or '*'") from None
    return ",".join(parts)


def _check_access_log_format(value: str) -> str:
    from frontdesk import logs  # lazily: logs owns the atoms

    return logs.check_format(value)


def _check_static(value: str) -> str:
    from frontdesk.static import parse_mount  # lazily: static owns the PREFIX=DIR[;...] syntax

    parse_mount(value)
    return value


# -- the table --


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting: everything the CLI, environment, TOML reader and docs need to know."""

    name: str
    group: str
    type: _Type
    default: Any
    flags: tuple[str, ...]
    doc: str
    equiv: str = ""
    metavar: str | None = None
    default_doc: str | None = None
    env: bool = True  # settable as FRONTDESK_<NAME>
    file: bool = True  # settable as a TOML key
    default_factory: Callable[[], Any] | None = None

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def repeatable(self) -> bool:
        return isinstance(self.type, _List) and self.type.sep is None

    def default_value(self) -> Any:
        return self.default_factory() if self.default_factory else self.default

    def describe_default(self) -> str:
        return self.default_doc or self.type.show(self.default_value())


def _setting(
    default: Any, group: str, type_: _Type, *flags: str, doc: str, **more: Any
) -> Any:
    factory = more.get("default_factory")
    spec = Setting("", group, type_, default, flags, doc, **more)
    meta = {"setting": spec}
    if factory:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _cpu_count() -> int:
    """The CPUs this process may run on: taskset and cgroup cpusets narrow it, where
    os.cpu_count() counts the whole machine. (A CPU quota, `docker --cpus`, is not a CPU set.)"""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


_APP, _CONF, _SOCK, _WORK, _LIM, _TIME, _STATIC, _PROXY, _LOG, _PROC, _OPS = GROUPS


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting's effective value. Build it with `resolve`, or directly in tests."""

    # fmt: off
    app: str = _setting("", _APP, _Str(), doc="WSGI application: 'module:attr', 'module' (uses 'application' or 'app'), 'module:obj.attr' or a factory 'module:create_app()'", metavar="APP", default_doc="none", equiv="gunicorn APP_MODULE")
    chdir: str | None = _setting(None, _APP, _Str(optional=True), "--chdir", doc="Change to this directory before loading the app, and put it on sys.path", metavar="DIR", equiv="gunicorn --chdir")
    pythonpath: tuple[str, ...] = _setting((), _APP, _List(_Str(), sep=","), "--pythonpath", doc="Comma-separated directories to put at the front of sys.path", metavar="DIRS", equiv="gunicorn --pythonpath")
    preload: bool = _setting(False, _APP, _Bool(), "--preload", doc="Load the app in the master before forking workers (less memory; code is not reloaded on HUP)", equiv="gunicorn --preload")
    reload: bool = _setting(False, _APP, _Bool(), "--reload", doc="Development: watch the *.py files below the app's directory (--chdir, else the start directory) and the --pythonpath directories (with watchfiles when installed), and reload the workers when one changes; a broken edit keeps the old workers serving", equiv="gunicorn --reload")
    reload_include: tuple[str, ...] = _setting((), _APP, _List(_Str()), "--reload-include", "--reload-extra-file", doc="With --reload, also watch files matching this glob (or this file); repeatable", metavar="GLOB", equiv="gunicorn --reload-extra-file")

    config: str | None = _setting(None, _CONF, _Str(optional=True), "-c", "--config", doc="TOML file to read settings from", metavar="FILE", default_doc="./frontdesk.toml, else [tool.frontdesk] in ./pyproject.toml", file=False, equiv="gunicorn -c")
    print_config: bool = _setting(False, _CONF, _Bool(), "--print-config", doc="Print every setting's value and where it came from, as TOML, then exit", env=False, file=False, equiv="gunicorn --print-config")
    check_config: bool = _setting(False, _CONF, _Bool(), "--check-config", doc="Check the settings and load the app, then exit: status 0, or 2 with the error", env=False, file=False, equiv="gunicorn --check-config")

    bind: tuple[str, ...] = _setting(("127.0.0.1:8000",), _SOCK, _List(_Str(_check_bind), required=True), "-b", "--bind", doc="Listen on HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N; repeatable", metavar="ADDRESS", default_doc="127.0.0.1:8000, or 0.0.0.0:$PORT when PORT is set", equiv="gunicorn -b; nginx listen")
    backlog: int = _setting(2048, _SOCK, _Int(1, 65535), "--backlog", doc="Pending connections the kernel queues per listening socket", equiv="gunicorn --backlog; nginx listen backlog=")
    reuse_port: bool = _setting(False, _SOCK, _Bool(), "--reuse-port", doc="Set SO_REUSEPORT on listening sockets", equiv="gunicorn --reuse-port; nginx listen reuseport")

    workers: int = _setting(1, _WORK, _Int(1, 4096), "-w", "--workers", doc="Worker processes", default_doc="$WEB_CONCURRENCY, else the number of CPUs this process may use (taskset, cpusets)", default_factory=_cpu_count, equiv="gunicorn -w; nginx worker_processes")
    threads: int = _setting(8, _WORK, _Int(1, 4096), "--threads", doc="Application threads per worker", equiv="gunicorn --threads")
    loop: str = _setting("auto", _WORK, _Choice(("auto", "uvloop", "asyncio")), "--loop", doc="Event loop: uvloop if installed (auto), or asyncio")
    max_requests: int = _setting(0, _WORK, _Int(0), "--max-requests", doc="Restart a worker after this many requests (0 = never)", equiv="gunicorn --max-requests")
    max_requests_jitter: int = _setting(0, _WORK, _Int(0), "--max-requests-jitter", doc="Add up to this many requests, at random per worker, to max_requests", equiv="gunicorn --max-requests-jitter")

    limit_request_line: int = _setting(8190, _LIM, _Size(1, 65536), "--limit-request-line", doc="Largest request line (method, target, version) in bytes; longer gets 414", equiv="gunicorn --limit-request-line; nginx large_client_header_buffers")
    limit_request_fields: int = _setting(100, _LIM, _Int(1, 32768), "--limit-request-fields", doc="Most header fields in one request; more gets 431", equiv="gunicorn --limit-request-fields")
    limit_request_field_size: int = _setting(8190, _LIM, _Size(1, 65536), "--limit-request-field-size", "--limit-request-field_size", doc="Largest single header field in bytes; larger gets 431", equiv="gunicorn --limit-request-field_size; nginx large_client_header_buffers")
    limit_request_header_size: int = _setting(65536, _LIM, _Size(1, 16 << 20), "--limit-request-header-size", doc="Largest header section (all fields together) in bytes; larger gets 431", equiv="nginx large_client_header_buffers")
    limit_request_body: int = _setting(1 << 30, _LIM, _Size(0), "--limit-request-body", doc="Largest request body in bytes; larger gets 413 (0 = unlimited)", equiv="nginx client_max_body_size")
    body_buffer_size: int = _setting(1 << 20, _LIM, _Size(0), "--body-buffer-size", doc="Request body bytes kept in memory; beyond this the body spools to a temporary file", equiv="nginx client_body_buffer_size")

    timeout: float = _setting(30.0, _TIME, _Duration(), "-t", "--timeout", doc="Restart a worker that has not checked in with the master for this long", equiv="gunicorn -t")
    graceful_timeout: float = _setting(30.0, _TIME, _Duration(positive=False), "--graceful-timeout", doc="On stop or restart, time workers get to finish requests before they are killed", equiv="gunicorn --graceful-timeout; nginx worker_shutdown_timeout")
    keepalive: float = _setting(5.0, _TIME, _Duration(positive=False), "--keep-alive", "--keepalive", doc="Close a keep-alive connection idle this long (0 = close after each response)", equiv="gunicorn --keep-alive; nginx keepalive_timeout")
    header_timeout: float = _setting(10.0, _TIME, _Duration(), "--header-timeout", doc="Time a client has to send the whole request head; then 408", equiv="nginx client_header_timeout")
    body_timeout: float = _setting(60.0, _TIME, _Duration(), "--body-timeout", doc="Longest wait between two reads of a request body; then 408", equiv="nginx client_body_timeout")
    send_timeout: float = _setting(60.0, _TIME, _Duration(), "--send-timeout", doc="Longest wait for a slow client to accept more of the response; then the connection closes", equiv="nginx send_timeout")
    request_timeout: float = _setting(0.0, _TIME, _Duration(positive=False), "--request-timeout", doc="Longest time the application may take to answer one request (0 = no limit)", equiv="nginx proxy_read_timeout")

    static: tuple[str, ...] = _setting((), _STATIC, _List(_Str(_check_static)), "--static", doc="Serve files from DIR under URL PREFIX, in the event loop; options after ';' (cache-control=VALUE, fingerprints=on|off, allow-dotfiles[=NAMES], follow-symlinks: see docs/static-files.md); repeatable", metavar="PREFIX=DIR", equiv="nginx location PREFIX { alias DIR; }")
    static_fallthrough: bool = _setting(False, _STATIC, _Bool(), "--static-fallthrough", doc="Send a request under a static prefix that names no file to the app instead of answering 404", equiv="nginx try_files $uri @app")
    static_precompress: bool = _setting(False, _STATIC, _Bool(), "--static-precompress", doc="At start-up, build .br/.gz variants of compressible static files in a cache directory and serve them to clients that accept them", equiv="nginx gzip_static, brotli_static")

    forwarded_allow_ips: str = _setting("127.0.0.1,::1", _PROXY, _Str(_check_ips), "--forwarded-allow-ips", doc="Comma-separated proxy IPs or CIDR networks trusted to set X-Forwarded-* headers, or '*' for any peer (then the client is the right-most X-Forwarded-For entry)", metavar="IPS", equiv="gunicorn --forwarded-allow-ips; nginx set_real_ip_from")
    forwarded_headers: str = _setting("X-Forwarded-For,X-Forwarded-Proto", _PROXY, _Str(_check_forwarded_headers), "--forwarded-headers", doc="Which headers a trusted proxy may set: any of X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Forwarded-Port, Forwarded. Add one only if every proxy in front overwrites it", metavar="NAMES", equiv="uvicorn/gunicorn believe X-Forwarded-For and -Proto; nginx real_ip_header")
    proxy_protocol: bool = _setting(False, _PROXY, _Bool(), "--proxy-protocol", doc="Expect a PROXY protocol header at the start of each connection (behind HAProxy or a cloud load balancer)", equiv="gunicorn --proxy-protocol; nginx listen proxy_protocol")
    proxy_allow_from: str = _setting("127.0.0.1,::1", _PROXY, _Str(_check_ips), "--proxy-allow-from", doc="With --proxy-protocol: comma-separated IPs or CIDR networks of the balancers allowed to send a PROXY header, or '*' for any; a connection from elsewhere is closed", metavar="IPS", equiv="gunicorn --proxy-allow-from; nginx set_real_ip_from")
    root_path: str = _setting("", _PROXY, _RootPath(), "--root-path", doc="URL prefix the app is mounted under (like /app or /caf%C3%A9), passed as SCRIPT_NAME and removed from the start of PATH_INFO", metavar="PATH", default_doc="none", equiv="gunicorn: no flag, the SCRIPT_NAME environment variable (-e SCRIPT_NAME=PATH)")

    health_path: str = _setting("", _OPS, _Str(_check_url_path), "--health-path", doc="Answer GET PATH with 200 from the event loop (liveness), even when every app thread is busy; not logged", metavar="PATH", default_doc="off")
    ready_path: str = _setting("", _OPS, _Str(_check_url_path), "--ready-path", doc="Answer GET PATH with 200 while serving and 503 once draining (readiness), from the event loop; not logged", metavar="PATH", default_doc="off")
    metrics_bind: str | None = _setting(None, _OPS, _Str(_check_host_port, optional=True), "--metrics-bind", doc="Serve Prometheus metrics, summed over all workers, at http://HOST:PORT/metrics from the master (the port is required)", metavar="HOST:PORT", default_doc="off", equiv="nginx stub_status")
    statsd_host: str | None = _setting(None, _OPS, _Str(_check_statsd_host, optional=True), "--statsd-host", doc="Push the metrics, summed over all workers, to the StatsD server at HOST[:PORT] (port 8125 when none is given) over UDP from the master, once a second", metavar="HOST[:PORT]", default_doc="off", equiv="gunicorn --statsd-host")
    statsd_prefix: str = _setting("", _OPS, _Str(_check_statsd_prefix), "--statsd-prefix", doc="Prefix of the StatsD metric names, a dot added (PREFIX.gunicorn.requests, PREFIX.frontdesk.requests.shed, ...); empty: gunicorn.requests, ...", metavar="PREFIX", default_doc="none", equiv="gunicorn --statsd-prefix (same names where they overlap)")
    backlog_limit: int = _setting(0, _OPS, _Int(), "--backlog-limit", doc="Requests one worker may queue for an app thread; beyond it, answer 503 with Retry-After at once (0 = no limit)", metavar="N", equiv="Heroku H12/H13 avoidance")
    max_queue_time: float = _setting(0.0, _OPS, _Duration(positive=False), "--max-queue-time", doc="A request that waited longer than this for an app thread gets 503 with Retry-After instead of running (0 = no limit). Time spent before the server, from a trusted proxy's X-Request-Start, counts", metavar="SECONDS")
    limit_req: tuple[float, int] | None = _setting(None, _OPS, _RateBurst(), "--limit-req", doc="Rate-limit each client address (after PROXY protocol and trusted X-Forwarded-For) to RATE app requests per second, allowing bursts of BURST more at once; excess requests get 429 with Retry-After. Each worker counts on its own", default_doc="off", equiv="nginx limit_req rate= burst= nodelay")
    drain_delay: float = _setting(0.0, _OPS, _Duration(positive=False), "--drain-delay", doc="On TERM, answer readiness probes with 503 but keep serving normally for this long, so load balancers stop sending traffic, before the graceful stop (which then gets the full --graceful-timeout)", metavar="SECONDS", equiv="Kubernetes preStop: sleep")
    max_worker_memory: int = _setting(0, _OPS, _Int(0), "--max-worker-memory", doc="Replace a worker gracefully (replacement first) when its resident memory exceeds this many MiB, one worker at a time (0 = no limit)", metavar="MB", equiv="uWSGI reload-on-rss")

    access_log: str | None = _setting(None, _LOG, _Str(optional=True), "--access-logfile", doc="Write an access log line per request to PATH ('-' = stdout)", metavar="PATH", default_doc="off", equiv="gunicorn --access-logfile; nginx access_log")
    access_log_format: str = _setting(_COMBINED, _LOG, _Str(_check_access_log_format), "--access-log-format", "--access-logformat", doc="Access log line, with gunicorn's %(x)s atoms", metavar="FORMAT", default_doc="Apache combined + µs + request id", equiv="gunicorn --access-logformat; nginx log_format")
    access_log_json: bool = _setting(False, _LOG, _Bool(), "--access-log-json", doc="Write access log lines as JSON objects instead")
    error_log: str = _setting("-", _LOG, _Str(), "--error-logfile", "--log-file", doc="Write the error log to PATH ('-' = stderr)", metavar="PATH", equiv="gunicorn --error-logfile, --log-file; nginx error_log")
    log_level: str = _setting("info", _LOG, _Choice(("debug", "info", "warning", "error", "critical")), "--log-level", doc="Least severe error log messages written", equiv="gunicorn --log-level")
    log_config: str | None = _setting(None, _LOG, _Str(optional=True), "--log-config", "--log-config-json", doc="logging.config.dictConfig file (TOML, or JSON if it ends in .json) replacing frontdesk's logging setup", metavar="FILE", equiv="gunicorn --log-config-json, logconfig_dict")

    pid: str | None = _setting(None, _PROC, _Str(optional=True), "-p", "--pid", doc="Write the master's process id to FILE", metavar="FILE", equiv="gunicorn -p; nginx pid")
    user: str | None = _setting(None, _PROC, _Str(optional=True), "-u", "--user", doc="Run workers as this user (name or uid)", metavar="USER", equiv="gunicorn -u; nginx user")
    group: str | None = _setting(None, _PROC, _Str(optional=True), "-g", "--group", doc="Run workers as this group (name or gid)", metavar="GROUP", equiv="gunicorn -g; nginx user")
    umask: int | None = _setting(None, _PROC, _Octal(0, 0o777), "-m", "--umask", doc="File mode creation mask (octal, like 027), also for unix sockets", equiv="gunicorn -m, --umask")
    # fmt: on


SETTINGS: tuple[Setting, ...] = tuple(
    dataclasses.replace(f.metadata["setting"], name=f.name) for f in dataclasses.fields(Config)
)
_BY_NAME = {s.name: s for s in SETTINGS}


# -- resolving the sources --


class Resolved(NamedTuple):
    config: Config
    sources: dict[str, str]  # setting name -> "default", "command line", "env VAR" or a file label


class _Given(NamedTuple):
    name: str
    raw: object
    source: str


def _where(source: str) -> str:
    if source == "command line":
        return "on the command line"
    if source.startswith("env "):
        return "in environment variable " + source[len("env ") :]
    return "in " + source


def _unknown(name: str, source: str, allowed: list[str], render: Callable[[str], str]) -> ConfigError:
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f" (did you mean {render(close[0])}?)" if close else ""
    return ConfigError(f"setting {name!r} {_where(source)} is unknown{hint}")


def _parse(given: _Given) -> Any:
    setting = _BY_NAME[given.name]
    try:
        return setting.type(given.raw)
    except ValueError as exc:
        raise ConfigError(f"setting {given.name!r} {_where(given.source)} is invalid: {exc}") from None


def _cli_layer(cli: Mapping[str, object]) -> list[_Given]:
    for name in cli:
        if name not in _BY_NAME:
            raise _unknown(name, "command line", list(_BY_NAME), repr)
    return [_Given(name, raw, "command line") for name, raw in cli.items()]


def _env_layer(environ: Mapping[str, str]) -> list[_Given]:
    layer = []
    for var, raw in sorted(environ.items()):
        if not var.startswith(ENV_PREFIX) or raw == "":
            continue  # an empty variable counts as unset
        name, source = var[len(ENV_PREFIX) :].lower(), f"env {var}"
        setting = _BY_NAME.get(name)
        if setting is None:
            allowed = [s.name for s in SETTINGS if s.env]
            raise _unknown(name, source, allowed, lambda n: ENV_PREFIX + n.upper())
        if not setting.env:
            raise ConfigError(f"setting {name!r} {_where(source)} can only be given on the command line")
        layer.append(_Given(name, shlex.split(raw) if setting.repeatable else raw, source))
    given = {g.name for g in layer}
    # Platform conventions (Heroku, Render, Dokku...), below the explicit FRONTDESK_ variables.
    port = environ.get("PORT", "")
    if port and "bind" not in given:
        if not re.fullmatch(r"[0-9]+", port) or not 0 < int(port) <= 65535:
            raise ConfigError(f"setting 'bind' {_where('env PORT')} is invalid: expected a port 1-65535, got {port!r}")
        layer.append(_Given("bind", ["0.0.0.0:" + port], "env PORT"))
    if environ.get("WEB_CONCURRENCY", "") and "workers" not in given:
        layer.append(_Given("workers", environ["WEB_CONCURRENCY"], "env WEB_CONCURRENCY"))
    return layer


def _read_toml(path: Path, label: str) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {label} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {label} is not valid TOML: it is not UTF-8"
                          f" (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"config file {label} cannot be read: {exc.strerror}") from None


def _file_layer(explicit: str | None, explicit_source: str, cwd: Path) -> list[_Given]:
    if explicit is not None:
        path, label = cwd / explicit, explicit
        if not path.is_file():
            raise ConfigError(f"setting 'config' {_where(explicit_source)} is invalid: no such file: {explicit}")
        table = _read_toml(path, label)
    elif (cwd / "frontdesk.toml").is_file():
        label = "frontdesk.toml"
        table = _read_toml(cwd / label, label)
    elif (cwd / "pyproject.toml").is_file():
        label = "pyproject.toml [tool.frontdesk]"
        table = _read_toml(cwd / "pyproject.toml", "pyproject.toml").get("tool", {}).get("frontdesk", {})
        if not isinstance(table, dict):
            raise ConfigError("config file pyproject.toml: [tool.frontdesk] must be a table")
    else:
        return []
    layer: list[_Given] = []
    for key, raw in table.items():
        name = key.replace("-", "_")
        setting = _BY_NAME.get(name)
        if setting is None:
            raise _unknown(key, label, [s.name for s in SETTINGS if s.file], repr)
        if not setting.file:
            raise ConfigError(f"setting {key!r} {_where(label)} is not allowed in a config file")
        if any(g.name == name for g in layer):
            raise ConfigError(f"setting {name!r} {_where(label)} is given twice")
        layer.append(_Given(name, raw, label))
    return layer


def resolve(
    cli: Mapping[str, object] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Resolved:
    """Build the `Config` from command line values, environment and TOML file, over the defaults.

    `cli` maps setting names to raw values (strings, lists of strings for repeatable flags, bools)
    as `frontdesk.cli` parses them. `environ` defaults to `os.environ`, `cwd` (where frontdesk.toml
    and pyproject.toml are looked for, and a relative --config is found) to the current directory.
    Raises `ConfigError` with a one-line message naming the setting and its source.
    """
    environ = os.environ if environ is None else environ
    here = Path.cwd() if cwd is None else Path(cwd).absolute()
    cli_layer, env_layer = _cli_layer(cli or {}), _env_layer(environ)
    config_given = [g for g in env_layer + cli_layer if g.name == "config"]
    explicit = _parse(config_given[-1]) if config_given else None
    file_layer = _file_layer(explicit, config_given[-1].source if config_given else "", here)

    values: dict[str, Any] = {}
    sources = {s.name: "default" for s in SETTINGS}
    for given in file_layer + env_layer + cli_layer:  # lowest source first
        if given.name == "static":  # checked (the directory exists) where it will be used
            given = given._replace(raw=_anchor_mounts(given.raw, here))
        values[given.name] = _parse(given)
        sources[given.name] = given.source
    config = Config(**values)
    _check_paths(config, sources, here)
    return Resolved(_anchored(config, here), sources)


# Relative paths are relative to the directory frontdesk started in (`here`), not to --chdir.
# They are made absolute once resolved: with --preload the master changes into --chdir before it
# binds a unix socket, and reopens the logs there on HUP, so a relative path would name another
# file then. (--chdir itself stays relative: it is entered from the start directory.)
_FILE_SETTINGS = ("error_log", "access_log", "log_config", "pid")


def _anchored(config: Config, here: Path) -> Config:
    """`config` with the files its settings name, and unix: binds, absolute under `here`."""
    changes: dict[str, Any] = {}
    for name in _FILE_SETTINGS:
        value = getattr(config, name)
        if value and not (value == "-" and name in ("error_log", "access_log")):  # std streams
            changes[name] = str(here / value)
    changes["bind"] = tuple("unix:" + str(here / spec[5:]) if spec.startswith("unix:") else spec
                            for spec in config.bind)
    return dataclasses.replace(config, **changes)


def _anchor_mounts(raw: object, here: Path) -> object:
    """--static values with relative directories made absolute under `here` (as `_anchored`),
    before they are checked; what is not a list of strings is left for the type to refuse."""
    from frontdesk.static import anchor_mount

    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, (list, tuple)):
        return raw
    return [anchor_mount(item, str(here)) if isinstance(item, str) else item for item in items]


def _check_paths(config: Config, sources: Mapping[str, str], here: Path) -> None:
    """The files and directories settings name, checked now: the alternative is a traceback, or
    an error after the sockets are bound and workers booted. Relative paths are relative to
    `here`, where frontdesk starts (logs and the pid file are opened before any --chdir)."""

    def fail(name: str, reason: str) -> ConfigError:
        return ConfigError(f"setting {name!r} {_where(sources[name])} is invalid: {reason}")

    if config.chdir is not None and not (here / config.chdir).is_dir():
        raise fail("chdir", f"no such directory: {config.chdir}")
    files = ["pid"] if config.log_config else ["error_log", "access_log", "pid"]
    for name in files:
        value = getattr(config, name)
        if value and not (value == "-" and name != "pid"):
            problem = _cannot_write(here / value, replace=name == "pid")
            if problem:
                raise fail(name, f"cannot write {value}: {problem}")
    if config.log_config:
        from frontdesk import logs  # lazily, like static: logs owns the dictConfig format

        try:
            logs.load_dict_config(str(here / config.log_config))
        except ValueError as exc:
            raise fail("log_config", str(exc)) from None


def _cannot_write(path: Path, *, replace: bool) -> str | None:
    """Why `path` cannot be opened for appending (or, `replace`, written next to and renamed
    over, as the pid file is), or None."""
    if path.is_dir():
        return "it is a directory"
    if path.exists() and not replace:
        return None if os.access(path, os.W_OK) else "permission denied"
    if not path.parent.is_dir():
        return f"no such directory: {path.parent}"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return f"permission denied in directory {path.parent}"
    return None


# -- output: --print-config and docs/configuration.md --


def format_config(config: Config, sources: Mapping[str, str]) -> str:
    """`--print-config` output: valid TOML, one `name = value  # source` line per setting.

    Settings that cannot be TOML keys, or that are unset, are printed as comments.
    """
    rows = []
    for s in SETTINGS:
        value = getattr(config, s.name)
        literal = None if value is None else _checked_toml(s.type.toml(value))
        if value is None:
            left = f"# {s.name} is unset"
        elif literal is None:  # only text that is not Unicode (undecodable bytes in argv)
            left = f"# {s.name} cannot be written as TOML: {ascii(value)}"
        else:
            left = ("" if s.file else "# ") + f"{s.name} = {literal}"
        rows.append((left, sources.get(s.name, "default")))
    width = min(max(len(left) for left, _ in rows), 48)
    lines = ["# frontdesk settings: value  # source (command line > env > config file > default)"]
    lines += [f"{left:<{width}}  # {source}" for left, source in rows]
    return "\n".join(lines) + "\n"


def _checked_toml(literal: str) -> str | None:
    """`literal` if it is a valid TOML value that can be written as UTF-8, else None."""
    try:
        literal.encode("utf-8")
        tomllib.loads(f"x = {literal}")
    except (UnicodeError, tomllib.TOMLDecodeError):
        return None
    return literal


_DOC_BEGIN = "<!-- BEGIN SETTINGS TABLE: generated by frontdesk.config.update_docs -->"
_DOC_END = "<!-- END SETTINGS TABLE -->"


def render_settings_doc() -> str:
    """The settings tables of docs/configuration.md, one per group, as Markdown."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    out = []
    for group in GROUPS:
        out += [f"### {group}", ""]
        out += ["| Setting | Command line | Environment | Default | Meaning | gunicorn / nginx |"]
        out += ["|---|---|---|---|---|---|"]
        for s in (s for s in SETTINGS if s.group == group):
            flags = ", ".join(f"`{f}`" for f in s.flags) or f"`{s.metavar}` (argument)"
            env = f"`{s.env_var}`" if s.env else "—"
            key = f"`{s.name}`" if s.file else f"`{s.name}` (not in a file)"
            default = s.default_doc or f"`{s.type.show(s.default_value())}`"
            row = [key, flags, env, default, s.doc, s.equiv or "—"]
            out.append("| " + " | ".join(cell(c) for c in row) + " |")
        out.append("")
    return "\n".join(out)


def update_docs(text: str) -> str:
    """Return docs/configuration.md `text` with its generated settings section replaced."""
    head, _, rest = text.partition(_DOC_BEGIN)
    _, _, tail = rest.partition(_DOC_END)
    return f"{head}{_DOC_BEGIN}\n\n{render_settings_doc()}\n{_DOC_END}{tail}"
