"""The test fixtures themselves: scratch files of tests/apps.py stay in the session's directory."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tests.conftest import Server


def test_app_files_go_to_the_session_directory(apps_server: Server, apps_tmpdir: Path) -> None:
    size = 12345 + os.getpid() % 1000  # a size no other session is likely to use
    reply = apps_server.raw(b"GET /file?%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % size)
    assert reply.startswith(b"HTTP/1.1 200 ") and len(reply) > size
    assert (apps_tmpdir / f"frontdesk-test-file-{size}").stat().st_size == size
    assert not os.path.exists(os.path.join(tempfile.gettempdir(), f"frontdesk-test-file-{size}"))
    assert apps_tmpdir.parent == Path(tempfile.gettempdir())  # and conftest removes it at the end


def test_hypothesis_defaults_are_left_alone() -> None:
    """Fuzz tests set their own settings (FUZZ_EXAMPLES, docs/testing.md); a module that called
    settings.load_profile() at import would change every hypothesis test of the session. All
    test modules are imported before any test runs, so this sees such a call anywhere."""
    from hypothesis import settings

    def same(name: str) -> bool:
        profile = settings.get_profile(name)
        return (settings.default.max_examples, settings.default.deadline) == (
            profile.max_examples, profile.deadline)

    # Hypothesis itself picks its "ci" profile when it finds itself on a CI machine.
    assert settings.default is not None
    assert same("default") or same("ci")
