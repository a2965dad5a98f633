"""The master process: supervises worker processes (see `frontdesk.master.arbiter`)."""

from frontdesk.master.arbiter import (
    Arbiter,
    Privileges,
    check_pidfile,
    pidfile_name,
    resolve_privileges,
)

__all__ = ["Arbiter", "Privileges", "check_pidfile", "pidfile_name", "resolve_privileges"]
