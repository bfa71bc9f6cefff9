"""Lambda's SQS event, built from messages of the embedded queue."""
from __future__ import annotations

from typing import Iterable

from chalicelib.queue.embedded import ReceivedMessage, md5_of

LOCAL_REGION = "local"
LOCAL_ACCOUNT = "000000000000"


def queue_arn(queue_name: str) -> str:
    return f"arn:aws:sqs:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{queue_name}"


def build_event(messages: Iterable[ReceivedMessage], arn: str) -> dict:
    region = arn.split(":")[3]
    return {"Records": [
        {
            "messageId": m.message_id,
            "receiptHandle": m.receipt_handle,
            "body": m.body,
            "attributes": {
                "ApproximateReceiveCount": str(m.receive_count),
                "SentTimestamp": str(m.sent_at_ms),
                "SenderId": LOCAL_ACCOUNT,
                "ApproximateFirstReceiveTimestamp": str(m.first_received_at_ms),
            },
            "messageAttributes": {},
            "md5OfBody": md5_of(m.body),
            "eventSource": "aws:sqs",
            "eventSourceARN": arn,
            "awsRegion": region,
        }
        for m in messages
    ]}


def failed_ids(response, batch: list) -> set:
    """Message ids to deliver again, read the way Lambda reads a partial batch response.

    A response Lambda would not understand fails the whole batch.
    """
    ids = {m.message_id for m in batch}
    if response is None:
        return set()
    if not isinstance(response, dict):
        return ids
    items = response.get("batchItemFailures") or []
    failed = set()
    for item in items:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if identifier not in ids:
            return ids
        failed.add(identifier)
    return failed
