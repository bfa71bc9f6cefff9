"""A durable queue in a SQLite file with SQS's semantics, for running without AWS.

Receiving leases messages for a visibility timeout and counts receives; a
message received `max_receive_count` times and still not deleted moves to the
dead-letter queue on the next receive, as an SQS redrive policy does. Only the
latest receipt handle deletes a message, so a worker whose lease ran out cannot
delete the copy another worker now holds.
"""
from __future__ import annotations

import hashlib
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from chalicelib.queue.base import MAX_MESSAGE_DELAY_SECONDS, PublishError, QueueStats, TaskQueue
from chalicelib.sqlite_db import Database

MIGRATIONS = (
    (1, (
        """CREATE TABLE IF NOT EXISTS messages (
            id TEXT PRIMARY KEY,
            queue TEXT NOT NULL,
            body TEXT NOT NULL,
            sent_at INTEGER NOT NULL,
            visible_at INTEGER NOT NULL,
            receive_count INTEGER NOT NULL DEFAULT 0,
            first_received_at INTEGER,
            receipt_handle TEXT UNIQUE
        )""",
        "CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, visible_at, sent_at)",
    )),
)

_MICROS = 1_000_000
MAX_MESSAGE_BYTES = 256 * 1024  # SQS's limit, kept here too


@dataclass(frozen=True)
class ReceivedMessage:
    message_id: str
    body: str
    receipt_handle: str
    receive_count: int
    sent_at_ms: int
    first_received_at_ms: int


def dead_letter_name(queue_name: str) -> str:
    return f"{queue_name}-dlq"


class EmbeddedQueue(TaskQueue):
    def __init__(
        self,
        db: Database,
        name: str,
        visibility_timeout: float = 30.0,
        max_receive_count: Optional[int] = 5,  # None: no redrive (a dead-letter queue's own)
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self.name = name
        self.visibility_timeout = visibility_timeout
        self.max_receive_count = max_receive_count
        self._clock = clock
        self._arrived = threading.Event()

    def _now(self) -> int:
        return int(self._clock() * _MICROS)

    def send(self, body: str, delay_seconds: float = 0) -> str:
        if len(body.encode()) > MAX_MESSAGE_BYTES:
            raise PublishError(f"message is larger than {MAX_MESSAGE_BYTES} bytes")
        message_id = str(uuid.uuid4())
        now = self._now()
        # A delayed message is invisible until its time, as SQS's DelaySeconds holds it.
        visible_at = now + int(min(max(delay_seconds, 0), MAX_MESSAGE_DELAY_SECONDS) * _MICROS)
        try:
            self._db.execute(
                "INSERT INTO messages (id, queue, body, sent_at, visible_at) VALUES (?, ?, ?, ?, ?)",
                (message_id, self.name, body, now, visible_at),
            )
        except Exception as exc:  # any failure to persist is a failed publish
            raise PublishError(f"the embedded queue could not store the message: {exc}") from exc
        # Inside a caller's transaction the message exists only once that commits.
        self._db.after_commit(self._arrived.set)
        return message_id

    def receive(self, max_messages: int, visibility_timeout: Optional[float] = None,
                delete_first: Sequence[str] = ()) -> list:
        """Lease up to `max_messages`; `delete_first` are receipt handles to delete in
        the same transaction (the previous batch's, acknowledged)."""
        timeout = self.visibility_timeout if visibility_timeout is None else visibility_timeout
        now = self._now()
        received: list = []
        # A lease lost in a power cut only makes its messages visible again sooner.
        with self._db.transaction(durable=False) as conn:
            if delete_first:
                self.delete_many(list(delete_first))
            while len(received) < max_messages:
                candidates = conn.execute(
                    "SELECT id, receive_count FROM messages WHERE queue = ? AND visible_at <= ? "
                    "ORDER BY visible_at, sent_at LIMIT ?",
                    (self.name, now, max_messages - len(received)),
                ).fetchall()
                if not candidates:
                    break
                limit = self.max_receive_count
                dead = [mid for mid, count in candidates if limit is not None and count >= limit]
                live = [mid for mid, count in candidates if limit is None or count < limit]
                if dead:
                    conn.execute(
                        "UPDATE messages SET queue = ?, visible_at = ?, receive_count = 0, receipt_handle = NULL "
                        f"WHERE id IN ({', '.join('?' * len(dead))})",
                        (dead_letter_name(self.name), now, *dead),
                    )
                if live:
                    rows = conn.execute(
                        "UPDATE messages SET visible_at = ?, receive_count = receive_count + 1, "
                        "receipt_handle = lower(hex(randomblob(16))), "
                        "first_received_at = coalesce(first_received_at, ?) "
                        f"WHERE id IN ({', '.join('?' * len(live))}) "
                        "RETURNING id, body, receipt_handle, receive_count, sent_at, first_received_at, visible_at",
                        (now + int(timeout * _MICROS), now, *live),
                    ).fetchall()
                    order = {mid: n for n, mid in enumerate(live)}
                    rows.sort(key=lambda row: order[row[0]])
                    received += [ReceivedMessage(mid, body, handle, count, sent // 1000, first // 1000)
                                 for mid, body, handle, count, sent, first, _ in rows]
        return received

    def delete(self, receipt_handle: str) -> bool:
        return self._db.execute("DELETE FROM messages WHERE receipt_handle = ?", (receipt_handle,)) == 1

    def delete_many(self, receipt_handles: list) -> int:
        """Delete the messages these receipt handles still hold, in one transaction."""
        marks = ", ".join("?" * len(receipt_handles))
        return self._db.execute(f"DELETE FROM messages WHERE receipt_handle IN ({marks})", receipt_handles)

    def retry_later(self, receipt_handle: str, delay_seconds: float) -> None:
        self.change_visibility(receipt_handle, delay_seconds)

    def dead_letter(self, receipt_handle: str, body: str) -> None:
        self._db.execute(
            "UPDATE messages SET queue = ?, visible_at = ?, receipt_handle = NULL WHERE receipt_handle = ?",
            (dead_letter_name(self.name), self._now(), receipt_handle),
        )

    def change_visibility(self, receipt_handle: str, timeout: float) -> bool:
        return self._db.execute(
            "UPDATE messages SET visible_at = ? WHERE receipt_handle = ?",
            (self._now() + int(timeout * _MICROS), receipt_handle),
        ) == 1

    def depth(self, queue_name: Optional[str] = None) -> int:
        return self._db.query(
            "SELECT COUNT(*) FROM messages WHERE queue = ?", (queue_name or self.name,)
        )[0][0]

    def stats(self) -> QueueStats:
        now = self._now()
        rows = self._db.query(
            "SELECT queue, SUM(visible_at <= ?), SUM(visible_at > ? AND receive_count > 0), "
            "SUM(visible_at > ? AND receive_count = 0) FROM messages WHERE queue IN (?, ?) GROUP BY queue",
            (now, now, now, self.name, dead_letter_name(self.name)),
        )
        counts = {queue: (ready or 0, hidden or 0, held or 0) for queue, ready, hidden, held in rows}
        waiting, in_flight, delayed = counts.get(self.name, (0, 0, 0))
        dead = sum(counts.get(dead_letter_name(self.name), (0, 0, 0)))
        return QueueStats(waiting=waiting, in_flight=in_flight, dead_letter=dead, delayed=delayed)

    def seconds_until_visible(self) -> Optional[float]:
        """How long until the next leased message can be received again; None if none is leased."""
        row = self._db.query(
            "SELECT MIN(visible_at) FROM messages WHERE queue = ? AND visible_at > ?",
            (self.name, self._now()),
        )[0][0]
        return None if row is None else max(0.0, (row - self._now()) / _MICROS)

    def expect_arrival(self) -> None:
        """Call before a receive that may come back empty, then `wait_for_arrival`:
        a message sent in between still wakes the waiter."""
        self._arrived.clear()

    def wait_for_arrival(self, timeout: float) -> None:
        """Block until a message is sent in this process or `timeout` passes."""
        self._arrived.wait(timeout)


def md5_of(body: str) -> str:
    return hashlib.md5(body.encode()).hexdigest()
