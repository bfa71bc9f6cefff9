"""Running the tasks that messages name: once each, with retries and a dead-letter queue."""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Iterable, List, Tuple

from chalicelib import actions, logs
from chalicelib.queue import TaskQueue
from chalicelib.queue.base import task_id_of
from chalicelib.store import TaskStore
from chalicelib.tasks import Status, Task, utcnow


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    base_seconds: float = 2.0
    max_seconds: float = 300.0

    def delay(self, attempt: int) -> float:
        """Exponential backoff after attempt number `attempt` (1, 2, ...)."""
        return min(self.base_seconds * 2 ** (attempt - 1), self.max_seconds)


class Worker:
    def __init__(self, store: TaskStore, queue: TaskQueue, work_delay_seconds: float = 0.1,
                 retry: RetryPolicy = RetryPolicy(), lease_seconds: float = 120.0,
                 stale_after_seconds: float = 900.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._store = store
        self._queue = queue
        self._work_delay = work_delay_seconds
        self._retry = retry
        self._lease = timedelta(seconds=lease_seconds)
        self._stale_after = timedelta(seconds=stale_after_seconds)
        self._sleep = sleep

    def process_batch(self, messages: Iterable[Tuple[str, str, str]]) -> List[str]:
        """Process (message id, receipt handle, body) triples; the ids of the
        messages to deliver again. Each message stands alone: one that fails is
        reported and the others are still processed and acknowledged."""
        failed = []
        for message_id, receipt_handle, body in messages:
            try:
                done = self.process(receipt_handle, body)
            except Exception as exc:  # reported for redelivery, never swallowed
                logs.problem("message failed; it will be delivered again",
                             message_id=message_id, error=f"{type(exc).__name__}: {exc}")
                done = False
            if not done:
                failed.append(message_id)
        return failed

    def process(self, receipt_handle: str, body: str) -> bool:
        """Run the task a message names. True when the message can be deleted,
        False when it must come back (a retry, already scheduled on the queue)."""
        try:
            task_id = task_id_of(body)
        except ValueError:
            logs.problem("message names no task; dropped", body=body[:200])
            return True
        started = time.perf_counter()
        now = utcnow()
        task = self._store.claim(task_id, now, lease_until=now + self._lease)
        if task is None:
            # Final already (a redelivery, or cancelled) or never accepted.
            logs.note("message for a task that is final or unknown; acknowledged", task_id=task_id)
            return True
        logs.state_change(task)
        if task.attempts > self._retry.max_attempts:
            # Earlier attempts died without recording an outcome (killed workers).
            last = f": {task.error}" if task.error else ""
            self._give_up(task, receipt_handle, body,
                          f"gave up after {task.attempts - 1} attempts that did not finish{last}")
            return True
        if self._work_delay:
            self._sleep(self._work_delay)
        try:
            result = actions.run(task.action, task.data)
        except actions.ActionError as exc:
            self._finish(task, Status.FAILED, started, error=str(exc))
            return True
        except Exception as exc:  # the action broke: retry with backoff, then dead-letter
            error = f"{type(exc).__name__}: {exc}"
            if task.attempts >= self._retry.max_attempts:
                self._give_up(task, receipt_handle, body, error)
                return True
            return self._schedule_retry(task, receipt_handle, error)
        self._finish(task, Status.COMPLETED, started, result=result)
        return True

    def _finish(self, task: Task, outcome: Status, started: float, result=None, error=None) -> None:
        if self._store.finish(task.id, task.attempts, outcome, utcnow(), result=result, error=error):
            logs.state_change(task.moved_to(outcome, error=error),
                              duration_ms=(time.perf_counter() - started) * 1000)
        else:
            logs.note("a newer attempt owns this task; outcome discarded",
                      task_id=task.id, attempt=task.attempts)

    def _schedule_retry(self, task: Task, receipt_handle: str, error: str) -> bool:
        delay = self._retry.delay(task.attempts)
        due = utcnow() + timedelta(seconds=delay) + self._stale_after
        requeued = self._store.requeue(task.id, task.attempts, due, error=error)
        if requeued is None:
            return True  # a newer attempt owns the task; this message is spent
        self._queue.retry_later(receipt_handle, delay)
        logs.state_change(requeued, retry_in_s=delay, error=error)
        return False

    def _give_up(self, task: Task, receipt_handle: str, body: str, error: str) -> None:
        self._finish(task, Status.FAILED, time.perf_counter(), error=error)
        self._queue.dead_letter(receipt_handle, body)
        logs.note("message moved to the dead-letter queue", task_id=task.id, attempts=task.attempts)
