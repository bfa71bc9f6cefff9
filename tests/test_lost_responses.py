"""DynamoDB applied a write whose response was lost, and botocore sent it again: the
retry fails its own condition, and the service must take that for the success it was."""
import json

import pytest

from chalicelib import factory
from tests.lost_responses import LostResponse, outcome_update, task_put
from tests.stacks import Stack


@pytest.fixture
def cloud(client, chalice_app, dynamodb_store):
    """The API on DynamoDB and SQS under moto, and the DynamoDB client the store uses."""
    sqs, url = dynamodb_store
    return Stack(client, chalice_app, sqs, url), factory.aws_client("dynamodb", "request")


def stats(stack) -> dict:
    return json.loads(stack.client.http.get("/stats").body)


def series_totals(stack) -> dict:
    points = json.loads(stack.client.http.get("/stats/series?minutes=2").body)["points"]
    return {outcome: sum(point[outcome] for point in points) for outcome in ("completed", "failed", "cancelled")}


def test_a_submit_whose_put_response_was_lost_is_accepted_published_and_run(cloud):
    stack, dynamodb = cloud
    lost = LostResponse(dynamodb, "PutItem", task_put)
    task = stack.submit({"action": "sum", "data": {"numbers": [1, 2]}})  # a 202, not a 503
    assert len(lost.lost) == 1 and lost.lost[0]["Item"]["id"]["S"] == task["id"]
    assert task["status"] == "queued" and stack.messages() == 1
    assert stats(stack)["counts"]["queued"] == 1  # counted once
    assert stack.deliver() == 1
    assert stack.task(task["id"])["result"] == {"output": 3}
    assert stats(stack)["counts"] == {"queued": 0, "running": 0, "completed": 1, "failed": 0, "cancelled": 0}


def test_a_keyed_submit_whose_key_record_response_was_lost_is_its_own_first_request(cloud):
    stack, dynamodb = cloud
    lost = LostResponse(dynamodb, "PutItem", lambda body: body["Item"]["id"]["S"].startswith("idempotency-key#"))
    response = stack.client.http.post("/tasks", body=json.dumps({"action": "sum", "data": {"numbers": [4]}}),
                                      headers={"Content-Type": "application/json", "Idempotency-Key": "once"})
    assert len(lost.lost) == 1
    assert response.status_code == 202 and response.headers.get("Idempotent-Replayed") != "true"
    assert stack.messages() == 1 and stack.deliver() == 1
    assert stack.task(json.loads(response.body)["id"])["result"] == {"output": 4}


def test_an_outcome_whose_response_was_lost_is_counted_once_in_stats_and_series(cloud):
    stack, dynamodb = cloud
    task = stack.submit({"action": "sum", "data": {"numbers": [5, 6]}})
    lost = LostResponse(dynamodb, "UpdateItem", outcome_update)
    assert stack.deliver() == 1
    assert len(lost.lost) == 1
    assert stack.task(task["id"])["status"] == "completed"
    assert stats(stack)["counts"] == {"queued": 0, "running": 0, "completed": 1, "failed": 0, "cancelled": 0}
    assert series_totals(stack) == {"completed": 1, "failed": 0, "cancelled": 0}
    assert stack.messages() == 0  # acknowledged: no second run
