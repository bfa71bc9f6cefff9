"""One id from request to result: the request's id, answered in `X-Request-Id`,
kept with the task it made, and carried by every log line about that task (its
acceptance, each attempt, its outcome), so that a search on one id shows them all."""
from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from typing import Mapping, Optional

HEADER = "X-Request-Id"
_SENT = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# The id of the request this thread serves now, for the log lines it writes.
current: ContextVar[Optional[str]] = ContextVar("request_id", default=None)


def request_id_of(context: Optional[Mapping], headers: Mapping[str, str]) -> str:
    """API Gateway's id for the request; where there is none (chalice local), the
    X-Request-Id the client sent, if it is one (letters, digits and ._:-, up to
    128), else a new one. Behind API Gateway a client's header cannot replace its id."""
    gateway_id = (context or {}).get("requestId")
    if gateway_id:
        return str(gateway_id)
    sent = headers.get(HEADER.lower())
    if sent and _SENT.fullmatch(sent):
        return sent
    return str(uuid.uuid4())
