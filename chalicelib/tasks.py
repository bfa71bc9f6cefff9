"""The task record, its statuses and the transitions between them."""
from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Optional


class Status(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL


FINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})


# Which states each state may be entered from.
# - RUNNING -> RUNNING is a new attempt after a redelivery: the worker that held
#   the task died or lost its message; the attempt number tells the two apart.
# - RUNNING -> QUEUED schedules a retry, or recovers a task whose worker died.
# - QUEUED -> QUEUED re-publishes a task whose message was lost.
# - FAILED -> QUEUED is an operator's retry.
# - QUEUED -> FAILED: the queue gave up on the task's message (chalicelib/dead_letters.py);
#   an attempt's own outcome is recorded only from RUNNING (TaskStore.finish).
# A final task may also be deleted, which is not a transition: it leaves no state.
_SOURCES = {
    Status.QUEUED: frozenset({Status.RUNNING, Status.QUEUED, Status.FAILED}),
    Status.RUNNING: frozenset({Status.QUEUED, Status.RUNNING}),
    Status.COMPLETED: frozenset({Status.RUNNING}),
    Status.FAILED: frozenset({Status.RUNNING, Status.QUEUED}),
    Status.CANCELLED: frozenset({Status.QUEUED}),
}


class IllegalTransition(ValueError):
    """A state change the task lifecycle does not allow."""


def sources_of(to: Status) -> frozenset:
    """The statuses a task may be in to move to `to`."""
    return _SOURCES[to]


def check_transition(frm: Status, to: Status) -> None:
    if frm not in _SOURCES[to]:
        raise IllegalTransition(f"a {frm.value} task cannot become {to.value}")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def format_time(moment: Optional[datetime]) -> Optional[str]:
    """RFC 3339 in UTC with microseconds, e.g. 2026-11-23T04:02:11.123456Z."""
    if moment is None:
        return None
    # isoformat, not strftime: strftime's %Y does not pad years before 1000 to four digits.
    return moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def to_micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: Optional[int]) -> Optional[datetime]:
    if micros is None:
        return None
    return _EPOCH + timedelta(microseconds=micros)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Task:
    id: str
    action: str
    data: dict
    status: Status
    created_at: datetime
    attempts: int = 0
    result: Any = None
    error: Optional[str] = None
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    # When a task that is not final should have moved on; past it, recovery
    # re-publishes the task. None once the task is final.
    due_at: Optional[datetime] = None
    # Attempt numbers only grow, so that a worker of an earlier series can never
    # match a later one; an operator's retry starts a series where they stand.
    series_start: int = 0
    # The Idempotency-Key the task was submitted with, so that deleting the task
    # deletes the key's record too.
    idempotency_key: Optional[str] = None
    # The id of the request that made it, carried by every log line about it.
    request_id: Optional[str] = None
    # When a delayed task may start (None: at once). It stays queued until then.
    run_at: Optional[datetime] = None

    @classmethod
    def new(cls, action: str, data: dict, now: Optional[datetime] = None,
            due_at: Optional[datetime] = None, task_id: Optional[str] = None,
            idempotency_key: Optional[str] = None, request_id: Optional[str] = None,
            run_at: Optional[datetime] = None) -> "Task":
        now = now or utcnow()
        return cls(
            id=task_id or str(uuid.uuid4()),
            action=action,
            data=data,
            status=Status.QUEUED,
            created_at=now,
            due_at=due_at,
            idempotency_key=idempotency_key,
            request_id=request_id,
            run_at=run_at,
        )

    @property
    def ready_at(self) -> datetime:
        """When the task could first start: a delayed task's run_at, else its creation.
        Its queue wait is counted from here."""
        return self.run_at if self.run_at is not None and self.run_at > self.created_at else self.created_at

    @property
    def awaiting_publish(self) -> bool:
        """Delayed past what a message can be held for: queued with no message yet, due
        (at run_at) for the scheduled function to publish. A publish moves due_at on."""
        return self.status is Status.QUEUED and self.run_at is not None and self.due_at == self.run_at

    @property
    def attempt_in_series(self) -> int:
        """Which attempt of the current series the latest one is (1, 2, ...)."""
        return self.attempts - self.series_start

    def moved_to(self, to: Status, **fields: Any) -> "Task":
        check_transition(self.status, to)
        return replace(self, status=to, **fields)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "action": self.action,
            "data": self.data,
            "status": self.status.value,
            "result": self.result,
            "error": self.error,
            "attempts": self.attempts,
            "created_at": format_time(self.created_at),
            "started_at": format_time(self.started_at),
            "finished_at": format_time(self.finished_at),
            "request_id": self.request_id,
            "run_at": format_time(self.run_at),
        }


@dataclass(frozen=True)
class Page:
    tasks: list = field(default_factory=list)
    next_cursor: Optional[str] = None

    def to_json(self) -> dict:
        return {
            "tasks": [task.to_json() for task in self.tasks],
            "count": len(self.tasks),
            "next_cursor": self.next_cursor,
        }
