"""Where tasks live. Backends implement the primitives; the rules live here."""
from __future__ import annotations

import base64
import binascii
import uuid
from abc import ABC, abstractmethod
from datetime import datetime
from typing import Any, Optional, Tuple

from chalicelib.tasks import Page, Status, Task, from_micros, sources_of, to_micros


class StoreError(RuntimeError):
    """The store could not be reached or refused an operation."""


class InvalidCursor(ValueError):
    """A pagination cursor that this service did not hand out."""


def encode_cursor(task: Task) -> str:
    raw = f"{to_micros(task.created_at)}:{task.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Tuple[datetime, str]:
    """(created_at, id) of the last task of the previous page."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        micros, task_id = base64.urlsafe_b64decode(padded.encode("ascii")).decode().split(":")
        created_at = from_micros(int(micros))
        return created_at, str(uuid.UUID(task_id))
    except (ValueError, UnicodeError, binascii.Error, OverflowError) as exc:
        raise InvalidCursor("cursor is not one this service returned; use next_cursor from a previous page") from exc


class TaskStore(ABC):
    @abstractmethod
    def insert(self, task: Task) -> None:
        """Store a new task."""

    @abstractmethod
    def get(self, task_id: str) -> Optional[Task]:
        """The task, or None when there is none with this id."""

    @abstractmethod
    def delete(self, task_id: str) -> None:
        """Forget a task that was never accepted (its message could not be published)."""

    @abstractmethod
    def _page(
        self, status: Optional[Status], limit: int, after: Optional[Tuple[datetime, str]]
    ) -> list:
        """Up to `limit` tasks, newest first (created_at, then id, descending), older than `after`."""

    @abstractmethod
    def _transition(
        self,
        task_id: str,
        frm: frozenset,
        to: Status,
        expect_attempts: Optional[int],
        fields: dict,
        increment_attempts: bool,
    ) -> Optional[Task]:
        """Atomically move a task whose status is in `frm` (and, if given, whose
        attempts equal `expect_attempts`) to `to`, setting `fields`; the task as
        it now is, or None when it was not in such a state."""

    def list(self, status: Optional[Status] = None, limit: int = 100, cursor: Optional[str] = None) -> Page:
        after = decode_cursor(cursor) if cursor else None
        rows = self._page(status, limit + 1, after)
        tasks = rows[:limit]
        next_cursor = encode_cursor(tasks[-1]) if len(rows) > limit else None
        return Page(tasks=tasks, next_cursor=next_cursor)

    def claim(self, task_id: str, now: datetime) -> Optional[Task]:
        """Start a new attempt of a task that is not final; None when it is final or unknown."""
        return self._transition(
            task_id, sources_of(Status.RUNNING), Status.RUNNING, None,
            {"started_at": now}, increment_attempts=True,
        )

    def finish(
        self,
        task_id: str,
        attempt: int,
        to: Status,
        now: datetime,
        result: Any = None,
        error: Optional[str] = None,
    ) -> bool:
        """Record the outcome of attempt number `attempt`; False when a newer
        attempt has taken the task over or it is already final."""
        if not to.is_final:
            raise ValueError(f"{to.value} is not a final status")
        done = self._transition(
            task_id, sources_of(to), to, attempt,
            {"finished_at": now, "result": result, "error": error}, increment_attempts=False,
        )
        return done is not None
