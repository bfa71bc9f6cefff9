"""What every TaskStore must do. A backend's test module subclasses this with a `store` fixture."""
from datetime import timedelta

import pytest

from chalicelib.store import InvalidCursor
from chalicelib.tasks import Status, Task, utcnow


def make_task(action="sum", data=None, offset_us=0):
    return Task.new(action, data or {}, now=utcnow() + timedelta(microseconds=offset_us))


class StoreContract:
    def test_inserted_task_reads_back_equal(self, store):
        task = make_task("uppercase", {"text": "héllo", "nested": {"list": [1, 2.5, None, True]}})
        store.insert(task)
        assert store.get(task.id) == task

    def test_unknown_task_is_none(self, store):
        assert store.get("00000000-0000-4000-8000-000000000000") is None

    def test_delete_forgets_the_task(self, store):
        task = make_task()
        store.insert(task)
        store.delete(task.id)
        assert store.get(task.id) is None

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

    def test_exact_page_has_no_next_cursor(self, store):
        for n in range(3):
            store.insert(make_task(offset_us=n))
        assert store.list(limit=3).next_cursor is None

    def test_foreign_cursor_is_rejected(self, store):
        with pytest.raises(InvalidCursor):
            store.list(cursor="garbage")
