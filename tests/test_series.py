"""GET /stats/series: per-minute throughput by outcome, and wait and run percentiles."""
import json
from collections import Counter
from datetime import datetime, timezone

import pytest

from chalicelib import series
from chalicelib.local.runtime import build_dispatcher
from tests.conftest import post_empty, post_task
from tests.stacks import stack  # noqa: F401 (a fixture)


def get_series(client, query=""):
    response = client.http.get(f"/stats/series{query}")
    return response.status_code, json.loads(response.body)


def moment(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


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


def test_each_task_of_a_batch_shows_its_own_start_and_finish(stack, monkeypatch, capsys):
    monkeypatch.setenv("TASKS_WORK_DELAY_MS", "100")
    monkeypatch.setenv("TASKS_METRICS", "emf")
    ids = [stack.submit({"action": "uppercase", "data": {"text": str(n)}})["id"] for n in range(5)]
    capsys.readouterr()
    assert stack.deliver() == 5  # one batch: claimed together, run one after another
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    emf = {line["task_id"]: line for line in printed if "_aws" in line}
    tasks = sorted((stack.task(task_id) for task_id in ids), key=lambda task: task["started_at"])
    for task in tasks:
        started, finished = moment(task["started_at"]), moment(task["finished_at"])
        # Its own 100 ms of work, not the batch's 500 ms from the claim to the outcomes' commit.
        assert 0.1 <= finished - started < 0.3, task
        assert emf[task["id"]]["RunTime"] == pytest.approx((finished - started) * 1000, abs=0.01)
        assert emf[task["id"]]["QueueWait"] == pytest.approx((started - moment(task["created_at"])) * 1000, abs=0.01)
    for before, after in zip(tasks, tasks[1:]):
        assert moment(after["started_at"]) >= moment(before["finished_at"])
    _, body = get_series(stack.client, "?minutes=2")
    runs = [point["run_ms"] for point in body["points"] if point["run_ms"]]
    assert runs and max(run["p99"] for run in runs) < 300
