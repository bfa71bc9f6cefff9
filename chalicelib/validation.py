"""Turning request input into values the service accepts, or a sentence saying what to fix."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable, Mapping, Optional

from chalicelib import numbers
from chalicelib.store.base import decode_cursor
from chalicelib.tasks import Status, utcnow

MAX_ACTION_LENGTH = 200
# An action needs one character that is not white space, white space as JSON
# Schema's (ECMAScript's) \s defines it, so that the OpenAPI document and this
# check agree on every string.
ACTION_PATTERN = r"[^\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
_ACTION = re.compile(ACTION_PATTERN)
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# How deeply a body may nest arrays and objects (the body itself is level 1):
# anything stored can then be encoded again, by every store, without recursion limits.
MAX_DEPTH = 64
_SURROGATE = re.compile("[\ud800-\udfff]")
# Methods whose requests change nothing, and so need no check of their body's type.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class InvalidInput(ValueError):
    """Input a client sent that the service cannot accept; the message says what to fix.

    400 for input the OpenAPI document rules out; 422 for a well-formed request, one
    the document allows, that cannot be done (a run_at the clock puts too far ahead).
    """

    def __init__(self, message: str, status: int = 400, pointer: Optional[str] = None) -> None:
        super().__init__(message)
        self.status = status
        self.pointer = pointer  # a JSON pointer to the part of the body at fault, where one is


# How far ahead a task may be scheduled: a year. (How long a queue holds a message
# itself is queue.base.MAX_MESSAGE_DELAY_SECONDS.)
MAX_DELAY_SECONDS = 31_536_000


@dataclass(frozen=True)
class NewTask:
    action: str
    data: dict
    # As sent: a delay in seconds, or a time (aware); at most one of them.
    delay_seconds: Optional[float] = None
    run_at: Optional[datetime] = None

    def start_time(self, now: datetime) -> Optional[datetime]:
        """When the task may start, or None for at once."""
        if self.delay_seconds:
            return now + timedelta(seconds=self.delay_seconds)
        return self.run_at


@dataclass(frozen=True)
class ListQuery:
    status: Optional[Status]
    limit: int
    cursor: Optional[str]
    action: Optional[str] = None


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is too large")
    return value


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def media_type_problem(method: str, headers: Mapping[str, str], has_body: bool) -> Optional[str]:
    """Why a request that may change state cannot be taken as JSON, or None.

    Only `application/json` itself (with parameters such as charset) is JSON here:
    Chalice's own check finds `application/json` inside `text/plain;application/json`,
    a type a web page can make a browser send. A request without a body needs no
    type (`curl -X POST .../cancel`); one with a body must say it is JSON. Requests
    that other sites' pages make a browser send are refused before this, by their
    Origin (see same_origin.py).
    """
    if method.upper() in SAFE_METHODS:
        return None
    content_type = headers.get("content-type")
    if content_type is None:
        if has_body:
            return "Content-Type is missing: send the body as JSON with Content-Type: application/json"
        return None
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" or "," in content_type:
        return (f"Content-Type {content_type!r} is not JSON: send the body as JSON with "
                "Content-Type: application/json")
    return None


def _json_value(raw_body: bytes):
    """The body as JSON of sensible depth and valid Unicode, or a 400 saying what to fix."""
    try:
        body = json.loads(raw_body or b"", parse_float=_finite, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"invalid JSON: {exc}") from None
    _check_values(body)
    return body


def _check_values(body) -> None:
    """Refuse nesting deeper than MAX_DEPTH and strings with lone UTF-16 surrogates
    (valid JSON escapes, but not text that any store can encode)."""
    stack = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            strings, children = list(value), value.values()
        elif isinstance(value, list):
            strings, children = [], value
        else:
            strings, children = [value] if isinstance(value, str) else [], ()
        if children and depth > MAX_DEPTH:
            raise InvalidInput(f"the body nests arrays and objects more than {MAX_DEPTH} levels deep; "
                               "flatten it")
        stack.extend((child, depth + 1) for child in children)
        if any(_SURROGATE.search(text) for text in strings):
            raise InvalidInput("the body holds a lone UTF-16 surrogate escape (such as \\ud800), "
                               "which is not text; send valid Unicode")


def parse_new_task(raw_body: bytes, max_bytes: int) -> NewTask:
    if len(raw_body) > max_bytes:
        raise InvalidInput(f"request body is {len(raw_body)} bytes; the limit is {max_bytes} bytes", 413)
    body = _json_value(raw_body)
    if not isinstance(body, dict):
        raise InvalidInput('action required: send a JSON object such as {"action": "uppercase", "data": {"text": "hi"}}')
    action = body.get("action")
    if action is None:
        raise InvalidInput("action required: add an \"action\" string to the body")
    if not isinstance(action, str) or not _ACTION.search(action):
        raise InvalidInput("action required: \"action\" must be a non-empty string")
    if len(action) > MAX_ACTION_LENGTH:
        raise InvalidInput(f"action is longer than {MAX_ACTION_LENGTH} characters")
    data = body.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidInput("data must be a JSON object, for example {\"text\": \"hello\"}")
    return NewTask(action=action, data=data, **_schedule(body))


def _schedule(body: dict) -> dict:
    """delay_seconds or run_at, checked: a delay from 0 to a year, or an RFC 3339 time
    with its offset no more than a year ahead (a time past runs at once)."""
    if body.get("delay_seconds") is not None and body.get("run_at") is not None:
        raise InvalidInput("send delay_seconds or run_at, not both", pointer="/run_at")
    delay = body.get("delay_seconds")
    if delay is not None:
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay <= MAX_DELAY_SECONDS:
            raise InvalidInput(f"delay_seconds must be a number of seconds from 0 to {MAX_DELAY_SECONDS} "
                               f"(a year); got {json.dumps(delay)}", pointer="/delay_seconds")
        return {"delay_seconds": delay}
    run_at = body.get("run_at")
    if run_at is None:
        return {}
    moment = _rfc3339(run_at)
    if moment - utcnow() > timedelta(seconds=MAX_DELAY_SECONDS):
        # A 422, not a 400: the document allows any date-time, and the bound moves with the clock.
        raise InvalidInput(f"run_at {run_at} is more than a year ahead; schedule it within "
                           f"{MAX_DELAY_SECONDS} seconds", status=422, pointer="/run_at")
    return {"run_at": moment}


def _rfc3339(text) -> datetime:
    problem = InvalidInput(f"run_at must be an RFC 3339 time with its offset, such as 2026-12-02T10:00:00Z; "
                           f"got {json.dumps(text)[:100]}", pointer="/run_at")
    if not isinstance(text, str) or len(text) > 40 or not _RFC3339.fullmatch(text):
        raise problem
    try:
        moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        raise problem from None
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:  # within a day of year 1 or year 9999, out of range in UTC
        return datetime.min.replace(tzinfo=timezone.utc) if moment.year == 1 else datetime.max.replace(
            tzinfo=timezone.utc)


# re.ASCII: \d is 0-9 only, not every script's digits.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})", re.ASCII)


def parse_no_input(raw_body: bytes) -> None:
    """The body of an operation that takes no input: none at all, or an empty JSON object, `{}`."""
    if raw_body and (len(raw_body) > 64 or _json_value(raw_body) != {}):
        raise InvalidInput("this operation takes no input: send no body, or {}")


MAX_KEY_LENGTH = 255


def parse_idempotency_key(headers: Mapping[str, str]) -> Optional[str]:
    """The Idempotency-Key header's value, if sent."""
    key = headers.get("idempotency-key")
    if key is None:
        return None
    key = key.strip()
    if key.startswith('"') and key.endswith('"') and len(key) >= 2:
        key = key[1:-1]  # the draft writes the key as a structured-field string
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all(" " <= ch <= "~" for ch in key):
        raise InvalidInput(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")
    return key


def parse_list_query(params: Optional[Mapping[str, str]]) -> ListQuery:
    params = params or {}
    status = params.get("status")
    if status is not None:
        try:
            status = Status(status)
        except ValueError:
            allowed = ", ".join(s.value for s in Status)
            raise InvalidInput(f"status must be one of {allowed}; got {status!r}") from None
    raw_limit = params.get("limit")
    limit = DEFAULT_LIMIT
    if raw_limit is not None:
        try:
            limit = numbers.whole(raw_limit)
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must be a whole number from 1 to {MAX_LIMIT}; got {raw_limit!r}")
    cursor = params.get("cursor")
    if cursor is not None:
        decode_cursor(cursor)  # raises InvalidCursor: a 400 before any query runs
    action = params.get("action")
    if action is not None and (not _ACTION.search(action) or len(action) > MAX_ACTION_LENGTH
                               or _SURROGATE.search(action)):
        raise InvalidInput(f"action must be an action's name, up to {MAX_ACTION_LENGTH} characters "
                           "and not only white space")
    return ListQuery(status=status, limit=limit, cursor=cursor, action=action)


MAX_WAIT_SECONDS = 20  # well inside API Gateway's 29 s


def parse_wait(params: Optional[Mapping[str, str]]) -> Optional[float]:
    """?wait=N: how many seconds (0 to 20) a read may wait for the task to be final."""
    raw = (params or {}).get("wait")
    if raw is None:
        return None
    try:
        seconds = numbers.decimal(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_WAIT_SECONDS:
        raise InvalidInput(f"wait must be a number of seconds from 0 to {MAX_WAIT_SECONDS}; got {raw!r}")
    return seconds


@dataclass(frozen=True)
class SeriesQuery:
    minutes: int
    action: Optional[str]


def parse_series_query(params: Optional[Mapping[str, str]], actions: Iterable[str]) -> SeriesQuery:
    """?minutes=N (1 to 1440, default 60) and ?action=NAME (a known action, or "other")."""
    from chalicelib import series

    params = params or {}
    raw = params.get("minutes", "60")
    try:
        minutes = numbers.whole(raw)
    except ValueError:
        minutes = 0
    if not 1 <= minutes <= series.MAX_MINUTES:
        raise InvalidInput(f"minutes must be a whole number from 1 to {series.MAX_MINUTES}; got {raw!r}")
    action = params.get("action")
    allowed = sorted(actions) + [series.OTHER_ACTION]
    if action is not None and action not in allowed:
        raise InvalidInput(f"action must be one of {', '.join(allowed)} (other: every action not listed); "
                           f"got {action!r}")
    return SeriesQuery(minutes, action)
