"""Finding tasks that stopped moving and setting them going again.

A task whose message may not exist carries a due time: one stored under an
Idempotency-Key before its publish, one whose publish failed, one queued again.
Once due, recovery queues it again and publishes a fresh message.

A task delayed further than a queue holds a message (15 minutes) is stored with
no message, due at its run_at: recovery publishes it in the pass before that
time, held by the queue until then. It is told from a lost one by its due time
being its run_at (Task.awaiting_publish), and counted as "scheduled". (A running
task needs none: its message comes back after the visibility timeout; one
claimed with an explicit lease is taken back when the lease runs out.)
A duplicate message is harmless: the attempt number lets only one run record
an outcome, and a message for a final task is dropped. A missing one is not: a
publish that fails puts the task's due time back, so that the next pass tries
again rather than one `stale_after` later.

A pass publishes every task due, page by page, for as long as its time budget
allows (what is left is the next pass's). It also removes finished tasks past
their retention, in bounded batches of one short transaction each, where the
store does not expire them itself. Each step stands alone: one that fails is
logged and the others still run, and so is one task that cannot be handled.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Callable, Dict, Optional

from chalicelib import logs
from chalicelib.queue import PublishError, TaskQueue
from chalicelib.queue.base import MAX_MESSAGE_DELAY_SECONDS
from chalicelib.store import TaskStore
from chalicelib.tasks import Status, Task, utcnow


# How far ahead a pass publishes delayed tasks: the scheduled function runs every minute.
LOOKAHEAD_SECONDS = 60


class Recovery:
    def __init__(self, store: TaskStore, queue: TaskQueue, stale_after_seconds: float = 900.0,
                 page: int = 100, retention_days: float = 30.0, purge_batch: int = 500,
                 purge_batches: int = 20, budget_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._queue = queue
        self._stale_after = timedelta(seconds=stale_after_seconds)
        self._page = page  # due tasks read at a time
        self._retention = timedelta(days=retention_days)
        self._purge_batch = purge_batch
        self._purge_batches = purge_batches  # a run deletes at most this many batches; the next goes on
        # How long a pass goes on publishing: well inside the function's 60 s, with
        # room left for the purges, which have their own bounds.
        self._budget = budget_seconds
        self._clock = clock

    def run(self) -> Dict[str, int]:
        """One pass; how many tasks it re-published, by the status they were in, how many
        publishes failed (tried again by the next pass), and how many finished tasks it purged."""
        counts = {"queued": 0, "running": 0, "scheduled": 0, "publish_failed": 0, "purged": 0}
        now = utcnow()
        steps = (
            ("publishing due tasks", lambda: self._publish_due(now, counts)),
            ("purging expired keys", lambda: self._store.purge_expired_keys(now)),
            ("folding counts", lambda: self._store.fold_counts(now)),
            ("purging finished tasks", lambda: self._purge_finished(now, counts)),
        )
        for name, step in steps:
            try:
                step()
            except Exception as exc:
                logs.problem("recovery step failed; the pass went on with the others", step=name,
                             error=f"{type(exc).__name__}: {exc}")
        return counts

    def _publish_due(self, now: datetime, counts: Dict[str, int]) -> None:
        # Delayed tasks falling due before the next pass are published now, held by
        # the queue until their time, so they start on time rather than up to a pass late.
        deadline = self._clock() + self._budget
        seen = set()  # a task due again soon after it was handled (a short stale_after) waits for the next pass
        for task in self._store.due(now + timedelta(seconds=LOOKAHEAD_SECONDS), self._page):
            if task.id in seen:
                continue
            if self._clock() >= deadline:
                logs.problem("recovery ran out of time; the next pass publishes the rest",
                             budget_seconds=self._budget, handled=len(seen))
                return
            seen.add(task.id)
            try:
                kind = self._set_going(task, now)
            except Exception as exc:  # one task must not stop the others
                logs.problem("recovery could not handle a due task; skipped", task=task,
                             error=f"{type(exc).__name__}: {exc}")
                continue
            if kind is not None:
                counts[kind] += 1

    def _set_going(self, task: Task, now: datetime) -> Optional[str]:
        """Queue a due task again and publish its message; what it counts as, or None
        when it needed nothing (or moved on meanwhile)."""
        if task.due_at > now and not task.awaiting_publish:
            return None  # watched, and not yet overdue
        hold = task.run_at if task.run_at is not None and task.run_at > now else None
        if task.status is Status.RUNNING:
            kind, reason = "running", f"worker lease expired on attempt {task.attempts}"
            requeued = self._store.requeue(task.id, task.attempts, now + self._stale_after,
                                           error=reason, frm=(Status.RUNNING,))
        elif hold is not None and (hold - now).total_seconds() > MAX_MESSAGE_DELAY_SECONDS:
            # Its publish failed long before its time: wait for the time as a delayed task does.
            self._store.requeue(task.id, task.attempts, hold, frm=(Status.QUEUED,))
            return None
        else:
            kind, reason = (("scheduled", "fell due; message published") if task.awaiting_publish else
                            ("queued", "queued without being taken; message re-published"))
            requeued = self._store.requeue(task.id, task.attempts, (hold or now) + self._stale_after,
                                           frm=(Status.QUEUED,))
        if requeued is None:
            return None  # it moved on meanwhile
        # Queued first, so that the conditional write lets one pass alone publish it.
        try:
            self._queue.publish_task(task.id, hold, series=task.series_start)
        except PublishError as exc:
            self._due_again(task, requeued, exc)
            return "publish_failed"
        logs.state_change(requeued, reason=reason)
        return kind

    def _due_again(self, task: Task, requeued: Task, exc: PublishError) -> None:
        """Put back the due time a task had before a publish that failed, so that the
        next pass tries again (a delayed task stays one awaiting its publish)."""
        restored = self._store.requeue(task.id, requeued.attempts, task.due_at, frm=(Status.QUEUED,))
        logs.problem("recovery could not publish; the next pass tries again" if restored is not None else
                     "recovery could not publish; the task moved on meanwhile", task=task, error=str(exc))

    def _purge_finished(self, now: datetime, counts: Dict[str, int]) -> None:
        for _ in range(self._purge_batches):
            purged = self._store.purge_finished(now - self._retention, self._purge_batch)
            counts["purged"] += purged
            if purged < self._purge_batch:
                break
