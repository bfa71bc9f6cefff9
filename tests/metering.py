"""Counting what an operation spends, for the budgets in tests/budgets.py: SQLite
statements, commits and log flushes, DynamoDB capacity units billed from the calls
made, the deployment package's bytes and the modules `import app` loads.

Counts, never times: each figure is the same on a busy machine as on an idle one.
"""
from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import subprocess
import sys
import textwrap
import threading
import uuid
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Dict, Iterator

from tests.conftest import PROJECT_DIR

_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class Statements:
    """A trace callback (Database.trace) counting statements by their first word,
    and commits: COMMITs, and writes run outside a transaction (each its own).
    PRAGMAs are left out: connection set-up and the checkpointer's thread run them,
    not the operation measured."""

    def __init__(self) -> None:
        self.kinds: collections.Counter = collections.Counter()
        self.commits = 0
        self._lock = threading.Lock()
        self._open = threading.local()  # whether this thread's connection is in a transaction

    def __call__(self, sql: str) -> None:
        word = sql.lstrip().split(None, 1)[0].upper()
        if word == "PRAGMA":
            return
        in_transaction = getattr(self._open, "value", False)
        with self._lock:
            self.kinds[word] += 1
            if word == "COMMIT" or (word in _WRITES and not in_transaction):
                self.commits += 1
        if word == "BEGIN":
            self._open.value = True
        elif word == "COMMIT" or (word == "ROLLBACK" and not sql.upper().startswith("ROLLBACK TO")):
            self._open.value = False

    @property
    def total(self) -> int:
        return sum(self.kinds.values())


@contextlib.contextmanager
def counting_statements(db) -> Iterator[Statements]:
    counter = Statements()
    db.trace(counter)
    try:
        yield counter
    finally:
        db.trace(None)


class Flushes:
    count = 0


@contextlib.contextmanager
def counting_flushes() -> Iterator[Flushes]:
    """Counts the flushes of files to disk that Python code asks for: the group
    commit's flush of the log (sqlite_wal) and any os.fsync or os.fdatasync. What
    SQLite flushes by itself (at a checkpoint) is not seen from here."""
    from chalicelib import sqlite_wal

    flushes = Flushes()

    def counted(real):
        def flush(fd):
            flushes.count += 1
            return real(fd)
        return flush

    places = [(sqlite_wal, "_sync"), (os, "fsync")] + ([(os, "fdatasync")] if hasattr(os, "fdatasync") else [])
    saved = [(owner, name, getattr(owner, name)) for owner, name in places]
    for owner, name, real in saved:
        setattr(owner, name, counted(real))
    try:
        yield flushes
    finally:
        for owner, name, real in saved:
            setattr(owner, name, real)


# -- SQLite: a submit and a drained batch, through the app as it runs locally ---------

@dataclass(frozen=True)
class Spent:
    statements: float
    commits: float
    flushes: float
    kinds: dict


def sqlite_submits(monkeypatch, synchronous: str, submits: int = 10) -> Spent:
    """Per POST /tasks through the app's route (chalice.test.Client), after one first
    submit that opens the connections."""
    from chalice.test import Client

    from app import app
    from chalicelib import factory

    monkeypatch.setenv("TASKS_SQLITE_SYNCHRONOUS", synchronous)
    factory.reset()
    body = json.dumps({"action": "uppercase", "data": {"text": "hello world"}})
    headers = {"Content-Type": "application/json"}
    with Client(app, project_dir=str(PROJECT_DIR)) as client:
        assert client.http.post("/tasks", body=body, headers=headers).status_code == 202
        db = factory.tasks_db(factory.current_settings())
        with counting_flushes() as flushes, counting_statements(db) as statements:
            for _ in range(submits):
                assert client.http.post("/tasks", body=body, headers=headers).status_code == 202
    return Spent(statements.total / submits, statements.commits / submits, flushes.count / submits,
                 dict(statements.kinds))


def sqlite_drain(monkeypatch, synchronous: str, batches: int = 10, batch_size: int = 5) -> Spent:
    """Per drained task (flushes: per batch), at the seed's batch of 5, through the app's
    SQS handler fed by the local dispatcher from the embedded queue, as `chalice local`
    runs it. One batch is delivered first, so that every counted receive also deletes
    the batch before it, as it does in a steady drain."""
    from app import BATCH_SIZE, app
    from chalicelib import factory, series
    from chalicelib.local.dispatcher import Dispatcher
    from chalicelib.local.sources import EmbeddedSource
    from chalicelib.validation import NewTask

    assert batch_size == BATCH_SIZE, "the budgets are for the seed's batch size"
    monkeypatch.setenv("TASKS_SQLITE_SYNCHRONOUS", synchronous)
    factory.reset()
    settings = factory.current_settings()
    service, db = factory.service(settings), factory.tasks_db(settings)
    for _ in range(2):
        for number in range((batches + 1) * batch_size):
            service.submit(NewTask("uppercase", {"text": f"task {number}"}))
        dispatcher = Dispatcher(EmbeddedSource(factory.queue(settings)), app.handler_map["process_tasks"],
                                "process_tasks", batch_size=batch_size)
        assert dispatcher.deliver_one_batch() == batch_size
        minute = series.minute_of(datetime.now(timezone.utc))
        with counting_flushes() as flushes, counting_statements(db) as statements:
            for _ in range(batches):
                assert dispatcher.deliver_one_batch() == batch_size
        # A drain that straddles a minute writes two minutes' figures: measured again.
        if series.minute_of(datetime.now(timezone.utc)) == minute:
            break
    tasks = batches * batch_size
    return Spent(statements.total / tasks, statements.commits / tasks, flushes.count / batches,
                 dict(statements.kinds))


# -- DynamoDB: capacity billed from the calls made, under moto ------------------------

@dataclass(frozen=True)
class Capacity:
    write_units_per_task: float
    write_units_by_place: dict
    publishes_per_task: float
    stats_read_units: float
    list_page_read_units: float
    series_read_units: float


class _Queue:
    """The messages the service publishes, for the worker to take."""

    def __init__(self) -> None:
        self.messages: list = []

    def publish_task(self, task_id: str, run_at=None) -> str:
        self.messages.append(json.dumps({"task_id": task_id}))
        return str(uuid.uuid4())

    def stats(self):
        from chalicelib.queue.base import QueueStats

        return QueueStats(waiting=0, in_flight=0, dead_letter=0)


def dynamodb_capacity(tasks: int = 20, listed: int = 400, seed: int = 1) -> Capacity:
    """Units billed the way bench/capacity_probe.py bills them (its Meter): `tasks`
    tasks submitted and processed in batches of 5; then `listed` newer tasks (written
    unmetered, with ids drawn from `seed`, so that their spread over the shards is the
    same every run) for a page of GET /tasks to read: enough that every shard holds
    more than its first Query reads, as in a table of any size."""
    import boto3
    from moto import mock_aws

    from bench.capacity_probe import Meter
    from chalicelib.actions import ACTIONS
    from chalicelib.catalog import Catalog
    from chalicelib.retry import RetryPolicy
    from chalicelib.service import TaskService
    from chalicelib.store.dynamodb import TABLE_SCHEMA, DynamoTaskStore
    from chalicelib.tasks import Task
    from chalicelib.validation import DEFAULT_LIMIT, ListQuery, NewTask, SeriesQuery
    from chalicelib.worker import Worker

    assert tasks % 5 == 0, "whole batches of 5, as the seed's worker takes them"
    with mock_aws():
        raw = boto3.client("dynamodb", region_name="us-east-1")
        raw.create_table(TableName="tasks", **TABLE_SCHEMA)
        meter = Meter(raw, TABLE_SCHEMA)
        meter.table = "tasks"
        store = DynamoTaskStore(meter, "tasks")
        queue = _Queue()
        service = TaskService(store, queue, Catalog(ACTIONS, RetryPolicy()))
        worker = Worker(store, queue, work_delay_seconds=0)
        for _ in range(tasks):
            service.submit(NewTask("uppercase", {"text": "hello world"}))
        for start in range(0, tasks, 5):
            batch = queue.messages[start:start + 5]
            assert worker.process_batch([(str(n), str(n), body) for n, body in enumerate(batch)]) == []
        writes = dict(meter.write_units)

        unmetered = DynamoTaskStore(raw, "tasks")
        draw = random.Random(seed)
        newer = datetime.now(timezone.utc) + timedelta(seconds=1)
        for number in range(listed):
            task_id = str(uuid.UUID(int=draw.getrandbits(128), version=4))
            unmetered.insert(Task.new("uppercase", {"text": "hello world"}, task_id=task_id,
                                      now=newer + timedelta(microseconds=number)))

        # What the scheduled function does every minute: without it, /stats reads the
        # counter items of every day of the retention (305 units), not today's alone.
        store.fold_counts(datetime.now(timezone.utc))

        def reads(call) -> float:
            meter.read_units = 0.0
            call()
            return meter.read_units

        return Capacity(
            write_units_per_task=sum(writes.values()) / tasks,
            write_units_by_place={place: units / tasks for place, units in sorted(writes.items())},
            publishes_per_task=len(queue.messages) / tasks,
            stats_read_units=reads(service.stats),
            list_page_read_units=reads(lambda: service.list(ListQuery(None, DEFAULT_LIMIT, None))),
            series_read_units=reads(lambda: service.series(SeriesQuery(60, None))),
        )


def cost_per_million(capacity: Capacity) -> Dict[str, float]:
    """bench/cost.py's dollars per million tasks, from counts alone: a request each to
    API Gateway and the API's Lambda, a worker invocation per batch of 5, the SQS
    requests and the DynamoDB write units, at its prices, with the seed's 100 ms of
    work per task. The handler time it measures is a wall-clock figure, left out
    (on the bench it adds about $0.10)."""
    from bench.cost import per_million

    measured = {"api_handler_ms": 0.0, "worker_batch_ms": 0.0, "worker_batch_size": 5,
                "api_calls_per_task": {"sqs:SendMessage": capacity.publishes_per_task}}
    return per_million(measured, capacity.write_units_per_task)["cost_per_million_tasks_usd"]


# -- The deployment package and a cold start's imports --------------------------------

@dataclass(frozen=True)
class Package:
    bytes: int
    top_level: Dict[str, int]  # compressed bytes of each top-level name in the zip


def deployment_package(folder: Path) -> Package:
    """The Lambda zip that `python3 dev.py package` builds (chalice package, unlinted)."""
    from deploy.package import package

    package("prod", folder, lint=False)
    archive = folder / "deployment.zip"
    top_level: collections.Counter = collections.Counter()
    with zipfile.ZipFile(archive) as opened:
        for entry in opened.infolist():
            top_level[entry.filename.split("/")[0].split("-")[0]] += entry.compress_size
    return Package(archive.stat().st_size, dict(top_level))


@dataclass(frozen=True)
class Imports:
    project: list  # app and chalicelib modules
    third_party: list
    stdlib: list


def imports_of_app() -> Imports:
    """The modules that `import app` adds to a fresh interpreter's, in the local
    configuration, as `chalice package` and a cold start import it."""
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(PROJECT_DIR)!r})
        before = set(sys.modules)
        import app
        print(json.dumps(sorted(set(sys.modules) - before)))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKS_", "CHALICE_"))}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    top = lambda name: name.split(".")[0]  # noqa: E731
    project = [name for name in loaded if top(name) in ("app", "chalicelib")]
    stdlib = [name for name in loaded if top(name) in sys.stdlib_module_names]
    third_party = [name for name in loaded if name not in project and name not in stdlib]
    return Imports(project, third_party, stdlib)
