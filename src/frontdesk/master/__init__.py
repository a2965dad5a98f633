"""The master process: supervises worker processes (see `frontdesk.master.arbiter`)."""

from frontdesk.master.arbiter import Arbiter, Privileges, resolve_privileges

__all__ = ["Arbiter", "Privileges", "resolve_privileges"]
