"""Making final the task of every message the queue gave up on.

A queue's redrive policy moves a message to the dead-letter queue after
maxReceiveCount receives, whatever the worker meant: when claims or outcome
writes failed that often (the store throttled or down), the task's only message
leaves the tasks queue while the task is still queued or running. This consumer
of the dead-letter queue (an SQS-triggered function in the cloud, a dispatcher
thread under `chalice local`) fails such a task, saying that the queue gave up,
so that an operator can retry it like any failed task.

It keeps the invariant the rest of the service relies on: every task that is
not final has a message on its way, or a due time that recovery watches.

A message the worker dead-lettered itself, after recording the task's outcome,
finds the task final and is acknowledged. So is a message of an earlier series of
attempts (the task was retried since): its `series` no longer matches.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Optional

from chalicelib import logs
from chalicelib.metrics import NoMetrics
from chalicelib.queue.base import message_of
from chalicelib.store import TaskStore
from chalicelib.tasks import Task, utcnow


@dataclass(frozen=True)
class DeadLetter:
    """A message received from the dead-letter queue."""

    message_id: str
    body: str


def gave_up_error(deliveries: int, task: Task) -> str:
    """The error a task is failed with when the queue gave up on its message."""
    last = f"; last error: {task.error}" if task.error else ""
    return f"the queue gave up on this task's message after {deliveries} deliveries{last}"


class DeadLetters:
    def __init__(self, store: TaskStore, max_receive_count: int, metrics=NoMetrics()) -> None:
        self._store = store
        self._deliveries = max_receive_count
        self._metrics = metrics

    def process_batch(self, letters: Iterable[DeadLetter]) -> List[str]:
        """Settle each message's task; the ids of the messages to deliver again (the
        store failed for them: the dead-letter queue keeps them, unredriven, until it works)."""
        again = []
        for letter in letters:
            try:
                self.settle(letter)
            except Exception as exc:  # one letter's failure must not hold back the others
                logs.problem("dead letter not settled; it will be delivered again",
                             message_id=letter.message_id, error=f"{type(exc).__name__}: {exc}")
                again.append(letter.message_id)
        return again

    def settle(self, letter: DeadLetter) -> Optional[Task]:
        """Fail the message's task if the queue gave up on its current series of
        attempts; the failed task, or None when there was nothing to do."""
        try:
            message = message_of(letter.body)
        except ValueError:
            logs.problem("dead letter names no task; dropped", message_id=letter.message_id,
                         body=letter.body[:200])
            return None
        task = self._store.get(message.task_id)
        if task is None or task.status.is_final or task.series_start != message.series:
            return None
        failed = self._store.give_up(task, utcnow(), gave_up_error(self._deliveries, task))
        if failed is None:
            # It moved on since it was read: a newer attempt holds it, whose message is on its way.
            logs.note("dead letter for a task that moved on; acknowledged", task=task)
            return None
        logs.state_change(failed, reason="the queue gave up on its message")
        self._metrics.record(task.action, {"TasksDeadLettered": 1}, task_id=task.id, request_id=task.request_id)
        return failed
