"""Retries, dead letters, operator retry and cancel, recovery and idempotency keys."""
import json
import sys
import threading
import time
from datetime import timedelta

import pytest

from chalicelib import factory
from chalicelib.actions import ActionError
from chalicelib.local.runtime import build_dispatcher, build_schedulers
from chalicelib.queue.embedded import dead_letter_name
from chalicelib.tasks import Task, utcnow
from chalicelib.worker import Next, RetryPolicy, after_failure
from tests.conftest import declare_action, post_empty, post_task, submit, task_of
from tests.sqs_events import lambda_event, receive_all
from tests.stacks import stack  # noqa: F401 (a fixture)


class Flaky:
    """An action that raises for its first `failures` runs."""

    def __init__(self, failures):
        self.failures = failures
        self.runs = 0

    def __call__(self, data):
        self.runs += 1
        if self.runs <= self.failures:
            raise RuntimeError(f"transient failure {self.runs}")
        return "recovered"


@pytest.fixture
def flaky(monkeypatch):
    def install(failures):
        action = Flaky(failures)
        declare_action(monkeypatch, "flaky", action)
        return action
    return install


@pytest.fixture
def no_backoff(monkeypatch):
    monkeypatch.setenv("TASKS_RETRY_BASE_S", "0")


def queue_depths():
    queue = factory.queue(factory.current_settings())
    return queue.depth(), queue.depth(dead_letter_name(queue.name))


def test_backoff_doubles_up_to_the_cap():
    policy = RetryPolicy(max_attempts=6, base_seconds=2, max_seconds=10)
    assert [policy.delay(n) for n in range(1, 6)] == [2, 4, 8, 10, 10]


def test_raising_action_is_retried_until_it_succeeds(client, chalice_app, flaky, no_backoff):
    action = flaky(2)
    task_id = submit(client, {"action": "flaky"})
    build_dispatcher(chalice_app).drain()
    task = task_of(client, task_id)
    assert task["status"] == "completed" and task["result"] == {"output": "recovered"}
    assert task["attempts"] == 3 and action.runs == 3
    assert queue_depths() == (0, 0)


def test_last_failed_attempt_fails_the_task_and_dead_letters_its_message(client, chalice_app, flaky, no_backoff):
    action = flaky(99)
    task_id = submit(client, {"action": "flaky"})
    build_dispatcher(chalice_app).drain()
    task = task_of(client, task_id)
    assert task["status"] == "failed" and task["attempts"] == 3 and action.runs == 3
    assert task["error"] == "RuntimeError: transient failure 3"
    assert queue_depths() == (0, 1)


def test_stored_data_its_action_no_longer_accepts_fails_at_once_without_retries(client, chalice_app, no_backoff):
    # Data stored before its action's schema changed: submit refuses it today, so it is stored directly.
    settings = factory.current_settings()
    task = Task.new("sum", {"numbers": ["x"]})
    factory.store(settings).insert(task)
    factory.queue(settings).publish_task(task.id)
    build_dispatcher(chalice_app).drain()
    stored = task_of(client, task.id)
    assert stored["status"] == "failed" and stored["attempts"] == 1
    assert "/data/numbers/0" in stored["error"]
    assert queue_depths() == (0, 0)


def test_an_actions_own_max_attempts_and_backoff_override_the_global_ones(client, chalice_app, monkeypatch):
    monkeypatch.setenv("TASKS_RETRY_BASE_S", "60")  # the global backoff would hold the retry for a minute
    runs = []

    def always_down(data):
        runs.append(1)
        raise ConnectionError("partner API down")

    declare_action(monkeypatch, "call_partner", always_down, max_attempts=2, retry_base_s=0)
    task_id = submit(client, {"action": "call_partner"})
    build_dispatcher(chalice_app).drain()
    task = task_of(client, task_id)
    assert task["status"] == "failed" and task["attempts"] == 2 and len(runs) == 2
    assert queue_depths() == (0, 1)


def test_an_attempt_past_its_timeout_fails_and_is_retried_by_the_policy(client, chalice_app, monkeypatch,
                                                                        no_backoff):
    import time

    runs = []

    def slow_then_fast(data):
        runs.append(1)
        if len(runs) == 1:
            time.sleep(5)
        return "done"

    declare_action(monkeypatch, "slow", slow_then_fast, timeout_s=0.5)
    task_id = submit(client, {"action": "slow"})
    started = time.monotonic()
    build_dispatcher(chalice_app).drain()
    task = task_of(client, task_id)
    assert time.monotonic() - started < 4  # the first attempt was given up on, not waited out
    assert task["status"] == "completed" and task["attempts"] == 2 and task["result"] == {"output": "done"}


def test_retry_waits_for_the_backoff_on_the_embedded_queue(client, chalice_app, flaky, monkeypatch):
    monkeypatch.setenv("TASKS_RETRY_BASE_S", "60")
    flaky(1)
    task_id = submit(client, {"action": "flaky"})
    build_dispatcher(chalice_app).drain()
    task = task_of(client, task_id)
    assert task["status"] == "queued" and task["attempts"] == 1
    assert task["error"] == "RuntimeError: transient failure 1"
    assert factory.queue(factory.current_settings()).seconds_until_visible() > 55


def test_sqs_retry_changes_visibility_then_dead_letters(client, sqs_queue, flaky, monkeypatch):
    sqs, url = sqs_queue
    dlq_url = sqs.create_queue(QueueName="tasks-dlq")["QueueUrl"]
    monkeypatch.setenv("TASKS_DLQ_URL", dlq_url)
    monkeypatch.setenv("TASKS_MAX_ATTEMPTS", "2")
    flaky(99)
    task_id = submit(client, {"action": "flaky"})
    first = receive_all(sqs, url, expected=1)
    payload = client.lambda_.invoke("process_tasks", lambda_event(sqs, url, first)).payload
    assert payload == {"batchItemFailures": [{"itemIdentifier": first[0]["MessageId"]}]}
    assert receive_all(sqs, url, expected=1) == []  # hidden for the 2 s backoff
    assert task_of(client, task_id)["status"] == "queued"
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=first[0]["ReceiptHandle"], VisibilityTimeout=0)
    second = receive_all(sqs, url, expected=1)
    payload = client.lambda_.invoke("process_tasks", lambda_event(sqs, url, second)).payload
    assert payload == {"batchItemFailures": []}
    task = task_of(client, task_id)
    assert task["status"] == "failed" and task["attempts"] == 2
    [dead] = receive_all(sqs, dlq_url, expected=1)
    assert json.loads(dead["Body"]) == {"task_id": task_id}


def test_operator_retry_requeues_a_failed_task(client, chalice_app, flaky, no_backoff):
    flaky(3)  # fails all three attempts, then works
    task_id = submit(client, {"action": "flaky"})
    build_dispatcher(chalice_app).drain()
    assert task_of(client, task_id)["status"] == "failed"
    response = post_empty(client, f"/tasks/{task_id}/retry")
    assert response.status_code == 202
    assert json.loads(response.body) == {"id": task_id, "status": "queued"}
    build_dispatcher(chalice_app).drain()
    task = task_of(client, task_id)
    # Attempt numbers carry on: the new series' first attempt is the fourth in all.
    assert task["status"] == "completed" and task["attempts"] == 4 and task["error"] is None


def test_retry_of_a_task_that_is_not_failed_is_409(client, chalice_app):
    task_id = submit(client, {"action": "sum"})
    response = post_empty(client, f"/tasks/{task_id}/retry")
    assert response.status_code == 409
    assert "only a failed task can be retried; this one is queued" in json.loads(response.body)["error"]
    assert post_empty(client, "/tasks/00000000-0000-4000-8000-000000000000/retry").status_code == 404


def test_cancel_a_queued_task_and_its_message_is_dropped(client, chalice_app):
    task_id = submit(client, {"action": "sum", "data": {"numbers": [1]}})
    response = post_empty(client, f"/tasks/{task_id}/cancel")
    assert response.status_code == 200
    assert json.loads(response.body)["status"] == "cancelled"
    build_dispatcher(chalice_app).drain()
    task = task_of(client, task_id)
    assert task["status"] == "cancelled" and task["attempts"] == 0 and task["result"] is None
    assert queue_depths() == (0, 0)
    again = post_empty(client, f"/tasks/{task_id}/cancel")
    assert again.status_code == 409 and "cancelled" in json.loads(again.body)["error"]
    assert post_empty(client, "/tasks/00000000-0000-4000-8000-000000000000/cancel").status_code == 404


def test_cancel_of_a_running_task_is_409(client):
    task_id = submit(client, {"action": "sum"})
    factory.store(factory.current_settings()).claim(task_id, utcnow())
    response = post_empty(client, f"/tasks/{task_id}/cancel")
    assert response.status_code == 409
    assert "this one is running" in json.loads(response.body)["error"]


def test_delete_removes_a_final_task_from_reads_and_lists(client, chalice_app):
    task_id = submit(client, {"action": "sum", "data": {"numbers": [1]}})
    kept = submit(client, {"action": "sum"})
    response = client.http.delete(f"/tasks/{task_id}")
    assert response.status_code == 409
    assert "this one is queued; cancel it first" in json.loads(response.body)["error"]
    build_dispatcher(chalice_app).drain()
    response = client.http.delete(f"/tasks/{task_id}")
    assert response.status_code == 204 and response.body == b""
    assert client.http.get(f"/tasks/{task_id}").status_code == 404
    assert [task["id"] for task in json.loads(client.http.get("/tasks").body)["tasks"]] == [kept]
    assert client.http.delete(f"/tasks/{task_id}").status_code == 404


def test_delete_of_a_running_task_is_409(client):
    task_id = submit(client, {"action": "sum"})
    factory.store(factory.current_settings()).claim(task_id, utcnow())
    response = client.http.delete(f"/tasks/{task_id}")
    assert response.status_code == 409 and "this one is running" in json.loads(response.body)["error"]
    assert task_of(client, task_id)["status"] == "running"


def test_delete_forgets_the_tasks_idempotency_key(client, chalice_app):
    body = {"action": "sum", "data": {"numbers": [5]}}
    first = json.loads(post_task(client, body, headers={"Idempotency-Key": "once"}).body)["id"]
    build_dispatcher(chalice_app).drain()
    assert client.http.delete(f"/tasks/{first}").status_code == 204
    again = post_task(client, body, headers={"Idempotency-Key": "once"})
    assert again.status_code == 202 and "Idempotent-Replayed" not in again.headers
    assert json.loads(again.body)["id"] != first


def test_recovery_publishes_a_queued_task_whose_message_was_never_sent(client, chalice_app, monkeypatch):
    monkeypatch.setenv("TASKS_STALE_AFTER_S", "1")
    store = factory.store(factory.current_settings())
    past = utcnow() - timedelta(seconds=5)
    orphan = Task.new("uppercase", {"text": "lost"}, now=past, due_at=past)
    store.insert(orphan)  # as if the process died between the insert and the publish
    result = client.lambda_.invoke("recover_tasks", client.events.generate_cw_event(
        source="aws.events", detail_type="Scheduled Event", detail={}, resources=[])).payload
    assert result == {"queued": 1, "running": 0, "scheduled": 0, "publish_failed": 0, "purged": 0}
    build_dispatcher(chalice_app).drain()
    assert task_of(client, orphan.id)["result"] == {"output": "LOST"}


def test_recovery_requeues_a_task_whose_worker_died(client, chalice_app, monkeypatch):
    task_id = submit(client, {"action": "sum", "data": {"numbers": [20, 22]}})
    settings = factory.current_settings()
    queue = factory.queue(settings)
    [message] = queue.receive(1)  # the worker took the message ...
    store = factory.store(settings)
    store.claim(task_id, utcnow() - timedelta(seconds=10), lease_until=utcnow() - timedelta(seconds=1))
    # ... and died: its lease is over, its message still hidden for 30 s.
    [scheduler] = build_schedulers(chalice_app)
    assert scheduler.run_once() == {"queued": 0, "running": 1, "scheduled": 0, "publish_failed": 0, "purged": 0}
    task = task_of(client, task_id)
    assert task["status"] == "queued" and "lease expired" in task["error"]
    build_dispatcher(chalice_app).drain()
    task = task_of(client, task_id)
    assert task["status"] == "completed" and task["result"] == {"output": 42} and task["attempts"] == 2
    assert queue.delete(message.receipt_handle) is True  # the dead worker's copy is still there


def test_nothing_due_means_nothing_republished(client, chalice_app):
    submit(client, {"action": "sum"})
    [scheduler] = build_schedulers(chalice_app)
    assert scheduler.run_once() == {"queued": 0, "running": 0, "scheduled": 0, "publish_failed": 0, "purged": 0}
    assert queue_depths() == (1, 0)


def test_local_schedule_runs_at_the_registered_rate(chalice_app, monkeypatch):
    [scheduler] = build_schedulers(chalice_app)
    assert scheduler.interval == 60
    monkeypatch.setenv("TASKS_RECOVERY_INTERVAL_S", "2")
    [scheduler] = build_schedulers(chalice_app)
    assert scheduler.interval == 2


def test_same_idempotency_key_and_body_returns_the_original_task(client):
    body = {"action": "uppercase", "data": {"text": "once"}}
    first = post_task(client, body, headers={"Idempotency-Key": "order-17"})
    second = post_task(client, body, headers={"Idempotency-Key": "order-17"})
    assert first.status_code == second.status_code == 202
    assert json.loads(first.body) == json.loads(second.body)
    assert second.headers["Idempotent-Replayed"] == "true"
    assert json.loads(client.http.get("/tasks").body)["count"] == 1
    assert queue_depths() == (1, 0)


def test_same_idempotency_key_with_a_different_body_is_422(client):
    post_task(client, {"action": "sum", "data": {"numbers": [1]}}, headers={"Idempotency-Key": "k"})
    response = post_task(client, {"action": "sum", "data": {"numbers": [2]}}, headers={"Idempotency-Key": "k"})
    assert response.status_code == 422
    assert "different request body" in json.loads(response.body)["error"]
    assert json.loads(client.http.get("/tasks").body)["count"] == 1


def test_idempotency_key_is_kept_24_hours(client, monkeypatch):
    from chalicelib import service as service_module

    body = {"action": "sum"}
    first = json.loads(post_task(client, body, headers={"Idempotency-Key": "day"}).body)
    real_now = service_module.utcnow
    monkeypatch.setattr(service_module, "utcnow", lambda: real_now() + timedelta(hours=23, minutes=59))
    assert json.loads(post_task(client, body, headers={"Idempotency-Key": "day"}).body) == first
    monkeypatch.setattr(service_module, "utcnow", lambda: real_now() + timedelta(hours=24, minutes=1))
    later = json.loads(post_task(client, body, headers={"Idempotency-Key": "day"}).body)
    assert later["id"] != first["id"]


def test_bad_idempotency_key_is_400(client):
    response = post_task(client, {"action": "sum"}, headers={"Idempotency-Key": "x" * 300})
    assert response.status_code == 400
    assert "Idempotency-Key must be" in json.loads(response.body)["error"]


def test_key_of_a_failed_publish_can_be_used_again(client, monkeypatch):
    from chalicelib.queue import PublishError
    from chalicelib.queue.embedded import EmbeddedQueue

    real_send = EmbeddedQueue.send
    monkeypatch.setattr(EmbeddedQueue, "send", lambda self, body: (_ for _ in ()).throw(PublishError("down")))
    assert post_task(client, {"action": "sum"}, headers={"Idempotency-Key": "again"}).status_code == 503
    monkeypatch.setattr(EmbeddedQueue, "send", real_send)
    assert post_task(client, {"action": "sum"}, headers={"Idempotency-Key": "again"}).status_code == 202


def test_unexpected_error_is_a_500_without_a_stack_trace(client, monkeypatch):
    from chalicelib.service import TaskService

    def explode(self, query):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(TaskService, "list", explode)
    response = client.http.get("/tasks")
    assert response.status_code == 500
    body = response.body.decode()
    assert "Traceback" not in body and "secret internals" not in body
    assert json.loads(body)["error"] == "the service failed to handle the request; it has been logged"


def test_key_whose_request_died_before_the_insert_is_completed_by_the_retry(client):
    from chalicelib.service import fingerprint
    from chalicelib.store import KeyRecord
    from chalicelib.validation import NewTask

    body = {"action": "uppercase", "data": {"text": "resumed"}}
    now = utcnow()
    store = factory.store(factory.current_settings())
    orphan_id = "5e1f0a4e-0000-4000-8000-000000000001"
    store.remember_key(KeyRecord("died", fingerprint(NewTask(**body)), orphan_id, now,
                                 now + timedelta(hours=24)), now)
    response = post_task(client, body, headers={"Idempotency-Key": "died"})
    assert response.status_code == 202
    assert json.loads(response.body)["id"] == orphan_id
    assert json.loads(client.http.get("/tasks").body)["count"] == 1


def test_concurrent_insert_with_the_same_key_returns_the_winners_task(client, monkeypatch):
    from chalicelib.store.sqlite import SqliteTaskStore

    body = {"action": "sum", "data": {"numbers": [3]}}
    first = json.loads(post_task(client, body, headers={"Idempotency-Key": "race"}).body)
    # The loser read the key before the winner's insert: it tries to insert the same id.
    real_get = SqliteTaskStore.get
    calls = []

    def get_before_insert(self, task_id):
        calls.append(task_id)
        return None if len(calls) == 1 else real_get(self, task_id)

    monkeypatch.setattr(SqliteTaskStore, "get", get_before_insert)
    second = post_task(client, body, headers={"Idempotency-Key": "race"})
    assert second.status_code == 202 and json.loads(second.body) == first
    assert second.headers["Idempotent-Replayed"] == "true"
    assert queue_depths() == (1, 0)


def test_the_scheduled_function_purges_finished_tasks_past_retention_in_bounded_batches(client, chalice_app):
    from chalicelib.recovery import Recovery
    from chalicelib.tasks import Status

    settings = factory.current_settings()
    store = factory.store(settings)
    long_ago = utcnow() - timedelta(days=31)
    old = [Task.new("sum", {}, now=long_ago) for _ in range(25)]
    for task in old:
        store.insert(task)
        store.finish(task.id, store.claim(task.id, long_ago).attempts, Status.COMPLETED, long_ago)
    kept = submit(client, {"action": "sum"})
    calls = []
    real_purge = store.purge_finished

    def counted(before, limit):
        calls.append(limit)
        return real_purge(before, limit)

    store.purge_finished = counted
    recovery = Recovery(store, factory.queue(settings), retention_days=30, purge_batch=10, purge_batches=2)
    assert recovery.run()["purged"] == 20 and calls == [10, 10]  # at most two batches a run
    assert recovery.run()["purged"] == 5  # the next run goes on
    assert [task["id"] for task in json.loads(client.http.get("/tasks").body)["tasks"]] == [kept]
    # The deployed function's own pass, with the default batches.
    payload = client.lambda_.invoke("recover_tasks", client.events.generate_cw_event(
        source="aws.events", detail_type="Scheduled Event", detail={}, resources=[])).payload
    assert payload["purged"] == 0


# An action that raises what is not an Exception --------------------------------

class Abort(BaseException):
    """What a library may raise to unwind past `except Exception`."""


@pytest.mark.parametrize("leave, error", [
    (lambda: sys.exit(2), "SystemExit: 2"),
    (lambda: (_ for _ in ()).throw(Abort("unwound")), "Abort: unwound"),
])
def test_an_action_raising_a_base_exception_is_retried_then_failed_and_later_tasks_run(stack, monkeypatch,
                                                                                     leave, error):
    monkeypatch.setenv("TASKS_RETRY_BASE_S", "0")
    declare_action(monkeypatch, "quits", lambda data: leave(), max_attempts=2)
    task = stack.submit({"action": "quits"})
    local = factory.current_settings().store == "sqlite"

    def deliver():
        if not local:
            return stack.deliver()  # Lambda's handler, in the main thread
        # The local dispatcher runs the worker in threads of its own.
        worker = threading.Thread(target=stack.deliver)
        worker.start()
        worker.join(10)

    deliver()
    time.sleep(0.05)  # the zero backoff (the embedded queue's redelivery is in the same deliver)
    deliver()
    last = stack.task(task["id"])  # retried once, then failed: like any error of an action
    assert last["status"] == "failed" and last["attempts"] == 2 and last["error"] == error
    later = stack.submit({"action": "uppercase", "data": {"text": "still here"}})
    deliver()
    assert stack.task(later["id"])["result"] == {"output": "STILL HERE"}


def test_a_dispatcher_thread_outlives_a_handler_that_raises_a_base_exception(client, chalice_app, monkeypatch,
                                                                             caplog):
    from chalicelib.worker import Worker

    monkeypatch.setenv("TASKS_VISIBILITY_TIMEOUT_S", "1")  # the failed batch comes back a second later
    real = Worker.process_batch
    calls = []

    def exits_once(self, messages):
        calls.append(1)
        if len(calls) == 1:
            list(messages)
            raise SystemExit(3)
        return real(self, messages)

    monkeypatch.setattr(Worker, "process_batch", exits_once)
    first = submit(client, {"action": "sum", "data": {"numbers": [1]}})
    dispatcher = build_dispatcher(chalice_app)
    dispatcher.concurrency = 1  # one thread: if it died, nothing would be delivered
    dispatcher.start()
    try:
        second = submit(client, {"action": "sum", "data": {"numbers": [2]}})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(
                task_of(client, task_id)["status"] != "completed" for task_id in (first, second)):
            time.sleep(0.05)
    finally:
        dispatcher.stop()
    assert [task_of(client, task_id)["result"] for task_id in (first, second)] == [{"output": 1}, {"output": 2}]
    assert any("SystemExit: 3" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("error, attempt, expected", [
    (RuntimeError("down"), 1, Next.RETRY),
    (SystemExit(2), 2, Next.RETRY),  # whatever an action raises, short of Ctrl-C, fails only its attempt
    (RuntimeError("down"), 3, Next.GIVE_UP),
    (ConnectionError("down"), 4, Next.GIVE_UP),
    (ZeroDivisionError("division by zero"), 1, Next.FAIL),  # the same data would fail again
    (ActionError("no such file"), 1, Next.FAIL),
])
def test_what_follows_a_failed_attempt(error, attempt, expected):
    assert after_failure(error, attempt, RetryPolicy(max_attempts=3)) is expected


def test_two_messages_for_one_task_in_one_batch_run_it_once(client, chalice_app, monkeypatch):
    """Recovery re-publishes a watched task whose first message still waits: when both
    land in one batch, the task is claimed and run once, and both messages are done."""
    runs = []
    declare_action(monkeypatch, "counted", lambda data: runs.append(1) or {"runs": len(runs)})
    response = post_task(client, {"action": "counted"})
    task_id = json.loads(response.body)["id"]
    queue = factory.queue(factory.current_settings())
    queue.publish_task(task_id)  # the duplicate
    build_dispatcher(chalice_app).drain()
    assert runs == [1]
    assert json.loads(client.http.get(f"/tasks/{task_id}").body)["status"] == "completed"
    assert queue.depth() == 0
