"""Running the tasks that messages name."""
from __future__ import annotations

import time
from typing import Callable, Iterable, List, Tuple

from chalicelib import actions, logs
from chalicelib.queue.base import task_id_of
from chalicelib.store import TaskStore
from chalicelib.tasks import Status, utcnow


class Worker:
    def __init__(self, store: TaskStore, work_delay_seconds: float = 0.1,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._store = store
        self._work_delay = work_delay_seconds
        self._sleep = sleep

    def process_batch(self, messages: Iterable[Tuple[str, str]]) -> List[str]:
        """Process (message id, body) pairs; the ids of the messages to deliver again.

        Each message stands alone: one that fails is reported and the others
        are still processed and acknowledged.
        """
        failed = []
        for message_id, body in messages:
            try:
                self.process(body)
            except Exception as exc:  # reported for redelivery, never swallowed
                logs.problem("message failed; it will be delivered again",
                             message_id=message_id, error=f"{type(exc).__name__}: {exc}")
                failed.append(message_id)
        return failed

    def process(self, body: str) -> None:
        """Run the task a message names, once. Returns when the message can be deleted."""
        try:
            task_id = task_id_of(body)
        except ValueError:
            logs.problem("message names no task; dropped", body=body[:200])
            return
        started = time.perf_counter()
        task = self._store.claim(task_id, utcnow())
        if task is None:
            # Final already (a redelivery of a finished task) or never accepted.
            logs.note("message for a task that is final or unknown; acknowledged", task_id=task_id)
            return
        logs.state_change(task)
        if self._work_delay:
            self._sleep(self._work_delay)
        try:
            result, error, outcome = actions.run(task.action, task.data), None, Status.COMPLETED
        except actions.ActionError as exc:
            result, error, outcome = None, str(exc), Status.FAILED
        if self._store.finish(task.id, task.attempts, outcome, utcnow(), result=result, error=error):
            duration_ms = (time.perf_counter() - started) * 1000
            logs.state_change(task.moved_to(outcome), duration_ms=duration_ms)
        else:
            logs.problem("a newer attempt owns this task; result discarded",
                         task_id=task.id, attempt=task.attempts)
