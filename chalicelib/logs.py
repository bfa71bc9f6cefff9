"""One JSON line per task state change, readable in a terminal and in CloudWatch."""
from __future__ import annotations

import json
import logging
from typing import Optional

from chalicelib.tasks import Task

logger = logging.getLogger("task_queue")
logger.setLevel(logging.INFO)


def state_change(task: Task, duration_ms: Optional[float] = None, **extra) -> None:
    line = {"event": "task_state", "task_id": task.id, "action": task.action,
            "status": task.status.value, "attempt": task.attempts}
    if duration_ms is not None:
        line["duration_ms"] = round(duration_ms, 3)
    line.update(extra)
    logger.info(json.dumps(line))


def problem(message: str, **fields) -> None:
    logger.error(json.dumps({"event": "error", "message": message, **fields}))


def note(message: str, **fields) -> None:
    logger.info(json.dumps({"event": "note", "message": message, **fields}))
