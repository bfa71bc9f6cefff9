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

    def publish_task(self, task_id: str) -> str:
        return self.send(json.dumps({"task_id": task_id}))


def task_id_of(body: str) -> str:
    """The task id a message carries. Raises ValueError for a message this service did not send."""
    value = json.loads(body)
    if not isinstance(value, dict) or not isinstance(value.get("task_id"), str):
        raise ValueError("message has no task_id")
    return value["task_id"]
