"""Amazon SQS as the tasks queue."""
from __future__ import annotations

import math
from typing import Any, Optional

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.queue.base import MAX_MESSAGE_DELAY_SECONDS, PublishError, QueueStats, TaskQueue


class SqsTaskQueue(TaskQueue):
    # SQS's ceiling for a message's visibility timeout.
    MAX_VISIBILITY_SECONDS = 12 * 60 * 60

    def __init__(self, client: Any, queue_url: str, dead_letter_url: Optional[str] = None) -> None:
        self._client = client
        self.url = queue_url
        self._dead_letter_url = dead_letter_url

    def send(self, body: str, delay_seconds: float = 0) -> str:
        extra = {"DelaySeconds": min(MAX_MESSAGE_DELAY_SECONDS, math.ceil(delay_seconds))} if delay_seconds > 0 else {}
        try:
            return self._client.send_message(QueueUrl=self.url, MessageBody=body, **extra)["MessageId"]
        except (BotoCoreError, ClientError) as exc:
            raise PublishError(f"SQS refused the message: {exc}") from exc

    def retry_later(self, receipt_handle: str, delay_seconds: float) -> None:
        self._client.change_message_visibility(
            QueueUrl=self.url, ReceiptHandle=receipt_handle,
            VisibilityTimeout=int(min(max(delay_seconds, 0), self.MAX_VISIBILITY_SECONDS)),
        )

    def dead_letter(self, receipt_handle: str, body: str) -> None:
        if not self._dead_letter_url:
            # Without a dead-letter queue URL the message is left to the queue's
            # redrive policy: report it failed and SQS moves it after maxReceiveCount.
            raise PublishError("no dead-letter queue configured (TASKS_DLQ_URL)")
        self._client.send_message(QueueUrl=self._dead_letter_url, MessageBody=body)

    def stats(self) -> QueueStats:
        try:
            attributes = self._client.get_queue_attributes(
                QueueUrl=self.url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                                "ApproximateNumberOfMessagesDelayed"],
            )["Attributes"]
            dead = None
            if self._dead_letter_url:
                dead = int(self._client.get_queue_attributes(
                    QueueUrl=self._dead_letter_url, AttributeNames=["ApproximateNumberOfMessages"],
                )["Attributes"]["ApproximateNumberOfMessages"])
        except (BotoCoreError, ClientError) as exc:
            raise PublishError(f"SQS did not answer: {exc}") from exc
        return QueueStats(
            waiting=int(attributes["ApproximateNumberOfMessages"]),
            in_flight=int(attributes["ApproximateNumberOfMessagesNotVisible"]),
            delayed=int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
            dead_letter=dead,
        )
