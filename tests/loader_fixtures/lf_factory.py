"""Apps, factories and things that are not apps, for tests/test_loader.py."""

import types

calls = []


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def create_app():
    calls.append(())
    return app


def make(name="default", n=0):
    def configured(environ, start_response):
        return app(environ, start_response)

    configured.name, configured.n = name, n
    return configured


def broken_factory():
    raise RuntimeError("database URL is not set")


def make_nothing():
    return None


not_callable = 42
site = types.SimpleNamespace(wsgi=app)
