"""One SQLite database file: pooled connections, pragmas, transactions, migrations.

Every statement goes through `execute`/`query` or a `transaction()` with `?`
parameters. Writes use BEGIN IMMEDIATE so that a writer waits on the busy
timeout instead of failing with "database is locked" when it upgrades a read
lock, which WAL mode cannot do for a deferred transaction.
"""
from __future__ import annotations

import contextlib
import os
import queue
import sqlite3
import threading
from typing import Iterator, Sequence

BUSY_TIMEOUT_MS = 30_000

# A migration is a version number and the statements that reach it from the
# version before. PRAGMA user_version records the last applied version.
Migration = tuple


class Database:
    def __init__(self, path: str, synchronous: str = "FULL", pool_size: int = 8) -> None:
        self.path = path
        self._synchronous = synchronous
        self._pool: "queue.LifoQueue[sqlite3.Connection]" = queue.LifoQueue(pool_size)
        self._schema_lock = threading.Lock()

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
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    @contextlib.contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            conn = self._open()
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
        try:
            self._pool.put_nowait(conn)
        except queue.Full:
            conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, committed on success and rolled back on error."""
        with self.connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    def execute(self, sql: str, params: Sequence = ()) -> int:
        """Run one write statement in its own transaction; the rows it changed."""
        with self.connection() as conn:
            return conn.execute(sql, params).rowcount

    def query(self, sql: str, params: Sequence = ()) -> list:
        with self.connection() as conn:
            return conn.execute(sql, params).fetchall()

    def migrate(self, migrations: Sequence[Migration]) -> list:
        """Apply the migrations newer than the file's version, in order; the versions applied."""
        applied = []
        with self._schema_lock, self.transaction() as conn:
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            for version, statements in migrations:
                if version <= current:
                    continue
                for statement in statements:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {int(version)}")
                applied.append(version)
        return applied

    def version(self) -> int:
        return self.query("PRAGMA user_version")[0][0]

    def close(self) -> None:
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                return
