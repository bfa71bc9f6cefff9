"""What every TaskStore must do. A backend's test module subclasses this with a `store` fixture."""
from datetime import timedelta

import pytest

from chalicelib.store import InvalidCursor, KeyRecord, TaskExists
from chalicelib.tasks import Status, Task, utcnow


def make_task(action="sum", data=None, offset_us=0):
    return Task.new(action, data or {}, now=utcnow() + timedelta(microseconds=offset_us))


class StoreContract:
    def test_inserted_task_reads_back_equal(self, store):
        task = make_task("uppercase", {"text": "héllo", "nested": {"list": [1, 2.5, None, True]}})
        store.insert(task)
        assert store.get(task.id) == task

    def test_duplicate_insert_is_refused(self, store):
        task = make_task()
        store.insert(task)
        # Another request's task under the same id (two requests with one Idempotency-Key).
        with pytest.raises(TaskExists):
            store.insert(Task.new("sum", {}, now=task.created_at + timedelta(microseconds=1), task_id=task.id))
        assert store.get(task.id) == task

    def test_unknown_task_is_none(self, store):
        assert store.get("00000000-0000-4000-8000-000000000000") is None

    def test_delete_removes_a_final_task_and_its_key_only(self, store):
        now = utcnow()
        task = Task.new("sum", {}, now=now, idempotency_key="k1")
        store.insert(task)
        store.remember_key(KeyRecord("k1", "print", task.id, now, now + timedelta(hours=1)), now)
        assert store.delete(task.id) is None  # queued: not deleted
        claimed = store.claim(task.id, utcnow())
        assert store.delete(task.id) is None  # running: not deleted
        store.finish(task.id, claimed.attempts, Status.COMPLETED, utcnow(), result={"output": 0})
        assert store.delete(task.id).status is Status.COMPLETED
        assert store.get(task.id) is None and store.list().tasks == []
        # The key is free again: a new record can take it.
        assert store.remember_key(KeyRecord("k1", "other", "new-id", now, now + timedelta(hours=1)), now) is None
        assert store.delete(task.id) is None

    def test_withdraw_removes_only_a_queued_task(self, store):
        task, running = make_task(), make_task(offset_us=1)
        store.insert(task)
        store.insert(running)
        store.claim(running.id, utcnow())
        assert store.withdraw(running.id) is None and store.get(running.id) is not None
        assert store.withdraw(task.id).id == task.id and store.get(task.id) is None

    def test_claim_starts_an_attempt(self, store):
        task = make_task()
        store.insert(task)
        now = utcnow()
        claimed = store.claim(task.id, now)
        assert claimed.status is Status.RUNNING and claimed.attempts == 1 and claimed.started_at == now

    def test_finish_records_the_outcome_once(self, store):
        task = make_task()
        store.insert(task)
        claimed = store.claim(task.id, utcnow())
        assert store.finish(task.id, claimed.attempts, Status.COMPLETED, utcnow(), result={"output": 3})
        assert not store.finish(task.id, claimed.attempts, Status.FAILED, utcnow(), error="late")
        final = store.get(task.id)
        assert final.status is Status.COMPLETED and final.result == {"output": 3} and final.error is None

    def test_finish_records_the_attempts_own_start_in_place_of_its_claims(self, store):
        task, other = make_task(), make_task(offset_us=1)
        store.insert(task)
        store.insert(other)
        claimed_at = utcnow()
        claimed = store.claim(task.id, claimed_at)
        kept = store.claim(other.id, claimed_at)
        started, finished = claimed_at + timedelta(milliseconds=300), claimed_at + timedelta(milliseconds=400)
        assert store.finish(task.id, claimed.attempts, Status.COMPLETED, finished, result={"output": 1},
                            started_at=started)
        assert store.finish(other.id, kept.attempts, Status.COMPLETED, finished, result={"output": 2})
        final = store.get(task.id)
        assert (final.started_at, final.finished_at) == (started, finished)
        assert store.get(other.id).started_at == claimed_at  # none given: the claim's stays

    def test_final_task_cannot_be_claimed_again(self, store):
        task = make_task()
        store.insert(task)
        claimed = store.claim(task.id, utcnow())
        store.finish(task.id, claimed.attempts, Status.FAILED, utcnow(), error="bad data")
        assert store.claim(task.id, utcnow()) is None
        assert store.get(task.id).attempts == 1

    def test_stale_attempt_cannot_overwrite_a_newer_one(self, store):
        task = make_task()
        store.insert(task)
        first = store.claim(task.id, utcnow())
        second = store.claim(task.id, utcnow())
        assert second.attempts == first.attempts + 1
        assert not store.finish(task.id, first.attempts, Status.COMPLETED, utcnow(), result={"output": "old"})
        assert store.finish(task.id, second.attempts, Status.COMPLETED, utcnow(), result={"output": "new"})
        assert store.get(task.id).result == {"output": "new"}

    def test_claim_of_unknown_task_is_none(self, store):
        assert store.claim("00000000-0000-4000-8000-000000000000", utcnow()) is None

    def test_finish_needs_a_final_status(self, store):
        with pytest.raises(ValueError):
            store.finish("x", 1, Status.RUNNING, utcnow())

    def test_list_is_newest_first_and_pages_without_gaps(self, store):
        tasks = [make_task(offset_us=n) for n in range(12)]
        # Two tasks with the same creation time are ordered by id.
        tasks.append(Task.new("sum", {}, now=tasks[5].created_at))
        for task in tasks:
            store.insert(task)
        expected = sorted(tasks, key=lambda t: (t.created_at, t.id), reverse=True)
        seen, cursor = [], None
        while True:
            page = store.list(limit=5, cursor=cursor)
            seen += page.tasks
            cursor = page.next_cursor
            if cursor is None:
                break
        assert [t.id for t in seen] == [t.id for t in expected]

    def test_list_filters_by_status(self, store):
        queued, done = make_task(), make_task(offset_us=1)
        store.insert(queued)
        store.insert(done)
        claimed = store.claim(done.id, utcnow())
        store.finish(done.id, claimed.attempts, Status.COMPLETED, utcnow(), result={"output": 1})
        assert [t.id for t in store.list(Status.QUEUED).tasks] == [queued.id]
        assert [t.id for t in store.list(Status.COMPLETED).tasks] == [done.id]
        assert store.list(Status.FAILED).tasks == []

    def test_list_filters_by_action_alone_and_with_a_status_and_pages(self, store):
        tasks = [make_task("sum" if n % 3 else "uppercase", offset_us=n) for n in range(12)]
        for task in tasks:
            store.insert(task)
        for task in tasks[:4]:
            claimed = store.claim(task.id, utcnow())
            store.finish(task.id, claimed.attempts, Status.COMPLETED, utcnow(), result={"output": 1})
        newest_first = sorted(tasks, key=lambda t: (t.created_at, t.id), reverse=True)
        sums, cursor = [], None
        while True:
            page = store.list(limit=3, cursor=cursor, action="sum")
            sums += page.tasks
            cursor = page.next_cursor
            if cursor is None:
                break
        assert [t.id for t in sums] == [t.id for t in newest_first if t.action == "sum"]
        done = {t.id for t in tasks[:4]}
        assert [t.id for t in store.list(Status.COMPLETED, action="sum").tasks] == [
            t.id for t in newest_first if t.action == "sum" and t.id in done]
        assert [t.id for t in store.list(Status.QUEUED, action="uppercase").tasks] == [
            t.id for t in newest_first if t.action == "uppercase" and t.id not in done]
        assert store.list(action="resize").tasks == []

    def test_a_delayed_task_keeps_its_run_at(self, store):
        task = Task.new("sum", {}, run_at=utcnow() + timedelta(hours=2), due_at=utcnow() + timedelta(hours=2))
        store.insert(task)
        assert store.get(task.id) == task

    def test_exact_page_has_no_next_cursor(self, store):
        for n in range(3):
            store.insert(make_task(offset_us=n))
        assert store.list(limit=3).next_cursor is None

    def test_foreign_cursor_is_rejected(self, store):
        with pytest.raises(InvalidCursor):
            store.list(cursor="garbage")

    def test_claim_sets_the_lease_and_finish_clears_it(self, store):
        task = make_task()
        store.insert(task)
        lease = utcnow() + timedelta(seconds=60)
        claimed = store.claim(task.id, utcnow(), lease_until=lease)
        assert claimed.due_at == lease
        store.finish(task.id, claimed.attempts, Status.COMPLETED, utcnow(), result={"output": 1})
        assert store.get(task.id).due_at is None

    def test_due_lists_tasks_past_their_due_time_earliest_first(self, store):
        now = utcnow()
        late, later, future = make_task(), make_task(offset_us=1), make_task(offset_us=2)
        store.insert(Task.new("sum", {}, now=now, due_at=now - timedelta(seconds=5), task_id=late.id))
        store.insert(Task.new("sum", {}, now=now, due_at=now - timedelta(seconds=1), task_id=later.id))
        store.insert(Task.new("sum", {}, now=now, due_at=now + timedelta(seconds=60), task_id=future.id))
        assert [t.id for t in store.due(now)] == [late.id, later.id]
        claimed = store.claim(late.id, now, lease_until=now + timedelta(seconds=30))
        store.finish(later.id, 0, Status.FAILED, now)  # not running: refused, stays due
        assert [t.id for t in store.due(now)] == [later.id]
        assert claimed.status is Status.RUNNING

    def test_requeue_needs_the_same_attempt(self, store):
        task = make_task()
        store.insert(task)
        claimed = store.claim(task.id, utcnow())
        due = utcnow() + timedelta(seconds=10)
        assert store.requeue(task.id, claimed.attempts + 1, due) is None
        requeued = store.requeue(task.id, claimed.attempts, due, error="boom")
        assert requeued.status is Status.QUEUED and requeued.error == "boom" and requeued.due_at == due
        assert requeued.attempts == claimed.attempts

    def test_retry_moves_only_a_failed_task_back_to_queued_afresh(self, store):
        task = make_task()
        store.insert(task)
        assert store.retry(task, utcnow()) is None
        claimed = store.claim(task.id, utcnow())
        store.finish(task.id, claimed.attempts, Status.FAILED, utcnow(), error="bad")
        again = store.retry(store.get(task.id), utcnow())
        assert again.status is Status.QUEUED and again.attempt_in_series == 0
        assert again.error is None and again.result is None and again.finished_at is None

    def test_attempt_numbers_only_grow_across_an_operator_retry(self, store):
        task = make_task()
        store.insert(task)
        stale = store.claim(task.id, utcnow())  # a worker that will be late
        second = store.claim(task.id, utcnow())
        store.finish(task.id, second.attempts, Status.FAILED, utcnow(), error="bad")
        again = store.retry(store.get(task.id), utcnow())
        assert again.attempts == 2 and again.series_start == 2
        fresh = store.claim(task.id, utcnow())
        assert fresh.attempts == 3 and fresh.attempt_in_series == 1
        assert not store.finish(task.id, stale.attempts, Status.COMPLETED, utcnow(), result={"output": "old"})
        assert store.get(task.id).status is Status.RUNNING

    def test_cancel_only_from_queued(self, store):
        queued, running = make_task(), make_task(offset_us=1)
        store.insert(queued)
        store.insert(running)
        store.claim(running.id, utcnow())
        cancelled = store.cancel(queued.id, utcnow())
        assert cancelled.status is Status.CANCELLED and cancelled.due_at is None
        assert store.cancel(running.id, utcnow()) is None
        assert store.cancel(queued.id, utcnow()) is None
        assert store.claim(queued.id, utcnow()) is None

    def test_idempotency_key_is_remembered_until_it_expires(self, store):
        now = utcnow()
        first = KeyRecord("k-1", "abc", "task-1", now, now + timedelta(hours=24))
        assert store.remember_key(first, now) is None
        again = KeyRecord("k-1", "xyz", "task-2", now, now + timedelta(hours=24))
        held = store.remember_key(again, now)
        assert (held.fingerprint, held.task_id) == ("abc", "task-1")
        later = now + timedelta(hours=25)
        renewed = KeyRecord("k-1", "xyz", "task-2", later, later + timedelta(hours=24))
        assert store.remember_key(renewed, later) is None
        assert store.remember_key(first, later).task_id == "task-2"

    def test_forget_key_only_for_its_own_task(self, store):
        now = utcnow()
        store.remember_key(KeyRecord("k-2", "abc", "task-1", now, now + timedelta(hours=1)), now)
        store.forget_key("k-2", "task-other")
        assert store.remember_key(KeyRecord("k-2", "x", "t", now, now), now).task_id == "task-1"
        store.forget_key("k-2", "task-1")
        assert store.remember_key(KeyRecord("k-2", "x", "t", now, now + timedelta(hours=1)), now) is None

    def test_counts_by_status(self, store):
        first, second, third = (make_task(offset_us=n) for n in range(3))
        for task in (first, second, third):
            store.insert(task)
        claimed = store.claim(third.id, utcnow())
        store.finish(third.id, claimed.attempts, Status.COMPLETED, utcnow(), result={"output": 1})
        assert store.count_by_status() == {"queued": 2, "completed": 1}
        store.claim(second.id, utcnow())
        store.cancel(first.id, utcnow())
        assert store.count_by_status() == {"running": 1, "completed": 1, "cancelled": 1}
        store.delete(first.id)
        assert store.count_by_status() == {"running": 1, "completed": 1}

    def test_oldest_failed_task(self, store):
        first, second, third = (make_task(offset_us=n) for n in range(3))
        for task in (first, second, third):
            store.insert(task)
        for task in (third, second):
            claimed = store.claim(task.id, utcnow())
            store.finish(task.id, claimed.attempts, Status.FAILED, utcnow(), error="bad")
        assert store.oldest(Status.FAILED).id == second.id
        assert store.oldest(Status.CANCELLED) is None

    def test_finished_tasks_past_their_retention_are_gone_from_reads(self, store):
        # The stores are built with 30 days' retention.
        old, recent, retried = make_task(), make_task(offset_us=1), make_task(offset_us=2)
        long_ago = utcnow() - timedelta(days=31)
        finished = {old.id: long_ago, recent.id: utcnow(), retried.id: utcnow() - timedelta(days=29)}
        for task in (old, recent, retried):
            store.insert(task)
            claimed = store.claim(task.id, long_ago)
            store.finish(task.id, claimed.attempts, Status.FAILED, finished[task.id], error="bad")
        store.retry(store.get(retried.id), utcnow())  # queued again: no longer finished, nor expiring
        store.purge_finished(utcnow() - timedelta(days=30), 100)
        assert store.get(old.id) is None
        assert store.get(recent.id).status is Status.FAILED
        assert store.get(retried.id).status is Status.QUEUED
        assert {task.id for task in store.list().tasks} == {recent.id, retried.id}
        assert [task.id for task in store.list(Status.FAILED).tasks] == [recent.id]

    def test_outcomes_add_to_their_minutes_figures(self, store):
        from chalicelib import series

        now = utcnow()
        done, broken, dropped = make_task(), make_task(offset_us=1), make_task(offset_us=2)
        for task in (done, broken, dropped):
            store.insert(task)
        for task, outcome in ((done, Status.COMPLETED), (broken, Status.FAILED)):
            claimed = store.claim(task.id, now)
            store.finish(task.id, claimed.attempts, outcome, now + timedelta(milliseconds=40))
        store.cancel(dropped.id, now)
        minute = series.minute_of(now)
        figures = series.window(store.minutes(minute - 1), now, 2)["points"][-1]
        assert (figures["completed"], figures["failed"], figures["cancelled"]) == (1, 1, 1)
        assert 38 <= figures["run_ms"]["p50"] <= 42  # two runs of 40 ms, within a bucket
        assert store.minutes(minute - 1, "uppercase") == {}
        assert sum(store.minutes(minute - 1, "sum")[(minute, "sum")].values()) > 0
