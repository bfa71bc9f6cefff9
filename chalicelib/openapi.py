"""The OpenAPI 3 document of the HTTP API, served at GET /openapi.json.

Built from the same constants the code validates with, so the limits and
statuses it states cannot drift from what the service does.
"""
from __future__ import annotations

from chalicelib import actions, series
from chalicelib.store.base import CURSOR_PATTERN
from chalicelib.tasks import Status
from chalicelib.validation import (ACTION_PATTERN, DEFAULT_LIMIT, MAX_ACTION_LENGTH, MAX_DEPTH, MAX_KEY_LENGTH,
                                   MAX_DELAY_SECONDS, MAX_LIMIT, MAX_WAIT_SECONDS)

_JSON = "application/json"
_PROBLEM = "application/problem+json"


def _problem(description: str) -> dict:
    return {"description": description,
            "content": {_PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def _ok(description: str, schema: str, status_headers: dict = None) -> dict:
    response = {"description": description,
                "content": {_JSON: {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}
    if status_headers:
        response["headers"] = status_headers
    return response


_RETRY_AFTER = {"Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait before trying again"}}
_UNAVAILABLE = {**_problem("The store or the queue cannot be reached just now; try again"),
                "headers": _RETRY_AFTER}
_WAIT_UNAVAILABLE = {**_problem(
    "The store cannot be reached just now; or, with ?wait, TASKS_MAX_WAITERS reads already wait in this "
    "process (Retry-After: 1): read without ?wait, or try again"), "headers": _RETRY_AFTER}
_NOT_JSON = _problem("A body sent as another type than Content-Type: application/json")
_CROSS_SITE = _problem("Sent by a browser from a page on another origin (an Origin that is not this server's, "
                       "or Sec-Fetch-Site: cross-site): no other site's page may change tasks")
# Operations that take no input: no body at all (`curl -X POST`), or an empty object.
# Other sites' pages are kept out by their Origin (see same_origin.py), not by the body.
_NO_INPUT = {"required": False, "content": {_JSON: {
    "schema": {"type": "object", "maxProperties": 0}, "examples": {"empty": {"value": {}}}}}}
_TASK_ID = {"name": "task_id", "in": "path", "required": True,
            "schema": {"type": "string"}, "description": "The task's id (a UUID)"}
_LOCATION = {"Location": {"schema": {"type": "string"}, "description": "/tasks/<id>"},
             "X-Request-Id": {"schema": {"type": "string"},
                              "description": "The request's id, kept with the task and in every log line about it"}}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_TASK_LINKS = {
    name: {"operationId": operation, "parameters": {"task_id": "$response.body#/id"}}
    for name, operation in (("GetTask", "getTask"), ("CancelTask", "cancelTask"), ("RetryTask", "retryTask"),
                            ("DeleteTask", "deleteTask"))
}


def _new_task(declared: dict, reject_unknown: bool) -> dict:
    """The submit body: one branch per declared action, whose data schema is the
    very object the action declared (and validates with), and one for any other
    action unless those are refused."""
    branches = [{"properties": {"action": {"const": name}, "data": (
        {"type": ["object", "null"]} if found.schema is None else {"anyOf": [{"type": "null"}, found.schema]})}}
        for name, found in sorted(declared.items())]
    if not reject_unknown:
        branches.append({"properties": {"action": {"not": {"enum": sorted(declared)}}}})
    return {
        "type": "object",
        "required": ["action"],
        "properties": {
            "action": {"type": "string", "minLength": 1, "maxLength": MAX_ACTION_LENGTH,
                       "pattern": ACTION_PATTERN, "examples": sorted(declared)},
            "data": {"type": ["object", "null"], "examples": [{"text": "hello world"}]},
            "delay_seconds": {"type": ["number", "null"], "minimum": 0, "maximum": MAX_DELAY_SECONDS,
                              "description": "Start no sooner than this many seconds from now (at most a year)"},
            "run_at": {"type": ["string", "null"], "format": "date-time",
                       "description": "Start no sooner than this time (RFC 3339 with its offset, at most a "
                                      "year ahead; a time past starts at once)"},
        },
        "not": {"required": ["delay_seconds", "run_at"],
                "properties": {"delay_seconds": {"type": "number"}, "run_at": {"type": "string"}}},
        # No branch at all (nothing declared, unknown ones refused): no action is accepted.
        "anyOf": branches or [{"not": {}}],
    }


def _document(declared: dict, reject_unknown: bool) -> dict:
    statuses = [status.value for status in Status]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Task Queue", "version": "1.0.0",
                 "description": "Queue tasks for background processing and read their results."},
        "paths": {
            "/tasks": {
                "post": {
                    "operationId": "createTask",
                    "summary": "Store a task and queue it",
                    "parameters": [{
                        "name": "Idempotency-Key", "in": "header", "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH,
                                   "pattern": "^[ -~]+$"},
                        "description": "Repeat a request safely: the same key and body return the first task",
                    }],
                    "requestBody": {"required": True, "content": {
                        _JSON: {"schema": {"$ref": "#/components/schemas/NewTask"}}}},
                    "responses": {
                        "202": {**_ok("Accepted and queued", "Accepted", _LOCATION), "links": _TASK_LINKS},
                        "400": _problem(f"A request this document rules out: invalid JSON, action or data "
                                        f"(data that does not match its action's "
                                        f"schema names the field in `pointer`), data nested over {MAX_DEPTH} "
                                        "levels, or text with a lone surrogate"),
                        "403": _CROSS_SITE,
                        "413": _problem("Body over the size limit"),
                        "415": _NOT_JSON,
                        "422": _problem("A request this document allows that cannot be done: a run_at more "
                                        "than a year ahead (the bound moves with the clock, so no schema "
                                        "states it), or an Idempotency-Key reused with a different body"),
                        "503": _UNAVAILABLE,
                    },
                },
                "get": {
                    "operationId": "listTasks",
                    "summary": "Tasks, newest first",
                    "parameters": [
                        {"name": "status", "in": "query", "required": False,
                         "schema": {"type": "string", "enum": statuses}},
                        {"name": "limit", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                                    "default": DEFAULT_LIMIT}},
                        {"name": "cursor", "in": "query", "required": False,
                         "schema": {"type": "string", "pattern": CURSOR_PATTERN},
                         "description": "next_cursor from the previous page"},
                        {"name": "action", "in": "query", "required": False,
                         "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ACTION_LENGTH,
                                    "pattern": ACTION_PATTERN},
                         "description": "Only tasks of this action (alone or with status)"},
                    ],
                    "responses": {
                        "200": _ok("A page of tasks", "TaskList"),
                        "400": _problem("Unknown status, bad limit, cursor or action"),
                        "503": _UNAVAILABLE,
                    },
                },
            },
            "/tasks/{task_id}": {
                "parameters": [_TASK_ID],
                "get": {
                    "operationId": "getTask",
                    "summary": "One task; with ?wait=N, as soon as it is final or after N seconds",
                    "parameters": [{
                        "name": "wait", "in": "query", "required": False,
                        "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
                        "description": "Seconds to wait for the task to complete, fail or be cancelled; "
                                       "the answer is the task as it then is",
                    }],
                    "responses": {"200": _ok("The task", "Task"), "400": _problem("wait out of range"),
                                  "404": _problem("No such task"), "503": _WAIT_UNAVAILABLE},
                },
                "delete": {
                    "operationId": "deleteTask",
                    "summary": "Delete a completed, failed or cancelled task, and its Idempotency-Key",
                    "responses": {
                        "204": {"description": "Deleted: reads answer 404 and lists leave it out"},
                        "403": _CROSS_SITE,
                        "404": _problem("No such task"),
                        "409": _problem("The task is queued or running"),
                        "415": _NOT_JSON,
                        "503": _UNAVAILABLE,
                    },
                },
            },
            "/tasks/{task_id}/cancel": {
                "parameters": [_TASK_ID],
                "post": {
                    "operationId": "cancelTask",
                    "summary": "Cancel a queued task; its message is dropped when it arrives",
                    "requestBody": _NO_INPUT,
                    "responses": {
                        "200": _ok("The cancelled task", "Task"),
                        "400": _problem("A body that is not {}"),
                        "403": _CROSS_SITE,
                        "404": _problem("No such task"),
                        "409": _problem("The task is running or final"),
                        "415": _NOT_JSON,
                        "503": _UNAVAILABLE,
                    },
                },
            },
            "/tasks/{task_id}/retry": {
                "parameters": [_TASK_ID],
                "post": {
                    "operationId": "retryTask",
                    "summary": "Queue a failed task again",
                    "requestBody": _NO_INPUT,
                    "responses": {
                        "202": _ok("Queued again", "Accepted", _LOCATION),
                        "400": _problem("A body that is not {}"),
                        "403": _CROSS_SITE,
                        "404": _problem("No such task"),
                        "409": _problem("The task is not failed"),
                        "415": _NOT_JSON,
                        "503": _UNAVAILABLE,
                    },
                },
            },
            "/actions": {
                "get": {
                    "operationId": "listActions",
                    "summary": "The declared actions: their data schemas and limits",
                    "responses": {"200": _ok("The actions", "Actions")},
                },
            },
            "/stats": {
                "get": {
                    "operationId": "stats",
                    "summary": "Counts per status, queue depth, age of the oldest queued task",
                    "responses": {"200": _ok("The figures", "Stats"), "503": _UNAVAILABLE},
                },
            },
            "/stats/series": {
                "get": {
                    "operationId": "statsSeries",
                    "summary": "Per minute: tasks completed, failed and cancelled; queue wait and run time "
                               "p50/p95/p99",
                    "description": "Read from per-minute records that each outcome adds to when it is "
                                   "written, so the cost depends on the window, not on the tasks stored. "
                                   "Percentiles come from logarithmic histograms (eight buckets a doubling: "
                                   "within about 5%). Actions other than the known ones are counted as "
                                   "\"other\".",
                    "parameters": [
                        {"name": "minutes", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 1, "maximum": series.MAX_MINUTES, "default": 60}},
                        {"name": "action", "in": "query", "required": False,
                         "schema": {"type": "string", "enum": sorted(actions.ACTIONS) + [series.OTHER_ACTION]}},
                    ],
                    "responses": {
                        "200": _ok("One point a minute, oldest first", "Series"),
                        "400": _problem("minutes out of range, or an unknown action"),
                        "503": _UNAVAILABLE,
                    },
                },
            },
            "/": {
                "get": {
                    "operationId": "dashboard",
                    "summary": "The dashboard page",
                    "responses": {"200": {"description": "HTML",
                                          "content": {"text/html": {"schema": {"type": "string"}}}}},
                },
            },
            "/assets/{name}": {
                "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                "get": {
                    "operationId": "dashboardAsset",
                    "summary": "The dashboard's script and style sheet",
                    "responses": {
                        "200": {"description": "JavaScript or CSS", "content": {
                            "text/javascript": {"schema": {"type": "string"}},
                            "text/css": {"schema": {"type": "string"}}}},
                        "404": _problem("No such file"),
                    },
                },
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1 document",
                                          "content": {_JSON: {"schema": {"type": "object"}}}}},
                },
            },
        },
        "components": {"schemas": {
            "NewTask": _new_task(declared, reject_unknown),
            "Actions": {
                "type": "object",
                "required": ["actions", "unknown_actions"],
                "properties": {
                    "actions": {"type": "array", "items": {
                        "type": "object",
                        "required": ["name", "description", "schema", "max_attempts", "retry_base_s",
                                     "retry_max_s", "timeout_s"],
                        "properties": {
                            "name": {"type": "string"}, "description": {"type": "string"},
                            "schema": {"type": ["object", "null"],
                                       "description": "JSON Schema of the task's data, checked at submit"},
                            "max_attempts": {"type": "integer", "minimum": 1},
                            "retry_base_s": {"type": "number", "minimum": 0},
                            "retry_max_s": {"type": "number", "minimum": 0},
                            "timeout_s": {"type": "number", "exclusiveMinimum": 0},
                        }}},
                    "unknown_actions": {"type": "string", "enum": ["accept", "reject"],
                                        "description": "accept: other actions output \"processed\"; "
                                                       "reject: they are a 400"},
                },
            },
            "Accepted": {
                "type": "object",
                "required": ["id", "status"],
                "properties": {"id": {"type": "string", "format": "uuid"},
                               "status": {"type": "string", "enum": statuses}},
            },
            "Task": {
                "type": "object",
                "required": ["id", "action", "data", "status", "result", "error", "attempts",
                             "created_at", "started_at", "finished_at", "request_id", "run_at"],
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "action": {"type": "string"},
                    "data": {"type": "object"},
                    "status": {"type": "string", "enum": statuses},
                    "result": {},
                    "error": {"type": ["string", "null"]},
                    "attempts": {"type": "integer", "minimum": 0},
                    "created_at": {"type": "string", "format": "date-time"},
                    "started_at": _TIME,
                    "finished_at": _TIME,
                    "request_id": {"type": ["string", "null"],
                                   "description": "The id of the request that made the task"},
                    "run_at": {**_TIME, "description": "A delayed task's start time: it stays queued until "
                                                       "then (null: at once)"},
                },
            },
            "TaskList": {
                "type": "object",
                "required": ["tasks", "count", "next_cursor"],
                "properties": {
                    "tasks": {"type": "array", "items": {"$ref": "#/components/schemas/Task"}},
                    "count": {"type": "integer", "minimum": 0},
                    "next_cursor": {"type": ["string", "null"]},
                },
            },
            "Stats": {
                "type": "object",
                "required": ["counts", "total", "queue", "oldest_queued_age_seconds", "oldest_queued_age_known"],
                "description": "Exact on SQLite. On DynamoDB the counts are approximate, from counter items "
                               "that each request or worker batch adds to when it ends: they lag by a batch "
                               "and never add up to more than the tasks counted in.",
                "properties": {
                    "counts": {"type": "object", "required": statuses,
                               "additionalProperties": {"type": "integer", "minimum": 0}},
                    "total": {"type": "integer", "minimum": 0},
                    "queue": {"type": ["object", "null"], "properties": {
                        "waiting": {"type": "integer"}, "in_flight": {"type": "integer"},
                        "delayed": {"type": "integer",
                                    "description": "Messages of delayed tasks the queue holds until their time"},
                        "dead_letter": {"type": ["integer", "null"]}}},
                    "oldest_queued_age_known": {
                        "type": "boolean",
                        "description": "false on the cloud stage: its age is the queue's metric, not the store's"},
                    "oldest_queued_age_seconds": {
                        "type": ["number", "null"],
                        "description": "null when nothing is queued, or on the cloud stage, whose table keeps "
                                       "no index of queued tasks (the queue's ApproximateAgeOfOldestMessage "
                                       "metric has it)"},
                },
            },
            "Series": {
                "type": "object",
                "required": ["minutes", "action", "points"],
                "properties": {
                    "minutes": {"type": "integer"},
                    "action": {"type": ["string", "null"]},
                    "points": {"type": "array", "items": {
                        "type": "object",
                        "required": ["minute", "completed", "failed", "cancelled", "wait_ms", "run_ms"],
                        "properties": {
                            "minute": {"type": "string", "format": "date-time"},
                            **{outcome: {"type": "integer", "minimum": 0} for outcome in series.OUTCOMES},
                            "wait_ms": {"$ref": "#/components/schemas/Percentiles"},
                            "run_ms": {"$ref": "#/components/schemas/Percentiles"},
                        },
                    }},
                },
            },
            "Percentiles": {
                "type": ["object", "null"],
                "description": "null in a minute with no such time recorded",
                "properties": {name: {"type": "number", "minimum": 0} for name, _ in series.PERCENTILES},
            },
            "Problem": {
                "type": "object",
                "required": ["status", "title", "detail", "error"],
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "error": {"type": "string"},
                    "pointer": {"type": "string",
                                "description": "JSON pointer to the part of the body at fault, such as /data/text"},
                },
            },
        }},
    }


def document() -> dict:
    """Built on each call (about a tenth of a millisecond): it follows the declared
    actions and TASKS_UNKNOWN_ACTIONS."""
    from chalicelib import factory

    return _document(actions.ACTIONS, factory.catalog().reject_unknown)
