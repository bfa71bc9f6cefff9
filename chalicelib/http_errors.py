"""HTTP errors beyond Chalice's own, and one JSON shape for every error response.

Errors follow RFC 9457 (problem+json) and also carry an `error` sentence,
the key the seed's clients read.
"""
from __future__ import annotations

import functools
import json
from http import HTTPStatus

from chalice import (BadRequestError, ChaliceViewError, ConflictError, NotFoundError, Response,
                     UnprocessableEntityError)


class PayloadTooLargeError(ChaliceViewError):
    STATUS_CODE = 413


class UnsupportedMediaTypeError(ChaliceViewError):
    STATUS_CODE = 415


class ServiceUnavailableError(ChaliceViewError):
    STATUS_CODE = 503


PROBLEM_JSON = "application/problem+json"

# Routes whose body is ignored accept any content type (retry takes no body).
ANY_BODY = ["application/json", "text/plain", "application/x-www-form-urlencoded",
            "application/octet-stream", "multipart/form-data"]

_MESSAGES = {
    415: "send the body as JSON with the header Content-Type: application/json",
    500: "the service failed to handle the request; it has been logged",
}


def problem(status: int, detail: str, headers: dict = None) -> Response:
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "error": detail,
    }
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


def translated(view):
    """Turn the service's own errors into HTTP errors (inside the view, where
    Chalice would otherwise answer any other exception with a bare 500)."""
    from chalicelib.service import KeyReused, QueueUnavailable, TaskNotFound, WrongState
    from chalicelib.store import InvalidCursor
    from chalicelib.validation import InvalidInput

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except InvalidInput as exc:
            raise _BY_STATUS[exc.status](str(exc)) from None
        except InvalidCursor as exc:
            raise BadRequestError(str(exc)) from None
        except QueueUnavailable as exc:
            raise ServiceUnavailableError(str(exc)) from None
        except TaskNotFound as exc:
            raise NotFoundError(str(exc)) from None
        except WrongState as exc:
            raise ConflictError(str(exc)) from None
        except KeyReused as exc:
            raise UnprocessableEntityError(str(exc)) from None

    return wrapper


_BY_STATUS = {400: BadRequestError, 413: PayloadTooLargeError, 415: UnsupportedMediaTypeError}
