#!/usr/bin/env python3
"""Developer entry point: `python3 dev.py demo` serves the example app, `python3 dev.py test` runs
the test suite. Both create (or reuse) the virtual environment `.venv` and install what they need,
so a fresh machine needs only Python, pip and apt-get. Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
STAMP = VENV / ".frontdesk-installed"
# Debian packages some tests drive for real (nginx in front of frontdesk, a headless browser
# loading the demo); installed when missing.
APT_PACKAGES = {"nginx": "nginx-light", "curl": "curl", "chromium": "chromium"}


def say(message: str) -> None:
    print(f"dev.py: {message}", flush=True)


def ensure_venv() -> None:
    if not PYTHON.exists():
        say(f"creating {VENV.relative_to(ROOT)}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    say("installing frontdesk and its test dependencies into .venv")
    pip = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[test]"], check=True)
    STAMP.write_text(wanted)


def ensure_apt_packages() -> None:
    missing = [pkg for tool, pkg in APT_PACKAGES.items() if shutil.which(tool) is None
               and not Path("/usr/sbin", tool).exists()]
    if not missing or shutil.which("apt-get") is None:
        return
    sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if sudo is None:
        say(f"not root and no sudo: tests needing {', '.join(missing)} will be skipped")
        return
    say(f"installing Debian packages: {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = [*sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run([*sudo, "apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL)
        if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            say(f"could not install {' '.join(missing)}: tests needing them will be skipped")


def demo(args: list[str]) -> int:
    ensure_venv()
    app_dir = ROOT / "examples" / "flaskapp"
    subprocess.run([str(PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "-r", str(app_dir / "requirements.txt")], check=True)
    say("serving examples/flaskapp on http://127.0.0.1:8000 (Ctrl-C to stop)")
    command = [str(BIN / "frontdesk"), "app:app", "--static", "/static=static",
               "--bind", "127.0.0.1:8000", "--workers", "1", *args]
    return subprocess.call(command, cwd=app_dir)


def test(args: list[str]) -> int:
    ensure_venv()
    ensure_apt_packages()
    return subprocess.call([str(PYTHON), "-m", "pytest", *args], cwd=ROOT)


def main() -> int:
    commands = {"demo": demo, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        print("usage: python3 dev.py {demo|test} [extra arguments for frontdesk or pytest]")
        return 2
    return commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
