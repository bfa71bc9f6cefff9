"""Delayed tasks on both stacks: SQLite with the embedded queue, and DynamoDB with SQS under moto."""
import json
import time
from datetime import datetime, timedelta

import pytest

from chalicelib import factory, recovery
from chalicelib.tasks import format_time, utcnow
from tests.conftest import post_empty, post_task
from tests.stacks import stack  # noqa: F401 (a fixture)


def recover_at(monkeypatch, moment: datetime) -> dict:
    """One pass of the scheduled function as if it ran at `moment`."""
    monkeypatch.setattr(recovery, "utcnow", lambda: moment)
    return factory.recovery().run()


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize("schedule, pointer, says", [
    ({"delay_seconds": -1}, "/delay_seconds", "from 0 to 31536000"),
    ({"delay_seconds": "10"}, "/delay_seconds", "must be a number"),
    ({"delay_seconds": True}, "/delay_seconds", "must be a number"),
    ({"delay_seconds": 31_536_001}, "/delay_seconds", "a year"),
    ({"run_at": "tomorrow"}, "/run_at", "RFC 3339"),
    ({"run_at": "2026-12-02T10:00:00"}, "/run_at", "with its offset"),
    ({"run_at": "2026-13-45T10:00:00Z"}, "/run_at", "RFC 3339"),
    ({"run_at": 1767225600}, "/run_at", "RFC 3339"),
    ({"delay_seconds": 5, "run_at": format_time(utcnow())}, "/run_at", "not both"),
])
def test_bad_schedules_are_400s_that_store_and_publish_nothing(stack, schedule, pointer, says):
    response = post_task(stack.client, {"action": "sum", **schedule})
    assert response.status_code == 400
    problem = json.loads(response.body)
    assert problem["pointer"] == pointer and says in problem["detail"]
    assert json.loads(stack.client.http.get("/tasks").body)["tasks"] == [] and stack.messages() == 0


def test_a_run_at_more_than_a_year_ahead_is_a_422_that_stores_and_publishes_nothing(stack):
    # The document allows any date-time; the clock refuses this one: well-formed, not doable.
    response = post_task(stack.client, {"action": "sum", "run_at": format_time(utcnow() + timedelta(days=400))})
    assert response.status_code == 422
    problem = json.loads(response.body)
    assert problem["pointer"] == "/run_at" and "more than a year ahead" in problem["detail"]
    assert json.loads(stack.client.http.get("/tasks").body)["tasks"] == [] and stack.messages() == 0


def test_a_short_delay_is_held_by_the_queue_and_then_runs(stack):
    task = stack.submit({"action": "sum", "data": {"numbers": [2, 2]}, "delay_seconds": 2})
    run_at = parse(task["run_at"])
    queue = json.loads(stack.client.http.get("/stats").body)["queue"]
    assert queue["delayed"] == 1 and queue["waiting"] == queue["in_flight"] == 0
    assert task["status"] == "queued" and run_at - parse(task["created_at"]) == timedelta(seconds=2)
    assert stack.deliver() == 0 and stack.task(task["id"])["attempts"] == 0  # held, not started
    time.sleep(max(0.0, (run_at - utcnow()).total_seconds()) + 0.3)
    assert stack.deliver() == 1
    done = stack.task(task["id"])
    assert done["status"] == "completed" and done["result"] == {"output": 4}
    assert parse(done["started_at"]) >= run_at


def test_a_run_at_in_the_past_runs_at_once(stack):
    task = stack.submit({"action": "sum", "data": {"numbers": [1]}, "run_at": "2026-01-01T00:00:00+01:00"})
    assert task["run_at"] == "2025-12-31T23:00:00.000000Z"
    assert stack.deliver() == 1 and stack.task(task["id"])["status"] == "completed"


def test_a_long_delay_waits_with_no_message_until_the_scheduled_function_publishes_it(stack, monkeypatch):
    task = stack.submit({"action": "uppercase", "data": {"text": "later"}, "delay_seconds": 7200})
    run_at = parse(task["run_at"])
    assert task["status"] == "queued" and stack.messages() == 0
    assert recover_at(monkeypatch, utcnow())["scheduled"] == 0 and stack.messages() == 0
    # The pass before its time publishes it, for the queue to hold until then.
    assert recover_at(monkeypatch, run_at - timedelta(seconds=30))["scheduled"] == 1 and stack.messages() == 1
    assert recover_at(monkeypatch, run_at - timedelta(seconds=10))["scheduled"] == 0  # published once
    assert stack.deliver() == 0 and stack.task(task["id"])["status"] == "queued"


def test_a_long_delay_is_run_by_the_first_pass_after_its_time(stack, monkeypatch):
    task = stack.submit({"action": "uppercase", "data": {"text": "later"}, "delay_seconds": 3600})
    counts = recover_at(monkeypatch, parse(task["run_at"]) + timedelta(seconds=5))
    assert counts["scheduled"] == 1 and counts["queued"] == 0
    assert stack.deliver() == 1
    assert stack.task(task["id"])["result"] == {"output": "LATER"}


def test_a_waiting_task_can_be_cancelled_and_is_never_published(stack, monkeypatch):
    task = stack.submit({"action": "sum", "delay_seconds": 3600})
    cancelled = post_empty(stack.client, f"/tasks/{task['id']}/cancel")
    assert cancelled.status_code == 200 and json.loads(cancelled.body)["status"] == "cancelled"
    counts = recover_at(monkeypatch, parse(task["run_at"]) + timedelta(seconds=5))
    assert counts["scheduled"] == counts["queued"] == 0 and stack.messages() == 0


def test_a_short_delay_can_be_cancelled_and_its_message_is_dropped(stack):
    task = stack.submit({"action": "sum", "delay_seconds": 1})
    assert post_empty(stack.client, f"/tasks/{task['id']}/cancel").status_code == 200
    time.sleep(1.3)
    assert stack.deliver() == 1 and stack.messages() == 0
    assert stack.task(task["id"])["status"] == "cancelled" and stack.task(task["id"])["attempts"] == 0


def test_recovery_does_not_take_a_waiting_task_for_a_lost_one(stack, monkeypatch):
    stale = factory.current_settings().stale_after_seconds
    keyed = stack.submit({"action": "sum", "delay_seconds": 600}, headers={"Idempotency-Key": "later"})
    far = stack.submit({"action": "sum", "delay_seconds": 7200})
    # Past a keyed task's usual watch, before its time: neither is lost.
    counts = recover_at(monkeypatch, utcnow() + timedelta(seconds=stale + 60))
    assert counts["queued"] == counts["scheduled"] == 0
    assert stack.messages() == 1  # the short delay's own message, still held
    assert stack.task(keyed["id"])["status"] == stack.task(far["id"])["status"] == "queued"


def test_a_message_early_for_its_task_goes_back_unclaimed(stack):
    task = stack.submit({"action": "sum", "delay_seconds": 3600})
    queue = factory.queue(factory.current_settings())
    queue.send(json.dumps({"task_id": task["id"], "run_at": int(time.time() * 1e6) + 3_600_000_000}))
    assert stack.deliver() == 1
    assert stack.task(task["id"])["attempts"] == 0 and stack.messages() == 1  # back, hidden until its time


def test_a_delayed_tasks_queue_wait_counts_from_its_run_at(stack):
    task = stack.submit({"action": "sum", "data": {"numbers": [1]}, "delay_seconds": 1.5})
    time.sleep(2.3)  # SQS holds a message for whole seconds: 2 here, never less than asked
    assert stack.deliver() == 1 and stack.task(task["id"])["status"] == "completed"
    points = json.loads(stack.client.http.get("/stats/series?minutes=2").body)["points"]
    waits = [point["wait_ms"]["p99"] for point in points if point["wait_ms"]]
    assert waits and max(waits) < 1800  # from run_at (about 800 ms); from creation it would be 2,300 ms or more


def test_a_task_waiting_for_its_time_is_not_the_oldest_queued(client):
    later = json.loads(post_task(client, {"action": "sum", "delay_seconds": 3600}).body)["id"]
    waiting = json.loads(client.http.get("/stats").body)
    assert waiting["oldest_queued_age_seconds"] is None and waiting["oldest_queued_age_known"]
    post_task(client, {"action": "sum"})
    stats = json.loads(client.http.get("/stats").body)
    assert stats["counts"]["queued"] == 2 and 0 <= stats["oldest_queued_age_seconds"] < 5
    assert later


def test_every_delayed_task_falling_due_in_a_pass_is_published_by_it(stack, monkeypatch):
    ids = [json.loads(post_task(stack.client, {"action": "sum", "data": {"numbers": [n]}, "delay_seconds": 7200})
                      .body)["id"] for n in range(150)]
    run_ats = [parse(stack.task(task_id)["run_at"]) for task_id in (ids[0], ids[-1])]
    assert run_ats[1] - run_ats[0] < timedelta(seconds=30)  # all within the pass's reach
    counts = recover_at(monkeypatch, run_ats[0] - timedelta(seconds=30))
    assert counts["scheduled"] == 150 and counts["publish_failed"] == 0
    assert stack.messages() == 150  # none left for a pass a minute later


def test_a_publish_that_failed_in_one_pass_is_tried_again_by_the_next(stack, monkeypatch):
    from chalicelib.queue import PublishError

    task = stack.submit({"action": "uppercase", "data": {"text": "again"}, "delay_seconds": 7200})
    run_at = parse(task["run_at"])
    queue = factory.queue(factory.current_settings())

    def down(task_id, run_at=None, series=0):
        raise PublishError("queue unavailable")

    monkeypatch.setattr(queue, "publish_task", down)
    assert recover_at(monkeypatch, run_at - timedelta(seconds=30))["publish_failed"] == 1
    monkeypatch.delattr(queue, "publish_task")  # the queue is back
    counts = recover_at(monkeypatch, run_at + timedelta(seconds=30))  # the next pass, not 15 minutes on
    assert counts["scheduled"] == 1 and stack.messages() == 1
    assert stack.deliver() == 1 and stack.task(task["id"])["result"] == {"output": "AGAIN"}
