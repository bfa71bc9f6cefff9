"""Keeping a SQLite file's write-ahead log off the writers' path: group commit and
checkpoints in the background.

Group commit: one flush of the log for many commits.

With `synchronous=FULL` SQLite flushes the write-ahead log inside every COMMIT,
while the writer still holds the database's write lock, so concurrent writers
wait for each other's disk flushes one after another. Here the connections
commit with `synchronous=NORMAL` (the log is written, not flushed) and a writer
that needs durability then flushes the log file itself, after releasing the
lock. The log is one file written in commit order, so one flush makes every
commit before it durable: a writer whose commit an ongoing or finished flush
already covers just waits for it, and the others share the next one.

This is FULL's guarantee, not NORMAL's: a durable transaction returns only
once its log frames are on disk. What SQLite would flush when it restarts the
log or checkpoints it still flushes itself, since NORMAL keeps those syncs.

Checkpoints: SQLite copies the log back into the database file every 1,000
pages, inside whichever COMMIT crosses that mark and under the write lock, so
that one writer pays for a copy and two flushes while the others queue. Here
the connections leave that to a thread, which checkpoints after every `every`
commits: first beside the writers (PASSIVE), then once more under the write
lock for the few pages written meanwhile, so that the whole log is copied and
the next writer starts it over instead of letting it grow.
"""
from __future__ import annotations

import os
import sqlite3
import threading
from typing import Callable, Optional

from chalicelib import logs

# What SQLite itself calls: fdatasync where there is one (Linux), fsync elsewhere.
_sync = getattr(os, "fdatasync", os.fsync)


class GroupCommit:
    def __init__(self, database_path: str) -> None:
        self._log_path = f"{database_path}-wal"
        self._changed = threading.Condition()
        self._committed = 0  # commits counted so far; a commit's number is its ticket
        self._flushed = 0  # every ticket up to this one is on disk
        self._flushing = False
        self._fd: Optional[int] = None

    def committed(self) -> int:
        """Count a commit that changed something; its ticket for `wait_durable`.
        Call it right after the commit, before another writer can commit."""
        with self._changed:
            self._committed += 1
            return self._committed

    def wait_durable(self, ticket: int) -> None:
        """Return once the commit with this ticket is on disk, flushing the log if
        no flush that covers it has started."""
        with self._changed:
            while self._flushed < ticket:
                if not self._flushing:
                    break
                self._changed.wait()
            else:
                return
            self._flushing = True
            covers = self._committed
        try:
            self._flush()
        except BaseException:
            with self._changed:
                self._flushing = False
                self._changed.notify_all()
            raise
        with self._changed:
            self._flushing = False
            self._flushed = max(self._flushed, covers)
            self._changed.notify_all()

    def flush_all(self) -> None:
        """Return once a flush that started after this call has ended: every commit
        before it, counted here or made by another process, is on disk."""
        self.wait_durable(self.committed())

    def _flush(self) -> None:
        # The log file stays open between flushes: a system call is also a moment
        # to wait for the interpreter lock, and busy request threads make that wait
        # long. SQLite deletes the log when its last connection closes, having
        # copied it into the database file and flushed that; a later commit writes a
        # new log file, so a deleted one is let go and the live one opened.
        if self._fd is not None and os.fstat(self._fd).st_nlink == 0:
            os.close(self._fd)
            self._fd = None
        if self._fd is None:
            try:
                self._fd = os.open(self._log_path, os.O_RDWR)  # Windows flushes only writable handles
            except FileNotFoundError:
                return  # no commit has written a log yet
        _sync(self._fd)

    def close(self) -> None:
        """Forget the open log file (the Database closes its connections, which
        copies the log into the database file and deletes it)."""
        with self._changed:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class Checkpointer:
    """Copies the log into the database file on a thread of its own, started on
    first use, after every `every` commits that `committed()` counts."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], write_lock: threading.Lock,
                 every: int = 100) -> None:
        self._connect = connect
        self._write_lock = write_lock
        self._every = every
        self._count = 0
        self.completed = 0  # checkpoints run so far
        self._due = threading.Event()
        self._closing = False
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    def committed(self) -> None:
        self._count += 1  # only writers holding the database's write lock count
        if self._count >= self._every:
            self._count = 0
            self._start()
            self._due.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._closing:
                self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        conn = self._connect()
        try:
            while True:
                self._due.wait()
                self._due.clear()
                if self._closing:
                    return
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    with self._write_lock:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.completed += 1
                except sqlite3.Error as exc:
                    # The log keeps growing meanwhile; the next commits try again.
                    logs.problem("checkpoint failed", error=str(exc))
        finally:
            conn.close()

    def close(self) -> None:
        with self._lock:
            self._closing = True
            thread, self._thread = self._thread, None
        self._due.set()
        if thread is not None:
            thread.join(10)
