"""Amazon SQS as the tasks queue."""
from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.queue.base import PublishError, TaskQueue


class SqsTaskQueue(TaskQueue):
    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self.url = queue_url

    def send(self, body: str) -> str:
        try:
            return self._client.send_message(QueueUrl=self.url, MessageBody=body)["MessageId"]
        except (BotoCoreError, ClientError) as exc:
            raise PublishError(f"SQS refused the message: {exc}") from exc
