"""Start the server for a validated `Config`: load the app, bind, serve. Returns an exit status."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from frontdesk import logs, sockets
from frontdesk.errors import AppLoadError, FrontdeskError

log = logging.getLogger("frontdesk.error")


def build_static(config: Any) -> Any:
    mounts = getattr(config, "static", ())
    if not mounts:
        return None
    from frontdesk.static import StaticFiles, parse_mount

    return StaticFiles(
        [parse_mount(spec) for spec in mounts],
        fallthrough=getattr(config, "static_fallthrough", False),
        precompress=getattr(config, "static_precompress", False),
    )


def run(config: Any) -> int:
    """Serve `config.app` in this process until SIGTERM/SIGINT. Errors → one line, status 2."""
    logs.configure(config)
    from frontdesk.loader import load_app
    from frontdesk.worker.process import Worker

    try:
        # Static directories are relative to where frontdesk started, so before --chdir.
        static = build_static(config)
        # AppLoadError propagates: the CLI prints the user's traceback and exits 2.
        app = load_app(config.app, chdir=config.chdir, pythonpath=config.pythonpath)
        listeners = [
            sockets.bind(spec, backlog=config.backlog, reuse_port=config.reuse_port)
            for spec in config.bind
        ]
    except (ValueError, FrontdeskError) as exc:
        if isinstance(exc, AppLoadError):
            raise
        print(f"frontdesk: error: {exc}", file=sys.stderr)
        return 2
    for sock in listeners:
        log.info("Listening at: %s (%d)", sockets.describe(sock), os.getpid())
    worker = Worker(config, app, static)
    status = worker.run(listeners)
    log.info("Shutting down: exit %d", status)
    return status
