"""GET /tasks latency as the table grows, next to the seed's schema (no index)."""
from __future__ import annotations

import json
import random
import sqlite3
import tempfile
import time
import uuid

from bench.common import local_environment, percentile

STATUSES = (("completed", 0.90), ("failed", 0.05), ("queued", 0.04), ("running", 0.01))
SEED_SCHEMA = """CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY, payload TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
    result TEXT, created_at INTEGER NOT NULL, processed_at INTEGER)"""


def _rows(count: int, seed: int = 7):
    rng = random.Random(seed)
    names = [name for name, _ in STATUSES]
    weights = [weight for _, weight in STATUSES]
    start = 1_700_000_000_000_000
    for number in range(count):
        status = rng.choices(names, weights)[0]
        created = start + number * 1000 + rng.randint(0, 999)
        yield (str(uuid.UUID(int=rng.getrandbits(128), version=4)), status, created)


def _fill_project(db_path: str, count: int) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO tasks (id, action, data, status, result, error, attempts, created_at, started_at, finished_at) "
        "VALUES (?, 'sum', '{\"numbers\": [1, 2, 3]}', ?, '{\"output\": 6}', NULL, 1, ?, ?, ?)",
        ((task_id, status, created, created + 10, created + 20) for task_id, status, created in _rows(count)),
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


def _fill_seed(db_path: str, count: int) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute(SEED_SCHEMA)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO tasks (id, payload, status, result, created_at, processed_at) VALUES (?, ?, ?, ?, ?, ?)",
        ((task_id, '{"action": "sum", "data": {"numbers": [1, 2, 3]}}', status, '{"output": 6}',
          created // 1_000_000, created // 1_000_000 + 1) for task_id, status, created in _rows(count)),
    )
    conn.execute("COMMIT")
    conn.close()


def _timed(call, runs: int) -> dict:
    call()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99), "runs": runs}


def measure(count: int, runs: int = 200) -> dict:
    """p50/p99 of GET /tasks (through chalice.test.Client) and of the seed's query on its own schema."""
    from chalice.test import Client

    from app import app
    from chalicelib import factory

    figures = {}
    with local_environment() as folder:
        factory.store(factory.current_settings())  # creates the schema
        _fill_project(str(folder / "tasks.db"), count)
        factory.reset()
        with Client(app) as client:
            for name, path in (("all", "/tasks"), ("status_failed", "/tasks?status=failed"),
                               ("status_completed", "/tasks?status=completed")):
                def get(path=path):
                    response = client.http.get(path)
                    assert response.status_code == 200 and json.loads(response.body)["count"] > 0
                figures[name] = _timed(get, runs)
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/seed.db"
        _fill_seed(path, count)
        conn = sqlite3.connect(path)
        seed_runs = max(10, min(runs, 2_000_000 // max(count, 1)))
        query = ("SELECT id, payload, status, result, created_at, processed_at FROM tasks {} "
                 "ORDER BY created_at DESC LIMIT 100")
        figures["seed_all"] = _timed(lambda: conn.execute(query.format(""), ()).fetchall(), seed_runs)
        figures["seed_status_failed"] = _timed(
            lambda: conn.execute(query.format("WHERE status = ?"), ("failed",)).fetchall(), seed_runs)
        conn.close()
    return figures
