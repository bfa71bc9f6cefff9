"""Where task messages wait for a worker."""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Optional


class PublishError(RuntimeError):
    """The message could not be handed to the queue."""


@dataclass(frozen=True)
class QueueStats:
    waiting: int      # ready to be received
    in_flight: int    # received, not yet deleted (or waiting out a retry backoff)
    dead_letter: Optional[int]  # None when the dead-letter queue is not known here

    def to_json(self) -> dict:
        return {"waiting": self.waiting, "in_flight": self.in_flight, "dead_letter": self.dead_letter}


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

    @abstractmethod
    def stats(self) -> QueueStats:
        """How many messages wait, are in flight, and sit in the dead-letter queue."""

    def publish_task(self, task_id: str) -> str:
        return self.send(json.dumps({"task_id": task_id}))


def task_id_of(body: str) -> str:
    """The task id a message carries. Raises ValueError for a message this service did not send."""
    value = json.loads(body)
    if not isinstance(value, dict) or not isinstance(value.get("task_id"), str):
        raise ValueError("message has no task_id")
    return value["task_id"]
