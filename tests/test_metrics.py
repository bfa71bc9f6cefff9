"""The worker's CloudWatch metrics: EMF lines on stdout, checked against the schema
chalicelib/metrics.py documents."""
import json

import pytest

from chalicelib.metrics import NAMESPACE, UNITS
from tests.conftest import declare_action, post_task
from tests.sqs_events import lambda_event, receive_all


def emf_lines(text: str) -> list:
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if "_aws" in line]


def check_schema(line: dict) -> None:
    """What CloudWatch needs to extract a metric, and what we promise besides."""
    aws = line["_aws"]
    assert isinstance(aws["Timestamp"], int) and aws["Timestamp"] > 1_600_000_000_000
    [directive] = aws["CloudWatchMetrics"]
    assert directive["Namespace"] == NAMESPACE
    assert directive["Dimensions"] == [["Action"], []]
    assert directive["Metrics"]
    for metric in directive["Metrics"]:
        assert metric["Unit"] == UNITS[metric["Name"]]
        assert isinstance(line[metric["Name"]], (int, float))  # every metric has its value
    assert isinstance(line["Action"], str) and line["task_id"]


@pytest.fixture
def emf(monkeypatch):
    monkeypatch.setenv("TASKS_METRICS", "emf")


def test_each_outcome_is_an_emf_line_with_its_action(cloud_like, emf, capsys, monkeypatch):
    client, sqs, url = cloud_like
    declare_action(monkeypatch, "flaky", lambda data: (_ for _ in ()).throw(ConnectionError("down")))
    monkeypatch.setenv("TASKS_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("TASKS_RETRY_BASE_S", "0")
    done = json.loads(post_task(client, {"action": "uppercase", "data": {"text": "x"}}).body)["id"]
    bad = json.loads(post_task(client, {"action": "sum", "data": {"numbers": [1e308, 1e308]}}).body)["id"]
    other = json.loads(post_task(client, {"action": "made-up-name-42"}).body)["id"]
    flaky = json.loads(post_task(client, {"action": "flaky"}).body)["id"]
    capsys.readouterr()
    for _ in range(2):  # the flaky task's two attempts
        client.lambda_.invoke("process_tasks", lambda_event(sqs, url, receive_all(sqs, url, expected=4)))
    lines = emf_lines(capsys.readouterr().out)
    for line in lines:
        check_schema(line)
    by_task = {}
    for line in lines:
        by_task.setdefault(line["task_id"], []).append(line)
    [completed] = by_task[done]
    assert completed["Action"] == "uppercase" and completed["TasksCompleted"] == 1
    assert completed["RunTime"] >= 0 and completed["QueueWait"] >= 0
    assert by_task[bad][0]["TasksFailed"] == 1 and by_task[bad][0]["Action"] == "sum"
    assert by_task[other][0]["Action"] == "other"  # a client's action names cannot multiply metrics
    flaky_metrics = [name for line in by_task[flaky] for name in line if name in UNITS and name != "QueueWait"]
    assert "TasksRetried" in flaky_metrics and "TasksDeadLettered" in flaky_metrics
    assert "TasksFailed" in flaky_metrics


def test_no_emf_outside_lambda_unless_asked(client, capsys):
    from chalicelib.local.runtime import build_dispatcher
    from app import app

    post_task(client, {"action": "sum"})
    capsys.readouterr()
    build_dispatcher(app).drain()
    assert emf_lines(capsys.readouterr().out) == []
