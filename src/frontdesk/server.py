"""Start the server for a validated `Config`: build everything, bind, hand over to the master.

`run` is the whole process model in order (docs/process-management.md):

1. logging, umask, `--user`/`--group` resolved (not yet dropped: workers drop them after fork);
2. static mounts built, and with `--preload` the app imported, in the master;
3. listening sockets bound, or inherited from systemd or from the master this one replaces (USR2),
   one `Listening at:` line each;
4. `frontdesk.master.Arbiter` forks the workers and supervises them until it is told to stop.

Every error before the first fork is one `frontdesk: error:` line and status 2.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from frontdesk import sockets
from frontdesk.errors import AppLoadError, ConfigError, FrontdeskError

log = logging.getLogger("frontdesk.error")

def configure_logging(config: Any) -> None:
    """Error and access logs as the settings say (`frontdesk.logs`); run again on HUP."""
    from frontdesk import logs

    logs.configure(config)


def build_static(config: Any) -> Any:
    mounts = getattr(config, "static", ())
    if not mounts:
        return None
    from frontdesk.static import StaticFiles, parse_mount

    precompress = getattr(config, "static_precompress", False)
    cache_group = None
    if precompress and getattr(config, "user", None):
        # Variants are built here, before workers drop to --user: give them the workers' group.
        from frontdesk.master import resolve_privileges

        priv = resolve_privileges(config.user, getattr(config, "group", None))
        if priv.uid is not None and priv.uid != os.geteuid():
            cache_group = priv.gid if priv.gid is not None else os.getegid()
    return StaticFiles(
        [parse_mount(spec) for spec in mounts],
        fallthrough=getattr(config, "static_fallthrough", False),
        precompress=precompress,
        cache_group=cache_group,
    )


def _app_loader(config: Any) -> Callable[..., Any]:
    from frontdesk import logs
    from frontdesk.loader import load_app

    app = load_app(config.app, chdir=config.chdir, pythonpath=tuple(config.pythonpath))
    logs.reclaim()  # the app's own logging set-up must not silence the server's logs
    return app


def _config_reloader(start_cwd: str) -> Callable[[], Any]:
    """HUP: read the settings again, from the same command line, environment and files."""

    def reload() -> Any:
        from frontdesk.cli import build_parser
        from frontdesk.config import resolve

        try:
            given = vars(build_parser().parse_args(sys.argv[1:]))
        except SystemExit:
            raise ConfigError(f"cannot parse the command line again: {sys.argv[1:]}") from None
        return resolve(given, cwd=start_cwd).config

    return reload


def metrics_slots(workers: int) -> int:
    """How many workers the metrics count at once (docs/metrics.md): `--workers` at start x 4,
    at least 64."""
    return max(64, 4 * workers)


def start_metrics(config: Any, inherited: tuple[str, int] | None = None) -> tuple[Any, Any, Any]:
    """The metrics registry, its server for `--metrics-bind` and its pusher for `--statsd-host`,
    started; each None when not configured (the registry when neither is).

    `inherited`: the metrics socket the old master of a USR2 upgrade passed (`--metrics-bind`
    text, fd). When it is for the same address it is adopted, not bound again, and not served
    yet: the old master serves it until this one takes over (`Arbiter`), so one registry
    answers at a time. Otherwise its fd is closed.

    Slots: two generations overlap during a reload, recycled workers keep theirs until they are
    reaped, and a HUP or TTIN may raise the number of workers, but the region is sized once. So
    `metrics_slots(workers)`, generously: a slot's pages cost nothing until a worker touches them
    (and a scrape reads only the slots ever used). Raises OSError (one line) if the address
    cannot be bound.
    """
    bind = getattr(config, "metrics_bind", None)
    statsd = getattr(config, "statsd_host", None)
    sock = None
    if inherited is not None:
        if inherited[0] == bind:
            try:
                sock = sockets.adopt(*inherited)
            except sockets.BindError as exc:
                raise OSError(f"--metrics-bind {bind}: {exc}") from None
        else:
            with contextlib.suppress(OSError):
                os.close(inherited[1])
    if not bind and not statsd:
        return None, None, None
    from frontdesk import metrics

    registry = metrics.Registry(max_workers=metrics_slots(config.workers), status_codes=bool(statsd))
    server = pusher = None
    if bind:
        address: Any = sockets.parse_address(bind)[1]
        server = metrics.MetricsServer(registry, str(address[0]), int(address[1]), sock=sock)
        if sock is None:
            server.start()
            log.info("Metrics at: http://%s:%d/metrics", *server.address)
        else:
            server.open()
            log.info("Metrics at: http://%s:%d/metrics, inherited: the old master answers there"
                     " until this one takes over", *server.address)
    if statsd:
        host, port = sockets.parse_address(statsd)[1]  # type: ignore[misc]
        pusher = metrics.StatsdPusher(registry, str(host), int(port), config.statsd_prefix)
        pusher.start()
        log.info("StatsD metrics to: %s:%d", host, port)
    return registry, server, pusher


def _preimport_worker(config: Any) -> None:
    """Import the worker's modules in the master: workers start faster, share the pages, and can
    still import them after dropping privileges (--user) to a user who cannot read them."""
    import frontdesk.worker.process  # noqa: F401

    if config.loop != "asyncio":
        try:
            importlib.import_module("uvloop")
        except ImportError:
            pass


def run(config: Any) -> int:
    """Serve `config.app` with a master and `config.workers` workers until stopped.

    Returns the exit status: 0 after TERM/INT/QUIT, 2 for an error before the first fork, 1 when
    workers crash before they serve. Raises `AppLoadError` when the app cannot be loaded (in the
    master with --preload, or by every worker again and again): the CLI prints it, status 2.
    """
    configure_logging(config)
    from frontdesk.master import Arbiter, check_pidfile, pidfile_name, resolve_privileges

    start_cwd = os.getcwd()
    try:
        if config.reload and config.preload:
            raise ConfigError("--reload cannot be used with --preload: the master would keep the app"
                              " it imported once, so no edit would ever be served; drop --preload"
                              " while developing")
        if config.umask is not None:
            os.umask(config.umask)
        privileges = resolve_privileges(config.user, config.group)
        inherited_metrics = sockets.inherited_metrics()  # before open_listeners consumes it
        if config.pid:  # before anything is bound: a pid file problem is a setting's error
            upgrading_from = sockets.upgrading_from()
            check_pidfile(pidfile_name(config.pid, start_cwd, upgrading_from), upgrading_from)
        # Static directories are relative to where frontdesk started, so before --chdir.
        static = build_static(config)
        app = _app_loader(config) if config.preload else None  # AppLoadError propagates
        listeners, old_master = sockets.open_listeners(
            tuple(config.bind), backlog=config.backlog, reuse_port=config.reuse_port,
            umask=config.umask,
        )
    except (ValueError, FrontdeskError) as exc:
        if isinstance(exc, AppLoadError):
            raise
        print(f"frontdesk: error: {exc}", file=sys.stderr)
        return 2
    try:
        # Last before the fork: it starts the master's only threads (scrape server, StatsD push).
        registry, metrics_server, statsd = start_metrics(config, inherited_metrics)
    except (ValueError, OSError) as exc:
        sockets.close_all(listeners, unlink=not old_master)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        print(f"frontdesk: error: {reason}", file=sys.stderr)
        return 2
    for listener in listeners:
        log.info("Listening at: %s (%d)", sockets.describe(listener.sock), os.getpid())
    _preimport_worker(config)
    arbiter = Arbiter(
        config,
        listeners,
        load_app=_app_loader,
        app=app,
        static=static,
        build_static=build_static,
        reload_config=_config_reloader(start_cwd),
        configure_logging=configure_logging,
        privileges=privileges,
        old_master=old_master,
        start_cwd=start_cwd,
        metrics=registry,
        metrics_server=metrics_server,
    )
    try:
        return arbiter.run()  # workers never return from it: only the master gets here
    finally:
        if statsd is not None:
            statsd.stop()
