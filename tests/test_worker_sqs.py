"""The SQS path under moto: POST publishes, the worker is invoked with what SQS delivered."""
import json
import time

import pytest

from chalicelib import factory

from tests.conftest import post_task
from tests.sqs_events import lambda_event, receive_all


def invoke_worker(client, event):
    result = client.lambda_.invoke("process_tasks", event)
    return result.payload


def get_task(client, task_id):
    return json.loads(client.http.get(f"/tasks/{task_id}").body)


def test_post_publishes_one_message_naming_the_task(client, sqs_queue):
    sqs, url = sqs_queue
    task_id = json.loads(post_task(client, {"action": "uppercase", "data": {"text": "hi"}}).body)["id"]
    messages = receive_all(sqs, url, expected=1)
    assert len(messages) == 1
    assert json.loads(messages[0]["Body"]) == {"task_id": task_id}


def test_batch_of_distinct_messages_completes_each_task(client, sqs_queue):
    sqs, url = sqs_queue
    bodies = [
        {"action": "uppercase", "data": {"text": "hello world"}},
        {"action": "sum", "data": {"numbers": [1, 2, 3]}},
        {"action": "sum", "data": {"numbers": [1e308, 1e308]}},
        {"action": "anything"},
        {"action": "uppercase", "data": {"text": "second"}},
    ]
    ids = [json.loads(post_task(client, body).body)["id"] for body in bodies]
    messages = receive_all(sqs, url, expected=5)
    assert len({m["MessageId"] for m in messages}) == 5
    payload = invoke_worker(client, lambda_event(sqs, url, messages))
    assert payload == {"batchItemFailures": []}
    tasks = [get_task(client, task_id) for task_id in ids]
    assert [t["status"] for t in tasks] == ["completed", "completed", "failed", "completed", "completed"]
    assert [t["result"] for t in tasks] == [
        {"output": "HELLO WORLD"}, {"output": 6}, None, {"output": "processed"}, {"output": "SECOND"},
    ]
    assert all(t["attempts"] == 1 for t in tasks)


def test_redelivered_message_does_not_rerun_completed_task(client, sqs_queue):
    sqs, url = sqs_queue
    task_id = json.loads(post_task(client, {"action": "sum", "data": {"numbers": [4, 5]}}).body)["id"]
    first = receive_all(sqs, url, expected=1)
    invoke_worker(client, lambda_event(sqs, url, first))
    done = get_task(client, task_id)
    # The first delivery is never deleted, as when a Lambda times out after the work:
    # SQS makes the message visible again and delivers it a second time.
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=first[0]["ReceiptHandle"], VisibilityTimeout=0)
    again = receive_all(sqs, url, expected=1)
    assert again[0]["MessageId"] == first[0]["MessageId"]
    assert again[0]["Attributes"]["ApproximateReceiveCount"] == "2"
    payload = invoke_worker(client, lambda_event(sqs, url, again))
    assert payload == {"batchItemFailures": []}
    assert get_task(client, task_id) == done
    assert done["status"] == "completed" and done["attempts"] == 1


def test_message_whose_task_store_fails_is_reported_alone(client, sqs_queue, monkeypatch):
    from chalicelib.store.sqlite import SqliteTaskStore

    sqs, url = sqs_queue
    good = json.loads(post_task(client, {"action": "uppercase", "data": {"text": "ok"}}).body)["id"]
    bad = json.loads(post_task(client, {"action": "uppercase", "data": {"text": "boom"}}).body)["id"]
    messages = receive_all(sqs, url, expected=2)
    original_claim = SqliteTaskStore.claim

    def flaky_claim(self, task_id, now, **kwargs):
        if task_id == bad:
            raise RuntimeError("disk unavailable")
        return original_claim(self, task_id, now, **kwargs)

    monkeypatch.setattr(SqliteTaskStore, "claim", flaky_claim)
    payload = invoke_worker(client, lambda_event(sqs, url, messages))
    bad_message = next(m["MessageId"] for m in messages if json.loads(m["Body"])["task_id"] == bad)
    assert payload == {"batchItemFailures": [{"itemIdentifier": bad_message}]}
    assert get_task(client, good)["status"] == "completed"
    assert get_task(client, bad)["status"] == "queued"


def test_sqs_publish_failure_is_503_and_leaves_no_task(client, sqs_queue, monkeypatch):
    sqs, url = sqs_queue
    monkeypatch.setenv("TASKS_QUEUE_URL", url + "-missing")
    response = post_task(client, {"action": "uppercase"})
    assert response.status_code == 503
    assert json.loads(client.http.get("/tasks").body)["count"] == 0


def test_local_dispatcher_can_poll_a_real_sqs_queue(client, sqs_queue, chalice_app, monkeypatch):
    from chalicelib.local import sources
    from chalicelib.local.runtime import build_dispatcher

    sqs, url = sqs_queue
    monkeypatch.setattr(factory, "LONG_POLL_SECONDS", 0)
    ids = [json.loads(post_task(client, {"action": "sum", "data": {"numbers": [n, n]}}).body)["id"]
           for n in range(7)]
    dispatcher = build_dispatcher(chalice_app)
    assert isinstance(dispatcher._source, sources.SqsSource)
    dispatcher.drain()
    assert [get_task(client, i)["result"] for i in ids] == [{"output": 2 * n} for n in range(7)]
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages") is None


def test_an_empty_long_poll_ends_without_a_read_timeout(moto_server):
    from chalicelib.local.sources import SqsSource

    client = factory.aws_client("sqs", "long_poll")
    url = client.create_queue(QueueName="idle")["QueueUrl"]
    # The read timeout outlasts the wait with margin; the request path's stays short.
    assert client.meta.config.read_timeout >= factory.LONG_POLL_SECONDS + 5
    assert factory.aws_client("sqs", "request").meta.config.read_timeout < factory.LONG_POLL_SECONDS
    started = time.monotonic()
    assert SqsSource(client, url, factory.LONG_POLL_SECONDS).receive(5) == []
    assert time.monotonic() - started >= factory.LONG_POLL_SECONDS - 1  # it did wait the whole poll
