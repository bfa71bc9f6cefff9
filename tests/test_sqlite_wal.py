"""Group commit and background checkpoints: a durable write returns only once the
log holding it is flushed, flushes are shared, and the log does not grow forever."""
import contextlib
import os
import sqlite3
import threading
import time

import pytest

from chalicelib import sqlite_wal
from chalicelib.sqlite_db import Database


class FlushRecorder:
    """Stands in for fdatasync: records, per flush, the rows committed when it
    started; they are durable once it ends."""

    def __init__(self, path: str, seconds: float = 0.0) -> None:
        self._path = path
        self._seconds = seconds
        self._lock = threading.Lock()
        self.flushes = 0
        self.durable: set = set()
        self.fail_next = False

    def __call__(self, fd: int) -> None:
        # The descriptor flushed is the database's live log file.
        assert os.fstat(fd).st_nlink == 1 and os.fstat(fd).st_ino == os.stat(f"{self._path}-wal").st_ino
        with contextlib.closing(sqlite3.connect(self._path)) as reader:
            committed = {row[0] for row in reader.execute("SELECT id FROM items")}
        if self.fail_next:
            self.fail_next = False
            raise OSError(5, "Input/output error")
        time.sleep(self._seconds)
        with self._lock:
            self.flushes += 1
            self.durable |= committed


def in_threads(target, arguments: list) -> list:
    """Run target(argument) on one thread per argument, all at once; the exceptions raised."""
    errors = []

    def run(argument) -> None:
        try:
            target(argument)
        except Exception as exc:  # returned to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(argument,)) for argument in arguments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def database(tmp_path, synchronous: str = "FULL") -> Database:
    db = Database(str(tmp_path / "wal.db"), synchronous=synchronous)
    db.migrate("test", ((1, ("CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT)",)),))
    return db


@pytest.fixture
def recorder(tmp_path, monkeypatch):
    flush = FlushRecorder(str(tmp_path / "wal.db"))
    monkeypatch.setattr(sqlite_wal, "_sync", flush)
    return flush


def test_a_durable_transaction_returns_only_after_a_flush_that_holds_it(tmp_path, recorder):
    db = database(tmp_path)
    with db.transaction() as conn:
        conn.execute("INSERT INTO items (id) VALUES (1)")
    assert 1 in recorder.durable
    db.execute("INSERT INTO items (id) VALUES (2)")
    assert 2 in recorder.durable
    assert db.write_returning("INSERT INTO items (id) VALUES (3) RETURNING id") == [(3,)]
    assert 3 in recorder.durable
    db.close()


def test_connections_commit_without_flushing_and_leave_checkpoints_to_the_database(tmp_path):
    db = database(tmp_path)
    with db.connection() as conn:
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: the flush is ours
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_after_the_database_closes_its_log_flushes_reach_the_new_log_file(tmp_path, recorder):
    db = database(tmp_path)
    db.execute("INSERT INTO items (id) VALUES (1)")
    db.close()  # the last connection deletes the log file
    assert not os.path.exists(tmp_path / "wal.db-wal")
    db.execute("INSERT INTO items (id) VALUES (2)")
    assert 2 in recorder.durable
    db.close()


def test_a_connection_whose_body_raised_goes_back_to_the_pool_and_the_log_stays(tmp_path, recorder):
    db = database(tmp_path)
    db.execute("INSERT INTO items (id) VALUES (1)")
    with pytest.raises(RuntimeError):
        with db.connection():
            raise RuntimeError("a statement's caller failed")
    assert db._pool.qsize() == 1 and os.path.exists(tmp_path / "wal.db-wal")
    db.execute("INSERT INTO items (id) VALUES (2)")  # the recorder checks it flushes the live log
    assert 2 in recorder.durable
    db.close()


def test_a_log_deleted_behind_the_databases_back_is_let_go_for_the_live_one(tmp_path, recorder):
    db = database(tmp_path)
    db.execute("INSERT INTO items (id) VALUES (1)")
    while not db._pool.empty():
        db._pool.get_nowait().close()  # the last connection closes: SQLite deletes the log
    assert not os.path.exists(tmp_path / "wal.db-wal")
    db.execute("INSERT INTO items (id) VALUES (2)")
    assert 2 in recorder.durable
    db.close()


def test_no_statement_runs_outside_a_transaction_sqlite_rolled_back(tmp_path):
    from chalicelib.sqlite_db import TransactionLost

    db = database(tmp_path)
    with pytest.raises(TransactionLost):
        with db.transaction() as conn:
            db.execute("INSERT INTO items (id) VALUES (1)")
            conn.rollback()  # as SQLite does itself after some I/O errors
            db.execute("INSERT INTO items (id) VALUES (2)")
    with pytest.raises(TransactionLost):
        with db.transaction() as conn:
            db.execute("INSERT INTO items (id) VALUES (3)")
            conn.rollback()
    assert db.query("SELECT id FROM items") == []
    db.close()


def test_non_durable_and_unchanged_transactions_do_not_flush(tmp_path, recorder):
    db = database(tmp_path)
    before = recorder.flushes
    with db.transaction(durable=False) as conn:
        conn.execute("INSERT INTO items (id) VALUES (1)")
    with db.transaction() as conn:
        conn.execute("UPDATE items SET body = 'x' WHERE id = 99")  # no such row
    assert recorder.flushes == before
    # The next durable commit carries the earlier one with it: the log is written in order.
    db.execute("INSERT INTO items (id) VALUES (2)")
    assert {1, 2} <= recorder.durable
    db.close()


def test_a_normal_database_leaves_flushing_to_sqlite(tmp_path, recorder):
    db = database(tmp_path, synchronous="NORMAL")
    before = recorder.flushes
    db.execute("INSERT INTO items (id) VALUES (1)")
    assert recorder.flushes == before
    db.close()


def test_concurrent_durable_commits_share_flushes_and_each_waits_for_its_own(tmp_path, monkeypatch):
    recorder = FlushRecorder(str(tmp_path / "wal.db"), seconds=0.01)
    monkeypatch.setattr(sqlite_wal, "_sync", recorder)
    db = database(tmp_path)
    not_durable_on_return = []

    def writer(first: int) -> None:
        for number in range(first, first + 10):
            db.execute("INSERT INTO items (id) VALUES (?)", (number,))
            if number not in recorder.durable:
                not_durable_on_return.append(number)

    assert in_threads(writer, [start * 100 for start in range(8)]) == []
    assert not_durable_on_return == []
    assert len(recorder.durable & {n * 100 + k for n in range(8) for k in range(10)}) == 80
    assert recorder.flushes < 80  # shared: writers committed while a flush was under way
    db.close()


def test_a_failed_flush_fails_the_write_and_the_next_write_flushes_again(tmp_path, recorder):
    db = database(tmp_path)
    recorder.fail_next = True
    with pytest.raises(OSError):
        db.execute("INSERT INTO items (id) VALUES (1)")
    assert 1 not in recorder.durable
    db.execute("INSERT INTO items (id) VALUES (2)")
    assert {1, 2} <= recorder.durable
    db.close()


def test_the_log_is_checkpointed_in_the_background_and_starts_over(tmp_path):
    db = database(tmp_path, synchronous="NORMAL")

    def commit_and_wait_for_checkpoint(first: int, checkpoints: int) -> None:
        for number in range(first, first + 100):  # the checkpointer runs after every 100 commits
            db.execute("INSERT INTO items (id, body) VALUES (?, ?)", (number, "x" * 2000))
        deadline = time.monotonic() + 10
        while db._checkpointer.completed < checkpoints and time.monotonic() < deadline:
            time.sleep(0.01)
        assert db._checkpointer.completed == checkpoints

    commit_and_wait_for_checkpoint(0, 1)
    commit_and_wait_for_checkpoint(100, 2)
    db.execute("INSERT INTO items (id) VALUES (1000)")
    with db.connection() as conn:
        busy, frames_in_log, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    # Without it the log would hold the 200 commits' hundreds of frames.
    assert busy == 0 and frames_in_log <= 5
    db.close()
    assert db._checkpointer._thread is None
