"""Tasks in a DynamoDB table.

Items are keyed by `id`. Every index is KEYS_ONLY and spread over SHARDS
partition keys (the last hex digits of the task id), so no key takes more than
1/SHARDS of an index's writes, and a status change rewrites no index entry it
does not have to:

- `by_time`: every task, by creation (`sort_key` = zero-padded creation
  microseconds + id), written once at insert. A page merges the shards' Queries
  newest first and reads the tasks with BatchGetItem.
- `by_outcome`: failed and cancelled tasks only, by creation: the rare
  outcomes a listing filters for, which a walk over `by_time` would take long
  to find. Completed, queued and running are the common or the newest tasks:
  their listings walk `by_time` and keep the matching ones, a bounded number
  of entries per request.
- `by_action`: every task, by action and creation, written once at insert: a
  listing of one action (and, walking it, of one action in one status).
- `by_due`: tasks that recovery must watch, by due time: a task stored under an
  Idempotency-Key before its publish, and one queued again (a retry, a failed
  publish). A claim takes it out: the queue's visibility timeout then brings
  back a dead worker's message.

A submit writes the item and its `by_time` and `by_action` entries; a claim and an outcome write
the item (and a failed or cancelled one its `by_outcome` entry), and each
request or worker batch adds its net change to a counter item (see
dynamo_counts). Idempotency-Key records and counter items share the table under
their own ids and carry none of the index keys. DynamoDB's TTL deletes them and
finished tasks. Every state change is a conditional UpdateItem, so a
redelivered message or a second worker cannot run a task twice or overwrite a
final state; one that botocore sent again after losing its response knows its
own result when the retry fails its condition (see dynamo_retried). JSON fields
are stored as strings: DynamoDB has no float type.
"""
from __future__ import annotations

import contextlib
import threading
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, List, Optional, Tuple

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import logs
from chalicelib.store.base import KeyRecord, StoreError, TaskExists, TaskStore
from chalicelib.store.dynamo_codec import TASK_FIELDS, decode_item, encode
from chalicelib.store.dynamo_counts import Booking, StatusCounts, booking
from chalicelib.store.dynamo_items import BATCH_GET, batch_get
from chalicelib.store.dynamo_items import failed as _failed
from chalicelib.store.dynamo_items import is_condition_failure as _is_condition_failure
from chalicelib.store.dynamo_retried import current_item, is_own_put, is_own_update
from chalicelib.store.dynamo_series import MinuteRecords
from chalicelib.store.dynamo_shards import merged
from chalicelib.tasks import Status, Task, from_micros, to_micros

SHARDS = 32
KEY_PREFIX = "idempotency-key#"
BY_TIME = "by_time"
BY_OUTCOME = "by_outcome"
BY_ACTION = "by_action"
BY_DUE = "by_due"
TTL_ATTRIBUTE = "expires_at"
OUTCOMES_INDEXED = frozenset({Status.FAILED, Status.CANCELLED})
# A listing that walks `by_time` for a status reads at most this many tasks per
# request, then returns what it found with a cursor to go on from.
MAX_WALK = 1000


def _keys_only(name: str, partition: str, sort: str) -> dict:
    return {
        "IndexName": name,
        "KeySchema": [{"AttributeName": partition, "KeyType": "HASH"},
                      {"AttributeName": sort, "KeyType": "RANGE"}],
        "Projection": {"ProjectionType": "KEYS_ONLY"},
    }


# The table as the code needs it; the deployment template and the tests build it from this.
TABLE_SCHEMA = {
    "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
    "AttributeDefinitions": [
        {"AttributeName": "id", "AttributeType": "S"},
        {"AttributeName": "time_pk", "AttributeType": "S"},
        {"AttributeName": "outcome_pk", "AttributeType": "S"},
        {"AttributeName": "action_pk", "AttributeType": "S"},
        {"AttributeName": "sort_key", "AttributeType": "S"},
        {"AttributeName": "due_pk", "AttributeType": "S"},
        {"AttributeName": "due_at", "AttributeType": "N"},
    ],
    "GlobalSecondaryIndexes": [
        _keys_only(BY_TIME, "time_pk", "sort_key"),
        _keys_only(BY_OUTCOME, "outcome_pk", "sort_key"),
        _keys_only(BY_ACTION, "action_pk", "sort_key"),
        _keys_only(BY_DUE, "due_pk", "due_at"),
    ],
    "BillingMode": "PAY_PER_REQUEST",
}


def shard_of(task_id: str) -> int:
    return int(task_id[-4:], 16) % SHARDS


def _partitions(prefix: str) -> List[str]:
    return [f"{prefix}#{shard}" for shard in range(SHARDS)]


def sort_key(created_at: datetime, task_id: str) -> str:
    return f"{to_micros(created_at):020d}#{task_id}"


def _expired(item: dict) -> bool:
    """Past its retention: DynamoDB's TTL deletes such items within days, and reads
    must not see them meanwhile."""
    return TTL_ATTRIBUTE in item and int(item[TTL_ATTRIBUTE]["N"]) <= int(datetime.now(timezone.utc).timestamp())


class DynamoTaskStore(TaskStore):
    # One item holds a task, and DynamoDB takes items of up to 400 KB: the data,
    # its result (as large again, for an action such as uppercase) and the other
    # attributes must fit. A body up to 160 KiB leaves that room.
    max_body_bytes = 160 * 1024
    max_task_bytes = 380_000
    knows_oldest_queued = False  # no index holds queued tasks by age: the queue's metric has it

    def __init__(self, client: Any, table_name: str, retention: timedelta = timedelta(days=30),
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self._client = client
        self._table = table_name
        self._retention = retention
        self._clock = clock  # the day counts are written to and read for
        self._counts = StatusCounts(client, table_name, retention.total_seconds() / 86_400)
        self._minutes = MinuteRecords(client, table_name)
        self._counting = threading.local()  # a batch's counter changes, added when it ends

    # -- counting -----------------------------------------------------------

    @contextlib.contextmanager
    def batch(self, durable: bool = True):
        """The calls inside add their counter changes in one UpdateItem at the end
        (and their per-minute figures once a minute, as every store's batch does)."""
        outermost = not getattr(self._counting, "open", False)
        if outermost:
            self._counting.changes, self._counting.open = Counter(), True
        try:
            with self._gathering_minutes():
                yield
        finally:
            if outermost:
                self._counting.open = False
                self._add_counts(self._counting.changes)

    def _count(self, left: Optional[Booking], entered: Optional[Booking]) -> None:
        changes = Counter()
        if left is not None:
            changes[left] -= 1
        if entered is not None:
            changes[entered] += 1
        if getattr(self._counting, "open", False):
            self._counting.changes.update(changes)
        else:
            self._add_counts(changes)

    def _add_counts(self, changes: Counter) -> None:
        # The change itself is stored: a count that cannot be added is lost (the
        # counts are approximate), and must not turn the stored change into an error.
        try:
            self._counts.add(changes, self._clock())
        except StoreError as exc:
            logs.problem("counts not updated; /stats will be off by this change",
                         error=str(exc), changes={str(booked): n for booked, n in changes.items()})

    def _write_minutes(self, records) -> None:
        try:
            self._minutes.add(records)
        except StoreError as exc:  # figures, like counts, are not worth failing a change
            logs.problem("per-minute figures not updated", error=str(exc))

    def minutes(self, since_minute: int, action: Optional[str] = None):
        return self._minutes.read(since_minute, action)

    def count_by_status(self) -> dict:
        """Approximate counts from the counter items: O(1) reads (see dynamo_counts)."""
        return self._counts.read(self._clock())

    def fold_counts(self, now: datetime) -> int:
        return self._counts.fold(now)

    # -- single tasks -------------------------------------------------------

    def insert(self, task: Task) -> None:
        item = {
            name: encode(name, getattr(task, name))
            for name in ("id", "action", "data", "status", "attempts", "created_at")
        }
        for name in ("result", "error", "started_at", "finished_at", "due_at", "series_start",
                     "idempotency_key", "request_id", "run_at"):
            if getattr(task, name) is not None:
                item[name] = encode(name, getattr(task, name))
        shard = shard_of(task.id)
        if task.due_at is not None:
            item["due_pk"] = {"S": f"due#{shard}"}
        item["time_pk"] = {"S": f"t#{shard}"}
        item["action_pk"] = {"S": f"{task.action}#{shard}"}  # the shard, last, is digits: no two actions meet
        item["sort_key"] = {"S": sort_key(task.created_at, task.id)}
        if task.status in OUTCOMES_INDEXED:
            item["outcome_pk"] = {"S": f"{task.status.value}#{shard}"}
        try:
            self._client.put_item(TableName=self._table, Item=item,
                                  ConditionExpression="attribute_not_exists(id)",
                                  ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise _failed("PutItem", exc) from exc
            if not is_own_put(current_item(exc), item):  # else a retry of this very insert, applied
                raise TaskExists(f"task {task.id} exists") from exc
        except BotoCoreError as exc:
            raise _failed("PutItem", exc) from exc
        self._count(None, booking(task.status, task.finished_at))

    def get(self, task_id: str) -> Optional[Task]:
        try:
            item = self._client.get_item(TableName=self._table, Key={"id": {"S": task_id}},
                                         ConsistentRead=True).get("Item")
        except (BotoCoreError, ClientError) as exc:
            raise _failed("GetItem", exc) from exc
        return decode_item(item) if item and not _expired(item) else None

    def _remove(self, task_id: str, frm: frozenset) -> Optional[Task]:
        values = {f":from{number}": {"S": status.value}
                  for number, status in enumerate(sorted(frm, key=lambda status: status.value))}
        try:
            response = self._client.delete_item(
                TableName=self._table, Key={"id": {"S": task_id}},
                ConditionExpression=f"#status IN ({', '.join(values)})",
                ExpressionAttributeNames={"#status": "status"}, ExpressionAttributeValues=values,
                ReturnValues="ALL_OLD",
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                return None
            raise _failed("DeleteItem", exc) from exc
        except BotoCoreError as exc:
            raise _failed("DeleteItem", exc) from exc
        removed = decode_item(response["Attributes"])
        self._count(booking(removed.status, removed.finished_at), None)
        return removed

    # -- listings -----------------------------------------------------------

    def _fetch(self, ids: List[str], consistent: bool = False) -> dict:
        """{id: item} for the ids still stored and not expired."""
        found = batch_get(self._client, self._table, ids, consistent)
        return {task_id: item for task_id, item in found.items() if not _expired(item)}

    def _merged(self, index: str, partition: str, sort: str, prefix: str, newest_first: bool,
                bound: Optional[dict], page: int) -> Iterator[Tuple[str, str]]:
        return merged(self._client, self._table, index, partition, sort, _partitions(prefix),
                      newest_first, bound, page)

    def _page(self, status: Optional[Status], limit: int, after: Optional[Tuple[datetime, str]],
              action: Optional[str] = None):
        bound = None if after is None else {"op": "<", "value": {"S": sort_key(*after)}}
        if action is not None:
            entries = self._merged(BY_ACTION, "action_pk", "sort_key", action, True, bound,
                                   page=-(-limit // SHARDS) + 1 if status is None else BATCH_GET)
            walking = status is not None
        elif status in OUTCOMES_INDEXED:
            entries = self._merged(BY_OUTCOME, "outcome_pk", "sort_key", status.value, True, bound,
                                   page=-(-limit // SHARDS) + 1)
            walking = False
        else:
            entries = self._merged(BY_TIME, "time_pk", "sort_key", "t", True, bound,
                                   page=-(-limit // SHARDS) + 1 if status is None else BATCH_GET)
            walking = status is not None
        tasks, examined = [], 0
        while len(tasks) < limit:
            wanted = min(BATCH_GET, MAX_WALK - examined) if walking else min(BATCH_GET, limit - len(tasks))
            chunk = [entry for _, entry in zip(range(wanted), entries)]
            if not chunk:
                return tasks, None
            items = self._fetch([task_id for _, task_id in chunk])
            for _, task_id in chunk:
                if task_id in items:
                    task = decode_item(items[task_id])
                    if status is None or task.status is status:
                        tasks.append(task)
            examined += len(chunk)
            if walking and examined >= MAX_WALK and len(tasks) < limit:
                last_sort, last_id = chunk[-1]
                return tasks, (from_micros(int(last_sort.split("#")[0])), last_id)
        return tasks[:limit], None

    def oldest(self, status: Status, ready_by: Optional[datetime] = None) -> Optional[Task]:
        """The earliest created failed or cancelled task; None for the other statuses,
        which no index holds by status (the queue's oldest message age is in CloudWatch)."""
        if status not in OUTCOMES_INDEXED:
            return None
        for _, task_id in self._merged(BY_OUTCOME, "outcome_pk", "sort_key", status.value, False, None, page=1):
            found = self._fetch([task_id], consistent=True)
            if task_id in found and decode_item(found[task_id]).status is status:
                return decode_item(found[task_id])
        return None

    def _due(self, now: datetime, page: int) -> Iterator[Task]:
        bound = {"op": "<=", "value": {"N": str(to_micros(now))}}
        entries = self._merged(BY_DUE, "due_pk", "due_at", "due", False, bound, page=page)
        while True:
            chunk = [task_id for _, (_, task_id) in zip(range(page), entries)]
            if not chunk:
                return
            # Read again, consistently: the index may be behind its items.
            items = self._fetch(chunk, consistent=True)
            yield from (decode_item(items[task_id]) for task_id in chunk if task_id in items)

    # -- Idempotency-Key records -------------------------------------------

    def remember_key(self, record: KeyRecord, now: datetime) -> Optional[KeyRecord]:
        item_id = {"S": KEY_PREFIX + record.key}
        item = {
            "id": item_id,
            "fingerprint": {"S": record.fingerprint},
            "task_id": {"S": record.task_id},
            "created_at": {"N": str(to_micros(record.created_at))},
            TTL_ATTRIBUTE: {"N": str(int(record.expires_at.timestamp()))},
        }
        try:
            self._client.put_item(
                TableName=self._table, Item=item,
                # TTL deletes lazily: an expired record may linger, and is replaced.
                ConditionExpression="attribute_not_exists(id) OR #exp <= :now",
                ExpressionAttributeNames={"#exp": TTL_ATTRIBUTE},
                ExpressionAttributeValues={":now": {"N": str(int(now.timestamp()))}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return None
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise _failed("PutItem", exc) from exc
            found = current_item(exc)
        except BotoCoreError as exc:
            raise _failed("PutItem", exc) from exc
        if is_own_put(found, item):
            return None  # a retry of this very write, applied
        if found is None:  # an endpoint that does not return the item
            try:
                found = self._client.get_item(TableName=self._table, Key={"id": item_id},
                                              ConsistentRead=True).get("Item")
            except (BotoCoreError, ClientError) as exc:
                raise _failed("GetItem", exc) from exc
        if found is None:  # removed between the two calls: try once more
            return self.remember_key(record, now)
        return KeyRecord(
            key=record.key, fingerprint=found["fingerprint"]["S"], task_id=found["task_id"]["S"],
            created_at=from_micros(int(found["created_at"]["N"])),
            expires_at=datetime.fromtimestamp(int(found[TTL_ATTRIBUTE]["N"]), timezone.utc),
        )

    def forget_key(self, key: str, task_id: str) -> None:
        try:
            self._client.delete_item(
                TableName=self._table, Key={"id": {"S": KEY_PREFIX + key}},
                ConditionExpression="task_id = :t", ExpressionAttributeValues={":t": {"S": task_id}},
            )
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise _failed("DeleteItem", exc) from exc
        except BotoCoreError as exc:
            raise _failed("DeleteItem", exc) from exc

    def purge_expired_keys(self, now: datetime) -> int:
        return 0  # DynamoDB's TTL deletes them; remember_key ignores expired ones meanwhile

    def purge_finished(self, before: datetime, limit: int) -> int:
        return 0  # DynamoDB's TTL deletes them (expires_at, set when a task becomes final); reads skip them

    def _transition(self, task_id, frm, to, expect_attempts, fields, increment_attempts, returning=True):
        shard = shard_of(task_id)
        names = {"#status": "status"}
        values = {":to": {"S": to.value}}
        sets, removes = ["#status = :to"], []
        for name, value in fields.items():
            if value is None:
                removes.append(f"#{name}")
            else:
                sets.append(f"#{name} = :{name}")
                values[f":{name}"] = encode(name, value)
            names[f"#{name}"] = name
        # The recovery index watches a task queued with a due time; a claim hands a
        # running task to the queue's visibility timeout.
        names["#due_pk"] = "due_pk"
        if to is Status.QUEUED and fields.get("due_at") is not None:
            sets.append("#due_pk = :due_pk")
            values[":due_pk"] = {"S": f"due#{shard}"}
        else:
            removes.append("#due_pk")
        if to in OUTCOMES_INDEXED:
            sets.append("#outcome_pk = :outcome_pk")
            values[":outcome_pk"] = {"S": f"{to.value}#{shard}"}
            names["#outcome_pk"] = "outcome_pk"
        elif Status.FAILED in frm:
            removes.append("#outcome_pk")
            names["#outcome_pk"] = "outcome_pk"
        # Retention: a final task expires `retention` after it finished; one queued
        # again (an operator's retry) no longer does.
        names["#exp"] = TTL_ATTRIBUTE
        if to.is_final:
            sets.append("#exp = :exp")
            finished = fields.get("finished_at") or self._clock()
            values[":exp"] = {"N": str(int((finished + self._retention).timestamp()))}
        else:
            removes.append("#exp")
        if increment_attempts:
            sets.append("attempts = attempts + :one")
            values[":one"] = {"N": "1"}
        placeholders = []
        for number, source in enumerate(sorted(status.value for status in frm)):
            values[f":from{number}"] = {"S": source}
            placeholders.append(f":from{number}")
        condition = f"#status IN ({', '.join(placeholders)})"
        if expect_attempts is not None:
            condition += " AND attempts = :attempt"
            values[":attempt"] = {"N": str(expect_attempts)}
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        try:
            response = self._client.update_item(
                TableName=self._table, Key={"id": {"S": task_id}},
                UpdateExpression=expression, ConditionExpression=condition,
                ExpressionAttributeNames=names, ExpressionAttributeValues=values,
                # The state it was in, for the counts; the new one follows from it.
                ReturnValues="ALL_OLD" if returning else "UPDATED_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise _failed("UpdateItem", exc) from exc
            return self._retried_transition(current_item(exc), frm, to, expect_attempts, fields,
                                            increment_attempts, returning)
        except BotoCoreError as exc:
            raise _failed("UpdateItem", exc) from exc
        image = response["Attributes"]
        before = Status(image["status"]["S"])
        # A final task leaves the count of the day it finished on, as it entered it.
        finished = from_micros(int(image["finished_at"]["N"])) if "finished_at" in image else None
        self._count(booking(before, finished), booking(to, fields.get("finished_at")))
        if not returning:
            return True
        old = decode_item(response["Attributes"])
        return replace(old, status=to, attempts=old.attempts + (1 if increment_attempts else 0),
                       **{name: value for name, value in fields.items() if name in TASK_FIELDS})

    def _retried_transition(self, found, frm, to, expect_attempts, fields, increment_attempts, returning):
        """After a failed condition: the task as this transition left it when the item
        shows the transition applied already (botocore retried it after losing its
        response), counted as the lost response would have been; else None. Only a
        transition from one status can be counted: the others' source is unknown."""
        attempts = None if expect_attempts is None else expect_attempts + (1 if increment_attempts else 0)
        if len(frm) != 1 or not is_own_update(found, to, attempts, fields):
            return None
        [before] = frm
        # Leaving a final status (an operator's retry), the day it finished on is gone
        # with its finished_at: that -1 is booked today.
        self._count(booking(before, None), booking(to, fields.get("finished_at")))
        return decode_item(found) if returning else True
