"""Running the tasks that messages name: once each, with retries and a dead-letter queue."""
from __future__ import annotations

import math
import time
from datetime import timedelta
from typing import Callable, Iterable, List, Tuple

from chalicelib import actions, logs
from chalicelib.metrics import NoMetrics
from chalicelib.queue import TaskQueue
from chalicelib.queue.base import message_of
from chalicelib.retry import RetryPolicy
from chalicelib.store import TaskStore
from chalicelib.tasks import Status, Task, utcnow


_RETRY = object()  # the message must come back: a retry is scheduled on the queue
_FAILED = object()  # the message must come back: the store failed for it

MAX_ERROR_CHARS = 2000  # an exception's text can quote the data; a task stores only this much of it


def error_text(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]


# Failures that the same data would meet again: the task fails at once, unretried.
# An action says so with ActionError (caught on its own, its message kept as it is);
# arithmetic on the data (an overflow, a division by zero) is as deterministic.
PERMANENT = (ArithmeticError,)


class Worker:
    def __init__(self, store: TaskStore, queue: TaskQueue, work_delay_seconds: float = 0.1,
                 retry: RetryPolicy = RetryPolicy(),
                 stale_after_seconds: float = 900.0,
                 sleep: Callable[[float], None] = time.sleep, metrics=NoMetrics()) -> None:
        self._store = store
        self._queue = queue
        self._work_delay = work_delay_seconds
        self._retry = retry
        self._stale_after = timedelta(seconds=stale_after_seconds)
        self._sleep = sleep
        self._metrics = metrics

    def process_batch(self, messages: Iterable[Tuple[str, str, str]]) -> List[str]:
        """Process (message id, receipt handle, body) triples; the ids of the
        messages to deliver again.

        Each message stands alone: its own claim, action and outcome, so one that
        fails is reported and the others are still acknowledged. The claims of a
        batch are written together, and so are its outcomes (one SQLite
        transaction each), which is what makes a batch cheaper than its messages.
        """
        claimable, failed = [], []
        now = utcnow()
        for message_id, receipt_handle, body in messages:
            try:
                message = message_of(body)
            except ValueError:
                logs.problem("message names no task; dropped", message_id=message_id, body=body[:200])
                continue
            if message.run_at is not None and message.run_at > now:
                # Queues hold a delayed message until its time; one early all the same
                # (clocks that disagree) goes back until then, unclaimed.
                self._queue.retry_later(receipt_handle, math.ceil((message.run_at - now).total_seconds()))
                failed.append(message_id)
                continue
            claimable.append((message_id, receipt_handle, body, message.task_id))
        try:
            claimed = self._claim_all(claimable)
        except Exception as exc:  # the batch's transaction failed: every message comes back
            logs.problem("could not claim the batch; it will be delivered again",
                         error=f"{type(exc).__name__}: {exc}", messages=len(claimable))
            return [message[0] for message in claimable]
        outcomes = []
        for (message_id, receipt_handle, body, task_id), task, started in claimed:
            outcome = task if task is _FAILED else self._guarded(
                self._run, message_id, task_id, task, receipt_handle, body, started)
            if outcome is _RETRY or outcome is _FAILED:
                failed.append(message_id)
            elif outcome is not None:
                outcomes.append((message_id, outcome))
        try:
            with self._store.batch():
                recorded = [(message_id, self._guarded(self._record, message_id, *outcome))
                            for message_id, outcome in outcomes]
        except Exception as exc:  # the batch's transaction failed: its outcomes come back
            logs.problem("could not record the batch's outcomes; it will be delivered again",
                         error=f"{type(exc).__name__}: {exc}", messages=len(outcomes))
            return failed + [message_id for message_id, _ in outcomes]
        for message_id, log_line in recorded:
            if log_line is _FAILED:
                failed.append(message_id)
            else:
                log_line()
        return failed

    @staticmethod
    def _guarded(call, message_id: str, *args):
        """call(*args), or _FAILED (logged) when it raises: one message's store error
        must not fail the others of its batch."""
        try:
            return call(*args)
        except Exception as exc:
            logs.problem("message failed; it will be delivered again",
                         message_id=message_id, error=f"{type(exc).__name__}: {exc}")
            return _FAILED

    def _claim_all(self, claimable: list) -> list:
        now = utcnow()
        # A claim lost in a power cut only means the attempt runs again.
        with self._store.batch(durable=False):
            claimed = [(message, self._guarded(self._claim, message[0], message[3], now), time.perf_counter())
                       for message in claimable]
        for _, task, _ in claimed:
            if task is not None and task is not _FAILED:
                logs.state_change(task)
        return claimed

    def _claim(self, task_id: str, now):
        # No lease: the message's visibility timeout brings it back if this worker dies.
        return self._store.claim(task_id, now)

    def _run(self, task_id: str, task, receipt_handle: str, body: str, started: float):
        """The outcome to record (task, status, started, result, error); None when the
        message is done with already; _RETRY when it must come back."""
        if task is None:
            # Final already (a redelivery, or cancelled) or never accepted.
            logs.note("message for a task that is final or unknown; acknowledged", task_id=task_id)
            return None
        attempt = task.attempt_in_series
        declared = actions.ACTIONS.get(task.action)
        policy = self._retry.for_action(declared)
        if attempt > policy.max_attempts:
            # Earlier attempts died without recording an outcome (killed workers).
            last = f": {task.error}" if task.error else ""
            self._give_up(task, receipt_handle, body,
                          f"gave up after {attempt - 1} attempts that did not finish{last}")
            return None
        if self._work_delay:
            self._sleep(self._work_delay)
        try:
            if declared is not None:
                declared.check(task.data)  # data stored before its action's schema changed
            result = actions.run(task.action, task.data)
        except (actions.ActionError, actions.DataMismatch) as exc:
            return task, Status.FAILED, started, None, str(exc)[:MAX_ERROR_CHARS]
        except PERMANENT as exc:
            return task, Status.FAILED, started, None, error_text(exc)
        except Exception as exc:  # the action broke or ran out of time: retry with backoff, then dead-letter
            error = error_text(exc)
            if attempt >= policy.max_attempts:
                self._give_up(task, receipt_handle, body, error)
                return None
            return self._schedule_retry(task, receipt_handle, error, policy)
        unstorable = self._store.unstorable_result(task, result)
        if unstorable is not None:
            return task, Status.FAILED, started, None, unstorable
        return task, Status.COMPLETED, started, result, None

    def _record(self, task: Task, outcome: Status, started: float, result=None, error=None):
        """Write an outcome; what to emit once it is committed (its log line and metrics)."""
        if self._store.finish(task.id, task.attempts, outcome, utcnow(), result=result, error=error):
            duration_ms = (time.perf_counter() - started) * 1000

            def emit() -> None:
                logs.state_change(task.moved_to(outcome, error=error), duration_ms=duration_ms)
                counted = "TasksCompleted" if outcome is Status.COMPLETED else "TasksFailed"
                self._measure(task, {counted: 1, "RunTime": round(duration_ms, 3)})
            return emit
        return lambda: logs.note("a newer attempt owns this task; outcome discarded",
                                 task=task, attempt=task.attempts)

    def _measure(self, task: Task, values: dict) -> None:
        if task.started_at is not None:
            values["QueueWait"] = round((task.started_at - task.ready_at).total_seconds() * 1000, 3)
        self._metrics.record(task.action, values, task_id=task.id, request_id=task.request_id)

    def _schedule_retry(self, task: Task, receipt_handle: str, error: str, policy: RetryPolicy):
        """_RETRY once the task is queued again and its message hidden for the backoff;
        None when a newer attempt owns the task, which spends this message."""
        delay = policy.delay(task.attempt_in_series)
        due = utcnow() + timedelta(seconds=delay) + self._stale_after
        requeued = self._store.requeue(task.id, task.attempts, due, error=error)
        if requeued is None:
            return None
        self._queue.retry_later(receipt_handle, delay)
        logs.state_change(requeued, retry_in_s=delay, error=error)
        self._measure(task, {"TasksRetried": 1})
        return _RETRY

    def _give_up(self, task: Task, receipt_handle: str, body: str, error: str) -> None:
        self._record(task, Status.FAILED, time.perf_counter(), error=error)()
        self._queue.dead_letter(receipt_handle, body)
        logs.note("message moved to the dead-letter queue", task=task, attempts=task.attempts)
        self._metrics.record(task.action, {"TasksDeadLettered": 1}, task_id=task.id, request_id=task.request_id)
