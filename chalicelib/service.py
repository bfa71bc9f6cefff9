"""Accepting tasks, reading them back, and an operator's retry and cancel."""
from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Optional, Tuple

from chalicelib import logs, series, waiting
from chalicelib.catalog import Catalog
from chalicelib.queue import PublishError, TaskQueue
from chalicelib.queue.base import MAX_MESSAGE_DELAY_SECONDS
from chalicelib.store import KeyRecord, TaskExists, TaskStore
from chalicelib.tasks import Page, Status, Task, utcnow
from chalicelib.validation import ListQuery, NewTask, SeriesQuery

class QueueUnavailable(RuntimeError):
    """The task could not be queued now; the message says whether it was kept."""


class TaskNotFound(LookupError):
    """No task has this id."""


class WrongState(RuntimeError):
    """The task is not in a state that allows the operation; the message says which it is in."""


class KeyReused(ValueError):
    """An Idempotency-Key sent again with a different request body."""


@dataclass(frozen=True)
class Submission:
    task: Task
    replayed: bool = False


def fingerprint(new: NewTask) -> str:
    sent = {"action": new.action, "data": new.data}
    if new.delay_seconds is not None:
        sent["delay_seconds"] = new.delay_seconds
    if new.run_at is not None:
        sent["run_at"] = new.run_at.isoformat()
    canonical = json.dumps(sent, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class TaskService:
    def __init__(self, store: TaskStore, queue: TaskQueue, catalog: Catalog, stale_after_seconds: float = 900.0,
                 idempotency_ttl_seconds: float = 86_400.0, max_body_bytes: int = 256 * 1024,
                 waiters: Optional[waiting.Waiters] = None) -> None:
        self.max_body_bytes = max_body_bytes  # the largest submit body this service can store
        self.catalog = catalog
        self._store = store
        self._waiters = waiting.Waiters.on(store) if waiters is None else waiters
        self._queue = queue
        self._stale_after = timedelta(seconds=stale_after_seconds)
        self._key_ttl = timedelta(seconds=idempotency_ttl_seconds)

    def submit(self, new: NewTask, idempotency_key: Optional[str] = None,
               request_id: Optional[str] = None) -> Submission:
        """Store the task and publish its message; a 202 for it is never withdrawn.

        With an Idempotency-Key, a repeat of the same request returns the first task.
        When publishing fails, a task without a key is taken back (no one else can
        know its id); one with a key stays queued and due, since a repeat of the
        request may already have answered 202 for it, and recovery publishes it.
        """
        self.catalog.check(new)  # before anything is stored or a key is taken
        now = utcnow()
        run_at = new.start_time(now)
        task = Task.new(new.action, new.data, now=now, due_at=self._due_at(now, run_at, idempotency_key),
                        idempotency_key=idempotency_key, request_id=request_id, run_at=run_at)
        if idempotency_key is not None:
            task_id, earlier = self._claim_key(idempotency_key, fingerprint(new), task)
            if earlier is not None:
                return self._replayed(earlier)
            task = replace(task, id=task_id)
        try:
            # Where the store and queue share a SQLite file, the task and its
            # message are stored together or not at all, in a commit shared with
            # the other requests arriving at the same moment.
            self._store.atomically(lambda: self._store_and_publish(task))
        except TaskExists:
            # A concurrent request with the same key inserted it first.
            earlier = self._store.get(task.id)
            if idempotency_key is None or earlier is None:
                raise
            return self._replayed(earlier)
        except PublishError as exc:
            raise self._unpublished(task, exc) from exc
        logs.state_change(task)
        return Submission(task)

    def _due_at(self, now: datetime, run_at: Optional[datetime], idempotency_key: Optional[str]):
        """When recovery should look at a new task, or None if it need not."""
        if run_at is not None and (run_at - now).total_seconds() > MAX_MESSAGE_DELAY_SECONDS:
            # Too far ahead for the queue to hold its message: recovery publishes it
            # when it falls due (Task.awaiting_publish).
            return run_at
        if idempotency_key is not None:
            # A keyed task is watched by recovery from the start: a repeat of the request
            # can answer 202 for it before this request has published its message. A task
            # without a key is answered by this request alone, after its publish.
            return max(now, run_at or now) + self._stale_after
        return None

    def _replayed(self, task: Task) -> Submission:
        # The request that stored it may not have flushed its commit yet: answer
        # only once the task is as durable as a first 202 makes it.
        self._store.wait_durable()
        return Submission(task, replayed=True)

    def _unpublished(self, task: Task, exc: PublishError) -> QueueUnavailable:
        if task.idempotency_key is None:
            self._store.withdraw(task.id)  # where the insert was committed on its own
            logs.problem("publish failed; task withdrawn", task=task, error=str(exc))
            return QueueUnavailable("the task queue is unavailable; nothing was stored, try again shortly")
        kept = self._store.requeue(task.id, 0, utcnow(), frm=(Status.QUEUED,))
        if kept is None:  # nothing was stored (task and message commit together)
            logs.problem("publish failed; nothing stored", task=task, error=str(exc))
            return QueueUnavailable("the task queue is unavailable; nothing was stored, "
                                    "try again shortly with the same Idempotency-Key")
        logs.problem("publish failed; task kept for recovery to publish", task=task, error=str(exc))
        return QueueUnavailable(f"the task queue is unavailable; the task is stored as {task.id} and will "
                                "be queued when the queue is back: send the same request with the same "
                                "Idempotency-Key to get it")

    def _store_and_publish(self, task: Task) -> None:
        self._store.insert(task)
        if task.awaiting_publish:
            return
        if task.run_at is not None and task.run_at > task.created_at:
            self._queue.publish_task(task.id, task.run_at)
        else:
            self._queue.publish_task(task.id)

    def _claim_key(self, key: str, print_: str, task: Task) -> Tuple[str, Optional[Task]]:
        """The id the task must have, and the task an earlier request with this key made, if any.

        When the key names a task that is not stored, the request that took the key
        died before inserting it, or is still on its way: this request inserts it under
        the same id, so whichever inserts second finds the first one's task.
        """
        record = KeyRecord(key, print_, task.id, task.created_at, task.created_at + self._key_ttl)
        held = self._store.remember_key(record, task.created_at)
        if held is None:
            return task.id, None
        if held.fingerprint != print_:
            raise KeyReused("this Idempotency-Key was used with a different request body; "
                            "use a new key for a new task")
        return held.task_id, self._store.get(held.task_id)

    def get(self, task_id: str, wait_seconds: Optional[float] = None) -> Optional[Task]:
        """The task; with `wait_seconds`, as soon as it is final or once they have passed
        (TooManyWaiters when the process has as many reads waiting as it allows)."""
        try:
            canonical = str(uuid.UUID(task_id))
        except ValueError:
            return None
        if canonical != task_id.lower():
            return None
        if wait_seconds:
            return waiting.wait_final(self._store, self._waiters, canonical, wait_seconds)
        return self._store.get(canonical)

    def _existing(self, task_id: str) -> Task:
        task = self.get(task_id)
        if task is None:
            raise TaskNotFound(f"no task with id {task_id}")
        return task

    def list(self, query: ListQuery) -> Page:
        return self._store.list(query.status, query.limit, query.cursor, query.action)

    def stats(self) -> dict:
        """Counts per status, the queue's depth, and how long the oldest queued task has
        waited since it could start (a delayed task waiting for its time is not late)."""
        counts = self._store.count_by_status()
        now = utcnow()
        oldest = self._store.oldest(Status.QUEUED, ready_by=now)
        age = None if oldest is None else round(max(0.0, (now - oldest.ready_at).total_seconds()), 3)
        try:
            queue = self._queue.stats().to_json()
        except PublishError as exc:
            logs.problem("queue stats unavailable", error=str(exc))
            queue = None
        return {
            "counts": {status.value: counts.get(status.value, 0) for status in Status},
            "total": sum(counts.values()),
            "queue": queue,
            "oldest_queued_age_seconds": age,
            "oldest_queued_age_known": self._store.knows_oldest_queued,
        }

    def series(self, query: SeriesQuery) -> dict:
        """Per-minute throughput by outcome, queue wait and run time percentiles."""
        now = utcnow()
        records = self._store.minutes(series.minute_of(now) - query.minutes + 1, query.action)
        return series.window(records, now, query.minutes, query.action)

    def retry(self, task_id: str) -> Task:
        """Queue a failed task again for a fresh series of attempts."""
        task = self._existing(task_id)
        if task.status is not Status.FAILED:
            raise WrongState(f"only a failed task can be retried; this one is {task.status.value}")
        now = utcnow()
        queued = self._store.retry(task, now + self._stale_after)
        if queued is None:
            raise WrongState("the task changed while retrying it; fetch it and try again")
        try:
            self._queue.publish_task(task.id, series=queued.series_start)
        except PublishError as exc:
            # Queued with a due time: recovery publishes it once the queue is back.
            logs.problem("publish failed on retry; recovery will publish", task=task, error=str(exc))
        logs.state_change(queued, reason="retry requested")
        return queued

    def cancel(self, task_id: str) -> Task:
        """Cancel a queued task; its message is dropped when it arrives."""
        task = self._existing(task_id)
        if task.status is not Status.QUEUED:
            raise WrongState(f"only a queued task can be cancelled; this one is {task.status.value}")
        cancelled = self._store.cancel(task.id, utcnow())
        if cancelled is None:
            raise WrongState("the task started running; it can no longer be cancelled")
        logs.state_change(cancelled)
        return cancelled

    def delete(self, task_id: str) -> None:
        """Delete a final task and its Idempotency-Key record: it is gone from reads and lists."""
        task = self._existing(task_id)
        if not task.status.is_final:
            raise WrongState(f"only a completed, failed or cancelled task can be deleted; this one is "
                             f"{task.status.value}" + (f"; cancel it first with POST /tasks/{task.id}/cancel"
                                                       if task.status is Status.QUEUED else ""))
        if self._store.delete(task.id) is None:
            raise WrongState("the task changed while deleting it; fetch it and try again")
        logs.note("task deleted", task=task, status=task.status.value)
