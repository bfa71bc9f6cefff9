"""Tasks in one SQLite file."""
from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
from collections import Counter
from datetime import datetime
from typing import Callable, Iterator, List, Optional, Tuple, TypeVar

from chalicelib import series
from chalicelib.sqlite_db import Database
from chalicelib.store.base import KeyRecord, StoreError, TaskExists, TaskStore
from chalicelib.tasks import FINAL, Status, Task, from_micros, to_micros

T = TypeVar("T")

# When a task could first start (Task.ready_at): its run_at when later than its creation.
READY_AT = "max(created_at, coalesce(run_at, created_at))"

# Version 1 is the seed's table, widened to the task's fields. Times are
# microseconds since the epoch so that they sort and compare as integers.
MIGRATIONS = (
    (1, (
        """CREATE TABLE IF NOT EXISTS tasks (
            id TEXT PRIMARY KEY,
            action TEXT NOT NULL,
            data TEXT NOT NULL,
            status TEXT NOT NULL,
            result TEXT,
            error TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at INTEGER NOT NULL,
            started_at INTEGER,
            finished_at INTEGER
        )""",
        "CREATE INDEX IF NOT EXISTS tasks_by_time ON tasks (created_at DESC, id DESC)",
        "CREATE INDEX IF NOT EXISTS tasks_by_status_time ON tasks (status, created_at DESC, id DESC)",
    )),
    # Version 2: when a task that is not final should have moved on (recovery),
    # and the Idempotency-Key records.
    (2, (
        "ALTER TABLE tasks ADD COLUMN due_at INTEGER",
        "CREATE INDEX IF NOT EXISTS tasks_due ON tasks (due_at) WHERE due_at IS NOT NULL",
        """CREATE TABLE IF NOT EXISTS idempotency_keys (
            key TEXT PRIMARY KEY,
            fingerprint TEXT NOT NULL,
            task_id TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL
        )""",
    )),
    # Version 3: attempt numbers that only grow (an operator's retry starts a new
    # series where they stand), and the key a task was submitted with.
    (3, (
        "ALTER TABLE tasks ADD COLUMN series_start INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE tasks ADD COLUMN idempotency_key TEXT",
    )),
    # Version 4: finished tasks by finishing time, for retention.
    (4, (
        "CREATE INDEX IF NOT EXISTS tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL",
    )),
    # Version 5: the id of the request that made the task.
    (5, (
        "ALTER TABLE tasks ADD COLUMN request_id TEXT",
    )),
    # Version 6: per-minute figures of finished tasks (chalicelib/series.py).
    (6, (
        """CREATE TABLE IF NOT EXISTS task_minutes (
            minute INTEGER NOT NULL,
            action TEXT NOT NULL,
            figures TEXT NOT NULL,
            PRIMARY KEY (minute, action)
        )""",
    )),
    # Version 7: delayed tasks, and listings by action. The action index is written
    # once, at insert (a task's action and creation never change); a listing by
    # action and status walks it, or the status index, whichever SQLite finds
    # narrower. An (action, status) index would be rewritten at every claim and outcome.
    (7, (
        "ALTER TABLE tasks ADD COLUMN run_at INTEGER",
        "CREATE INDEX IF NOT EXISTS tasks_by_action_time ON tasks (action, created_at DESC, id DESC)",
    )),
    # Version 8: queued tasks by when they could start, for /stats's oldest queued
    # age (a task delayed a little must not hide one created just after it and
    # waiting since). Partial: only a submit, a claim and a requeue write an entry.
    (8, (
        f"CREATE INDEX IF NOT EXISTS tasks_queued_by_ready ON tasks ({READY_AT}, id) WHERE status = 'queued'",
    )),
)

_COLUMNS = ("id, action, data, status, result, error, attempts, created_at, started_at, finished_at, due_at, "
            "series_start, idempotency_key, request_id, run_at")
_TIME_FIELDS = ("started_at", "finished_at", "due_at", "run_at")
_NO_LATER = 2 ** 63 - 1  # microseconds: no moment is later
_JSON_FIELDS = ("result",)


def _row_to_task(row: tuple) -> Task:
    return Task(
        id=row[0],
        action=row[1],
        data=json.loads(row[2]),
        status=Status(row[3]),
        result=None if row[4] is None else json.loads(row[4]),
        error=row[5],
        attempts=row[6],
        created_at=from_micros(row[7]),
        started_at=from_micros(row[8]),
        finished_at=from_micros(row[9]),
        due_at=from_micros(row[10]),
        series_start=row[11],
        idempotency_key=row[12],
        request_id=row[13],
        run_at=from_micros(row[14]),
    )


def _column_value(name: str, value):
    if name in _TIME_FIELDS:
        return None if value is None else to_micros(value)
    if name in _JSON_FIELDS:
        return None if value is None else json.dumps(value)
    return value


# SQLite failing to read or write (a full disk, an I/O error, a lock held too
# long) is the store's failure; a constraint or a bug in a statement is not.
_UNREACHABLE = (sqlite3.OperationalError, OSError)


def _store_error(exc: Exception) -> StoreError:
    return StoreError(f"SQLite failed: {exc}")


def _reaches_sqlite(method):
    """`method`, with SQLite's failures raised as the store's (a plain try: it is on
    every request's path)."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except _UNREACHABLE as exc:
            raise _store_error(exc) from exc
    return wrapper


class SqliteTaskStore(TaskStore):
    batches_roll_back = True  # a batch is one transaction
    def __init__(self, db: Database) -> None:
        self._db = db
        # Called with a task's id once its outcome commits in this process: the reads
        # waiting on that task (?wait) wake, and no others.
        self._outcome_listeners: List[Callable[[str], None]] = []

    def on_outcome(self, listener: Callable[[str], None]) -> bool:
        self._outcome_listeners.append(listener)
        return True

    def _finished(self, task: Task) -> None:
        super()._finished(task)
        if self._outcome_listeners:
            self._db.after_commit(functools.partial(self._announce_outcome, task.id))

    def _announce_outcome(self, task_id: str) -> None:
        for listener in self._outcome_listeners:
            listener(task_id)

    @_reaches_sqlite
    def insert(self, task: Task) -> None:
        try:
            self._insert(task)
        except sqlite3.IntegrityError as exc:
            raise TaskExists(f"task {task.id} exists") from exc

    def _insert(self, task: Task) -> None:
        self._db.execute(
            f"INSERT INTO tasks ({_COLUMNS}) VALUES ({', '.join('?' * 15)})",
            (
                task.id, task.action, json.dumps(task.data), task.status.value,
                _column_value("result", task.result), task.error, task.attempts,
                to_micros(task.created_at), _column_value("started_at", task.started_at),
                _column_value("finished_at", task.finished_at), _column_value("due_at", task.due_at),
                task.series_start, task.idempotency_key, task.request_id,
                _column_value("run_at", task.run_at),
            ),
        )

    @_reaches_sqlite
    def get(self, task_id: str) -> Optional[Task]:
        rows = self._db.query(f"SELECT {_COLUMNS} FROM tasks WHERE id = ?", (task_id,))
        return _row_to_task(rows[0]) if rows else None

    @_reaches_sqlite
    def _remove(self, task_id: str, frm: frozenset) -> Optional[Task]:
        sources = sorted(status.value for status in frm)
        rows = self._db.write_returning(
            f"DELETE FROM tasks WHERE id = ? AND status IN ({', '.join('?' * len(sources))}) "
            f"RETURNING {_COLUMNS}", (task_id, *sources))
        return _row_to_task(rows[0]) if rows else None

    @_reaches_sqlite
    def _page(self, status: Optional[Status], limit: int, after: Optional[Tuple[datetime, str]],
              action: Optional[str] = None):
        where, params = [], []
        if action is not None:
            where.append("action = ?")
            params.append(action)
        if status is not None:
            where.append("status = ?")
            params.append(status.value)
        if after is not None:
            where.append("(created_at, id) < (?, ?)")
            params.extend((to_micros(after[0]), after[1]))
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._db.query(
            f"SELECT {_COLUMNS} FROM tasks {clause} ORDER BY created_at DESC, id DESC LIMIT ?",
            (*params, limit),
        )
        return [_row_to_task(row) for row in rows], None  # an index serves every listing whole

    @contextlib.contextmanager
    def batch(self, durable: bool = True):
        try:
            with self._db.transaction(durable), self._gathering_minutes():
                yield
        except _UNREACHABLE as exc:
            raise _store_error(exc) from exc

    @_reaches_sqlite
    def wait_durable(self) -> None:
        self._db.sync()

    @_reaches_sqlite
    def atomically(self, work: Callable[[], T]) -> T:
        return self._db.shared_transaction(work)

    @_reaches_sqlite
    def count_by_status(self) -> dict:
        return dict(self._db.query("SELECT status, COUNT(*) FROM tasks GROUP BY status"))

    # The first entry of tasks_queued_by_ready, whatever the number of queued tasks.
    # The status is written out, not a parameter: SQLite uses a partial index only for
    # a query whose WHERE names the index's own condition; and it is named, since
    # without statistics (no ANALYZE) the planner takes the status index and sorts.
    OLDEST_QUEUED_SQL = (f"SELECT {_COLUMNS} FROM tasks INDEXED BY tasks_queued_by_ready "
                         f"WHERE status = '{Status.QUEUED.value}' AND {READY_AT} <= ? "
                         f"ORDER BY {READY_AT}, id LIMIT 1")

    @_reaches_sqlite
    def oldest(self, status: Status, ready_by: Optional[datetime] = None) -> Optional[Task]:
        if status is Status.QUEUED:
            rows = self._db.query(self.OLDEST_QUEUED_SQL, (_NO_LATER if ready_by is None else to_micros(ready_by),))
        else:  # a final task's wait is over: by creation, as DynamoDB's by_outcome index has them
            ready, params = "", [status.value]
            if ready_by is not None:
                ready = f" AND {READY_AT} <= ?"
                params.append(to_micros(ready_by))
            rows = self._db.query(
                f"SELECT {_COLUMNS} FROM tasks WHERE status = ?{ready} ORDER BY created_at, id LIMIT 1", params)
        return _row_to_task(rows[0]) if rows else None

    def _due(self, now: datetime, page: int) -> Iterator[Task]:
        after = None
        while True:
            tasks = self._due_page(now, page, after)
            yield from tasks
            if len(tasks) < page:
                return
            after = (tasks[-1].due_at, tasks[-1].id)

    @_reaches_sqlite
    def _due_page(self, now: datetime, limit: int, after: Optional[Tuple[datetime, str]]) -> list:
        """Up to `limit` tasks due by `now`, in (due_at, id) order, after `after`."""
        later, params = "", [to_micros(now)]
        if after is not None:
            later = " AND (due_at, id) > (?, ?)"
            params += [to_micros(after[0]), after[1]]
        rows = self._db.query(
            f"SELECT {_COLUMNS} FROM tasks WHERE due_at IS NOT NULL AND due_at <= ?{later} "
            "ORDER BY due_at, id LIMIT ?", (*params, limit))
        return [_row_to_task(row) for row in rows]

    @_reaches_sqlite
    def remember_key(self, record: KeyRecord, now: datetime) -> Optional[KeyRecord]:
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT key, fingerprint, task_id, created_at, expires_at FROM idempotency_keys "
                "WHERE key = ? AND expires_at > ?", (record.key, to_micros(now)),
            ).fetchone()
            if row:
                return KeyRecord(row[0], row[1], row[2], from_micros(row[3]), from_micros(row[4]))
            conn.execute(
                "INSERT OR REPLACE INTO idempotency_keys (key, fingerprint, task_id, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (record.key, record.fingerprint, record.task_id,
                 to_micros(record.created_at), to_micros(record.expires_at)),
            )
        return None

    @_reaches_sqlite
    def forget_key(self, key: str, task_id: str) -> None:
        self._db.execute("DELETE FROM idempotency_keys WHERE key = ? AND task_id = ?", (key, task_id))

    @_reaches_sqlite
    def purge_finished(self, before: datetime, limit: int) -> int:
        finals = sorted(status.value for status in FINAL)
        return self._db.execute(
            "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks WHERE finished_at IS NOT NULL "
            f"AND finished_at <= ? AND status IN ({', '.join('?' * len(finals))}) ORDER BY finished_at LIMIT ?)",
            (to_micros(before), *finals, limit))

    @_reaches_sqlite
    def _write_minutes(self, records: series.Records) -> None:
        with self._db.transaction() as conn:
            for (minute, action), figures in records.items():
                row = conn.execute("SELECT figures FROM task_minutes WHERE minute = ? AND action = ?",
                                   (minute, action)).fetchone()
                merged = Counter(json.loads(row[0])) + figures if row else figures
                conn.execute("INSERT OR REPLACE INTO task_minutes (minute, action, figures) VALUES (?, ?, ?)",
                             (minute, action, json.dumps(merged)))

    @_reaches_sqlite
    def minutes(self, since_minute: int, action: Optional[str] = None) -> series.Records:
        sql, params = "SELECT minute, action, figures FROM task_minutes WHERE minute >= ?", [since_minute]
        if action is not None:
            sql += " AND action = ?"
            params.append(action)
        return {(minute, name): Counter(json.loads(figures)) for minute, name, figures in self._db.query(sql, params)}

    @_reaches_sqlite
    def purge_expired_keys(self, now: datetime) -> int:
        self._db.execute("DELETE FROM task_minutes WHERE minute < ?",
                         (series.minute_of(now) - series.KEEP_MINUTES,))
        return self._db.execute("DELETE FROM idempotency_keys WHERE expires_at <= ?", (to_micros(now),))

    @_reaches_sqlite
    def _transition(self, task_id, frm, to, expect_attempts, fields, increment_attempts, returning=True):
        assignments = ["status = ?"] + [f"{name} = ?" for name in fields]
        params = [to.value] + [_column_value(name, value) for name, value in fields.items()]
        if increment_attempts:
            assignments.append("attempts = attempts + 1")
        sources = sorted(status.value for status in frm)
        condition = f"id = ? AND status IN ({', '.join('?' * len(sources))})"
        params += [task_id, *sources]
        if expect_attempts is not None:
            condition += " AND attempts = ?"
            params.append(expect_attempts)
        rows = self._db.write_returning(
            f"UPDATE tasks SET {', '.join(assignments)} WHERE {condition} "
            f"RETURNING {_COLUMNS if returning else 'id'}", params)
        if not rows:
            return None
        return _row_to_task(rows[0]) if returning else True
