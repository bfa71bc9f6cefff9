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


def _log(level: int, line: dict, function: str) -> None:
    """logger.log(level, the line as JSON), without the search up the stack for the
    calling function that logging makes for every record: the caller is always
    `function`, here, and the search was a third of a line's cost (two lines a task)."""
    if logger.isEnabledFor(level):
        logger.handle(logger.makeRecord(logger.name, level, __file__, 0, json.dumps(_with_request(line)),
                                        None, None, function))


def state_change(task: Task, duration_ms: Optional[float] = None, **extra) -> None:
    line = {"event": "task_state", "task_id": task.id, "request_id": task.request_id, "action": task.action,
            "status": task.status.value, "attempt": task.attempts}
    if duration_ms is not None:
        line["duration_ms"] = round(duration_ms, 3)
    line.update(extra)
    _log(logging.INFO, line, "state_change")


def _about(task: Optional[Task]) -> dict:
    return {} if task is None else {"task_id": task.id, "request_id": task.request_id}


def problem(message: str, task: Optional[Task] = None, **fields) -> None:
    """An error line; about `task` if given (its id and its request's id)."""
    _log(logging.ERROR, {"event": "error", "message": message, **_about(task), **fields}, "problem")


def note(message: str, task: Optional[Task] = None, **fields) -> None:
    _log(logging.INFO, {"event": "note", "message": message, **_about(task), **fields}, "note")
