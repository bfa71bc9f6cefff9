"""Schemathesis hooks for tests/test_fuzz_openapi.py (loaded through SCHEMATHESIS_HOOKS)."""
from datetime import datetime, timedelta, timezone

import schemathesis

from chalicelib.validation import MAX_DELAY_SECONDS


@schemathesis.hook
def filter_body(ctx, body):
    """Leave out a run_at more than a year ahead. The service refuses it with a 400, as
    it should; the bound moves with the clock, so no schema can state it, and
    positive_data_acceptance would otherwise count the refusal against the service."""
    if not isinstance(body, dict) or not isinstance(body.get("run_at"), str):
        return True
    try:
        moment = datetime.fromisoformat(body["run_at"].upper().replace("Z", "+00:00"))
        ahead = moment - datetime.now(timezone.utc)
    except (ValueError, TypeError, OverflowError):
        return True  # not a time: the service must refuse it, and the check says so
    return ahead <= timedelta(seconds=MAX_DELAY_SECONDS)


@schemathesis.hook
def map_query(ctx, query):
    """Cap ?wait at one second: a read of a task that is not final waits the whole of
    it, and twenty-second waits would spend the run's time limit sleeping. The
    range itself is tested in tests/test_wait.py."""
    if isinstance(query, dict) and isinstance(query.get("wait"), (int, float)) and query["wait"] > 1:
        query["wait"] = 1
    return query
