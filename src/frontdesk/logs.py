"""Error log and access log: formats and handlers. No I/O on the hot path.

Access log lines are queued as small tuples by whoever finished the response (an app thread, or
the loop for static files) and formatted and written by one writer thread per worker, through
the `frontdesk.access` logger, so `--log-config` can route them like any other logger.

Format atoms follow gunicorn's (`%(h)s`, `%(r)s`, `%(s)s`, `%({header}i)s`, ...), plus
`%(rid)s`, the request id. Every value taken from the request is escaped (control characters,
quotes and backslashes as `\\xNN`), so a client cannot forge log lines.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import logging.config
import logging.handlers
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from frontdesk.errors import ConfigError

ACCESS_LOGGER = "frontdesk.access"
ERROR_LOGGER = "frontdesk.error"
APP_LOGGER = "frontdesk.error.app"  # what apps write to wsgi.errors (frontdesk.wsgi.errors)
ERROR_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
ERROR_DATEFMT = "%Y-%m-%d %H:%M:%S %z"

_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f"\\]')


def escape(text: str) -> str:
    """Make request-controlled text safe for a log line (no CR/LF/ESC/quotes)."""
    return _UNSAFE.sub(lambda m: "\\x%02x" % ord(m.group()), text) if _UNSAFE.search(text) else text


def configure(config: Any) -> None:
    """Set up the error log (and the access logger's handler) for this process.

    Raises `ConfigError` (one line, naming the setting) when a log file cannot be opened or the
    --log-config cannot be applied: the settings were checked (`config.resolve`), but what a
    dictConfig's handlers do is only known once they are made."""
    if config.log_config:
        try:
            logging.config.dictConfig(load_dict_config(config.log_config))
        except (ValueError, TypeError, AttributeError, ImportError, OSError) as exc:
            cause = f": {exc.__cause__}" if exc.__cause__ else ""
            reason = f"{exc}{cause}".replace("\n", " ")
            raise ConfigError(f"setting 'log_config' is invalid: {config.log_config}: {reason}"
                              ) from None
        return
    error = logging.getLogger(ERROR_LOGGER)
    handler = _handler("error_log", config.error_log, sys.stderr, ERROR_FORMAT, ERROR_DATEFMT)
    error.handlers.clear()
    error.addHandler(handler)
    error.setLevel(config.log_level.upper())
    error.propagate = False
    # What apps write to wsgi.errors is logged at ERROR; --log-level critical must not hide it.
    logging.getLogger(APP_LOGGER).setLevel(logging.ERROR)
    access = logging.getLogger(ACCESS_LOGGER)
    handler = (_handler("access_log", config.access_log, sys.stdout, "%(message)s", None)
               if config.access_log else None)
    access.handlers.clear()
    access.propagate = False
    access.setLevel(logging.INFO)
    if handler is not None:
        access.addHandler(handler)


def reclaim() -> None:
    """After the app is imported: an app that sets up logging with `dictConfig` at import (as
    Flask's documentation shows) disables every logger that exists then and that it does not
    name (`disable_existing_loggers`), the server's own among them: its error log, wsgi.errors
    and the access log would go silent. A dictConfig that names them configures them instead,
    and that is kept."""
    for name in (ERROR_LOGGER, APP_LOGGER, ACCESS_LOGGER):
        logging.getLogger(name).disabled = False


def _handler(setting: str, target: str, default_stream: Any, fmt: str, datefmt: str | None
             ) -> logging.Handler:
    handler: logging.Handler
    if target == "-":
        handler = StreamHandler(default_stream)
    else:
        try:
            handler = WatchedFileHandler(target)
        except OSError as exc:
            raise ConfigError(f"setting {setting!r} is invalid: cannot open {target}:"
                              f" {exc.strerror or exc}") from None
    handler.setFormatter(logging.Formatter(fmt, datefmt))
    return handler


# -- handlers that never raise --------------------------------------------------------------------


class _ReportOnce:
    """A handler that cannot write says so once on stderr, not once per line, and never raises:
    a log call must not kill the master's loop, a worker's tick or the access log thread. It
    says so again if writing failed anew after it worked."""

    _failing = False

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        if self._failing:
            return
        self._failing = True
        exc = sys.exc_info()[1]
        reason = (exc.strerror if isinstance(exc, OSError) and exc.strerror else
                  f"{type(exc).__name__}: {exc}")
        where = getattr(self, "baseFilename", None) or getattr(
            getattr(self, "stream", None), "name", "the log stream")
        try:
            sys.stderr.write(f"frontdesk: cannot write log to {where}: {reason}"
                             " (lines are lost until it works again)\n")
            sys.stderr.flush()
        except Exception:  # stderr itself is gone: nothing left to tell
            pass

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._prepare()
            msg = self.format(record)  # type: ignore[attr-defined]
            self.stream.write(msg + self.terminator)  # type: ignore[attr-defined]
            self.flush()  # type: ignore[attr-defined]
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)
        else:
            self._failing = False

    def _prepare(self) -> None:
        """Before each line: make sure there is a stream to write to."""


class StreamHandler(_ReportOnce, logging.StreamHandler):  # type: ignore[type-arg]
    """`logging.StreamHandler` that reports a failing stream once (see `_ReportOnce`)."""


class WatchedFileHandler(_ReportOnce, logging.handlers.WatchedFileHandler):
    """`logging.handlers.WatchedFileHandler` (notices logrotate's rename and reopens; USR1
    reopens explicitly too, for copytruncate) whose reopen cannot raise: the stdlib's reopens
    outside its error handling, so a removed directory, or a new file the worker's --user may
    not open, raised out of any log call. While the file cannot be opened each line tries
    again. Usable in a --log-config as `frontdesk.logs.WatchedFileHandler`."""

    def _prepare(self) -> None:
        self.reopenIfNeeded()
        if self.stream is None:
            self.stream = self._open()
            self._statstream()  # else the next line would see a "new" file and reopen


def reopen_files() -> int:
    """USR1: reopen every logging file handler (after logrotate moved the files). Returns how
    many were reopened."""
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    handlers = {id(h): h for logger in loggers for h in logger.handlers
                if isinstance(h, logging.FileHandler)}
    for handler in handlers.values():
        handler.acquire()
        try:
            if handler.stream is not None:
                handler.stream.close()
            handler.stream = None  # if the reopen fails, the next line tries again
            handler.stream = handler._open()
        except OSError as exc:
            logging.getLogger(ERROR_LOGGER).error(
                "cannot reopen log file %s: %s", handler.baseFilename, exc.strerror or exc)
        finally:
            handler.release()
    return len(handlers)


def load_dict_config(path: str) -> dict[str, Any]:
    """The dictConfig in the TOML (or, for *.json, JSON) file `path`. Raises ValueError with a
    one-line reason when it cannot be read, is not UTF-8, does not parse or is not a version 1
    dictConfig. (Its handler classes are only imported by `configure`: that is user code.)"""
    try:
        with open(path, "rb") as f:
            data = f.read()
        text = data.decode("utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 (byte 0x{data[exc.start]:02x} at offset"
                         f" {exc.start})") from None
    if path.endswith(".json"):
        try:
            config = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from None
    else:
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover
            import tomli as tomllib
        try:
            config = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            hint = ""
            if path.endswith((".ini", ".conf", ".cfg")):
                hint = " (logging.config.fileConfig files are not read: write it as a dictConfig)"
            raise ValueError(f"{path} is not valid TOML (JSON files must end in .json): {exc}"
                             f"{hint}") from None
    if not isinstance(config, dict) or config.get("version") != 1:
        raise ValueError(f"{path} is not a logging.config.dictConfig: it needs version = 1")
    return config


# -- request ids ----------------------------------------------------------------------------------

_TRUSTED_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,200}")
_id_state: tuple[str, Any] = ("", None)


def request_id(given: str | None) -> str:
    """`given` (a trusted proxy's X-Request-ID, as Heroku's router sets) if well-formed, else a
    new id unique across workers and restarts."""
    if given and _TRUSTED_ID.fullmatch(given):
        return given
    prefix, counter = _id_state
    if counter is None:
        prefix, counter = _new_id_state()
    return f"{prefix}-{next(counter):x}"


def given_request_id(trust: Any, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The X-Request-ID of a request from a trusted proxy (`trust` is not None), as the WSGI
    environ carries it (repeated fields joined with ", ", which `request_id` then refuses), for
    the lines the server logs without an environ; None when there is none or it is not
    trusted."""
    if trust is None:
        return None
    given = None
    for name, value in headers:
        if len(name) == 12 and name.lower() == b"x-request-id":
            text = value.decode("latin-1")
            given = text if given is None else given + ", " + text
    return given


def _new_id_state() -> tuple[str, Any]:
    global _id_state
    _id_state = (os.urandom(5).hex(), itertools.count(1))
    return _id_state


def _forget_id_state() -> None:
    global _id_state
    _id_state = ("", None)  # a forked child picks its own prefix on first use


os.register_at_fork(after_in_child=_forget_id_state)


_access_logs: dict[tuple[int, str, bool], AccessLog] = {}


def access_log_for(config: Any) -> AccessLog | None:
    """This process's access log writer, or None when access logging is off."""
    if not config.access_log and not config.log_config:
        return None
    if config.log_config and not logging.getLogger(ACCESS_LOGGER).hasHandlers():
        return None
    key = (os.getpid(), config.access_log_format, config.access_log_json)
    log = _access_logs.get(key)
    if log is None:
        log = _access_logs[key] = AccessLog(config.access_log_format, config.access_log_json)
    return log


# -- access log -----------------------------------------------------------------------------------


MAX_QUEUED_LINES = 10_000


class _RequestLine:
    """What the access log needs of a request (not its body)."""

    __slots__ = ("method", "target", "version", "headers")

    def __init__(self, method: str, target: bytes, version: str,
                 headers: list[tuple[bytes, bytes]]) -> None:
        self.method, self.target, self.version, self.headers = method, target, version, headers


class AccessLog:
    """Queues one record per response; a writer thread formats and logs them."""

    def __init__(self, fmt: str, as_json: bool) -> None:
        self.fmt = fmt
        self.as_json = as_json
        # The environ variables the format names (`%({name}e)s`), as (key in the record, then
        # the spellings looked up: as written, upper-cased as CGI's are, lower-cased as wsgi.*
        # are). gunicorn matches them case-insensitively by lower-casing the whole environ.
        self._env_names = tuple(
            (name.lower(), tuple(dict.fromkeys((name, name.upper(), name.lower()))))
            for name in dict.fromkeys(re.findall(r"%\(\{([^}]*)\}e\)", fmt)) if not as_json)
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._logger = logging.getLogger(ACCESS_LOGGER)
        self._pid = str(os.getpid())
        self.dropped = 0
        self._thread = threading.Thread(target=self._write, name="frontdesk-access-log", daemon=True)
        self._thread.start()

    def record(
        self,
        remote_addr: str,
        request: Any,
        status: int,
        sent: int,
        response_headers: list[tuple[str, str]],
        started: float,
        request_id: str,
        environ: Mapping[str, Any] | None = None,
    ) -> None:
        """Called when a response is complete (app thread or loop): cheap, no formatting.

        Only the request line and headers are kept, never the request (its body may be large),
        nor the `environ` (the WSGI one, when there was an app call): only the variables the
        format names, as text. The queue is bounded: when the log cannot keep up (a full pipe),
        lines are dropped and counted rather than holding memory without limit."""
        if self._queue.qsize() >= MAX_QUEUED_LINES:
            self.dropped += 1
            return
        line = _RequestLine(request.method, request.target, request.version, request.headers)
        env = None
        if self._env_names and environ is not None:
            env = {}
            for key, spellings in self._env_names:
                for name in spellings:
                    value = environ.get(name)
                    if value is not None:
                        env[key] = str(value)
                        break
        self._queue.put((remote_addr, line, status, sent, response_headers,
                         time.monotonic() - started, time.time(), request_id, env))

    def close(self, timeout: float = 1.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)
        if self.dropped:
            logging.getLogger(ERROR_LOGGER).warning(
                "access log fell behind: %d lines dropped", self.dropped)

    def _write(self) -> None:
        """The writer thread: it must outlive any failure of a line or of a handler, or every
        later line would silently queue up and be dropped."""
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                line = self.format(*item)
                self._logger.info(line)
            except Exception:
                try:
                    logging.getLogger(ERROR_LOGGER).exception("access log line failed")
                except Exception:
                    pass

    def format(self, remote_addr: str, request: Any, status: int, sent: int,
               response_headers: list[tuple[str, str]], duration: float, now: float,
               request_id: str, env: dict[str, str] | None = None) -> str:
        atoms = _Atoms(self._pid, remote_addr, request, status, sent, response_headers,
                       duration, now, request_id, env)
        if self.as_json:
            return json.dumps(atoms.as_dict(), separators=(",", ":"))
        return self.fmt % atoms


def check_format(fmt: str) -> str:
    """`fmt` if it formats an access log line, else ValueError saying why (for the settings)."""
    for match in re.finditer(r"%(%|\([^)]*\))?", fmt):
        if match[1] is None:
            raise ValueError(f"'%' at offset {match.start()} of {fmt!r} is not an atom: atoms are"
                             " written like %(h)s, and a literal '%' as %%")
    sample = _RequestLine("GET", b"/?q", "1.1", [(b"Host", b"example.com")])
    try:
        fmt % _Atoms("1", "127.0.0.1", sample, 200, 0, [], 0.0, 0.0, "id", {})
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{fmt!r} is not a valid access log format ({exc}): atoms are written"
                         " like %(h)s, and a literal '%' as %%") from None
    return fmt


class _Atoms(dict):  # type: ignore[type-arg]
    """gunicorn-compatible atoms, computed only when a format asks for them."""

    def __init__(self, pid: str, remote_addr: str, request: Any, status: int, sent: int,
                 response_headers: list[tuple[str, str]], duration: float, now: float,
                 request_id: str, env: dict[str, str] | None = None) -> None:
        super().__init__()
        self._args = (pid, remote_addr, request, status, sent, response_headers, duration, now,
                      request_id, env)

    def __missing__(self, key: str) -> str:
        pid, remote, request, status, sent, resp_headers, duration, now, rid, env = self._args
        target = request.target.decode("latin-1")
        path, _, query = target.partition("?")
        if key.startswith("{") and key.endswith("}i"):
            return escape(_request_header(request, key[1:-2]) or "-")
        if key.startswith("{") and key.endswith("}o"):
            name = key[1:-2].lower()
            return escape(next((v for n, v in resp_headers if n.lower() == name), "-"))
        if key.startswith("{") and key.endswith("}e"):
            return escape((env or {}).get(key[1:-2].lower(), "-"))
        value: str
        if key == "h":
            value = remote or "-"
        elif key == "l":
            value = "-"
        elif key == "u":
            value = _basic_auth_user(request) or "-"
        elif key == "t":
            value = time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(now))
        elif key == "r":
            value = f"{request.method} {target} HTTP/{request.version}"
        elif key == "m":
            value = request.method
        elif key == "U":
            value = path
        elif key == "q":
            value = query
        elif key == "H":
            value = f"HTTP/{request.version}"
        elif key == "s":
            value = str(status)
        elif key == "B":
            value = str(sent)
        elif key == "b":
            value = str(sent) if sent else "-"
        elif key == "f":
            value = _request_header(request, "referer") or "-"
        elif key == "a":
            value = _request_header(request, "user-agent") or "-"
        elif key == "T":
            value = str(int(duration))
        elif key == "D":
            value = str(int(duration * 1_000_000))
        elif key == "M":
            value = str(int(duration * 1000))
        elif key == "L":
            value = f"{duration:.6f}"
        elif key == "p":
            value = f"<{pid}>"
        elif key == "rid":
            value = rid
        else:
            value = "-"
        return escape(value)

    def as_dict(self) -> dict[str, Any]:
        pid, remote, request, status, sent, resp_headers, duration, now, rid, _ = self._args
        return {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),
            "remote_addr": remote,
            "method": request.method,
            "uri": request.target.decode("latin-1"),
            "protocol": f"HTTP/{request.version}",
            "status": status,
            "bytes": sent,
            "duration_us": int(duration * 1_000_000),
            "referer": _request_header(request, "referer"),
            "user_agent": _request_header(request, "user-agent"),
            "request_id": rid,
            "pid": int(pid),
        }


def _basic_auth_user(request: Any) -> str | None:
    """The user name of a Basic Authorization header, as gunicorn's %(u)s: None if there is
    none or it does not decode (the password is never looked at beyond the first ':')."""
    auth = _request_header(request, "authorization")
    if not auth or not auth.lower().startswith("basic"):
        return None
    parts = auth.split(" ", 1)
    if len(parts) != 2:
        return None
    try:
        return base64.b64decode(parts[1].strip().encode("latin-1")).split(b":", 1)[0].decode()
    except (ValueError, UnicodeError):  # binascii.Error is a ValueError
        return None


def _request_header(request: Any, name: str) -> str | None:
    wanted = name.lower().encode("latin-1")
    for key, value in request.headers:
        if key.lower() == wanted:
            return value.decode("latin-1")
    return None


def flush_access_logs(timeout: float = 1.0) -> None:
    """Write out this process's queued access log lines (before the process exits)."""
    pid = str(os.getpid())
    for access_log in list(_access_logs.values()):
        if access_log._pid == pid:
            access_log.close(timeout)
