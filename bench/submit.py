"""Submit rate: in-process through the service, and over HTTP through chalice local,
with keep-alive and with a connection per request, next to an empty Chalice route."""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import ROOT, Stopwatch, local_environment, rate

EMPTY_APP = Path(__file__).resolve().parent / "empty_app"
BODY = json.dumps({"action": "uppercase", "data": {"text": "hello world"}})


def in_process(tasks: int, synchronous: str, threads: int = 1) -> float:
    """Tasks per second through `TaskService.submit`, called from `threads` threads at once
    (a server's request threads; with one, each submit waits for its own flush)."""
    from chalicelib import factory
    from chalicelib.validation import NewTask

    with local_environment(TASKS_SQLITE_SYNCHRONOUS=synchronous):
        service = factory.service(factory.current_settings())
        service.submit(NewTask("warm", {}))
        per_thread = tasks // threads

        def submitter(offset: int) -> None:
            for number in range(offset, offset + per_thread):
                service.submit(NewTask("uppercase", {"text": f"task {number}"}))

        workers = [threading.Thread(target=submitter, args=(n * per_thread,)) for n in range(threads)]
        with Stopwatch() as watch:
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
        stored = service.stats()["total"] - 1
    if stored != per_thread * threads:
        raise RuntimeError(f"{stored} tasks stored, {per_thread * threads} submitted")
    return rate(per_thread * threads, watch.seconds)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`chalice local` for `project`, on a free loopback port."""

    def __init__(self, project: Path, env: dict) -> None:
        self.port = _free_port()
        chalice = Path(sys.executable).parent / "chalice"
        self.process = subprocess.Popen(
            [str(chalice), "local", "--no-autoreload", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=project, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"chalice local for {project} did not start")

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(10)


def http_rate(port: int, method: str, path: str, body, requests: int, keep_alive: bool, clients: int = 1) -> float:
    headers = {"Content-Type": "application/json"} if body else {}
    per_client = requests // clients

    def client():
        conn = None
        for _ in range(per_client):
            if conn is None or not keep_alive:
                if conn is not None:
                    conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.connect()
                # http.client writes headers and body separately: without this, Nagle's
                # algorithm and the server's delayed ACK stall every reused connection 40 ms.
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status >= 300:
                raise RuntimeError(f"{method} {path} answered {response.status}")
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    with Stopwatch() as watch:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return rate(per_client * clients, watch.seconds)


def over_http(requests: int, clients: tuple = (1, 8)) -> dict:
    """POST /tasks through chalice local and the empty route, each with and without
    keep-alive, from one client and from several at once."""
    figures = {}
    with tempfile.TemporaryDirectory() as folder:
        env = {"TASKS_DB_PATH": f"{folder}/tasks.db", "TASKS_LOCAL_DISPATCHER": "off", "TASKS_WORK_DELAY_MS": "0"}
        for name, project, method, path, body, extra in (
            ("post_tasks", ROOT, "POST", "/tasks", BODY, {"TASKS_SQLITE_SYNCHRONOUS": "FULL"}),
            ("post_tasks_normal", ROOT, "POST", "/tasks", BODY, {"TASKS_SQLITE_SYNCHRONOUS": "NORMAL"}),
            ("empty_route", EMPTY_APP, "POST", "/", BODY, {}),
        ):
            server = Server(project, {**env, **extra})
            try:
                http_rate(server.port, method, path, body, 50, keep_alive=True)  # warm up
                for count in clients:
                    suffix = "" if count == 1 else f"_{count}_clients"
                    figures[f"{name}_keepalive{suffix}"] = http_rate(
                        server.port, method, path, body, requests, True, count)
                    figures[f"{name}_new_connection{suffix}"] = http_rate(
                        server.port, method, path, body, requests, False, count)
            finally:
                server.stop()
    return figures
