"""No accepted task is lost or applied twice when a publish hangs, a disk fails
mid-batch, a commit is not yet flushed, or a result cannot be stored."""
import json
import socket
import sqlite3
import threading
import time

import pytest

from chalicelib import factory, sqlite_wal
from chalicelib.local.runtime import build_dispatcher
from chalicelib.queue import PublishError
from chalicelib.queue.sqs import SqsTaskQueue
from chalicelib.service import QueueUnavailable
from chalicelib.store.sqlite import SqliteTaskStore
from chalicelib.tasks import Status, utcnow
from chalicelib.validation import NewTask
from tests.conftest import declare_action, post_task
from tests.sqs_events import receive_all


def settings():
    return factory.current_settings()


def task_of(client, task_id):
    return json.loads(client.http.get(f"/tasks/{task_id}").body)


# 1. Phantom 202 ---------------------------------------------------------------

def test_a_task_replayed_while_its_publish_hangs_survives_the_failed_publish(dynamodb_store, monkeypatch):
    # DynamoDB commits the insert on its own, before the publish.
    sqs, url = dynamodb_store
    entered, release = threading.Event(), threading.Event()
    real_send = SqsTaskQueue.send

    def hanging_then_failing(self, body):
        if not entered.is_set():
            entered.set()
            release.wait(10)
            raise PublishError("read timeout")
        return real_send(self, body)

    monkeypatch.setattr(SqsTaskQueue, "send", hanging_then_failing)
    service = factory.service()
    new = NewTask("uppercase", {"text": "kept"})
    first_outcome = []

    def first_request():
        try:
            service.submit(new, idempotency_key="K")
        except QueueUnavailable as exc:
            first_outcome.append(str(exc))

    first = threading.Thread(target=first_request)
    first.start()
    assert entered.wait(10)
    replay = service.submit(new, idempotency_key="K")  # the client's retry, answered 202
    assert replay.replayed
    release.set()
    first.join(10)
    assert first_outcome and f"stored as {replay.task.id}" in first_outcome[0]
    kept = factory.store(settings()).get(replay.task.id)
    assert kept is not None and kept.status is Status.QUEUED and kept.due_at <= utcnow()
    assert factory.recovery().run()["queued"] == 1
    [message] = receive_all(sqs, url, expected=1)
    assert json.loads(message["Body"]) == {"task_id": replay.task.id}


@pytest.fixture
def silent_endpoint():
    """An address that accepts connections and never answers, as a hanging SQS would."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


def test_a_hanging_queue_is_a_503_well_inside_api_gateways_29_seconds(client, monkeypatch, silent_endpoint):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", silent_endpoint)
    monkeypatch.setenv("TASKS_QUEUE", "sqs")
    monkeypatch.setenv("TASKS_QUEUE_URL", f"{silent_endpoint}/123456789012/tasks")
    monkeypatch.setenv("TASKS_DLQ_URL", f"{silent_endpoint}/123456789012/tasks-dlq")
    factory.reset()
    started = time.monotonic()
    response = post_task(client, {"action": "sum"})
    elapsed = time.monotonic() - started
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert "nothing was stored" in json.loads(response.body)["error"]
    # A bound, not a speed target: API Gateway cuts the request at 29 s.
    assert elapsed < 20, elapsed
    assert factory.store(settings()).list().tasks == []


# 2 and 3. What cannot be stored fails at once ---------------------------------

def test_a_result_json_cannot_hold_fails_the_task_at_once(client, chalice_app):
    huge = int("9" * 4300)  # the sum has 4,301 digits: more than Python will write as JSON
    task_id = json.loads(post_task(client, {"action": "sum", "data": {"numbers": [huge, huge]}}).body)["id"]
    build_dispatcher(chalice_app).drain()
    task = task_of(client, task_id)
    assert task["status"] == "failed" and task["attempts"] == 1
    assert task["error"].startswith("the result cannot be stored as JSON: ValueError")
    assert factory.queue(settings()).depth() == 0


def test_an_overflow_in_an_action_fails_the_task_at_once_without_dead_lettering(client, chalice_app):
    task_id = json.loads(post_task(client, {"action": "sum", "data": {"numbers": [10 ** 400, 1.5]}}).body)["id"]
    build_dispatcher(chalice_app).drain()
    task = task_of(client, task_id)
    assert task["status"] == "failed" and task["attempts"] == 1
    assert task["error"].startswith("OverflowError")
    queue = factory.queue(settings())
    assert queue.depth() == 0 and queue.depth("tasks-dlq") == 0


def test_a_result_that_is_not_finite_json_fails_the_task_at_once(client, chalice_app, monkeypatch):
    declare_action(monkeypatch, "nan", lambda data: float("nan"))
    task_id = json.loads(post_task(client, {"action": "nan"}).body)["id"]
    build_dispatcher(chalice_app).drain()
    task = task_of(client, task_id)
    assert task["status"] == "failed" and "Out of range float values" in task["error"]


# 5. A failed batch hands every message back -----------------------------------

def _disk_fails_on(monkeypatch, method: str, task_id: str):
    """SQLite meets an I/O error on `method` for this task and rolls the open
    transaction back, as it may for SQLITE_IOERR and SQLITE_FULL."""
    real = getattr(SqliteTaskStore, method)

    def failing(self, *args, **kwargs):
        if args[0] == task_id:
            self._db._local.conn.rollback()
            raise sqlite3.OperationalError("disk I/O error")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SqliteTaskStore, method, failing)


def _three_received(client):
    ids = [json.loads(post_task(client, {"action": "sum", "data": {"numbers": [n]}}).body)["id"]
           for n in range(3)]
    messages = factory.queue(settings()).receive(3)
    return ids, [(m.message_id, m.receipt_handle, m.body) for m in messages]


@pytest.mark.parametrize("failing, left_as", [
    ("finish", Status.RUNNING),  # the outcome batch: every claim stands, no outcome does
    ("claim", Status.QUEUED),  # the claim batch: nothing of it stands
])
def test_a_batch_whose_transaction_failed_hands_every_message_back(client, monkeypatch, failing, left_as):
    ids, messages = _three_received(client)
    _disk_fails_on(monkeypatch, failing, ids[1])
    failed = factory.worker().process_batch(messages)
    assert sorted(failed) == sorted(m[0] for m in messages)
    store = factory.store(settings())
    # Nothing of the rolled-back batch was written, not even after the failure.
    assert [store.get(task_id).status for task_id in ids] == [left_as] * 3


def test_a_message_early_for_its_task_is_kept_when_its_batchs_claims_fail(client, chalice_app, monkeypatch):
    delayed = json.loads(post_task(client, {"action": "sum", "delay_seconds": 3600}).body)["id"]
    ready = json.loads(post_task(client, {"action": "sum", "data": {"numbers": [1]}}).body)["id"]
    queue = factory.queue(settings())
    # A message for the delayed task that arrives early (clocks that disagree), in the same batch.
    queue.send(json.dumps({"task_id": delayed, "run_at": int(time.time() * 1e6) + 3_600_000_000}))
    assert queue.depth() == 2
    _disk_fails_on(monkeypatch, "claim", ready)
    dispatcher = build_dispatcher(chalice_app)
    assert dispatcher.deliver_one_batch() == 2
    dispatcher.drain()  # commits the deletes the dispatcher holds back
    # Both messages are still there: the ready task's to come back after its lease,
    # the delayed task's hidden until its time.
    assert queue.depth() == 2
    store = factory.store(settings())
    assert store.get(delayed).status is Status.QUEUED and store.get(ready).status is Status.QUEUED


# 6. A replay waits for the flush of the commit it read -------------------------

def test_a_replay_answers_only_once_the_first_requests_commit_is_flushed(monkeypatch):
    in_flush, release = threading.Event(), threading.Event()
    flushed = threading.Event()  # the flush of the first request's task has ended
    real_sync = sqlite_wal._sync
    flushes = []

    def slow_flush_of_the_task(fd):
        flushes.append(fd)
        if len(flushes) == 2:  # the first request's key record, then its task and message
            in_flush.set()
            release.wait(10)
            real_sync(fd)
            flushed.set()
            return
        real_sync(fd)

    service = factory.service()
    service.submit(NewTask("sum", {}))  # migrations and first commit out of the way
    monkeypatch.setattr(sqlite_wal, "_sync", slow_flush_of_the_task)
    new = NewTask("sum", {"numbers": [1]})
    first = threading.Thread(target=service.submit, args=(new,), kwargs={"idempotency_key": "K"})
    first.start()
    assert in_flush.wait(10)  # the task is committed, not yet on disk
    answers = []

    def replay():
        submission = service.submit(new, idempotency_key="K")
        answers.append((submission.replayed, flushed.is_set()))

    second = threading.Thread(target=replay)
    second.start()
    second.join(0.5)
    release.set()
    first.join(10)
    second.join(10)
    assert answers == [(True, True)]  # a replay, answered after the flush


# 8. Attempt numbers after an operator's retry ---------------------------------

def test_a_stale_worker_of_an_earlier_series_cannot_finish_the_retried_task(client):
    from tests.conftest import post_empty

    store = factory.store(settings())
    task_id = json.loads(post_task(client, {"action": "sum"}).body)["id"]
    stale = store.claim(task_id, utcnow())  # its worker stalls ...
    newer = store.claim(task_id, utcnow())  # ... and a redelivery runs the task again
    store.finish(task_id, newer.attempts, Status.FAILED, utcnow(), error="bad")
    assert post_empty(client, f"/tasks/{task_id}/retry").status_code == 202
    current = store.claim(task_id, utcnow())
    assert current.attempts > newer.attempts
    assert not store.finish(task_id, stale.attempts, Status.COMPLETED, utcnow(), result={"output": "stale"})
    assert store.finish(task_id, current.attempts, Status.COMPLETED, utcnow(), result={"output": "fresh"})
    assert task_of(client, task_id)["result"] == {"output": "fresh"}
