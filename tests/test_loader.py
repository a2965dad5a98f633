"""load_app: every spec form, sys.path handling, and each way loading can fail."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from frontdesk.errors import AppLoadError
from frontdesk.loader import app_traceback, load_app

FIXTURES = str(Path(__file__).resolve().parent / "loader_fixtures")


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch):
    """load_app changes cwd, sys.path and sys.modules: give each test its own."""
    monkeypatch.chdir(os.getcwd())
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name in [n for n in sys.modules if n.startswith("lf_")]:
        del sys.modules[name]


def load(spec: str, **kwargs):
    kwargs.setdefault("pythonpath", (FIXTURES,))
    return load_app(spec, **kwargs)


def fails(spec: str, **kwargs) -> AppLoadError:
    with pytest.raises(AppLoadError) as info:
        load(spec, **kwargs)
    assert "\n" not in str(info.value)
    return info.value


# -- the spec forms --


def test_module_colon_attr() -> None:
    import_app = load("lf_factory:app")
    assert import_app is sys.modules["lf_factory"].app


def test_module_in_a_package() -> None:
    assert load("lf_pkg.web:app") is sys.modules["lf_pkg.web"].app


def test_module_alone_prefers_application_then_app() -> None:
    assert load("lf_both") is sys.modules["lf_both"].application
    assert load("lf_only_app") is sys.modules["lf_only_app"].app


def test_dotted_attribute() -> None:
    assert load("lf_factory:site.wsgi") is sys.modules["lf_factory"].app


def test_factory_is_called_once_without_arguments() -> None:
    app = load("lf_factory:create_app()")
    module = sys.modules["lf_factory"]
    assert app is module.app
    assert module.calls == [()]


def test_factory_with_literal_arguments() -> None:
    app = load("lf_factory:make('prod', n=2)")
    assert (app.name, app.n) == ("prod", 2)


def test_pythonpath_and_cwd_go_to_the_front_of_sys_path(tmp_path: Path) -> None:
    load("lf_only_app", pythonpath=(FIXTURES, str(tmp_path)))
    assert sys.path[:3] == [FIXTURES, str(tmp_path), os.getcwd()]


def test_chdir_enters_the_directory_and_imports_from_it(tmp_path: Path) -> None:
    (tmp_path / "lf_in_tmp.py").write_text("def app(environ, start_response):\n    return []\n")
    app = load_app("lf_in_tmp:app", chdir=str(tmp_path))
    assert callable(app)
    assert os.getcwd() == str(tmp_path)
    assert sys.path[0] == str(tmp_path)


def test_relative_pythonpath_is_taken_after_chdir(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "lf_src_app.py").write_text("app = lambda e, s: []\n")
    assert callable(load_app("lf_src_app:app", chdir=str(tmp_path), pythonpath=("src",)))


# -- failures --


def test_missing_chdir() -> None:
    error = fails("lf_only_app", chdir="/no/such/dir")
    assert str(error) == "cannot change directory to '/no/such/dir': No such file or directory"


@pytest.mark.parametrize("spec", ["lf_nope:app", "lf_pkg.nope:app", "lf_nope.sub"])
def test_module_not_found(spec: str) -> None:
    error = fails(spec)
    assert f"module '{spec.partition(':')[0]}' not found in " in str(error)
    assert error.__cause__ is None
    assert app_traceback(error) == ""


def test_module_not_found_inside_the_users_module() -> None:
    error = fails("lf_import_error:app")
    assert str(error) == (
        "module 'lf_import_error' was found, but importing it failed:"
        " No module named 'lf_definitely_missing_dependency'"
    )
    trace = app_traceback(error)
    assert 'lf_import_error.py", line 3, in <module>' in trace
    assert trace.rstrip().endswith("No module named 'lf_definitely_missing_dependency'")
    assert "loader.py" not in trace and "importlib" not in trace


def test_module_raising_at_import() -> None:
    error = fails("lf_raises:app")
    assert str(error) == (
        "module 'lf_raises' was found, but importing it failed: RuntimeError: boom at import time"
    )
    assert "lf_raises.py" in app_traceback(error)


def test_syntax_error_in_the_users_module(tmp_path: Path) -> None:
    (tmp_path / "lf_syntax.py").write_text("def app(:\n")
    error = fails("lf_syntax:app", pythonpath=(str(tmp_path),))
    assert "SyntaxError" in str(error)
    assert "lf_syntax.py" in app_traceback(error)


def test_missing_attribute_lists_close_names() -> None:
    error = fails("lf_factory:create_ap()")
    assert str(error) == "module 'lf_factory' has no attribute 'create_ap' (did you mean 'create_app'?)"
    assert error.__cause__ is None


def test_missing_nested_attribute() -> None:
    error = fails("lf_factory:site.wsgj")
    assert str(error) == "'lf_factory:site' has no attribute 'wsgj' (did you mean 'wsgi'?)"


def test_module_alone_without_application_or_app() -> None:
    assert str(fails("lf_no_app")) == (
        "module 'lf_no_app' has no 'application' or 'app'; name it: 'lf_no_app:NAME'"
    )


def test_not_callable() -> None:
    assert str(fails("lf_factory:not_callable")) == (
        "'lf_factory:not_callable' is not a WSGI application: int is not callable"
    )


def test_factory_returning_a_non_callable() -> None:
    assert str(fails("lf_factory:make_nothing()")) == (
        "'lf_factory:make_nothing()' is not a WSGI application: NoneType is not callable"
    )


def test_calling_a_non_callable() -> None:
    assert "is not callable" in str(fails("lf_factory:not_callable()"))


def test_factory_raising() -> None:
    error = fails("lf_factory:broken_factory()")
    assert str(error) == (
        "application factory 'lf_factory:broken_factory()' raised RuntimeError: database URL is not set"
    )
    trace = app_traceback(error)
    assert "in broken_factory" in trace and "loader.py" not in trace


@pytest.mark.parametrize(
    "spec",
    ["", ":app", "1abc:app", "lf_factory:a+b", "lf_factory:make(**k)", "lf_factory:make(*a)",
     "lf_factory:make(os.environ)", "lf_factory:make()()", "lf_factory:app["],
)
def test_invalid_specs(spec: str) -> None:
    assert str(fails(spec)).startswith(f"application {spec!r} is not valid: ")
