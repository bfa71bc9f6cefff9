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
an outcome, and a message for a final task is dropped.

It also removes finished tasks past their retention, in bounded batches of
one short transaction each, where the store does not expire them itself.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Dict

from chalicelib import logs
from chalicelib.queue import PublishError, TaskQueue
from chalicelib.queue.base import MAX_MESSAGE_DELAY_SECONDS
from chalicelib.store import TaskStore
from chalicelib.tasks import Status, utcnow


# How far ahead a pass publishes delayed tasks: the scheduled function runs every minute.
LOOKAHEAD_SECONDS = 60


class Recovery:
    def __init__(self, store: TaskStore, queue: TaskQueue, stale_after_seconds: float = 900.0,
                 batch: int = 100, retention_days: float = 30.0, purge_batch: int = 500,
                 purge_batches: int = 20) -> None:
        self._store = store
        self._queue = queue
        self._stale_after = timedelta(seconds=stale_after_seconds)
        self._batch = batch
        self._retention = timedelta(days=retention_days)
        self._purge_batch = purge_batch
        self._purge_batches = purge_batches  # a run deletes at most this many batches; the next goes on

    def run(self) -> Dict[str, int]:
        """One pass; how many tasks it re-published, by the status they were in, and
        how many finished tasks it purged."""
        counts = {"queued": 0, "running": 0, "scheduled": 0, "publish_failed": 0, "purged": 0}
        now = utcnow()
        # Delayed tasks falling due before the next pass are published now, held by
        # the queue until their time, so they start on time rather than up to a pass late.
        for task in self._store.due(now + timedelta(seconds=LOOKAHEAD_SECONDS), self._batch):
            if task.due_at > now and not task.awaiting_publish:
                continue  # watched, and not yet overdue
            hold = task.run_at if task.run_at is not None and task.run_at > now else None
            if task.status is Status.RUNNING:
                kind, reason = "running", f"worker lease expired on attempt {task.attempts}"
                requeued = self._store.requeue(task.id, task.attempts, now + self._stale_after,
                                               error=reason, frm=(Status.RUNNING,))
            elif hold is not None and (hold - now).total_seconds() > MAX_MESSAGE_DELAY_SECONDS:
                # Its publish failed long before its time: wait for the time as a delayed task does.
                self._store.requeue(task.id, task.attempts, hold, frm=(Status.QUEUED,))
                continue
            else:
                kind, reason = (("scheduled", "fell due; message published") if task.awaiting_publish else
                                ("queued", "queued without being taken; message re-published"))
                requeued = self._store.requeue(task.id, task.attempts, (hold or now) + self._stale_after,
                                               frm=(Status.QUEUED,))
            if requeued is None:
                continue  # it moved on meanwhile
            try:
                self._queue.publish_task(task.id, hold, series=task.series_start)
            except PublishError as exc:
                counts["publish_failed"] += 1  # still queued and due again later
                logs.problem("recovery could not publish", task=task, error=str(exc))
                continue
            counts[kind] += 1
            logs.state_change(requeued, reason=reason)
        self._store.purge_expired_keys(now)
        self._store.fold_counts(now)
        for _ in range(self._purge_batches):
            purged = self._store.purge_finished(now - self._retention, self._purge_batch)
            counts["purged"] += purged
            if purged < self._purge_batch:
                break
        return counts
