"""HTTP errors beyond Chalice's own, and one JSON shape for every error response.

Errors follow RFC 9457 (problem+json) and also carry an `error` sentence,
the key the seed's clients read.
"""
from __future__ import annotations

import functools
import json
from http import HTTPStatus

from chalice import Response


PROBLEM_JSON = "application/problem+json"

_MESSAGES = {
    415: "send the body as JSON with the header Content-Type: application/json",
    500: "the service failed to handle the request; it has been logged",
}


def problem(status: int, detail: str, headers: dict = None, pointer: str = None) -> Response:
    """A problem+json response; `pointer` (RFC 6901) names the part of the body at fault."""
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "error": detail,
    }
    if pointer is not None:
        body["pointer"] = pointer
    return Response(
        body=json.dumps(body),
        status_code=status,
        headers={**(headers or {}), "Content-Type": PROBLEM_JSON},
    )


def as_problem(response: Response) -> Response:
    """Rewrite Chalice's `{"Code", "Message"}` error bodies as problem+json."""
    body = response.body
    if response.status_code < 400 or not isinstance(body, dict) or "Code" not in body:
        return response
    status = response.status_code
    detail = _MESSAGES.get(status) or str(body.get("Message", "")) or HTTPStatus(status).phrase
    if status == 415:
        detail = f"{body.get('Message', 'unsupported media type')}: {detail}"
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-type"}
    return problem(status, detail, headers)


RETRY_AFTER_SECONDS = 5
# A waiting read's place frees as soon as its task is final or its wait ends.
WAITERS_RETRY_AFTER_SECONDS = 1


def translated(view):
    """Answer the service's own errors as problem+json (inside the view, where
    Chalice would otherwise answer any other exception with a bare 500)."""
    from chalicelib import logs
    from chalicelib.service import KeyReused, QueueUnavailable, TaskNotFound, WrongState
    from chalicelib.store import InvalidCursor, StoreError
    from chalicelib.validation import InvalidInput
    from chalicelib.waiting import TooManyWaiters

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except InvalidInput as exc:
            return problem(exc.status, str(exc), pointer=exc.pointer)
        except InvalidCursor as exc:
            return problem(400, str(exc))
        except TaskNotFound as exc:
            return problem(404, str(exc))
        except WrongState as exc:
            return problem(409, str(exc))
        except KeyReused as exc:
            return problem(422, str(exc))
        except TooManyWaiters as exc:
            return problem(503, str(exc), {"Retry-After": str(WAITERS_RETRY_AFTER_SECONDS)})
        except QueueUnavailable as exc:
            return problem(503, str(exc), {"Retry-After": str(RETRY_AFTER_SECONDS)})
        except StoreError as exc:
            logs.problem("store unavailable", route=view.__name__, error=str(exc), **kwargs)
            return problem(503, "the task store cannot be read or written just now; try again shortly "
                                "(with an Idempotency-Key, a repeat cannot make a second task)",
                           {"Retry-After": str(RETRY_AFTER_SECONDS)})

    return wrapper
