import sqlite3
import threading

import pytest

from chalicelib.sqlite_db import Database
from chalicelib.store.sqlite import MIGRATIONS, SqliteTaskStore
from chalicelib.tasks import Status, utcnow
from tests.store_contract import StoreContract, make_task


@pytest.fixture
def db(tmp_path):
    database = Database(str(tmp_path / "tasks.db"))
    database.migrate("tasks", MIGRATIONS)
    yield database
    database.close()


@pytest.fixture
def store(db):
    return SqliteTaskStore(db)


class TestSqliteStore(StoreContract):
    pass


def test_listing_uses_the_indexes(db):
    def plan(sql, params):
        return " ".join(row[-1] for row in db.query("EXPLAIN QUERY PLAN " + sql, params))

    newest = plan("SELECT id FROM tasks ORDER BY created_at DESC, id DESC LIMIT 100", ())
    by_status = plan("SELECT id FROM tasks WHERE status = ? AND (created_at, id) < (?, ?) "
                     "ORDER BY created_at DESC, id DESC LIMIT 100", ("queued", 1, "x"))
    assert "tasks_by_time" in newest and "TEMP B-TREE" not in newest
    assert "tasks_by_status_time" in by_status and "TEMP B-TREE" not in by_status
    by_action = plan("SELECT id FROM tasks WHERE action = ? AND (created_at, id) < (?, ?) "
                     "ORDER BY created_at DESC, id DESC LIMIT 100", ("sum", 1, "x"))
    by_both = plan("SELECT id FROM tasks WHERE action = ? AND status = ? ORDER BY created_at DESC, id DESC "
                   "LIMIT 100", ("sum", "queued"))
    assert "tasks_by_action_time" in by_action and "TEMP B-TREE" not in by_action
    assert ("tasks_by_action_time" in by_both or "tasks_by_status_time" in by_both) and "TEMP B-TREE" not in by_both


def test_concurrent_writers_never_see_database_is_locked(store):
    errors = []

    def work():
        try:
            for _ in range(50):
                task = make_task()
                store.insert(task)
                claimed = store.claim(task.id, utcnow())
                store.finish(task.id, claimed.attempts, Status.COMPLETED, utcnow(), result={"output": 1})
                store.list(limit=10)
        except sqlite3.OperationalError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.list(Status.COMPLETED, limit=1000).tasks) == 400


def test_wal_mode_and_busy_timeout_are_set(db):
    assert db.query("PRAGMA journal_mode")[0][0] == "wal"
    assert db.query("PRAGMA busy_timeout")[0][0] >= 5000


def test_oldest_queued_task_is_found_by_its_index(store):
    first, second = make_task(), make_task(offset_us=1)
    store.insert(first)
    store.insert(second)
    assert store.oldest(Status.QUEUED).id == first.id
    store.claim(first.id, utcnow())
    assert store.oldest(Status.QUEUED).id == second.id


def test_the_oldest_queued_task_is_the_one_ready_longest_by_its_index(store, db):
    from datetime import timedelta

    from chalicelib.tasks import Task

    start = utcnow()
    delayed = Task.new("sum", {}, now=start, run_at=start + timedelta(seconds=3))
    waiting = Task.new("sum", {}, now=start + timedelta(seconds=0.2))
    later = Task.new("sum", {}, now=start + timedelta(seconds=1))
    for task in (delayed, waiting, later):
        store.insert(task)
    now = start + timedelta(seconds=3.5)
    assert store.oldest(Status.QUEUED, ready_by=now).id == waiting.id  # ready 3.3 s, not 0.5 s
    assert store.oldest(Status.QUEUED, ready_by=start + timedelta(seconds=0.5)).id == waiting.id
    assert store.oldest(Status.QUEUED, ready_by=start + timedelta(seconds=0.1)) is None
    store.claim(waiting.id, now)
    assert store.oldest(Status.QUEUED, ready_by=now).id == later.id
    store.claim(later.id, now)
    assert store.oldest(Status.QUEUED, ready_by=now).id == delayed.id
    plan = " ".join(row[-1] for row in db.query("EXPLAIN QUERY PLAN " + store.OLDEST_QUEUED_SQL, (0,)))
    assert "tasks_queued_by_ready" in plan and "TEMP B-TREE" not in plan, plan


def test_stats_age_the_oldest_queued_task_from_when_it_could_start(client, monkeypatch):
    import json
    from datetime import timedelta

    from chalicelib import service
    from tests.conftest import post_task

    start = utcnow()
    monkeypatch.setattr(service, "utcnow", lambda: start)
    assert post_task(client, {"action": "sum", "delay_seconds": 3}).status_code == 202
    monkeypatch.setattr(service, "utcnow", lambda: start + timedelta(seconds=0.2))
    assert post_task(client, {"action": "sum"}).status_code == 202
    monkeypatch.setattr(service, "utcnow", lambda: start + timedelta(seconds=3.5))
    stats = json.loads(client.http.get("/stats").body)
    assert stats["counts"]["queued"] == 2 and stats["oldest_queued_age_seconds"] == 3.3
