"""Schemathesis hooks for tests/test_fuzz_openapi.py (loaded through SCHEMATHESIS_HOOKS)."""
import schemathesis


@schemathesis.hook
def map_query(ctx, query):
    """Cap ?wait at one second: a read of a task that is not final waits the whole of
    it, and twenty-second waits would spend the run's time limit sleeping. The
    range itself is tested in tests/test_wait.py."""
    if isinstance(query, dict) and isinstance(query.get("wait"), (int, float)) and query["wait"] > 1:
        query["wait"] = 1
    return query
