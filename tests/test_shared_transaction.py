"""Writers that arrive together share one transaction and one commit; each piece
of work still succeeds or fails on its own."""
import sqlite3
import threading
import time

import pytest

from chalicelib import sqlite_wal
from chalicelib.sqlite_db import Database
from tests.test_sqlite_wal import FlushRecorder, in_threads

SCHEMA = (
    "CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT)",
    "CREATE TABLE parents (id INTEGER PRIMARY KEY)",
    "CREATE TABLE children (id INTEGER PRIMARY KEY, "
    "parent INTEGER REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED)",
)


@pytest.fixture
def db(tmp_path):
    database = Database(str(tmp_path / "wal.db"))
    database.migrate("test", ((1, SCHEMA),))
    yield database
    database.close()


def stored(db) -> set:
    return {row[0] for row in db.query("SELECT id FROM items")}


def insert(db, number: int):
    def work():
        db.execute("INSERT INTO items (id) VALUES (?)", (number,))
        return number * 10
    return work


def run_together(db, works: list) -> list:
    """Start one thread per work while the write lock is held, so that all of them
    are waiting when it is released and one transaction runs them; each thread's
    result or exception."""
    outcomes = [None] * len(works)

    def call(index, work):
        try:
            outcomes[index] = db.shared_transaction(work)
        except Exception as exc:  # the outcome under test
            outcomes[index] = exc

    threads = [threading.Thread(target=call, args=(n, work), name=f"writer-{n}") for n, work in enumerate(works)]
    with db._write_lock:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 5
        while len(db._waiting) < len(works) and time.monotonic() < deadline:
            time.sleep(0.001)
        assert len(db._waiting) == len(works)
    for thread in threads:
        thread.join()
    return outcomes


def test_waiting_writers_share_one_commit_and_each_gets_its_own_result(db):
    commits_before = db._group._committed
    outcomes = run_together(db, [insert(db, n) for n in range(5)])
    assert outcomes == [0, 10, 20, 30, 40]
    assert stored(db) == {0, 1, 2, 3, 4}
    assert db._group._committed == commits_before + 1


def test_a_piece_that_raises_is_rolled_back_alone(db):
    def fails_after_writing():
        db.execute("INSERT INTO items (id) VALUES (2)")
        raise ValueError("this piece fails")

    outcomes = run_together(db, [insert(db, 1), fails_after_writing, insert(db, 3)])
    assert outcomes[0] == 10 and outcomes[2] == 30
    assert isinstance(outcomes[1], ValueError)
    assert stored(db) == {1, 3}


def test_a_failed_commit_fails_every_piece_and_stores_none(db):
    def orphan():
        db.execute("INSERT INTO children (id, parent) VALUES (1, 99)")  # checked at COMMIT

    outcomes = run_together(db, [insert(db, 1), orphan])
    assert all(isinstance(outcome, sqlite3.IntegrityError) for outcome in outcomes)
    assert stored(db) == set()
    assert db.shared_transaction(insert(db, 2)) == 20  # the database is usable afterwards
    assert stored(db) == {2}


def test_many_concurrent_writers_each_return_durable(db, tmp_path, monkeypatch):
    recorder = FlushRecorder(str(tmp_path / "wal.db"), seconds=0.005)
    monkeypatch.setattr(sqlite_wal, "_sync", recorder)
    commits_before = db._group._committed
    not_durable, results = [], []

    def writer(first: int) -> None:
        for number in range(first, first + 20):
            results.append(db.shared_transaction(insert(db, number)))
            if number not in recorder.durable:
                not_durable.append(number)

    assert in_threads(writer, [n * 100 for n in range(8)]) == []
    expected = {n * 100 + k for n in range(8) for k in range(20)}
    assert stored(db) == expected and sorted(results) == sorted(n * 10 for n in expected)
    assert not_durable == []
    assert db._group._committed - commits_before < 160  # writers that met shared commits


def test_inside_an_open_transaction_the_work_joins_it(db):
    with pytest.raises(RuntimeError):
        with db.transaction():
            assert db.shared_transaction(insert(db, 1)) == 10
            raise RuntimeError("roll back everything")
    assert stored(db) == set()


def test_after_commit_callbacks_run_on_the_writers_own_thread_once_committed(db):
    seen = []

    def work():
        db.execute("INSERT INTO items (id) VALUES (1)")
        db.after_commit(lambda: seen.append((threading.current_thread().name, stored(db))))

    outcomes = run_together(db, [work, insert(db, 2)])
    assert outcomes[1] == 20
    [(thread_name, rows)] = seen
    assert thread_name == "writer-0" and rows == {1, 2}


def test_work_alone_in_its_transaction_that_raises_stores_nothing(db):
    def fails_after_writing():
        db.execute("INSERT INTO items (id) VALUES (1)")
        raise ValueError("this piece fails")

    with pytest.raises(ValueError):
        db.shared_transaction(fails_after_writing)
    assert stored(db) == set()
    assert db.shared_transaction(insert(db, 2)) == 20
    assert stored(db) == {2}
