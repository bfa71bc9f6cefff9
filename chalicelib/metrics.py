"""The worker's metrics, in CloudWatch's Embedded Metric Format: one JSON line per
outcome on standard output, which CloudWatch Logs turns into metrics with no AWS
call. Printed rather than logged: with the functions' JSON log format, Lambda
wraps a logging record in an object of its own, where CloudWatch would not find
the `_aws` block, and passes a JSON line on stdout through as it is.

Schema (a test parses every line against it):

    {"_aws": {"Timestamp": <ms>, "CloudWatchMetrics": [{"Namespace": "TaskQueue",
       "Dimensions": [["Action"], []], "Metrics": [{"Name": ..., "Unit": ...}, ...]}]},
     "Action": <a known action, or "other">, <metric name>: <value>, ...,
     "task_id": ..., "request_id": ...}

Metrics: TasksCompleted, TasksFailed, TasksRetried, TasksDeadLettered (Count);
QueueWait (started - created) and RunTime (Milliseconds) with each outcome.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Callable, Dict, Iterable, Optional

NAMESPACE = "TaskQueue"
OTHER_ACTION = "other"
UNITS = {"TasksCompleted": "Count", "TasksFailed": "Count", "TasksRetried": "Count",
         "TasksDeadLettered": "Count", "QueueWait": "Milliseconds", "RunTime": "Milliseconds"}


class Emf:
    """Writes EMF lines; `actions` bounds the Action dimension (any other is "other"),
    so a client sending arbitrary action names cannot create unbounded metrics."""

    def __init__(self, actions: Iterable[str], write: Callable[[str], None] = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._actions = frozenset(actions)
        self._write = write or (lambda line: print(line, file=sys.stdout, flush=True))
        self._clock = clock

    def record(self, action: str, values: Dict[str, float], **context: Optional[str]) -> None:
        names = [name for name in values if name in UNITS]
        document = {
            "_aws": {"Timestamp": int(self._clock() * 1000), "CloudWatchMetrics": [{
                "Namespace": NAMESPACE, "Dimensions": [["Action"], []],
                "Metrics": [{"Name": name, "Unit": UNITS[name]} for name in names]}]},
            "Action": action if action in self._actions else OTHER_ACTION,
            **{name: values[name] for name in names},
            **{key: value for key, value in context.items() if value is not None},
        }
        self._write(json.dumps(document))


class NoMetrics:
    """Where no one reads EMF (chalice local, tests): nothing is written."""

    def record(self, action: str, values: Dict[str, float], **context: Optional[str]) -> None:
        pass
