"""A task as a DynamoDB item and back. Times are microseconds since the epoch (N),
JSON fields are strings: DynamoDB has no float type."""
from __future__ import annotations

import json
from dataclasses import fields as dataclass_fields
from typing import Any

from chalicelib.tasks import Status, Task, from_micros, to_micros

_TIME_FIELDS = ("created_at", "started_at", "finished_at", "due_at", "run_at")
_JSON_FIELDS = ("data", "result")


def encode(name: str, value: Any) -> dict:
    if name in _TIME_FIELDS:
        return {"N": str(to_micros(value))}
    if name in _JSON_FIELDS:
        return {"S": json.dumps(value)}
    if name in ("attempts", "series_start"):
        return {"N": str(value)}
    if isinstance(value, Status):
        return {"S": value.value}
    return {"S": value}


def decode_item(item: dict) -> Task:
    def number(name):
        return int(item[name]["N"]) if name in item else None

    return Task(
        id=item["id"]["S"],
        action=item["action"]["S"],
        data=json.loads(item["data"]["S"]),
        status=Status(item["status"]["S"]),
        result=json.loads(item["result"]["S"]) if "result" in item else None,
        error=item["error"]["S"] if "error" in item else None,
        attempts=number("attempts"),
        created_at=from_micros(number("created_at")),
        started_at=from_micros(number("started_at")),
        finished_at=from_micros(number("finished_at")),
        due_at=from_micros(number("due_at")),
        series_start=number("series_start") or 0,
        idempotency_key=item["idempotency_key"]["S"] if "idempotency_key" in item else None,
        request_id=item["request_id"]["S"] if "request_id" in item else None,
        run_at=from_micros(number("run_at")),
    )


TASK_FIELDS = frozenset(field.name for field in dataclass_fields(Task))
