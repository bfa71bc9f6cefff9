"""Accepting tasks, reading them back, and an operator's retry and cancel."""
from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Optional

from chalicelib import logs
from chalicelib.queue import PublishError, TaskQueue
from chalicelib.store import KeyRecord, TaskStore
from chalicelib.tasks import Page, Status, Task, utcnow
from chalicelib.validation import ListQuery, NewTask

# A key whose task never appeared (its request died mid-way) is taken over after this.
ABANDONED_KEY_AFTER = timedelta(seconds=60)


class QueueUnavailable(RuntimeError):
    """The task could not be queued; nothing was kept."""


class TaskNotFound(LookupError):
    """No task has this id."""


class WrongState(RuntimeError):
    """The task is not in a state that allows the operation; the message says which it is in."""


class KeyReused(ValueError):
    """An Idempotency-Key sent again with a different request body."""


class KeyInFlight(RuntimeError):
    """A request with the same Idempotency-Key is still being handled."""


@dataclass(frozen=True)
class Submission:
    task: Task
    replayed: bool = False


def fingerprint(new: NewTask) -> str:
    canonical = json.dumps({"action": new.action, "data": new.data}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class TaskService:
    def __init__(self, store: TaskStore, queue: TaskQueue, stale_after_seconds: float = 900.0,
                 idempotency_ttl_seconds: float = 86_400.0) -> None:
        self._store = store
        self._queue = queue
        self._stale_after = timedelta(seconds=stale_after_seconds)
        self._key_ttl = timedelta(seconds=idempotency_ttl_seconds)

    def submit(self, new: NewTask, idempotency_key: Optional[str] = None) -> Submission:
        """Store the task and publish its message. If publishing fails the task
        is removed again, so no task stays queued with no message behind it.
        With an Idempotency-Key, a repeat of the same request returns the first task."""
        now = utcnow()
        task = Task.new(new.action, new.data, now=now, due_at=now + self._stale_after)
        if idempotency_key is not None:
            earlier = self._claim_key(idempotency_key, fingerprint(new), task)
            if earlier is not None:
                return Submission(earlier, replayed=True)
        self._store.insert(task)
        try:
            self._queue.publish_task(task.id)
        except PublishError as exc:
            self._store.delete(task.id)
            if idempotency_key is not None:
                self._store.forget_key(idempotency_key, task.id)
            logs.problem("publish failed; task withdrawn", task_id=task.id, error=str(exc))
            raise QueueUnavailable("the task queue is unavailable; nothing was stored, try again shortly") from exc
        logs.state_change(task)
        return Submission(task)

    def _claim_key(self, key: str, print_: str, task: Task) -> Optional[Task]:
        """None when the key is now this task's; else the task an earlier request made."""
        record = KeyRecord(key, print_, task.id, task.created_at, task.created_at + self._key_ttl)
        held = self._store.remember_key(record, task.created_at)
        if held is None:
            return None
        if held.fingerprint != print_:
            raise KeyReused("this Idempotency-Key was used with a different request body; "
                            "use a new key for a new task")
        earlier = self._store.get(held.task_id)
        if earlier is not None:
            return earlier
        if task.created_at - held.created_at < ABANDONED_KEY_AFTER:
            raise KeyInFlight("a request with this Idempotency-Key is still in progress; retry shortly")
        self._store.forget_key(key, held.task_id)
        return self._claim_key(key, print_, task)

    def get(self, task_id: str) -> Optional[Task]:
        try:
            canonical = str(uuid.UUID(task_id))
        except ValueError:
            return None
        if canonical != task_id.lower():
            return None
        return self._store.get(canonical)

    def _existing(self, task_id: str) -> Task:
        task = self.get(task_id)
        if task is None:
            raise TaskNotFound(f"no task with id {task_id}")
        return task

    def list(self, query: ListQuery) -> Page:
        return self._store.list(query.status, query.limit, query.cursor)

    def retry(self, task_id: str) -> Task:
        """Queue a failed task again for a fresh series of attempts."""
        task = self._existing(task_id)
        if task.status is not Status.FAILED:
            raise WrongState(f"only a failed task can be retried; this one is {task.status.value}")
        now = utcnow()
        queued = self._store.retry(task.id, now + self._stale_after)
        if queued is None:
            raise WrongState("the task changed while retrying it; fetch it and try again")
        try:
            self._queue.publish_task(task.id)
        except PublishError as exc:
            # Queued with a due time: recovery publishes it once the queue is back.
            logs.problem("publish failed on retry; recovery will publish", task_id=task.id, error=str(exc))
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
