"""One JSON line per task state change, readable in a terminal and in CloudWatch.

Every line carries the id of the request it belongs to: the task's own (the
request that made it) for a line about a task, else the request being served."""
from __future__ import annotations

import json
import logging
from typing import Optional

from chalicelib import correlation
from chalicelib.tasks import Task

logger = logging.getLogger("task_queue")
logger.setLevel(logging.INFO)


def _with_request(line: dict) -> dict:
    if line.get("request_id") is None:
        line["request_id"] = correlation.current.get()
    if line["request_id"] is None:
        del line["request_id"]
    return line


def state_change(task: Task, duration_ms: Optional[float] = None, **extra) -> None:
    line = {"event": "task_state", "task_id": task.id, "request_id": task.request_id, "action": task.action,
            "status": task.status.value, "attempt": task.attempts}
    if duration_ms is not None:
        line["duration_ms"] = round(duration_ms, 3)
    line.update(extra)
    logger.info(json.dumps(_with_request(line)))


def _about(task: Optional[Task]) -> dict:
    return {} if task is None else {"task_id": task.id, "request_id": task.request_id}


def problem(message: str, task: Optional[Task] = None, **fields) -> None:
    """An error line; about `task` if given (its id and its request's id)."""
    logger.error(json.dumps(_with_request({"event": "error", "message": message, **_about(task), **fields})))


def note(message: str, task: Optional[Task] = None, **fields) -> None:
    logger.info(json.dumps(_with_request({"event": "note", "message": message, **_about(task), **fields})))
