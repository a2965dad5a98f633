"""Turn an application spec like "pkg.mod:create_app()" into the WSGI callable.

This is the only module that imports user code. Every failure is an `AppLoadError` with a one-line
message. When the failure happened inside the user's code, the original exception is chained as
`__cause__` and `app_traceback` formats it without frontdesk's and importlib's frames; otherwise
(module not found, missing attribute, not callable) the message says everything and there is no
cause.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import os
import re
import sys
import traceback
from collections.abc import Callable
from typing import Any

from frontdesk.errors import AppLoadError

__all__ = ["app_traceback", "load_app"]

_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_FALLBACKS = ("application", "app")


def load_app(
    spec: str, *, chdir: str | None = None, pythonpath: tuple[str, ...] = ()
) -> Callable[..., Any]:
    """Import the application named by `spec` and return it.

    `spec` is `module`, `module:attr`, `module:obj.attr` or `module:factory(literal args)`; a bare
    module uses its `application`, else its `app`. `chdir` is entered before importing; the
    directory then current and the `pythonpath` entries are put at the front of sys.path.
    """
    module_name, _, expr = spec.partition(":")
    if not _MODULE.fullmatch(module_name):
        raise AppLoadError(f"application {spec!r} is not valid: expected 'module:name'")
    names, call = _parse_target(spec, expr)
    _prepare_path(chdir, pythonpath)
    module = _import(module_name)

    if names is None:
        found = [n for n in _FALLBACKS if hasattr(module, n)]
        if not found:
            raise AppLoadError(
                f"module {module_name!r} has no 'application' or 'app'; name it: '{module_name}:NAME'"
            )
        names = [found[0]]
    obj: Any = module
    for i, name in enumerate(names):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            owner = f"module {module_name!r}" if i == 0 else repr(f"{module_name}:{'.'.join(names[:i])}")
            public = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(name, public, n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            raise AppLoadError(f"{owner} has no attribute {name!r}{hint}") from None

    target = f"{module_name}:{'.'.join(names)}"
    if call is not None:
        if not callable(obj):
            raise AppLoadError(f"application factory {target!r} is not callable ({type(obj).__name__})")
        args, kwargs = call
        try:
            obj = obj(*args, **kwargs)
        except Exception as exc:
            raise AppLoadError(
                f"application factory '{target}()' raised {type(exc).__name__}: {exc}"
            ) from exc
        target += "()"
    if not callable(obj):
        raise AppLoadError(f"{target!r} is not a WSGI application: {type(obj).__name__} is not callable")
    return obj  # type: ignore[no-any-return]


def app_traceback(exc: AppLoadError) -> str:
    """The user's traceback behind `exc`, without frontdesk/importlib frames ("" if none)."""
    cause = exc.__cause__
    if cause is None:
        return ""
    te = traceback.TracebackException.from_exception(cause)
    te.stack = traceback.StackSummary.from_list([f for f in te.stack if not _is_machinery(f.filename)])
    return "".join(te.format())


def _is_machinery(filename: str) -> bool:
    """A frame of ours or of the import system, not the user's."""
    return (
        filename == __file__
        or filename.startswith("<frozen importlib")
        or os.path.dirname(filename) == os.path.dirname(importlib.__file__)
    )


def _parse_target(spec: str, expr: str) -> tuple[list[str] | None, tuple[list[Any], dict[str, Any]] | None]:
    """`expr` -> (attribute path, (args, kwargs) if it is a factory call). Like gunicorn's."""
    if not expr:
        return None, None
    bad = AppLoadError(
        f"application {spec!r} is not valid: after ':' expected a name, 'obj.attr' or a call like 'create_app()'"
    )
    try:
        node = ast.parse(expr.strip(), mode="eval").body
    except SyntaxError:
        raise bad from None
    call = None
    if isinstance(node, ast.Call):
        if any(k.arg is None for k in node.keywords) or any(isinstance(a, ast.Starred) for a in node.args):
            raise bad
        try:
            args = [ast.literal_eval(a) for a in node.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
        except ValueError:
            raise AppLoadError(
                f"application {spec!r} is not valid: factory arguments must be literals (strings, numbers...)"
            ) from None
        call, node = (args, kwargs), node.func
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.insert(0, node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise bad
    return [node.id, *names], call


def _prepare_path(chdir: str | None, pythonpath: tuple[str, ...]) -> None:
    if chdir:
        try:
            os.chdir(chdir)
        except OSError as exc:
            raise AppLoadError(f"cannot change directory to {chdir!r}: {exc.strerror}") from None
    # A console script's sys.path[0] is its bin/ directory: the working directory must be added.
    for entry in reversed((*[os.path.abspath(p) for p in pythonpath], os.getcwd())):
        if entry in sys.path:
            sys.path.remove(entry)
        sys.path.insert(0, entry)
    importlib.invalidate_caches()


def _import(module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise AppLoadError(
                f"module {module_name!r} not found in {os.getcwd()} or on sys.path"
                " (see --chdir and --pythonpath)"
            ) from None
        raise AppLoadError(
            f"module {module_name!r} was found, but importing it failed: {exc}"
        ) from exc
    except Exception as exc:
        raise AppLoadError(
            f"module {module_name!r} was found, but importing it failed: {type(exc).__name__}: {exc}"
        ) from exc
