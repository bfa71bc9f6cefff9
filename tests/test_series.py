"""GET /stats/series: per-minute throughput by outcome, and wait and run percentiles."""
import json
from collections import Counter
from datetime import datetime, timezone

import pytest

from chalicelib import series
from chalicelib.local.runtime import build_dispatcher
from tests.conftest import post_empty, post_task


def get_series(client, query=""):
    response = client.http.get(f"/stats/series{query}")
    return response.status_code, json.loads(response.body)


def totals(body):
    return {outcome: sum(point[outcome] for point in body["points"]) for outcome in series.OUTCOMES}


def test_series_counts_each_outcome_in_its_minute(client, chalice_app):
    for numbers in ([1, 2], [3], [4, 5, 6]):
        assert post_task(client, {"action": "sum", "data": {"numbers": numbers}}).status_code == 202
    assert post_task(client, {"action": "sum", "data": {"numbers": [1e308, 1e308]}}).status_code == 202  # fails at once
    assert post_task(client, {"action": "uppercase", "data": {"text": "a"}}).status_code == 202
    doomed = json.loads(post_task(client, {"action": "sum"}).body)["id"]
    assert post_empty(client, f"/tasks/{doomed}/cancel").status_code == 200
    build_dispatcher(chalice_app).drain()
    status, body = get_series(client, "?minutes=5")
    assert status == 200 and body["minutes"] == 5 and len(body["points"]) == 5
    assert totals(body) == {"completed": 4, "failed": 1, "cancelled": 1}
    recent = [point for point in body["points"] if point["completed"]]
    assert all(point["wait_ms"]["p50"] <= point["wait_ms"]["p95"] <= point["wait_ms"]["p99"] for point in recent)
    assert all(point["run_ms"]["p50"] > 0 for point in recent)
    _, only_sum = get_series(client, "?minutes=5&action=sum")
    assert totals(only_sum) == {"completed": 3, "failed": 1, "cancelled": 1}
    _, only_uppercase = get_series(client, "?minutes=5&action=uppercase")
    assert totals(only_uppercase) == {"completed": 1, "failed": 0, "cancelled": 0}


@pytest.mark.parametrize("query, says", [
    ("?minutes=0", "minutes must be a whole number from 1 to 1440"),
    ("?minutes=1441", "minutes must be a whole number from 1 to 1440"),
    ("?minutes=ten", "minutes must be a whole number"),
    ("?action=nope", "action must be one of"),
])
def test_bad_series_queries_are_400_with_a_sentence(client, query, says):
    status, body = get_series(client, query)
    assert status == 400 and says in body["error"]


def test_percentiles_come_from_the_merged_histograms():
    now = datetime(2026, 11, 23, 12, 0, 30, tzinfo=timezone.utc)
    minute = series.minute_of(now)
    runs = Counter(f"r{series.bucket(ms)}" for ms in range(1, 101))
    body = series.window({(minute, "sum"): runs + Counter(completed=100)}, now, 1)
    [point] = body["points"]
    assert point["completed"] == 100 and point["wait_ms"] is None
    for name, true_value in (("p50", 50), ("p95", 95), ("p99", 99)):
        assert abs(point["run_ms"][name] - true_value) <= 0.05 * true_value + 1


def test_unknown_actions_share_one_record():
    from chalicelib.tasks import Task

    task = Task.new("made-up-name", {}, now=datetime.now(timezone.utc))
    [(_, action)] = series.record_of(task, {"sum"})
    assert action == series.OTHER_ACTION
