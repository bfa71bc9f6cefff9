"""One SQLite database file: pooled connections, pragmas, transactions, migrations.

Every statement goes through `execute`/`query`, a `transaction()` or a
`shared_transaction()` with `?` parameters. Writes use BEGIN IMMEDIATE so that a
writer waits on the busy timeout instead of failing with "database is locked"
when it upgrades a read lock, which WAL mode cannot do for a deferred
transaction. How durable commits reach the disk: `sqlite_wal`.
"""
from __future__ import annotations

import contextlib
import os
import queue
import sqlite3
import threading
from typing import Callable, Iterator, List, Optional, Sequence, TypeVar

from chalicelib.sqlite_wal import Checkpointer, GroupCommit

BUSY_TIMEOUT_MS = 30_000

# A migration is a version number and the statements that reach it from the
# version before. Several components (the task store, the embedded queue) may
# share one file; each has its own version, recorded in schema_versions.
Migration = tuple

T = TypeVar("T")


class TransactionLost(sqlite3.OperationalError):
    """SQLite rolled the open transaction back after an error (a full disk, an I/O
    error): nothing of it is stored, and no later statement may run outside it."""


class _SharedWork:
    """One thread's part of a shared transaction, and what came of it."""

    __slots__ = ("work", "result", "error", "callbacks", "ticket", "finished")

    def __init__(self, work: Callable[[], object]) -> None:
        self.work = work
        self.result: object = None
        self.error: Optional[BaseException] = None
        self.callbacks: list = []
        self.ticket = 0
        self.finished = False


class _Pool:
    """Idle connections, the last one released handed out first, with queue.LifoQueue's
    get_nowait and put_nowait (raising queue.Empty and queue.Full) but a plain lock:
    a Queue's condition variables, which nothing here waits on, cost more than a
    batch's three transactions take from the pool."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._idle: List[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def get_nowait(self) -> sqlite3.Connection:
        with self._lock:
            if not self._idle:
                raise queue.Empty
            return self._idle.pop()

    def put_nowait(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            if len(self._idle) >= self._size:
                raise queue.Full
            self._idle.append(conn)

    def qsize(self) -> int:
        return len(self._idle)

    def empty(self) -> bool:
        return not self._idle


class Database:
    def __init__(self, path: str, synchronous: str = "FULL", pool_size: int = 8) -> None:
        self.path = path
        self._synchronous = synchronous
        # FULL and EXTRA: durable writes flush the log themselves, grouped with
        # other threads' (see sqlite_wal); connections commit at NORMAL.
        self._group = GroupCommit(path) if synchronous in ("FULL", "EXTRA") else None
        self._connection_synchronous = "NORMAL" if self._group else synchronous
        self._pool = _Pool(pool_size)
        self._schema_lock = threading.Lock()
        # The write transaction this thread has open: statements issued inside
        # `transaction()` run in it, so several store calls commit as one.
        self._local = threading.local()
        # Writers of this process queue here rather than in SQLite's busy handler,
        # which polls with sleeps of up to 100 ms; other processes still meet the
        # busy timeout.
        self._write_lock = threading.Lock()
        self._waiting: List[_SharedWork] = []  # work for the next shared transaction
        self._waiting_lock = threading.Lock()
        self._checkpointer = Checkpointer(self._open, self._write_lock)
        self._trace: Optional[Callable[[str], None]] = None

    def _open(self) -> sqlite3.Connection:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._connection_synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # the Checkpointer's job
        if self._trace is not None:
            conn.set_trace_callback(self._trace)
        return conn

    def trace(self, callback: Optional[Callable[[str], None]]) -> None:
        """Hand each statement that this Database's connections run from now on to
        `callback` (None stops), on the thread that runs it: how tests count what an
        operation costs (tests/test_budgets.py). A connection that another thread
        holds at the time is left as it is."""
        self._trace = callback
        idle = []
        while True:
            try:
                idle.append(self._pool.get_nowait())
            except queue.Empty:
                break
        for conn in reversed(idle):  # back in the order they were taken
            conn.set_trace_callback(callback)
            self._pool.put_nowait(conn)

    @contextlib.contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        current = getattr(self._local, "conn", None)
        if current is not None:
            yield current
            return
        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            conn = self._open()
        try:
            yield conn
        finally:
            # Back to the pool even when the body raised: a connection dropped here
            # could be the last one, and closing the last one deletes the log file.
            self._release(conn)

    def _release(self, conn: sqlite3.Connection) -> None:
        try:
            if conn.in_transaction:
                conn.rollback()
            self._pool.put_nowait(conn)
        except queue.Full:
            conn.close()
        except sqlite3.Error:  # a connection that cannot even roll back is not kept
            conn.close()

    @contextlib.contextmanager
    def transaction(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction, committed on success and rolled back on error.
        Nested in another on the same thread, it joins that one.

        durable=False returns without waiting for the disk, for writes whose loss
        in a power cut only repeats work: a lease or a claim. The next durable
        commit flushes them with it, since the log is one file written in order;
        a killed process loses nothing either way.
        """
        if getattr(self._local, "conn", None) is not None:
            yield self._local.conn
            return
        callbacks: list = []
        with self._write_lock, self.connection() as conn:
            before = conn.total_changes
            with self._begun(conn, callbacks):
                yield conn
            ticket = self._ticket(conn, before)
        if durable:
            self._wait_durable(ticket)
        for callback in callbacks:
            callback()

    def shared_transaction(self, work: Callable[[], T]) -> T:
        """Run `work` (which writes through this Database on the calling thread) in
        a write transaction that it may share with other threads' work.

        Every thread that arrives while another holds the write lock adds its work
        to a list; the next to take the lock runs the whole list in one
        transaction, each piece in a savepoint of its own, and commits once. So
        concurrent writers share one commit and its log pages instead of queueing
        for one each. A piece that raises is rolled back alone and its exception
        is raised in its own thread; the others commit.
        """
        if getattr(self._local, "conn", None) is not None:
            return work()
        mine = _SharedWork(work)
        with self._waiting_lock:
            self._waiting.append(mine)
        with self._write_lock:
            if not mine.finished:  # no one took it along yet: take everyone's
                with self._waiting_lock:
                    shared, self._waiting = self._waiting, []
                self._run_shared(shared)
        if mine.error is not None:
            raise mine.error
        self._wait_durable(mine.ticket)
        for callback in mine.callbacks:
            callback()
        return mine.result  # type: ignore[return-value]

    def _run_shared(self, shared: List[_SharedWork]) -> None:
        """Under the write lock: run each piece in its own savepoint, then commit once."""
        try:
            with self.connection() as conn:
                before = conn.total_changes
                conn.execute("BEGIN IMMEDIATE")
                for piece in shared:
                    self._run_piece(conn, piece, alone=len(shared) == 1)
                conn.commit()
                ticket = self._ticket(conn, before)
        except BaseException as exc:  # nothing of the batch is stored
            for piece in shared:
                if piece.error is None:
                    piece.error = exc if isinstance(exc, Exception) else RuntimeError(
                        "the shared transaction was interrupted; nothing was stored")
            if not isinstance(exc, Exception):
                raise
        else:
            for piece in shared:
                piece.ticket = ticket
        finally:
            for piece in shared:
                piece.finished = True

    def _run_piece(self, conn: sqlite3.Connection, piece: _SharedWork, alone: bool) -> None:
        """Run one piece; alone in its transaction it needs no savepoint, since its
        failure rolls back the transaction."""
        if not alone:
            conn.execute("SAVEPOINT piece")
        self._local.conn, self._local.after_commit = conn, piece.callbacks
        try:
            piece.result = piece.work()
        except Exception as exc:
            piece.error = exc
            if alone or not conn.in_transaction:
                raise  # the whole transaction goes (SQLite may have rolled it back already)
            conn.execute("ROLLBACK TO piece")
        finally:
            self._local.conn = self._local.after_commit = None
        if not alone:
            conn.execute("RELEASE piece")

    @contextlib.contextmanager
    def _begun(self, conn: sqlite3.Connection, callbacks: list) -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE")
        self._local.conn, self._local.after_commit = conn, callbacks
        try:
            yield
        except BaseException:
            conn.rollback()
            raise
        finally:
            self._local.conn = self._local.after_commit = None
        if not conn.in_transaction:
            raise TransactionLost("SQLite rolled the transaction back after an error; nothing of it was stored")
        conn.commit()

    def _ticket(self, conn: sqlite3.Connection, changes_before: int) -> int:
        """Called under the write lock right after a commit: its place in the log,
        or 0 if it changed nothing (or this database does not flush itself)."""
        if conn.total_changes == changes_before:
            return 0
        self._checkpointer.committed()
        return self._group.committed() if self._group else 0

    def _wait_durable(self, ticket: int) -> None:
        if ticket:
            self._group.wait_durable(ticket)

    def sync(self) -> None:
        """Return once every commit so far, this process's or another's, is as durable
        as a durable transaction makes it: for answering on a write read back
        rather than made."""
        if self._group is not None:
            self._group.flush_all()

    def execute(self, sql: str, params: Sequence = ()) -> int:
        """Run one write statement in its own transaction (or the thread's open one);
        the rows it changed."""
        return self._statement(lambda conn: conn.execute(sql, params).rowcount)

    def write_returning(self, sql: str, params: Sequence = ()) -> list:
        """Run one write statement with a RETURNING clause; the rows it returned."""
        # fetchall runs the statement to completion: the autocommit ends there.
        return self._statement(lambda conn: conn.execute(sql, params).fetchall())

    def _statement(self, run: Callable[[sqlite3.Connection], T]) -> T:
        """One statement: in the thread's open transaction, or committed on its own
        and, like any durable write, returned once it is on disk."""
        current = getattr(self._local, "conn", None)
        if current is not None:
            if not current.in_transaction:
                # Run now, it would commit on its own: the statements before it are gone.
                raise TransactionLost("SQLite rolled the transaction back after an error; "
                                      "nothing of it was stored")
            return run(current)
        with self._write_lock, self.connection() as conn:
            before = conn.total_changes
            result = run(conn)
            ticket = self._ticket(conn, before)
        self._wait_durable(ticket)
        return result

    def query(self, sql: str, params: Sequence = ()) -> list:
        with self.connection() as conn:
            return conn.execute(sql, params).fetchall()

    def migrate(self, component: str, migrations: Sequence[Migration]) -> list:
        """Apply `component`'s migrations newer than its recorded version, in order,
        in one transaction; the versions applied."""
        applied = []
        with self._schema_lock, self.transaction() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_versions "
                         "(component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM schema_versions WHERE component = ?", (component,)).fetchone()
            current = row[0] if row else 0
            for version, statements in migrations:
                if version <= current:
                    continue
                for statement in statements:
                    conn.execute(statement)
                applied.append(version)
            if applied:
                conn.execute("INSERT OR REPLACE INTO schema_versions (component, version) VALUES (?, ?)",
                             (component, applied[-1]))
        return applied

    def version(self, component: str) -> int:
        rows = self.query("SELECT version FROM schema_versions WHERE component = ?", (component,))
        return rows[0][0] if rows else 0

    def after_commit(self, callback) -> None:
        """Run `callback` once this thread's open transaction commits, or now if none is open."""
        pending = getattr(self._local, "after_commit", None)
        if getattr(self._local, "conn", None) is None or pending is None:
            callback()
        else:
            pending.append(callback)

    def close(self) -> None:
        self._checkpointer.close()
        if self._group is not None:
            self._group.close()
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                return
