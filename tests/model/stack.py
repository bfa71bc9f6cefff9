"""One fresh stack per example: SQLite with the embedded queue, or DynamoDB with
SQS (and a dead-letter queue with a redrive policy) under moto; the worker,
recovery and the dead-letter consumer driven as Lambda would drive them."""
from __future__ import annotations

import json
import uuid
from collections import defaultdict
from typing import Dict, List, Tuple

import boto3

from chalicelib import factory
from chalicelib.local.sqs_event import build_event, queue_arn
from chalicelib.queue.embedded import EmbeddedQueue, dead_letter_name
from tests.model.faults import Faults, request_task_id

VISIBILITY_SECONDS = 30  # what a receive leases a batch for, on both queues

# Every status change the table saw, as (task id, from, to): a trigger records
# them in the transaction that makes them, so a rolled-back change leaves none.
TRANSITIONS_SQL = (
    "CREATE TABLE IF NOT EXISTS model_transitions (task_id TEXT, frm TEXT, too TEXT)",
    """CREATE TRIGGER IF NOT EXISTS model_status_changes AFTER UPDATE OF status ON tasks
       WHEN OLD.status != NEW.status
       BEGIN INSERT INTO model_transitions VALUES (NEW.id, OLD.status, NEW.status); END""",
)

Message = Tuple[str, str, str]  # (message id, receipt handle, body)


class ModelStack:
    def __init__(self, kind: str, client, app, workdir, setenv, clock, faults: Faults) -> None:
        self.kind, self.client, self.app, self.clock, self.faults = kind, client, app, clock, faults
        self.transitions: Dict[str, List[Tuple[str, str]]] = defaultdict(list)  # DynamoDB's, from the hooks
        environ = {"TASKS_DB_PATH": str(workdir / "tasks.db"), "TASKS_WORK_DELAY_MS": "0"}
        if kind == "dynamodb":
            suffix = uuid.uuid4().hex[:12]
            self.sqs = boto3.client("sqs", region_name="us-east-1")
            self.dlq_url = self.sqs.create_queue(QueueName=f"dlq-{suffix}")["QueueUrl"]
            dlq_arn = self.sqs.get_queue_attributes(
                QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            self.url = self.sqs.create_queue(QueueName=f"tasks-{suffix}", Attributes={
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})})["QueueUrl"]
            self.table = f"tasks-{suffix}"
            from chalicelib.store.dynamodb import TABLE_SCHEMA
            boto3.client("dynamodb", region_name="us-east-1").create_table(TableName=self.table, **TABLE_SCHEMA)
            environ.update({"TASKS_STORE": "dynamodb", "TASKS_QUEUE": "sqs", "TASKS_QUEUE_URL": self.url,
                            "TASKS_DLQ_URL": self.dlq_url, "TASKS_TABLE_NAME": self.table})
        for name, value in environ.items():
            setenv(name, value)
        factory.reset()
        self.settings = factory.current_settings()
        self.store = factory.store(self.settings)
        self.queue = factory.queue(self.settings)
        faults.wrap_queue(self.queue)
        if kind == "sqlite":
            clock.attach_embedded_queue(self.queue)
            self.db = factory.tasks_db(self.settings)
            for sql in TRANSITIONS_SQL:
                self.db.execute(sql)
            self.dead_letters = EmbeddedQueue(factory.queue_db(self.settings), dead_letter_name(self.queue.name),
                                              visibility_timeout=VISIBILITY_SECONDS)
            clock.attach_embedded_queue(self.dead_letters)
            faults.wrap_sqlite(self.db)
        else:
            dynamodb = factory.aws_client("dynamodb", "request")
            self._watch_transitions(dynamodb)
            faults.hook_dynamodb(dynamodb)

    def close(self) -> None:
        if self.kind == "sqlite":
            self.db.close()
        factory.reset()

    # -- the queue, as Lambda's event source mapping uses it ------------------------------

    def receive(self, limit: int, dead: bool = False) -> List[Message]:
        if self.kind == "sqlite":
            queue = self.dead_letters if dead else self.queue
            return [(m.message_id, m.receipt_handle, m.body) for m in queue.receive(limit, VISIBILITY_SECONDS)]
        received = self.sqs.receive_message(QueueUrl=self.dlq_url if dead else self.url,
                                            MaxNumberOfMessages=min(limit, 10),
                                            VisibilityTimeout=VISIBILITY_SECONDS).get("Messages", [])
        return [(m["MessageId"], m["ReceiptHandle"], m["Body"]) for m in received]

    def ack(self, handles: List[str], dead: bool = False) -> None:
        if not handles:
            return
        if self.kind == "sqlite":
            (self.dead_letters if dead else self.queue).delete_many(handles)
            return
        for handle in handles:
            self.sqs.delete_message(QueueUrl=self.dlq_url if dead else self.url, ReceiptHandle=handle)

    def event(self, messages: List[Message], dead: bool = False) -> dict:
        name = getattr(self.queue, "name", "tasks")
        return build_event([_Received(*message) for message in messages],
                           queue_arn(dead_letter_name(name) if dead else name))

    def invoke(self, function: str, messages: List[Message], dead: bool = False) -> set:
        """The handler's failed message ids (as Lambda reads them); raises what it raises."""
        payload = self.client.lambda_.invoke(function, self.event(messages, dead)).payload
        return {failure["itemIdentifier"] for failure in (payload or {}).get("batchItemFailures", [])}

    def dead_letter_one(self) -> List[str]:
        """The queue gives up on a visible message (as a redrive policy does): the task ids moved."""
        taken = self.receive(1)
        for _, handle, body in taken:
            if self.kind == "sqlite":
                self.queue.dead_letter(handle, body)
            else:
                self.sqs.send_message(QueueUrl=self.dlq_url, MessageBody=body)
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=handle)
        return [json.loads(body)["task_id"] for _, _, body in taken]

    def dead_letter_count(self) -> int:
        if self.kind == "sqlite":
            return self.queue.depth(dead_letter_name(self.queue.name))
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["All"])["Attributes"]
        return sum(int(attributes[name]) for name in ("ApproximateNumberOfMessages",
                                                      "ApproximateNumberOfMessagesNotVisible"))

    # -- the dead-letter consumer, where there is one ------------------------------------

    def drain_dead_letters(self) -> int:
        """Feed the dead-letter queue to app.py's process_dead_letters, as Lambda would;
        how many messages it was given."""
        drained = 0
        while True:
            messages = self.receive(10, dead=True)
            if not messages:
                return drained
            failed = self.invoke("process_dead_letters", messages, dead=True)
            self.ack([handle for mid, handle, _ in messages if mid not in failed], dead=True)
            drained += len(messages)
            if failed:
                return drained

    def recover(self) -> dict:
        event = self.client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event",
                                                     detail={}, resources=[])
        return self.client.lambda_.invoke("recover_tasks", event).payload

    # -- the truth ------------------------------------------------------------------------

    def transitions_of(self) -> Dict[str, List[Tuple[str, str]]]:
        if self.kind == "sqlite":
            found = defaultdict(list)
            for task_id, frm, to in self.db.query("SELECT task_id, frm, too FROM model_transitions ORDER BY rowid"):
                found[task_id].append((frm, to))
            return found
        return self.transitions

    def _watch_transitions(self, client) -> None:
        """Every status change moto applies to a task item, whatever the client hears of it."""
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.dynamodb.models import dynamodb_backends

        backend = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        before = {}

        def status(task_id):
            item = backend.get_table(self.table).items.get(_key(task_id))
            status = None if item is None else item.attrs.get("status")
            return None if status is None else status.value

        def read_before(request, event_name, **kwargs):
            if event_name.endswith(("UpdateItem", "DeleteItem")):
                task_id = request_task_id(request)
                if task_id:
                    # Holding the request keeps its id from being reused by a later one, should
                    # a fault stop this one before read_after.
                    before[id(request)] = (request, task_id, status(task_id))

        def read_after(request, event_name, **kwargs):
            seen = before.pop(id(request), None)
            if seen is not None and seen[0] is request:
                _, task_id, frm = seen
                to = status(task_id)
                if frm is not None and to != frm:  # a task item (others have no status) that moved
                    self.transitions[task_id].append((frm, to or "deleted"))

        client.meta.events.register_first("before-send.dynamodb", read_before)
        # After moto has applied it, and before a lost answer is raised.
        client.meta.events.register_last("before-send", read_after)


def _key(task_id: str):
    from moto.dynamodb.models.dynamo_type import DynamoType

    return DynamoType({"S": task_id})


class _Received:
    def __init__(self, message_id, receipt_handle, body):
        self.message_id, self.receipt_handle, self.body = message_id, receipt_handle, body
        self.receive_count, self.sent_at_ms, self.first_received_at_ms = 1, 0, 0
