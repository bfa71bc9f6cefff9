"""Running the tasks that messages name: once each, with retries and a dead-letter queue."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Callable, Iterable, List, Optional, Tuple, TypeVar, Union

from chalicelib import actions, logs
from chalicelib.catalog import Catalog
from chalicelib.metrics import NoMetrics
from chalicelib.queue import TaskQueue
from chalicelib.queue.base import message_of
from chalicelib.retry import RetryPolicy
from chalicelib.store import TaskStore
from chalicelib.tasks import Status, Task, utcnow

T = TypeVar("T")

MAX_ERROR_CHARS = 2000  # an exception's text can quote the data; a task stores only this much of it

# Failures that the same data would meet again: the task fails at once, unretried.
# An action says so with ActionError, and its message is kept as it is (so is a
# schema's DataMismatch); arithmetic on the data (an overflow, a division by
# zero) is as deterministic.
REFUSED = (actions.ActionError, actions.DataMismatch)
PERMANENT = (ArithmeticError,)


def error_text(exc: BaseException) -> str:
    """What a task's `error` says of an exception."""
    if isinstance(exc, REFUSED):
        return str(exc)[:MAX_ERROR_CHARS]
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]


class Next(Enum):
    """What follows a failed attempt."""

    RETRY = "retry"  # the task is queued again, its message hidden for the backoff
    GIVE_UP = "give up"  # the last attempt: the task fails and its message is dead-lettered
    FAIL = "fail"  # the same data would fail again: the task fails at once, its message is done


def after_failure(error: BaseException, attempt: int, policy: RetryPolicy) -> Next:
    """What follows attempt number `attempt` of a series failing with `error`."""
    if isinstance(error, REFUSED + PERMANENT):
        return Next.FAIL
    if attempt >= policy.max_attempts:
        return Next.GIVE_UP
    return Next.RETRY


@dataclass(frozen=True)
class Delivery:
    """A message of a batch that names a task."""

    message_id: str
    receipt_handle: str
    body: str
    task_id: str


@dataclass(frozen=True)
class Outcome:
    """What an attempt came to, to be written with the other outcomes of its batch.

    Its own start and finish travel with it: a batch claims its tasks together
    and writes their outcomes together, so neither write's time is the attempt's."""

    task: Task  # as its claim left it
    status: Status
    started_at: datetime  # its turn came: just before the action ran
    finished_at: datetime  # just after the action returned
    result: Any = None
    error: Optional[str] = None

    @property
    def run_ms(self) -> float:
        return (self.finished_at - self.started_at).total_seconds() * 1000


class Handled(Enum):
    """A message dealt with that leaves no outcome to write."""

    DONE = "done"  # acknowledged: its task is final or unknown, or it was dead-lettered
    AGAIN = "again"  # it must be delivered again: a retry is scheduled, or the store failed for it


class Worker:
    def __init__(self, store: TaskStore, queue: TaskQueue, work_delay_seconds: float = 0.1,
                 catalog: Optional[Catalog] = None,
                 stale_after_seconds: float = 900.0,
                 sleep: Callable[[float], None] = time.sleep, metrics=NoMetrics()) -> None:
        self._store = store
        self._queue = queue
        self._work_delay = work_delay_seconds
        self._catalog = catalog or Catalog(actions.ACTIONS, RetryPolicy())
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
        deliveries: List[Delivery] = []
        again: List[str] = []
        named = set()  # the tasks this batch's messages name so far
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
                again.append(message_id)
                continue
            if message.task_id in named:
                # Two messages for one task (recovery re-published it while the first
                # still waited): the first carries the task; claiming it twice would run
                # the action twice. This one is acknowledged, and the task keeps one message.
                logs.note("second message for a task in one batch; acknowledged", task_id=message.task_id)
                continue
            named.add(message.task_id)
            deliveries.append(Delivery(message_id, receipt_handle, body, message.task_id))
        try:
            claims = self._claim_all(deliveries)
        except Exception as exc:  # the batch's transaction failed: every message comes back
            logs.problem("could not claim the batch; it will be delivered again",
                         error=f"{type(exc).__name__}: {exc}", messages=len(deliveries))
            # With the early ones, already sent back until their time: acknowledged, they would be lost.
            return again + [delivery.message_id for delivery in deliveries]
        outcomes: List[Tuple[Delivery, Outcome]] = []
        for delivery, claimed in zip(deliveries, claims):
            handled = claimed if claimed is Handled.AGAIN else self._guarded(delivery, self._run, delivery, claimed)
            if isinstance(handled, Outcome):
                outcomes.append((delivery, handled))
            elif handled is Handled.AGAIN:
                again.append(delivery.message_id)
        try:
            with self._store.batch():
                written = [self._guarded(delivery, self._record, outcome) for delivery, outcome in outcomes]
        except Exception as exc:  # the batch's transaction failed: its outcomes come back
            logs.problem("could not record the batch's outcomes; it will be delivered again",
                         error=f"{type(exc).__name__}: {exc}", messages=len(outcomes))
            return again + [delivery.message_id for delivery, _ in outcomes]
        for (delivery, outcome), stored in zip(outcomes, written):
            if stored is Handled.AGAIN:
                again.append(delivery.message_id)
            else:
                self._announce(outcome, stored)
        return again

    @staticmethod
    def _guarded(delivery: Delivery, call: Callable[..., T], *args: Any) -> Union[T, Handled]:
        """call(*args), or Handled.AGAIN (logged) when it raises: one message's store
        error must not fail the others of its batch, nor end the thread that runs
        it, whatever it raises short of Ctrl-C."""
        try:
            return call(*args)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            logs.problem("message failed; it will be delivered again",
                         message_id=delivery.message_id, error=f"{type(exc).__name__}: {exc}")
            return Handled.AGAIN

    def _claim_all(self, deliveries: List[Delivery]) -> List[Union[Task, None, Handled]]:
        """Each delivery's task as claimed (None: final or unknown), in order."""
        now = utcnow()
        # A claim lost in a power cut only means the attempt runs again. No lease:
        # the message's visibility timeout brings it back if this worker dies.
        with self._store.batch(durable=False):
            claims = [self._guarded(delivery, self._store.claim, delivery.task_id, now) for delivery in deliveries]
        for claimed in claims:
            if isinstance(claimed, Task):
                logs.state_change(claimed)
        return claims

    def _run(self, delivery: Delivery, task: Optional[Task]) -> Union[Outcome, Handled]:
        """Run the claimed task's action: the outcome to write, or how the message was handled."""
        if task is None:
            # Final already (a redelivery, or cancelled) or never accepted.
            logs.note("message for a task that is final or unknown; acknowledged", task_id=delivery.task_id)
            return Handled.DONE
        started_at = utcnow()
        attempt = task.attempt_in_series
        declared = self._catalog.action(task.action)
        policy = self._catalog.policy(task.action)
        if attempt > policy.max_attempts:
            # Earlier attempts died without recording an outcome (killed workers).
            last = f": {task.error}" if task.error else ""
            return self._give_up(delivery, Outcome(
                task, Status.FAILED, started_at, started_at,
                error=f"gave up after {attempt - 1} attempts that did not finish{last}"))
        if self._work_delay:
            self._sleep(self._work_delay)
        try:
            if declared is not None:
                declared.check(task.data)  # data stored before its action's schema changed
            result = actions.run(task.action, task.data)
        except KeyboardInterrupt:  # Ctrl-C stops the worker, not the task
            raise
        except BaseException as exc:  # the action broke, refused its data, ran out of time or called sys.exit
            failed = Outcome(task, Status.FAILED, started_at, utcnow(), error=error_text(exc))
            decided = after_failure(exc, attempt, policy)
            if decided is Next.FAIL:
                return failed
            if decided is Next.GIVE_UP:
                return self._give_up(delivery, failed)
            return self._schedule_retry(delivery, failed, policy)
        finished_at = utcnow()
        unstorable = self._store.unstorable_result(task, result)
        if unstorable is not None:
            return Outcome(task, Status.FAILED, started_at, finished_at, error=unstorable)
        return Outcome(task, Status.COMPLETED, started_at, finished_at, result=result)

    def _record(self, outcome: Outcome) -> bool:
        """Write an outcome; False when a newer attempt owns its task."""
        return self._store.finish(outcome.task.id, outcome.task.attempts, outcome.status, outcome.finished_at,
                                  result=outcome.result, error=outcome.error, started_at=outcome.started_at)

    def _announce(self, outcome: Outcome, written: bool) -> None:
        """Log an outcome, and emit its metrics, once its write is committed."""
        task = outcome.task
        if not written:
            logs.note("a newer attempt owns this task; outcome discarded", task=task, attempt=task.attempts)
            return
        finished = task.moved_to(outcome.status, error=outcome.error, started_at=outcome.started_at,
                                 finished_at=outcome.finished_at)
        logs.state_change(finished, duration_ms=outcome.run_ms)
        counted = "TasksCompleted" if outcome.status is Status.COMPLETED else "TasksFailed"
        self._measure(outcome, {counted: 1, "RunTime": round(outcome.run_ms, 3)})

    def _measure(self, outcome: Outcome, values: dict) -> None:
        task = outcome.task
        values["QueueWait"] = round((outcome.started_at - task.ready_at).total_seconds() * 1000, 3)
        self._metrics.record(task.action, values, task_id=task.id, request_id=task.request_id)

    def _schedule_retry(self, delivery: Delivery, failed: Outcome, policy: RetryPolicy) -> Handled:
        """AGAIN once the task is queued again and its message hidden for the backoff;
        DONE when a newer attempt owns the task, which spends this message."""
        task = failed.task
        delay = policy.delay(task.attempt_in_series)
        due = utcnow() + timedelta(seconds=delay) + self._stale_after
        requeued = self._store.requeue(task.id, task.attempts, due, error=failed.error)
        if requeued is None:
            return Handled.DONE
        self._queue.retry_later(delivery.receipt_handle, delay)
        logs.state_change(requeued, retry_in_s=delay, error=failed.error)
        self._measure(failed, {"TasksRetried": 1})
        return Handled.AGAIN

    def _give_up(self, delivery: Delivery, outcome: Outcome) -> Handled:
        """Fail the task now, on its own, and move its message to the dead-letter queue."""
        task = outcome.task
        self._announce(outcome, self._record(outcome))
        self._queue.dead_letter(delivery.receipt_handle, delivery.body)
        logs.note("message moved to the dead-letter queue", task=task, attempts=task.attempts)
        self._metrics.record(task.action, {"TasksDeadLettered": 1}, task_id=task.id, request_id=task.request_id)
        return Handled.DONE
