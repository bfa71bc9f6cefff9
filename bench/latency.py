"""End-to-end latency, POST to completed, at a fixed arrival rate through chalice local."""
from __future__ import annotations

import http.client
import json
import tempfile
import threading
import time
from datetime import datetime

from bench.common import ROOT, percentile
from bench.submit import BODY, Server


def _epoch(value: str) -> float:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=__import__("datetime").timezone.utc).timestamp()


def post_to_completed(rate_per_second: float, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        server = Server(ROOT, {"TASKS_DB_PATH": f"{folder}/tasks.db",                 "TASKS_WORK_DELAY_MS": "0"})
        sent = {}
        lock = threading.Lock()
        start = time.time() + 0.2
        total = int(rate_per_second * seconds)
        senders = 4

        def sender(offset: int):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            for number in range(offset, total, senders):
                due = start + number / rate_per_second  # open loop: a late reply does not delay the next send
                pause = due - time.time()
                if pause > 0:
                    time.sleep(pause)
                sent_at = time.time()
                conn.request("POST", "/tasks", body=BODY, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                task = json.loads(response.read())
                with lock:
                    sent[task["id"]] = sent_at
            conn.close()

        try:
            threads = [threading.Thread(target=sender, args=(n,)) for n in range(senders)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            deadline = time.time() + 60
            finished = {}
            while time.time() < deadline:
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
                conn.request("GET", "/tasks?status=completed&limit=1000")
                page = json.loads(conn.getresponse().read())
                conn.close()
                finished = {t["id"]: t["finished_at"] for t in page["tasks"]}
                if len(page["tasks"]) >= min(total, 1000) and all(i in finished for i in list(sent)[-50:]):
                    break
                time.sleep(0.2)
        finally:
            server.stop()
    latencies = [(_epoch(finished[i]) - sent[i]) * 1000 for i in sent if i in finished]
    return {"rate_per_second": rate_per_second, "tasks": len(latencies),
            "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
            "p99_ms": percentile(latencies, 99)}
