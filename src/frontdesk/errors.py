"""The small error tree. Exceptions carry what the boundary needs to answer them."""

from __future__ import annotations


class FrontdeskError(Exception):
    """Base of every error frontdesk raises on purpose."""


class ConfigError(FrontdeskError):
    """A setting is unknown, malformed or out of range. Message names the setting and source."""


class AppLoadError(FrontdeskError):
    """The WSGI application could not be imported or is not callable."""


class ProtocolError(FrontdeskError):
    """The client broke HTTP/1.1; `status` is the answer it gets before the connection closes."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
