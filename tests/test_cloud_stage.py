"""The cloud stage end to end under moto: API -> SQS -> worker -> DynamoDB -> API,
with resources built as the packaged template declares them."""
import json
import time

import boto3
import pytest
from botocore.exceptions import ClientError
from chalice.test import Client
from moto import mock_aws

from chalicelib import factory
from chalicelib.store.dynamodb import TABLE_SCHEMA
from deploy.template import merge_template
from tests.conftest import PROJECT_DIR, declare_action, post_empty, post_task
from tests.sqs_events import lambda_event, receive_all


@pytest.fixture
def template():
    return merge_template(worker="process_tasks", worker_timeout=30, api_stage="api", auth="iam",
                          max_receive_count=5, routes=[])


@pytest.fixture
def cloud(monkeypatch, template, chalice_app):
    """Moto resources shaped like the template's, and a client on the prod stage."""
    with mock_aws():
        boto3.setup_default_session(region_name="us-east-1")
        sqs = boto3.client("sqs")
        dlq_url = sqs.create_queue(QueueName="tasks-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queue_props = template["Resources"]["TasksQueue"]["Properties"]
        url = sqs.create_queue(QueueName="tasks", Attributes={
            "VisibilityTimeout": str(queue_props["VisibilityTimeout"]),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}),
        })["QueueUrl"]
        table = template["Resources"]["TasksTable"]["Properties"]
        boto3.client("dynamodb").create_table(
            TableName="prod-tasks", **{k: table[k] for k in TABLE_SCHEMA})
        monkeypatch.setenv("TASKS_QUEUE_URL", url)
        monkeypatch.setenv("TASKS_DLQ_URL", dlq_url)
        monkeypatch.setenv("TASKS_TABLE_NAME", "prod-tasks")
        factory.reset()
        calls = []
        boto3.DEFAULT_SESSION.events.register(
            "before-call", lambda model, **_: calls.append(f"{model.service_model.endpoint_prefix}:{model.name}"))
        with Client(chalice_app, stage_name="prod", project_dir=str(PROJECT_DIR)) as client:
            yield client, sqs, url, calls


def invoke(client, sqs, url, messages):
    return client.lambda_.invoke("process_tasks", lambda_event(sqs, url, messages)).payload


def test_prod_stage_runs_the_whole_flow_on_dynamodb_and_sqs(cloud):
    client, sqs, url, _ = cloud
    ids = [json.loads(post_task(client, body).body)["id"] for body in (
        {"action": "uppercase", "data": {"text": "hello world"}},
        {"action": "sum", "data": {"numbers": [1.5, 2.5]}},
        {"action": "other"},
    )]
    assert factory.current_settings().store == "sqlite"  # outside a call, the stage's variables are gone
    messages = receive_all(sqs, url, expected=3)
    assert invoke(client, sqs, url, messages) == {"batchItemFailures": []}
    listing = json.loads(client.http.get("/tasks").body)
    assert [t["id"] for t in listing["tasks"]] == list(reversed(ids))
    assert [t["result"] for t in listing["tasks"]] == [
        {"output": "processed"}, {"output": 4.0}, {"output": "HELLO WORLD"}]
    completed = json.loads(client.http.get("/tasks?status=completed&limit=2").body)
    assert completed["count"] == 2 and completed["next_cursor"]
    rest = json.loads(client.http.get(f"/tasks?status=completed&cursor={completed['next_cursor']}").body)
    assert [t["id"] for t in completed["tasks"] + rest["tasks"]] == list(reversed(ids))
    one = json.loads(client.http.get(f"/tasks/{ids[0]}").body)
    assert one["status"] == "completed" and one["attempts"] == 1


def explode(data):
    raise ConnectionError("partner API down")


def test_exhausted_retries_dead_letter_the_message_in_the_cloud(cloud, monkeypatch):
    from chalicelib import actions

    client, sqs, url, _ = cloud
    monkeypatch.setenv("TASKS_MAX_ATTEMPTS", "1")
    declare_action(monkeypatch, "explode", explode)
    task_id = json.loads(post_task(client, {"action": "explode"}).body)["id"]
    assert invoke(client, sqs, url, receive_all(sqs, url, expected=1)) == {"batchItemFailures": []}
    task = json.loads(client.http.get(f"/tasks/{task_id}").body)
    assert task["status"] == "failed" and task["error"] == "ConnectionError: partner API down"
    dlq_url = factory.current_settings().dead_letter_queue_url
    assert receive_all(sqs, dlq_url, expected=1)[0]["Body"] == json.dumps({"task_id": task_id})


def test_one_failing_message_is_the_only_batch_item_failure(cloud, monkeypatch):
    client, sqs, url, _ = cloud
    ids = [json.loads(post_task(client, {"action": "sum", "data": {"numbers": [n]}}).body)["id"]
           for n in range(4)]
    doomed = ids[2]
    dynamodb = factory.aws_client("dynamodb", "request")
    real_update = dynamodb.update_item

    def throttled(**kwargs):
        if kwargs["Key"]["id"]["S"] == doomed:
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException",
                                         "Message": "slow down"}}, "UpdateItem")
        return real_update(**kwargs)

    monkeypatch.setattr(dynamodb, "update_item", throttled)
    messages = receive_all(sqs, url, expected=4)
    doomed_message = next(m["MessageId"] for m in messages if json.loads(m["Body"])["task_id"] == doomed)
    assert invoke(client, sqs, url, messages) == {"batchItemFailures": [{"itemIdentifier": doomed_message}]}
    monkeypatch.setattr(dynamodb, "update_item", real_update)
    statuses = {i: json.loads(client.http.get(f"/tasks/{i}").body)["status"] for i in ids}
    assert statuses == {i: ("queued" if i == doomed else "completed") for i in ids}


def test_redelivery_in_the_cloud_does_not_rerun_a_completed_task(cloud):
    client, sqs, url, _ = cloud
    task_id = json.loads(post_task(client, {"action": "uppercase", "data": {"text": "once"}}).body)["id"]
    first = receive_all(sqs, url, expected=1)
    invoke(client, sqs, url, first)
    before = json.loads(client.http.get(f"/tasks/{task_id}").body)
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=first[0]["ReceiptHandle"], VisibilityTimeout=0)
    again = receive_all(sqs, url, expected=1)
    assert invoke(client, sqs, url, again) == {"batchItemFailures": []}
    assert json.loads(client.http.get(f"/tasks/{task_id}").body) == before


def test_code_calls_only_what_each_role_allows(cloud, template, monkeypatch):
    client, sqs, url, calls = cloud
    post_task(client, {"action": "sum", "data": {"numbers": [1]}}, headers={"Idempotency-Key": "k"})
    post_task(client, {"action": "sum", "data": {"numbers": [1]}}, headers={"Idempotency-Key": "k"})
    doomed = json.loads(post_task(client, {"action": "sum"}).body)["id"]
    assert post_empty(client, f"/tasks/{doomed}/cancel").status_code == 200
    assert post_empty(client, f"/tasks/{doomed}/retry").status_code == 409
    gone = json.loads(post_task(client, {"action": "sum"}, headers={"Idempotency-Key": "gone"}).body)["id"]
    assert post_empty(client, f"/tasks/{gone}/cancel").status_code == 200
    assert client.http.delete(f"/tasks/{gone}").status_code == 204
    client.http.get("/tasks")
    client.http.get("/tasks?status=queued")
    client.http.get(f"/tasks/{doomed}")
    stats = json.loads(client.http.get("/stats").body)
    assert stats["counts"]["queued"] == 1 and stats["counts"]["cancelled"] == 1
    assert stats["oldest_queued_age_seconds"] is None and stats["oldest_queued_age_known"] is False
    series = json.loads(client.http.get("/stats/series?minutes=5").body)
    assert sum(point["cancelled"] for point in series["points"]) == 2
    assert stats["queue"]["dead_letter"] == 0
    api_calls = set(calls)
    calls.clear()
    event = lambda_event(sqs, url, receive_all(sqs, url, expected=1))
    calls.clear()  # the test's own receive is not the worker's
    client.lambda_.invoke("process_tasks", event)
    worker_calls = set(calls)
    monkeypatch.setenv("TASKS_STALE_AFTER_S", "1")
    post_task(client, {"action": "sum"}, headers={"Idempotency-Key": "watched"})  # recovery watches it
    time.sleep(1.1)
    calls.clear()
    event = client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event",
                                            detail={}, resources=[])
    assert client.lambda_.invoke("recover_tasks", event).payload["queued"] == 1
    recovery_calls = set(calls)

    def allowed(role):
        statements = template["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        return {action for s in statements for action in s["Action"]}

    assert api_calls and api_calls <= allowed("ApiHandlerRole"), api_calls
    assert worker_calls and worker_calls <= allowed("ProcessTasksRole"), worker_calls
    assert recovery_calls and recovery_calls <= allowed("RecoverTasksRole"), recovery_calls


def test_a_body_dynamodb_could_not_store_with_its_result_is_a_413(cloud):
    client, _, _, _ = cloud
    response = post_task(client, {"action": "uppercase", "data": {"text": "x" * 250_000}})
    assert response.status_code == 413
    assert "the limit is 163840 bytes" in json.loads(response.body)["error"]
    assert json.loads(client.http.get("/tasks").body)["count"] == 0


def test_a_result_too_large_for_its_item_fails_at_once_without_retries(cloud, monkeypatch):
    from chalicelib import actions

    client, sqs, url, _ = cloud
    declare_action(monkeypatch, "inflate", lambda data: "x" * 390_000)
    fits = json.loads(post_task(client, {"action": "uppercase", "data": {"text": "y" * 150_000}}).body)["id"]
    too_big = json.loads(post_task(client, {"action": "inflate"}).body)["id"]
    assert invoke(client, sqs, url, receive_all(sqs, url, expected=2)) == {"batchItemFailures": []}
    assert json.loads(client.http.get(f"/tasks/{fits}").body)["result"] == {"output": "Y" * 150_000}
    task = json.loads(client.http.get(f"/tasks/{too_big}").body)
    assert task["status"] == "failed" and task["attempts"] == 1
    assert "over the 380000 bytes this store keeps for one task" in task["error"]
    assert receive_all(sqs, url, expected=1) == []
