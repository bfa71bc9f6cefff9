"""Where tasks live. Backends implement the primitives; the rules live here."""
from __future__ import annotations

import contextlib
import json
import re
import threading
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, ContextManager, Iterable, Iterator, Optional, Tuple, TypeVar

from chalicelib import logs, series
from chalicelib.tasks import FINAL, Page, Status, Task, format_time, from_micros, sources_of, to_micros

T = TypeVar("T")


class StoreError(RuntimeError):
    """The store could not be reached or refused an operation."""


class TaskExists(StoreError):
    """A task with this id is stored already."""


class InvalidCursor(ValueError):
    """A pagination cursor that this service did not hand out."""


# A cursor names the last task of the previous page: its creation time in
# microseconds and its id. Every string of this form is a valid position.
CURSOR_PATTERN = "^[0-9]{1,16}_[0-9a-f]{32}$"
_CURSOR = re.compile(CURSOR_PATTERN)  # matched whole: `$` alone allows a final newline


def encode_cursor(created_at: datetime, task_id: str) -> str:
    """The cursor for the position just after (created_at, task_id), going back in time."""
    return f"{to_micros(created_at)}_{uuid.UUID(task_id).hex}"


def decode_cursor(cursor: str) -> Tuple[datetime, str]:
    """(created_at, id) of the last task of the previous page."""
    if not _CURSOR.fullmatch(cursor):
        raise InvalidCursor("cursor is not one this service returned; use next_cursor from a previous page")
    micros, hex_id = cursor.split("_")
    return from_micros(int(micros)), str(uuid.UUID(hex_id))


@dataclass(frozen=True)
class KeyRecord:
    """An Idempotency-Key: which request body it came with and which task it made."""

    key: str
    fingerprint: str
    task_id: str
    created_at: datetime
    expires_at: datetime


class TaskStore(ABC):
    # The largest body a submit may send, where the store keeps less than the
    # service would accept (None: the service's own limit holds).
    max_body_bytes: Optional[int] = None
    # How many bytes of JSON (data and result together) one task may hold (None: no limit that matters).
    max_task_bytes: Optional[int] = None
    # Whether oldest() answers for queued tasks (a store with no index of them by age does not).
    knows_oldest_queued: bool = True

    def unstorable_result(self, task: Task, result: Any) -> Optional[str]:
        """Why `result` cannot be stored with `task`, or None. The reason is the
        same on every attempt, so the task fails at once rather than retrying."""
        try:
            encoded = json.dumps(result, allow_nan=False)
        except (ValueError, TypeError, RecursionError, OverflowError) as exc:
            return f"the result cannot be stored as JSON: {type(exc).__name__}: {exc}"
        if self.max_task_bytes is not None:
            size = len(encoded) + len(json.dumps(task.data))  # ASCII: ensure_ascii escapes the rest
            if size > self.max_task_bytes:
                return (f"the result is {len(encoded)} bytes of JSON; with the task's data that is over the "
                        f"{self.max_task_bytes} bytes this store keeps for one task")
        return None

    @abstractmethod
    def insert(self, task: Task) -> None:
        """Store a new task. Raises TaskExists if its id is taken by another task. (A
        store whose client retries a write whose response was lost may take the very
        task it finds stored for its own earlier success.)"""

    @abstractmethod
    def get(self, task_id: str) -> Optional[Task]:
        """The task, or None when there is none with this id."""

    @abstractmethod
    def _remove(self, task_id: str, frm: frozenset) -> Optional[Task]:
        """Atomically delete the task if its status is in `frm`; the task as it was,
        or None when there is no such task in such a state."""

    @abstractmethod
    def _page(
        self, status: Optional[Status], limit: int, after: Optional[Tuple[datetime, str]],
        action: Optional[str] = None,
    ) -> Tuple[list, Optional[Tuple[datetime, str]]]:
        """Up to `limit` tasks (of `action`, when given), newest first (created_at, then
        id, descending), older than `after`; and None, or the position to go on from
        where the backend stopped looking before it found `limit` (a page that reads a
        bounded amount). An index serves each combination: no scan of the tasks."""

    @abstractmethod
    def _transition(
        self,
        task_id: str,
        frm: frozenset,
        to: Status,
        expect_attempts: Optional[int],
        fields: dict,
        increment_attempts: bool,
        returning: bool = True,
    ) -> Optional[Task]:
        """Atomically move a task whose status is in `frm` (and, if given, whose
        attempts equal `expect_attempts`) to `to`, setting `fields`; the task as
        it now is (or, with returning=False, a true value), or None when it was
        not in such a state."""

    @abstractmethod
    def _due(self, now: datetime, page: int) -> Iterator[Task]:
        """Every task whose due_at is at or before `now`, earliest first, read `page`
        at a time as the caller goes on: one that stops early reads no further."""

    @abstractmethod
    def remember_key(self, record: KeyRecord, now: datetime) -> Optional[KeyRecord]:
        """Store `record` unless an unexpired record holds its key; that record, or None if stored."""

    @abstractmethod
    def forget_key(self, key: str, task_id: str) -> None:
        """Remove the key's record if it still names `task_id`."""

    @abstractmethod
    def count_by_status(self) -> dict:
        """{status value: number of tasks} for the statuses that have any."""

    @abstractmethod
    def oldest(self, status: Status, ready_by: Optional[datetime] = None) -> Optional[Task]:
        """The task in `status` that has waited longest, or None; with `ready_by`, only
        among tasks that could start by then (a delayed task's run_at has come). A
        queued task waits from when it could start (Task.ready_at), so a task delayed
        a little does not hide one created after it and waiting since; the others
        (final) are taken by creation."""

    @abstractmethod
    def purge_finished(self, before: datetime, limit: int) -> int:
        """Delete up to `limit` final tasks that finished at or before `before`, in one
        short transaction; how many (a store whose own expiry deletes them does nothing)."""

    def _finished(self, task: Task) -> None:
        from chalicelib import actions  # the names worth a record of their own

        self._add_minutes(series.record_of(task, actions.ACTIONS))

    def _add_minutes(self, records: series.Records) -> None:
        """Add finished tasks' figures to their minutes' records: gathered while a batch
        is open (see _gathering_minutes), written at once otherwise."""
        pending = self._batch_state()
        if getattr(pending, "depth", 0):
            series.merge(pending.minutes, records)
        else:
            self._write_minutes(records)

    @abstractmethod
    def _write_minutes(self, records: series.Records) -> None:
        """Add these figures to their minutes' records (inside the open transaction,
        where the backend has one)."""

    # Whether a batch that raises is undone (one SQLite transaction): the figures it
    # gathered then go with it. Elsewhere what the batch wrote stays, and so do they.
    batches_roll_back = False

    def _batch_state(self) -> threading.local:
        state = self.__dict__.get("_batch_local")
        if state is None:
            state = self.__dict__.setdefault("_batch_local", threading.local())
        return state

    @contextlib.contextmanager
    def _gathering_minutes(self) -> Iterator[None]:
        """Gather the per-minute figures of the tasks a batch finishes, and write each
        minute's record once when the outermost batch ends, rather than a read and a
        write for every finished task."""
        pending = self._batch_state()
        depth = getattr(pending, "depth", 0)
        if depth == 0:
            pending.minutes = {}
        pending.depth = depth + 1
        completed = False
        try:
            yield
            completed = True
        finally:
            pending.depth = depth
            if depth == 0 and pending.minutes and (completed or not self.batches_roll_back):
                self._write_minutes(pending.minutes)

    @abstractmethod
    def minutes(self, since_minute: int, action: Optional[str] = None) -> series.Records:
        """The records of the minutes from `since_minute` on, for one action or all."""

    def fold_counts(self, now: datetime) -> int:
        """Compact the store's counters, where it keeps any (a scheduled pass); how
        many units it folded."""
        return 0

    @abstractmethod
    def purge_expired_keys(self, now: datetime) -> int:
        """Delete expired Idempotency-Key records (a store with its own expiry does nothing)."""

    def wait_durable(self) -> None:
        """Return once every write this store has reported committed is durable
        (for reads of another request's write; a backend whose commits are durable
        when they return does nothing)."""

    def batch(self, durable: bool = True) -> ContextManager[None]:
        """Group several calls: a backend that can commits them together (one SQLite
        transaction); the calls keep their own conditions and outcomes either way.
        durable=False allows a backend not to wait for the disk, for writes whose
        loss would only repeat work (claims)."""
        return self._gathering_minutes()

    def atomically(self, work: Callable[[], T]) -> T:
        """Run `work` (calls to this store, and to a queue in the same file) as one
        unit, the way `batch` does; a backend may commit it together with other
        threads' units that arrive at the same moment, each rolled back alone if
        it raises."""
        with self.batch():
            return work()

    def _move(self, task_id: str, frm: Iterable[Status], to: Status, fields: dict,
              expect_attempts: Optional[int] = None, increment_attempts: bool = False,
              returning: bool = True) -> Optional[Task]:
        frm = frozenset(frm)
        if not frm <= sources_of(to):
            raise ValueError(f"a task cannot move from {sorted(s.value for s in frm)} to {to.value}")
        return self._transition(task_id, frm, to, expect_attempts, fields, increment_attempts, returning)

    def list(self, status: Optional[Status] = None, limit: int = 100, cursor: Optional[str] = None,
             action: Optional[str] = None) -> Page:
        after = decode_cursor(cursor) if cursor is not None else None
        rows, stopped_at = self._page(status, limit + 1, after, action)
        tasks = rows[:limit]
        if len(rows) > limit:
            next_cursor = encode_cursor(tasks[-1].created_at, tasks[-1].id)
        else:
            next_cursor = None if stopped_at is None else encode_cursor(*stopped_at)
        return Page(tasks=tasks, next_cursor=next_cursor)

    def claim(self, task_id: str, now: datetime, lease_until: Optional[datetime] = None) -> Optional[Task]:
        """Start a new attempt of a task that is not final; None when it is final or unknown.
        Past `lease_until`, recovery takes the task back from this attempt."""
        return self._move(task_id, sources_of(Status.RUNNING), Status.RUNNING,
                          {"started_at": now, "due_at": lease_until}, increment_attempts=True)

    def finish(
        self,
        task_id: str,
        attempt: int,
        to: Status,
        now: datetime,
        result: Any = None,
        error: Optional[str] = None,
        started_at: Optional[datetime] = None,
    ) -> bool:
        """Record the outcome of attempt number `attempt`, finished at `now`; False
        when a newer attempt has taken the task over or it is already final.

        `started_at`, when given, replaces the claim's time in the same write: a
        worker claims a batch's tasks together and runs them one after another,
        so an attempt's work begins after its claim."""
        if not to.is_final:
            raise ValueError(f"{to.value} is not a final status")
        fields = {"finished_at": now, "result": result, "error": error, "due_at": None}
        if started_at is not None:
            fields["started_at"] = started_at
        with self.batch():
            done = self._move(task_id, {Status.RUNNING}, to, fields, expect_attempts=attempt)
            if done is not None:
                self._finished(done)
        return done is not None

    def give_up(self, task: Task, now: datetime, error: str) -> Optional[Task]:
        """Fail a queued or running task whose message the queue gave up on; None when
        it has moved on since `task` was read (a newer attempt, an outcome, a cancel)."""
        with self.batch():
            failed = self._move(task.id, {Status.QUEUED, Status.RUNNING}, Status.FAILED,
                                {"finished_at": now, "error": error, "due_at": None},
                                expect_attempts=task.attempts)
            if failed is not None:
                self._finished(failed)
        return failed

    def requeue(self, task_id: str, attempt: int, due_at: datetime, error: Optional[str] = None,
                frm: Iterable[Status] = (Status.RUNNING,)) -> Optional[Task]:
        """Put attempt `attempt` of a task back in `queued` (a retry, or recovery of a lost
        message or a dead worker); None when the task has moved on meanwhile."""
        fields = {"due_at": due_at}
        if error is not None:
            fields["error"] = error
        return self._move(task_id, frm, Status.QUEUED, fields, expect_attempts=attempt)

    def retry(self, task: Task, due_at: datetime) -> Optional[Task]:
        """A failed task, queued again for a fresh series of attempts; None if it was
        not failed at `task.attempts`. Attempt numbers carry on from the last one, so
        a stale worker of the earlier series cannot match an attempt of the new one."""
        return self._move(task.id, {Status.FAILED}, Status.QUEUED, {
            "series_start": task.attempts, "error": None, "result": None, "started_at": None,
            "finished_at": None, "due_at": due_at,
        }, expect_attempts=task.attempts)

    def delete(self, task_id: str) -> Optional[Task]:
        """Delete a final task and its Idempotency-Key record; the task as it was, or
        None when it is not final (or not there)."""
        with self.batch():
            removed = self._remove(task_id, FINAL)
            if removed is not None and removed.idempotency_key is not None:
                self.forget_key(removed.idempotency_key, task_id)
        return removed

    def withdraw(self, task_id: str) -> Optional[Task]:
        """Delete a task that no one was told of (its submit failed) while it is still
        queued; the task as it was, or None."""
        return self._remove(task_id, frozenset({Status.QUEUED}))

    def cancel(self, task_id: str, now: datetime) -> Optional[Task]:
        """Cancel a queued task; None if it was not queued."""
        with self.batch():
            cancelled = self._move(task_id, {Status.QUEUED}, Status.CANCELLED,
                                   {"finished_at": now, "due_at": None})
            if cancelled is not None:
                self._finished(cancelled)
        return cancelled

    def on_outcome(self, listener: Callable[[str], None]) -> bool:
        """Have listener(task_id) called once each outcome written in this process is
        committed, where the backend can tell (see waiting.py); False where it cannot,
        and reads waiting for an outcome then poll."""
        return False

    def due(self, now: datetime, page: int = 100) -> Iterator[Task]:
        """Every task that is not final and has outstayed its due time, earliest first,
        read `page` at a time (see _due)."""
        for task in self._due(now, page):
            if task.status.is_final or task.due_at is None or task.due_at > now:
                # An index entry behind its task (DynamoDB's indexes are eventually consistent).
                logs.note("a due entry no longer matches its task; skipped", task=task,
                          status=task.status.value, due_at=format_time(task.due_at))
                continue
            yield task
