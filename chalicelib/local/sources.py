"""Where the local dispatcher takes messages from: the embedded queue, or a real SQS queue."""
from __future__ import annotations

import threading
from typing import Any, List, Optional

from chalicelib.local.sqs_event import queue_arn
from chalicelib.queue.embedded import EmbeddedQueue, ReceivedMessage


class EmbeddedSource:
    """Deletes are held back and committed with the same thread's next receive (or
    before it waits): one transaction instead of two for every batch. A crash in
    between only means those messages come back, and their tasks are final."""

    def __init__(self, queue: EmbeddedQueue, visibility_timeout: Optional[float] = None) -> None:
        self._queue = queue
        self.arn = queue_arn(queue.name)
        self.visibility_timeout = visibility_timeout or queue.visibility_timeout
        self._held = threading.local()

    def _take_held(self) -> List[str]:
        handles = getattr(self._held, "handles", None) or []
        self._held.handles = []
        return handles

    def receive(self, max_messages: int) -> List[ReceivedMessage]:
        self._queue.expect_arrival()
        return self._queue.receive(max_messages, self.visibility_timeout, delete_first=self._take_held())

    def delete_many(self, receipt_handles: List[str]) -> None:
        self._held.handles = self._take_held() + list(receipt_handles)

    def flush(self) -> None:
        handles = self._take_held()
        if handles:
            self._queue.delete_many(handles)

    def wait(self, idle_seconds: float) -> None:
        """After an empty receive: until a message is sent here, a lease ends, or `idle_seconds`."""
        self.flush()
        until_visible = self._queue.seconds_until_visible()
        timeout = idle_seconds if until_visible is None else min(idle_seconds, until_visible)
        self._queue.wait_for_arrival(timeout)


class SqsSource:
    """Long-polls an SQS queue, for `chalice local` against a deployed stage's queue.
    The client's read timeout must outlast `wait_seconds`."""

    def __init__(self, client: Any, queue_url: str, wait_seconds: int = 10) -> None:
        self._client = client
        self._url = queue_url
        self._wait_seconds = wait_seconds
        attributes = client.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["QueueArn", "VisibilityTimeout"])["Attributes"]
        self.arn = attributes["QueueArn"]
        self.visibility_timeout = float(attributes["VisibilityTimeout"])

    def receive(self, max_messages: int) -> List[ReceivedMessage]:
        response = self._client.receive_message(
            QueueUrl=self._url, MaxNumberOfMessages=min(max_messages, 10),
            WaitTimeSeconds=self._wait_seconds, AttributeNames=["All"],
        )
        return [
            ReceivedMessage(
                message_id=m["MessageId"],
                body=m["Body"],
                receipt_handle=m["ReceiptHandle"],
                receive_count=int(m["Attributes"].get("ApproximateReceiveCount", 1)),
                sent_at_ms=int(m["Attributes"].get("SentTimestamp", 0)),
                first_received_at_ms=int(m["Attributes"].get("ApproximateFirstReceiveTimestamp", 0)),
            )
            for m in response.get("Messages", [])
        ]

    def delete_many(self, receipt_handles: List[str]) -> None:
        for start in range(0, len(receipt_handles), 10):
            entries = [{"Id": str(n), "ReceiptHandle": handle}
                       for n, handle in enumerate(receipt_handles[start:start + 10])]
            self._client.delete_message_batch(QueueUrl=self._url, Entries=entries)

    def flush(self) -> None:
        """Deletes are sent at once."""

    def wait(self, idle_seconds: float) -> None:
        """The receive itself long-polls."""
