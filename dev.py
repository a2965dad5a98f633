#!/usr/bin/env python3
"""Developer entry point: `python3 dev.py demo` serves the example app, `python3 dev.py test` runs
the test suite. Both create (or reuse) the virtual environment `.venv` and install what they need,
so a fresh machine needs only Python, pip and apt-get (a `.venv` without pip, as Debian makes
without its python3-venv package, is made again, after installing that package). Then dev.py
becomes frontdesk or pytest (exec): Ctrl-C stops them as if they had been started by hand.
Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from typing import NoReturn

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


def pip_works() -> bool:
    """Is .venv whole? A venv made without pip (Debian without python3-venv: `venv` is there,
    `ensurepip` is not) has a python but cannot install anything."""
    if not PYTHON.exists():
        return False
    check = [str(PYTHON), "-m", "pip", "--version"]
    return subprocess.run(check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def create_venv() -> None:
    say(f"creating {VENV.relative_to(ROOT)}")
    builder = venv.EnvBuilder(with_pip=True, clear=True)  # clear: a half-built one is replaced
    try:
        builder.create(VENV)
        return
    except subprocess.CalledProcessError:  # ensurepip failed: Debian ships it apart
        pass
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for package in ("python3-venv", f"{version}-venv"):
        if apt_install([package]):
            try:
                builder.create(VENV)
                return
            except subprocess.CalledProcessError:
                continue
    sys.exit(f"dev.py: cannot create {VENV} with pip: install your distribution's venv package "
             f"(Debian, Ubuntu: apt-get install python3-venv, or {version}-venv) and run again")


def ensure_venv() -> None:
    if not pip_works():
        create_venv()
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    say("installing frontdesk and its test dependencies into .venv")
    pip = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[test]"], check=True)
    STAMP.write_text(wanted)


def apt_install(packages: list[str]) -> bool:
    """apt-get install `packages` (as root, or with sudo -n), updating the lists if needed.
    False if that is not possible here or fails."""
    if shutil.which("apt-get") is None:
        return False
    sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if sudo is None:
        say(f"not root and no sudo: cannot install {' '.join(packages)}")
        return False
    say(f"installing Debian packages: {' '.join(packages)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = [*sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode == 0:
        return True
    subprocess.run([*sudo, "apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL)
    return subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode == 0


def ensure_apt_packages() -> None:
    missing = [pkg for tool, pkg in APT_PACKAGES.items() if shutil.which(tool) is None
               and not Path("/usr/sbin", tool).exists()]
    if missing and not apt_install(missing) and shutil.which("apt-get") is not None:
        say(f"could not install {' '.join(missing)}: tests needing them will be skipped")


def run(program: Path, args: list[str], cwd: Path) -> NoReturn:
    """Become `program` (exec, not a child process): Ctrl-C then reaches it alone, as if it had
    been started by hand, so frontdesk's graceful stop runs and no traceback of ours appears."""
    os.chdir(cwd)
    os.execv(program, [str(program), *args])


def demo(args: list[str]) -> NoReturn:
    ensure_venv()
    app_dir = ROOT / "examples" / "flaskapp"
    subprocess.run([str(PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "-r", str(app_dir / "requirements.txt")], check=True)
    say("serving examples/flaskapp on http://127.0.0.1:8000 (Ctrl-C to stop)")
    run(BIN / "frontdesk", ["app:app", "--static", "/static=static", "--bind", "127.0.0.1:8000",
                            "--workers", "1", *args], app_dir)


def test(args: list[str]) -> NoReturn:
    ensure_venv()
    ensure_apt_packages()
    run(PYTHON, ["-m", "pytest", *args], ROOT)


def main() -> int:
    commands = {"demo": demo, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        print("usage: python3 dev.py {demo|test} [extra arguments for frontdesk or pytest]")
        return 2
    commands[sys.argv[1]](sys.argv[2:])  # they exec: no return
    return 1


if __name__ == "__main__":
    sys.exit(main())
