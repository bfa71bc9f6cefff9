"""Every message that reaches the dead-letter queue makes its task final: the queue's
redrive gives up on a message whatever the worker meant, and a task must not wait
forever on a message that is gone. Tested on the embedded queue (its redrive, and
the dispatcher `chalice local` runs on the dead-letter queue) and on SQS under moto
(a redrive policy as the template declares, and the dead-letter function)."""
import json
import sqlite3
import time

import pytest
from botocore.exceptions import ClientError

from chalicelib import factory
from chalicelib.dead_letters import DeadLetter
from chalicelib.local.runtime import build_dead_letter_dispatcher, build_dispatcher
from chalicelib.queue.embedded import dead_letter_name
from chalicelib.store.sqlite import SqliteTaskStore
from tests.conftest import declare_action, post_empty, submit, task_of
from tests.sqs_events import lambda_event, receive_all
from tests.test_cloud_stage import cloud, template  # noqa: F401  (fixtures)


def explode(data):
    raise ConnectionError("partner API down")


# The embedded queue ------------------------------------------------------------

@pytest.fixture
def redelivered_at_once(monkeypatch):
    """A lease of 1 ms: a message handed back is received again almost at once."""
    monkeypatch.setenv("TASKS_VISIBILITY_TIMEOUT_S", "0.001")
    factory.reset()


def claims_fail_for(monkeypatch, task_id):
    """SQLite meets an I/O error on every claim of this task (a failing disk)."""
    real = SqliteTaskStore.claim

    def failing(self, claimed_id, *args, **kwargs):
        if claimed_id == task_id:
            raise sqlite3.OperationalError("disk I/O error")
        return real(self, claimed_id, *args, **kwargs)

    monkeypatch.setattr(SqliteTaskStore, "claim", failing)
    return lambda: monkeypatch.setattr(SqliteTaskStore, "claim", real)


def test_a_task_whose_claims_fail_until_the_queue_gives_up_is_failed_not_left_queued(
        client, chalice_app, monkeypatch, redelivered_at_once):
    task_id = submit(client, {"action": "sum", "data": {"numbers": [1, 2]}})
    healed = claims_fail_for(monkeypatch, task_id)
    dispatcher = build_dispatcher(chalice_app)
    for _ in range(factory.current_settings().max_receive_count + 1):
        dispatcher.deliver_one_batch()
        time.sleep(0.01)
    dispatcher.drain()
    queue = factory.queue(factory.current_settings())
    assert queue.depth() == 0 and queue.depth(dead_letter_name("tasks")) == 1
    assert task_of(client, task_id)["status"] == "queued"  # the hole: no message, no due time
    healed()

    build_dead_letter_dispatcher(chalice_app).drain()

    task = task_of(client, task_id)
    assert task["status"] == "failed"
    assert task["error"] == "the queue gave up on this task's message after 5 deliveries"
    assert queue.depth(dead_letter_name("tasks")) == 0
    # An operator retries it like any failed task, and it runs.
    assert post_empty(client, f"/tasks/{task_id}/retry").status_code == 202
    build_dispatcher(chalice_app).drain()
    assert task_of(client, task_id)["result"] == {"output": 3}


def test_a_dead_letter_of_a_task_already_failed_is_acknowledged_and_changes_nothing(
        client, chalice_app, monkeypatch):
    monkeypatch.setenv("TASKS_MAX_ATTEMPTS", "1")
    declare_action(monkeypatch, "explode", explode)
    task_id = submit(client, {"action": "explode"})
    build_dispatcher(chalice_app).drain()
    failed = task_of(client, task_id)
    assert failed["error"] == "ConnectionError: partner API down"

    build_dead_letter_dispatcher(chalice_app).drain()

    assert task_of(client, task_id) == failed
    assert factory.queue(factory.current_settings()).depth(dead_letter_name("tasks")) == 0


def test_a_dead_letter_of_an_earlier_series_does_not_fail_the_retried_task(client, chalice_app, monkeypatch):
    monkeypatch.setenv("TASKS_MAX_ATTEMPTS", "1")
    calls = []
    declare_action(monkeypatch, "flaky", lambda data: calls.append(1) or (len(calls) > 1 or explode(data)))
    task_id = submit(client, {"action": "flaky"})
    build_dispatcher(chalice_app).drain()  # fails; its message goes to the dead-letter queue
    assert post_empty(client, f"/tasks/{task_id}/retry").status_code == 202

    build_dead_letter_dispatcher(chalice_app).drain()  # the old series' letter arrives late

    assert task_of(client, task_id)["status"] == "queued"
    build_dispatcher(chalice_app).drain()
    assert task_of(client, task_id)["status"] == "completed"


def test_the_dead_letter_consumer_keeps_a_letter_while_the_store_fails(client, chalice_app, monkeypatch):
    queue = factory.queue(factory.current_settings())
    task_id = submit(client, {"action": "sum", "data": {"numbers": [1]}})
    [message] = queue.receive(1)
    queue.dead_letter(message.receipt_handle, message.body)  # as the redrive would
    real = SqliteTaskStore.give_up
    monkeypatch.setattr(SqliteTaskStore, "give_up", lambda *a: (_ for _ in ()).throw(
        sqlite3.OperationalError("database is locked")))
    dead = build_dead_letter_dispatcher(chalice_app)
    dead.deliver_one_batch()
    assert task_of(client, task_id)["status"] == "queued"
    monkeypatch.setattr(SqliteTaskStore, "give_up", real)
    factory.dead_letter_queue(factory.current_settings()).change_visibility(
        queue._db.query("SELECT receipt_handle FROM messages")[0][0], 0)

    dead.drain()

    assert task_of(client, task_id)["status"] == "failed"


# SQS under moto, shaped as the template declares ------------------------------

def test_the_cloud_dead_letter_function_fails_a_task_the_redrive_gave_up_on(cloud, monkeypatch):  # noqa: F811
    client, sqs, url, _ = cloud
    task_id = submit(client, {"action": "sum", "data": {"numbers": [1, 2]}})
    dynamodb = factory.aws_client("dynamodb", "request")
    real_update = dynamodb.update_item

    def throttled(**kwargs):
        if kwargs["Key"]["id"]["S"] == task_id:
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException",
                                         "Message": "slow down"}}, "UpdateItem")
        return real_update(**kwargs)

    monkeypatch.setattr(dynamodb, "update_item", throttled)
    for _ in range(6):  # the redrive policy's maxReceiveCount is 5
        messages = receive_all(sqs, url, expected=1, visibility_timeout=0)
        if messages:
            payload = client.lambda_.invoke("process_tasks", lambda_event(sqs, url, messages)).payload
            assert payload["batchItemFailures"] == [{"itemIdentifier": messages[0]["MessageId"]}]
    assert receive_all(sqs, url, expected=1) == []
    assert task_of(client, task_id)["status"] == "queued"
    monkeypatch.setattr(dynamodb, "update_item", real_update)

    dlq_url = sqs.get_queue_url(QueueName="tasks-dlq")["QueueUrl"]
    letters = receive_all(sqs, dlq_url, expected=1)
    assert len(letters) == 1
    payload = client.lambda_.invoke("process_dead_letters", lambda_event(sqs, dlq_url, letters)).payload

    assert payload == {"batchItemFailures": []}
    task = task_of(client, task_id)
    assert task["status"] == "failed" and "gave up on this task's message after 5 deliveries" in task["error"]
    stats = json.loads(client.http.get("/stats").body)
    assert stats["counts"]["failed"] == 1 and stats["counts"]["queued"] == 0


def test_a_dead_letter_the_store_cannot_settle_is_a_batch_item_failure(cloud, monkeypatch):  # noqa: F811
    client, sqs, url, _ = cloud
    task_id = submit(client, {"action": "sum", "data": {"numbers": [1]}})
    dynamodb = factory.aws_client("dynamodb", "request")
    monkeypatch.setattr(dynamodb, "update_item", lambda **kwargs: (_ for _ in ()).throw(ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "UpdateItem")))
    event = lambda_event(sqs, url, receive_all(sqs, url, expected=1))
    payload = client.lambda_.invoke("process_dead_letters", event).payload
    assert payload == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert task_of(client, task_id)["status"] == "queued"


def test_a_letter_that_names_no_task_is_dropped():
    from chalicelib.dead_letters import DeadLetters

    class NoStore:
        def get(self, task_id):
            raise AssertionError("nothing to read")

    assert DeadLetters(NoStore(), 5).process_batch([DeadLetter("m-1", "not json at all")]) == []
