"""The scheduled recovery pass goes on past what it cannot handle: an index entry
behind its task, one task's failure, a failing step, its own time budget."""
from datetime import timedelta

import pytest

from chalicelib import factory
from chalicelib.recovery import Recovery
from chalicelib.store import StoreError
from chalicelib.tasks import Status, Task, to_micros, utcnow
from tests.stacks import Stack


def orphan(store, seconds_ago: float = 5) -> Task:
    """A queued task whose message was never sent (its process died after the insert)."""
    past = utcnow() - timedelta(seconds=seconds_ago)
    task = Task.new("uppercase", {"text": "lost"}, now=past, due_at=past)
    store.insert(task)
    return task


def test_a_due_entry_behind_its_task_is_skipped_and_the_pass_goes_on(client, chalice_app, dynamodb_store,
                                                                      monkeypatch):
    from chalicelib.store.dynamodb import shard_of

    stack = Stack(client, chalice_app, *dynamodb_store)
    store = factory.store(factory.current_settings())
    lost = orphan(store)
    done = stack.submit({"action": "sum"})
    assert stack.deliver() == 1 and stack.task(done["id"])["status"] == "completed"
    running = stack.submit({"action": "sum"})
    store.claim(running["id"], utcnow())  # running, with no due time
    # The by_due index is eventually consistent: it still lists both, ahead of the lost task.
    behind = {running["id"]: lost.due_at - timedelta(seconds=2), done["id"]: lost.due_at - timedelta(seconds=1)}
    dynamodb = factory.aws_client("dynamodb", "request")
    query = dynamodb.query

    def lagging(**request):
        response = query(**request)
        for task_id, due_at in behind.items():
            shard = f"due#{shard_of(task_id)}"
            if request.get("IndexName") == "by_due" and request["ExpressionAttributeValues"][":pk"]["S"] == shard:
                response["Items"].insert(0, {"id": {"S": task_id}, "due_pk": {"S": shard},
                                             "due_at": {"N": str(to_micros(due_at))}})
        return response

    monkeypatch.setattr(dynamodb, "query", lagging)
    counts = factory.recovery().run()
    assert counts["queued"] == 1  # the lost task, behind the stale entries
    assert stack.task(running["id"])["status"] == "running" and stack.task(done["id"])["status"] == "completed"
    stack.deliver()
    assert stack.task(lost.id)["result"] == {"output": "LOST"}


def test_one_task_that_cannot_be_handled_does_not_stop_the_others(client, monkeypatch):
    settings = factory.current_settings()
    store = factory.store(settings)
    broken, fine = orphan(store, 10), orphan(store, 5)
    requeue = store.requeue

    def failing_for_one(task_id, *args, **kwargs):
        if task_id == broken.id:
            raise StoreError("disk I/O error")
        return requeue(task_id, *args, **kwargs)

    monkeypatch.setattr(store, "requeue", failing_for_one)
    assert factory.recovery().run()["queued"] == 1
    assert store.get(fine.id).due_at > utcnow() and store.get(broken.id).due_at < utcnow()


@pytest.mark.parametrize("failing", ["due", "purge_expired_keys", "fold_counts", "purge_finished"])
def test_a_failing_step_of_the_pass_does_not_stop_the_others(client, monkeypatch, failing):
    settings = factory.current_settings()
    store = factory.store(settings)
    lost = orphan(store)
    long_ago = utcnow() - timedelta(days=31)
    old = Task.new("sum", {}, now=long_ago)
    store.insert(old)
    store.finish(old.id, store.claim(old.id, long_ago).attempts, Status.COMPLETED, long_ago)
    steps = []
    for name in ("due", "purge_expired_keys", "fold_counts", "purge_finished"):
        real = getattr(store, name)

        def recorded(*args, _name=name, _real=real):
            steps.append(_name)
            if _name == failing:
                raise StoreError("throttled")
            return _real(*args)

        monkeypatch.setattr(store, name, recorded)
    counts = factory.recovery().run()
    assert steps == ["due", "purge_expired_keys", "fold_counts", "purge_finished"]
    assert counts["queued"] == (0 if failing == "due" else 1)
    assert counts["purged"] == (0 if failing == "purge_finished" else 1)
    assert (store.get(lost.id).due_at > utcnow()) is (failing != "due")


def test_a_pass_stops_publishing_when_its_time_budget_is_spent_and_the_next_goes_on(client):
    settings = factory.current_settings()
    store = factory.store(settings)
    lost = [orphan(store, 10 - n) for n in range(5)]
    ticks = iter(range(1000))  # a second passes with each look at the clock
    recovery = Recovery(store, factory.queue(settings), budget_seconds=2.5, clock=lambda: next(ticks))
    assert recovery.run()["queued"] == 2
    assert factory.recovery().run()["queued"] == 3
    assert all(store.get(task.id).due_at > utcnow() for task in lost)
