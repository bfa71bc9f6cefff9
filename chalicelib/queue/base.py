"""Where task messages wait for a worker."""
from __future__ import annotations

import json
from abc import ABC, abstractmethod


class PublishError(RuntimeError):
    """The message could not be handed to the queue."""


class TaskQueue(ABC):
    @abstractmethod
    def send(self, body: str) -> str:
        """Publish one message; its message id. Raises PublishError."""

    @abstractmethod
    def retry_later(self, receipt_handle: str, delay_seconds: float) -> None:
        """Make a received message visible again after `delay_seconds` (backoff)."""

    @abstractmethod
    def dead_letter(self, receipt_handle: str, body: str) -> None:
        """Put a received message in the dead-letter queue; the caller then acknowledges it."""

    def publish_task(self, task_id: str) -> str:
        return self.send(json.dumps({"task_id": task_id}))


def task_id_of(body: str) -> str:
    """The task id a message carries. Raises ValueError for a message this service did not send."""
    value = json.loads(body)
    if not isinstance(value, dict) or not isinstance(value.get("task_id"), str):
        raise ValueError("message has no task_id")
    return value["task_id"]
