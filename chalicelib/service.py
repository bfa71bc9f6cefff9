"""Accepting tasks and reading them back."""
from __future__ import annotations

import uuid
from typing import Optional

from chalicelib import logs
from chalicelib.queue import PublishError, TaskQueue
from chalicelib.store import TaskStore
from chalicelib.tasks import Page, Task
from chalicelib.validation import ListQuery, NewTask


class QueueUnavailable(RuntimeError):
    """The task could not be queued; nothing was kept."""


class TaskService:
    def __init__(self, store: TaskStore, queue: TaskQueue) -> None:
        self._store = store
        self._queue = queue

    def submit(self, new: NewTask) -> Task:
        """Store the task and publish its message. If publishing fails the task
        is removed again, so no task stays queued with no message behind it."""
        task = Task.new(new.action, new.data)
        self._store.insert(task)
        try:
            self._queue.publish_task(task.id)
        except PublishError as exc:
            self._store.delete(task.id)
            logs.problem("publish failed; task withdrawn", task_id=task.id, error=str(exc))
            raise QueueUnavailable("the task queue is unavailable; nothing was stored, try again shortly") from exc
        logs.state_change(task)
        return task

    def get(self, task_id: str) -> Optional[Task]:
        try:
            canonical = str(uuid.UUID(task_id))
        except ValueError:
            return None
        if canonical != task_id.lower():
            return None
        return self._store.get(canonical)

    def list(self, query: ListQuery) -> Page:
        return self._store.list(query.status, query.limit, query.cursor)
