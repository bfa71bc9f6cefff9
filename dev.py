#!/usr/bin/env python3
"""Set-up and the two everyday commands, for a machine with only Python 3.11+.

    python3 dev.py serve [chalice local options]   # API, worker, SQLite and queue on :8080
    python3 dev.py test [pytest options]           # the whole test suite
    python3 dev.py package [--stage prod]          # deployable template + package, linted
    python3 dev.py deploy --stage prod [--region R] [--stack-name N] [--param K=V]
    python3 dev.py destroy --stage prod [--region R] [--stack-name N]
    python3 dev.py bench [--quick]                 # benchmarks: one table, docs/benchmarks.md
    python3 dev.py bench --compare REV             # before (git revision REV) / after, in one run

Each creates .venv and installs requirements-dev.txt when they are missing or
changed, then runs the command inside it.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
REQUIREMENTS = [ROOT / "requirements.txt", ROOT / "requirements-dev.txt"]
STAMP = VENV / ".requirements.sha256"


def log(message: str) -> None:
    print(f"dev.py: {message}", file=sys.stderr, flush=True)


def run(*command, **kwargs) -> None:
    subprocess.run([str(part) for part in command], check=True, **kwargs)


def apt_install(*packages: str) -> bool:
    """Install Debian packages when this is a root shell with apt; False otherwise."""
    if not shutil.which("apt-get") or os.geteuid() != 0:
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    return subprocess.run(["apt-get", "install", "-y", "-qq", *packages], env=env).returncode == 0


def create_venv() -> None:
    if PYTHON.exists():
        return
    log(f"creating {VENV}")
    if subprocess.run([sys.executable, "-m", "venv", str(VENV)]).returncode == 0:
        return
    # Debian's python3 ships venv without ensurepip until python3-venv is installed.
    shutil.rmtree(VENV, ignore_errors=True)
    version = f"python3.{sys.version_info.minor}-venv"
    if not apt_install(version) and not apt_install("python3-venv"):
        sys.exit("dev.py: could not create a virtual environment; install python3-venv")
    run(sys.executable, "-m", "venv", VENV)


def install_requirements() -> None:
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in REQUIREMENTS)).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    log("installing requirements-dev.txt")
    run(PYTHON, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "-r", ROOT / "requirements-dev.txt")
    STAMP.write_text(digest)


def setup() -> None:
    if sys.version_info < (3, 11):
        sys.exit("dev.py: Python 3.11 or newer is needed")
    create_venv()
    install_requirements()


def serve(args: list) -> int:
    setup()
    run(PYTHON, "-m", "chalicelib.migrate", cwd=ROOT)
    command = serve_command(os.environ.get("PORT", "8080"), args)
    os.chdir(ROOT)
    os.execv(command[0], command)


def serve_command(port: str, args: list) -> list:
    # Loopback only, and no autoreload: it restarts the server whenever a file
    # under the project changes, and the SQLite files under data/ change on every write.
    return [str(BIN / "chalice"), "local", "--no-autoreload", "--host", "127.0.0.1", "--port", port, *args]


def ensure_browser() -> None:
    """Debian's Chromium and ChromeDriver for the dashboard's browser tests
    (without them, and without root to install them, those tests skip and say why)."""
    if shutil.which("chromium") and shutil.which("chromedriver"):
        return
    log("installing chromium and chromium-driver for the browser tests")
    if not apt_install("chromium", "chromium-driver"):
        log("could not install Chromium: the browser tests will be skipped")


def test(args: list) -> int:
    setup()
    ensure_browser()
    return subprocess.run([str(PYTHON), "-m", "pytest", *args], cwd=ROOT).returncode


def package(args: list) -> int:
    setup()
    return subprocess.run([str(PYTHON), "-m", "deploy.package", *args], cwd=ROOT).returncode


def cloud(command: str):
    """deploy or destroy a cloud stage with boto3 (deploy/cloud.py)."""
    def run_command(args: list) -> int:
        setup()
        return subprocess.run([str(PYTHON), "-m", "deploy.cloud", command, *args], cwd=ROOT).returncode
    return run_command


def bench(args: list) -> int:
    setup()
    run(PYTHON, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "-r", ROOT / "requirements-bench.txt")
    return subprocess.run([str(PYTHON), "-m", "bench.run", *args], cwd=ROOT).returncode


def main() -> int:
    commands = {"serve": serve, "test": test, "package": package, "bench": bench,
                "deploy": cloud("deploy"), "destroy": cloud("destroy"),
                "setup": lambda _args: setup() or 0}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
