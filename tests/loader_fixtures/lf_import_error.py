"""A module that exists but imports a dependency that is not installed."""

import lf_definitely_missing_dependency  # noqa: F401


def app(environ, start_response):
    return []
