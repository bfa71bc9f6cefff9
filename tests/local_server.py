"""Starts and stops the real `chalice local` process for end-to-end tests."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
CHALICE = Path(sys.executable).parent / "chalice"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(base_url: str, method: str, path: str, body=None, timeout: float = 10.0, headers=None):
    """(status, parsed JSON body) of one HTTP request."""
    data = None if body is None else json.dumps(body).encode()
    headers = {**({"Content-Type": "application/json"} if data is not None else {}), **(headers or {})}
    req = urllib.request.Request(base_url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


class LocalServer:
    def __init__(self, data_dir: Path, env: dict | None = None, autoreload: bool = False,
                 project_dir: Path = PROJECT_DIR, stage: str = "dev") -> None:
        """`env` adds variables; a value of None removes one (TASKS_DB_PATH: None keeps
        the default data/tasks.db in `project_dir`)."""
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "server.log"
        environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TASKS_", "CHALICE_"))},
            "TASKS_DB_PATH": str(data_dir / "tasks.db"),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.env = {k: v for k, v in environment.items() if v is not None}
        self.autoreload = autoreload
        self.project_dir = project_dir
        self.stage = stage
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "LocalServer":
        command = [str(CHALICE), "local", "--stage", self.stage, "--host", "127.0.0.1", "--port", str(self.port)]
        if not self.autoreload:
            command.append("--no-autoreload")
        # Through a pipe, not straight into the file: a test may limit the size of
        # the files the server writes (RLIMIT_FSIZE), which must not stop it logging.
        self.process = subprocess.Popen(command, cwd=self.project_dir, env=self.env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        threading.Thread(target=self._copy_log, args=(self.process.stdout,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chalice local exited: {self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("chalice local did not start listening")

    def _copy_log(self, pipe) -> None:
        with open(self.log_path, "ab") as log:
            for line in pipe:
                log.write(line)
                log.flush()

    def kill(self) -> None:
        """kill -9 the server and every process it started."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def call(self, method: str, path: str, body=None, headers=None):
        return request(self.base_url, method, path, body, headers=headers)

    def log_lines(self) -> list:
        lines = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            if raw.startswith("{"):
                try:
                    lines.append(json.loads(raw))
                except ValueError:
                    pass
        return lines

    def wait_until(self, predicate, timeout: float = 30.0, interval: float = 0.1):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        return predicate()

    def all_tasks(self) -> list:
        tasks, cursor = [], None
        while True:
            path = "/tasks?limit=1000" + (f"&cursor={cursor}" if cursor else "")
            status, page = self.call("GET", path)
            assert status == 200, page
            tasks += page["tasks"]
            cursor = page["next_cursor"]
            if not cursor:
                return tasks
