"""Tasks in a DynamoDB table.

Items are keyed by `id`. Two global secondary indexes serve the listings with
Query, newest first, never Scan: `by_time` (one partition, `list_pk`, sorted by
`sort_key` = zero-padded creation microseconds + id) and `by_status` (partition
`status`, same sort key). A third, sparse index, `by_due`, holds only tasks
that are not final, by `due_at`, for recovery. Idempotency-Key records share the
table under their own ids; they carry none of the index keys, so no index holds
them, and DynamoDB's TTL deletes them. Every state change is a conditional UpdateItem, so a
redelivered message or a second worker cannot run a task twice or overwrite a
final state. JSON fields are stored as strings: DynamoDB has no float type.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Optional, Tuple

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.store.base import KeyRecord, StoreError, TaskExists, TaskStore
from chalicelib.tasks import Status, Task, from_micros, to_micros

LIST_PARTITION = "task"
DUE_PARTITION = "due"
KEY_PREFIX = "idempotency-key#"
BY_TIME = "by_time"
BY_STATUS = "by_status"
BY_DUE = "by_due"
TTL_ATTRIBUTE = "expires_at"

# The table as the code needs it; the deployment template and the tests build it from this.
TABLE_SCHEMA = {
    "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
    "AttributeDefinitions": [
        {"AttributeName": "id", "AttributeType": "S"},
        {"AttributeName": "list_pk", "AttributeType": "S"},
        {"AttributeName": "status", "AttributeType": "S"},
        {"AttributeName": "sort_key", "AttributeType": "S"},
        {"AttributeName": "due_pk", "AttributeType": "S"},
        {"AttributeName": "due_at", "AttributeType": "N"},
    ],
    "GlobalSecondaryIndexes": [
        {
            "IndexName": BY_TIME,
            "KeySchema": [
                {"AttributeName": "list_pk", "KeyType": "HASH"},
                {"AttributeName": "sort_key", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        },
        {
            "IndexName": BY_STATUS,
            "KeySchema": [
                {"AttributeName": "status", "KeyType": "HASH"},
                {"AttributeName": "sort_key", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        },
        {
            "IndexName": BY_DUE,
            "KeySchema": [
                {"AttributeName": "due_pk", "KeyType": "HASH"},
                {"AttributeName": "due_at", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        },
    ],
    "BillingMode": "PAY_PER_REQUEST",
}

_TIME_FIELDS = ("created_at", "started_at", "finished_at", "due_at")
_JSON_FIELDS = ("data", "result")


def sort_key(created_at: datetime, task_id: str) -> str:
    return f"{to_micros(created_at):020d}#{task_id}"


def _encode(name: str, value: Any) -> dict:
    if name in _TIME_FIELDS:
        return {"N": str(to_micros(value))}
    if name in _JSON_FIELDS:
        return {"S": json.dumps(value)}
    if name in ("attempts", "series_start"):
        return {"N": str(value)}
    if isinstance(value, Status):
        return {"S": value.value}
    return {"S": value}


def _decode_item(item: dict) -> Task:
    def number(name):
        return int(item[name]["N"]) if name in item else None

    return Task(
        id=item["id"]["S"],
        action=item["action"]["S"],
        data=json.loads(item["data"]["S"]),
        status=Status(item["status"]["S"]),
        result=json.loads(item["result"]["S"]) if "result" in item else None,
        error=item["error"]["S"] if "error" in item else None,
        attempts=number("attempts"),
        created_at=from_micros(number("created_at")),
        started_at=from_micros(number("started_at")),
        finished_at=from_micros(number("finished_at")),
        due_at=from_micros(number("due_at")),
        series_start=number("series_start") or 0,
        idempotency_key=item["idempotency_key"]["S"] if "idempotency_key" in item else None,
        request_id=item["request_id"]["S"] if "request_id" in item else None,
    )


def _expired(item: dict) -> bool:
    """Past its retention: DynamoDB's TTL deletes such items within days, and reads
    must not see them meanwhile."""
    return TTL_ATTRIBUTE in item and int(item[TTL_ATTRIBUTE]["N"]) <= int(datetime.now(timezone.utc).timestamp())


def _failed(operation: str, exc: Exception) -> StoreError:
    return StoreError(f"DynamoDB {operation} failed: {exc}")


def _is_condition_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class DynamoTaskStore(TaskStore):
    # One item holds a task, and DynamoDB takes items of up to 400 KB: the data,
    # its result (as large again, for an action such as uppercase) and the other
    # attributes must fit. A body up to 160 KiB leaves that room.
    max_body_bytes = 160 * 1024
    max_task_bytes = 380_000

    def __init__(self, client: Any, table_name: str, retention: timedelta = timedelta(days=30)) -> None:
        self._client = client
        self._table = table_name
        self._retention = retention

    def insert(self, task: Task) -> None:
        item = {
            name: _encode(name, getattr(task, name))
            for name in ("id", "action", "data", "status", "attempts", "created_at")
        }
        for name in ("result", "error", "started_at", "finished_at", "due_at", "series_start",
                     "idempotency_key", "request_id"):
            if getattr(task, name) is not None:
                item[name] = _encode(name, getattr(task, name))
        if task.due_at is not None:
            item["due_pk"] = {"S": DUE_PARTITION}
        item["list_pk"] = {"S": LIST_PARTITION}
        item["sort_key"] = {"S": sort_key(task.created_at, task.id)}
        try:
            self._client.put_item(TableName=self._table, Item=item,
                                  ConditionExpression="attribute_not_exists(id)")
        except ClientError as exc:
            if _is_condition_failure(exc):
                raise TaskExists(f"task {task.id} exists") from exc
            raise _failed("PutItem", exc) from exc
        except BotoCoreError as exc:
            raise _failed("PutItem", exc) from exc

    def get(self, task_id: str) -> Optional[Task]:
        try:
            item = self._client.get_item(TableName=self._table, Key={"id": {"S": task_id}},
                                         ConsistentRead=True).get("Item")
        except (BotoCoreError, ClientError) as exc:
            raise _failed("GetItem", exc) from exc
        return _decode_item(item) if item and not _expired(item) else None

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
        return _decode_item(response["Attributes"])

    def _page(self, status: Optional[Status], limit: int, after: Optional[Tuple[datetime, str]]) -> list:
        if status is None:
            index, condition = BY_TIME, "list_pk = :p"
            values = {":p": {"S": LIST_PARTITION}}
        else:
            index, condition = BY_STATUS, "#status = :p"
            values = {":p": {"S": status.value}}
        if after is not None:
            condition += " AND sort_key < :after"
            values[":after"] = {"S": sort_key(*after)}
        values[":now"] = {"N": str(int(datetime.now(timezone.utc).timestamp()))}
        request = {
            "TableName": self._table, "IndexName": index, "KeyConditionExpression": condition,
            "FilterExpression": "attribute_not_exists(#exp) OR #exp > :now",  # TTL deletes lag
            "ExpressionAttributeValues": values, "ScanIndexForward": False,
            "ExpressionAttributeNames": {"#exp": TTL_ATTRIBUTE},
        }
        if status is not None:
            request["ExpressionAttributeNames"]["#status"] = "status"
        tasks = []
        try:
            while len(tasks) < limit:
                response = self._client.query(**request, Limit=limit - len(tasks))
                tasks += [_decode_item(item) for item in response.get("Items", [])]
                if "LastEvaluatedKey" not in response:
                    break
                request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        except (BotoCoreError, ClientError) as exc:
            raise _failed("Query", exc) from exc
        return tasks

    def count_by_status(self) -> dict:
        """Counts with Query(Select=COUNT) on the status index: it reads every
        task's index entry, so its cost grows with the table (see README)."""
        counts = {}
        for status in Status:
            request = {
                "TableName": self._table, "IndexName": BY_STATUS, "Select": "COUNT",
                "KeyConditionExpression": "#status = :s",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {":s": {"S": status.value}},
            }
            total = 0
            try:
                while True:
                    response = self._client.query(**request)
                    total += response["Count"]
                    if "LastEvaluatedKey" not in response:
                        break
                    request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
            except (BotoCoreError, ClientError) as exc:
                raise _failed("Query", exc) from exc
            if total:
                counts[status.value] = total
        return counts

    def oldest(self, status: Status) -> Optional[Task]:
        try:
            items = self._client.query(
                TableName=self._table, IndexName=BY_STATUS, Limit=1, ScanIndexForward=True,
                KeyConditionExpression="#status = :s", ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":s": {"S": status.value}},
            ).get("Items", [])
        except (BotoCoreError, ClientError) as exc:
            raise _failed("Query", exc) from exc
        return _decode_item(items[0]) if items else None

    def _due(self, now: datetime, limit: int) -> list:
        try:
            response = self._client.query(
                TableName=self._table, IndexName=BY_DUE, Limit=limit,
                KeyConditionExpression="due_pk = :p AND due_at <= :now",
                ExpressionAttributeValues={":p": {"S": DUE_PARTITION}, ":now": {"N": str(to_micros(now))}},
            )
        except (BotoCoreError, ClientError) as exc:
            raise _failed("Query", exc) from exc
        return [_decode_item(item) for item in response.get("Items", [])]

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
            )
            return None
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise _failed("PutItem", exc) from exc
        except BotoCoreError as exc:
            raise _failed("PutItem", exc) from exc
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
        names = {"#status": "status"}
        values = {":to": {"S": to.value}}
        sets, removes = ["#status = :to"], []
        if "due_at" in fields:
            # The sparse recovery index holds a task while it has a due time.
            names["#due_pk"] = "due_pk"
            if fields["due_at"] is None:
                removes.append("#due_pk")
            else:
                sets.append("#due_pk = :due_pk")
                values[":due_pk"] = {"S": DUE_PARTITION}
        for name, value in fields.items():
            if value is None:
                removes.append(f"#{name}")
            else:
                sets.append(f"#{name} = :{name}")
                values[f":{name}"] = _encode(name, value)
            names[f"#{name}"] = name
        # Retention: a final task expires `retention` after it finished; one queued
        # again (an operator's retry) no longer does.
        names["#exp"] = TTL_ATTRIBUTE
        if to.is_final:
            sets.append("#exp = :exp")
            finished = fields.get("finished_at") or datetime.now(timezone.utc)
            values[":exp"] = {"N": str(int((finished + self._retention).timestamp()))}
        else:
            removes.append("#exp")
        if increment_attempts:
            sets.append("attempts = attempts + :one")
            values[":one"] = {"N": "1"}
        sources = sorted(status.value for status in frm)
        placeholders = []
        for number, source in enumerate(sources):
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
                ReturnValues="ALL_NEW" if returning else "NONE",
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                return None
            raise _failed("UpdateItem", exc) from exc
        except BotoCoreError as exc:
            raise _failed("UpdateItem", exc) from exc
        return _decode_item(response["Attributes"]) if returning else True
