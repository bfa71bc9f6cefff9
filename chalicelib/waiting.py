"""Reads that wait for a task to be final (GET /tasks/{id}?wait=N), and how many may.

Each waiting read registers under its task's id. Where the store announces the
outcomes it commits in this process (SQLite: the worker runs inside `chalice
local`), an outcome wakes only the reads waiting on that task: a read costs one
task read when it starts and one when its task is final, however many other tasks
finish meanwhile. Elsewhere (DynamoDB, whose outcomes come from other processes)
a read polls its task with backoff.

A waiting read holds a request thread, so a process lets at most `limit` of them
wait at once; one past that is refused (TooManyWaiters: a 503 with Retry-After).
"""
from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING, Dict, Iterator, Optional, Set

if TYPE_CHECKING:
    from chalicelib.store.base import TaskStore
    from chalicelib.tasks import Task

# Polling, where outcomes are not announced: 0.1 s doubling to 1 s, about one read a waiting second.
FIRST_PAUSE_SECONDS = 0.1
LONGEST_PAUSE_SECONDS = 1.0


class TooManyWaiters(RuntimeError):
    """As many reads as the process allows wait already; the message says what to do."""


class Waiters:
    """The reads waiting in this process, by task id, at most `limit` at once."""

    def __init__(self, limit: int = 100) -> None:
        self.limit = limit
        self.announced = False  # set once a store announces its outcomes to finished()
        self._lock = threading.Lock()
        self._by_task: Dict[str, Set[threading.Event]] = {}
        self._count = 0

    @classmethod
    def on(cls, store: "TaskStore", limit: int = 100) -> "Waiters":
        """A registry woken by `store`'s announced outcomes, where it announces them."""
        waiters = cls(limit)
        waiters.announced = store.on_outcome(waiters.finished)
        return waiters

    @property
    def count(self) -> int:
        """How many reads wait now."""
        return self._count

    @contextlib.contextmanager
    def waiting_for(self, task_id: str) -> Iterator[threading.Event]:
        """An event set when `task_id`'s outcome is announced, while the block runs."""
        woken = threading.Event()
        with self._lock:
            if self._count >= self.limit:
                raise TooManyWaiters(
                    f"{self.limit} reads are waiting on this server already (TASKS_MAX_WAITERS); read the "
                    "task without ?wait, or try again after Retry-After")
            self._count += 1
            self._by_task.setdefault(task_id, set()).add(woken)
        try:
            yield woken
        finally:
            with self._lock:
                self._count -= 1
                waiting = self._by_task[task_id]
                waiting.discard(woken)
                if not waiting:
                    del self._by_task[task_id]

    def finished(self, task_id: str) -> None:
        """Wake the reads waiting on `task_id` (its outcome is committed), and no others."""
        with self._lock:
            waiting = list(self._by_task.get(task_id, ()))
        for woken in waiting:
            woken.set()


def wait_final(store: "TaskStore", waiters: Waiters, task_id: str, seconds: float) -> Optional["Task"]:
    """The task as soon as it is final, or as it is after `seconds` (None if there is none).
    Raises TooManyWaiters when `waiters` is full."""
    deadline = time.monotonic() + seconds
    pause = FIRST_PAUSE_SECONDS
    with waiters.waiting_for(task_id) as woken:
        while True:
            woken.clear()  # before the read: an outcome committed after it still wakes this one
            task = store.get(task_id)
            remaining = deadline - time.monotonic()
            if task is None or task.status.is_final or remaining <= 0:
                return task
            woken.wait(remaining if waiters.announced else min(pause, remaining))
            pause = min(pause * 2, LONGEST_PAUSE_SECONDS)
