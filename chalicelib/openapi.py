"""The OpenAPI 3 document of the HTTP API, served at GET /openapi.json.

Built from the same constants the code validates with, so the limits and
statuses it states cannot drift from what the service does.
"""
from __future__ import annotations

import functools

from chalicelib.store.base import CURSOR_PATTERN
from chalicelib.tasks import Status
from chalicelib.validation import ACTION_PATTERN, DEFAULT_LIMIT, MAX_ACTION_LENGTH, MAX_KEY_LENGTH, MAX_LIMIT

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


_TASK_ID = {"name": "task_id", "in": "path", "required": True,
            "schema": {"type": "string"}, "description": "The task's id (a UUID)"}
_LOCATION = {"Location": {"schema": {"type": "string"}, "description": "/tasks/<id>"}}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_TASK_LINKS = {
    name: {"operationId": operation, "parameters": {"task_id": "$response.body#/id"}}
    for name, operation in (("GetTask", "getTask"), ("CancelTask", "cancelTask"), ("RetryTask", "retryTask"))
}


@functools.lru_cache(maxsize=None)
def _document() -> dict:
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
                        "400": _problem("Invalid JSON, action or data"),
                        "413": _problem("Body over the size limit"),
                        "415": _problem("Body is not application/json"),
                        "422": _problem("Idempotency-Key reused with a different body"),
                        "503": _problem("The queue is unavailable; nothing was stored"),
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
                    ],
                    "responses": {
                        "200": _ok("A page of tasks", "TaskList"),
                        "400": _problem("Unknown status, bad limit or cursor"),
                    },
                },
            },
            "/tasks/{task_id}": {
                "parameters": [_TASK_ID],
                "get": {
                    "operationId": "getTask",
                    "summary": "One task",
                    "responses": {"200": _ok("The task", "Task"), "404": _problem("No such task")},
                },
                "delete": {
                    "operationId": "cancelTask",
                    "summary": "Cancel a queued task",
                    "responses": {
                        "200": _ok("The cancelled task", "Task"),
                        "404": _problem("No such task"),
                        "409": _problem("The task is running or final"),
                    },
                },
            },
            "/tasks/{task_id}/retry": {
                "parameters": [_TASK_ID],
                "post": {
                    "operationId": "retryTask",
                    "summary": "Queue a failed task again",
                    "responses": {
                        "202": _ok("Queued again", "Accepted", _LOCATION),
                        "404": _problem("No such task"),
                        "409": _problem("The task is not failed"),
                    },
                },
            },
            "/stats": {
                "get": {
                    "operationId": "stats",
                    "summary": "Counts per status, queue depth, age of the oldest queued task",
                    "responses": {"200": _ok("The figures", "Stats")},
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
            "NewTask": {
                "type": "object",
                "required": ["action"],
                "properties": {
                    "action": {"type": "string", "minLength": 1, "maxLength": MAX_ACTION_LENGTH,
                               "pattern": ACTION_PATTERN, "examples": ["uppercase", "sum"]},
                    "data": {"type": ["object", "null"], "examples": [{"text": "hello world"}]},
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
                             "created_at", "started_at", "finished_at"],
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
                "required": ["counts", "total", "queue", "oldest_queued_age_seconds"],
                "properties": {
                    "counts": {"type": "object", "required": statuses,
                               "additionalProperties": {"type": "integer", "minimum": 0}},
                    "total": {"type": "integer", "minimum": 0},
                    "queue": {"type": ["object", "null"], "properties": {
                        "waiting": {"type": "integer"}, "in_flight": {"type": "integer"},
                        "dead_letter": {"type": ["integer", "null"]}}},
                    "oldest_queued_age_seconds": {"type": ["number", "null"]},
                },
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
                },
            },
        }},
    }


def document() -> dict:
    return _document()
