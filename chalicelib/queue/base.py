"""Where task messages wait for a worker."""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional

from chalicelib.tasks import from_micros, to_micros


class PublishError(RuntimeError):
    """The message could not be handed to the queue."""


@dataclass(frozen=True)
class QueueStats:
    waiting: int      # ready to be received
    in_flight: int    # received, not yet deleted (or waiting out a retry backoff)
    dead_letter: Optional[int]  # None when the dead-letter queue is not known here
    delayed: int = 0  # sent with a delay, not yet received: a delayed task's message

    def to_json(self) -> dict:
        return {"waiting": self.waiting, "in_flight": self.in_flight, "delayed": self.delayed,
                "dead_letter": self.dead_letter}


class TaskQueue(ABC):
    @abstractmethod
    def send(self, body: str, delay_seconds: float = 0) -> str:
        """Publish one message, received no sooner than `delay_seconds` from now (at
        most MAX_MESSAGE_DELAY_SECONDS); its message id. Raises PublishError."""

    @abstractmethod
    def retry_later(self, receipt_handle: str, delay_seconds: float) -> None:
        """Make a received message visible again after `delay_seconds` (backoff)."""

    @abstractmethod
    def dead_letter(self, receipt_handle: str, body: str) -> None:
        """Put a received message in the dead-letter queue; the caller then acknowledges it."""

    @abstractmethod
    def stats(self) -> QueueStats:
        """How many messages wait, are in flight, and sit in the dead-letter queue."""

    def publish_task(self, task_id: str, run_at: Optional[datetime] = None, series: int = 0) -> str:
        """Publish a task's message; a delayed task's is held until `run_at` (for at
        most MAX_MESSAGE_DELAY_SECONDS: a worker hands back a message that comes early).
        `series` is the task's series_start: a dead letter of an earlier series (the
        task was retried since) is then told from one of the current series."""
        message = {"task_id": task_id}
        if series:
            message["series"] = series
        if run_at is None:
            return self.send(json.dumps(message))
        message["run_at"] = to_micros(run_at)
        delay = min(MAX_MESSAGE_DELAY_SECONDS, max(0.0, (run_at - datetime.now(timezone.utc)).total_seconds()))
        return self.send(json.dumps(message), delay)


# How long a queue holds a message before its first delivery: SQS's DelaySeconds ceiling.
MAX_MESSAGE_DELAY_SECONDS = 900


@dataclass(frozen=True)
class Message:
    task_id: str
    run_at: Optional[datetime] = None  # a delayed task's: it must not start before
    series: int = 0  # the series of attempts it was published for (Task.series_start)


def message_of(body: str) -> Message:
    """What a message carries. Raises ValueError for a message this service did not send."""
    value = json.loads(body)
    if not isinstance(value, dict) or not isinstance(value.get("task_id"), str):
        raise ValueError("message has no task_id")
    run_at, series = value.get("run_at"), value.get("series", 0)
    return Message(value["task_id"], from_micros(run_at) if isinstance(run_at, int) else None,
                   series if isinstance(series, int) else 0)
