"""DynamoDB capacity of one tree's data model, measured under moto: run with the
tree to measure as the working directory; prints one JSON object.

    python bench/capacity_probe.py TASKS [STATS_AT ...]

Every call the service, the worker and the readers make goes through a recording
client. For each write, the item is read before and after it (by a second client
that is not recorded), and the write units are worked out the way DynamoDB bills
them on demand: the table's item at 1 KB a unit (the larger of its two images),
and, per global secondary index, the entry the write removes, adds or rewrites,
at 1 KB a unit each (an entry whose keys change is one removal and one addition;
one whose keys and projected attributes stay the same costs nothing). Reads are
billed at 4 KB a unit, half for an eventually consistent one: a Query by the
size of the entries it reads, a GetItem or BatchGetItem per item.

Only the APIs every revision of the store has are used: the service's submit,
the worker's process_batch, the store's list and count_by_status.
"""
from __future__ import annotations

import collections
import json
import math
import os
import sys
import threading
import uuid

sys.path.insert(0, os.getcwd())

KB = 1024


def attribute_size(value: dict) -> int:
    """An attribute value's size as DynamoDB counts it (numbers approximately)."""
    (kind, inner), = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return len(inner.lstrip("-").replace(".", "")) // 2 + 2
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_size(v) + 1 for k, v in inner.items())
    if kind == "L":
        return 3 + sum(attribute_size(v) + 1 for v in inner)
    if kind in ("SS", "NS", "BS"):
        return sum(attribute_size({kind[0]: v}) for v in inner)
    raise ValueError(kind)


def item_size(item) -> int:
    return sum(len(name.encode()) + attribute_size(value) for name, value in (item or {}).items())


class Meter:
    """A DynamoDB client that records the capacity each call consumes."""

    def __init__(self, client, schema: dict) -> None:
        self._client = client
        self._indexes = {}
        table_keys = [key["AttributeName"] for key in schema["KeySchema"]]
        for index in schema.get("GlobalSecondaryIndexes", []):
            keys = [key["AttributeName"] for key in index["KeySchema"]]
            projection = index["Projection"]
            self._indexes[index["IndexName"]] = (keys, table_keys, projection)
        self.write_units = collections.Counter()  # "table" or the index name -> units
        self.read_units = 0.0
        self.key_units = collections.defaultdict(collections.Counter)  # table/index -> partition -> units
        self.recording = True
        # A page's Queries run on threads at once: without it, two of them adding
        # their units at the same moment would count one.
        self._adding = threading.Lock()

    def __getattr__(self, name):
        return getattr(self._client, name)

    def _entry(self, index: str, item):
        keys, table_keys, projection = self._indexes[index]
        if not item or any(key not in item for key in keys):
            return None
        if projection["ProjectionType"] == "ALL":
            return item
        names = set(keys) | set(table_keys) | set(projection.get("NonKeyAttributes", []))
        return {name: value for name, value in item.items() if name in names}

    def _written(self, key: dict, call):
        raw = self._client
        before = raw.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")
        try:
            return call()
        finally:
            after = raw.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")
            if self.recording:
                with self._adding:
                    self._bill(before, after)

    def _bill(self, before, after) -> None:
        units = max(1, math.ceil(max(item_size(before), item_size(after)) / KB))
        self.write_units["table"] += units
        self.key_units["table"][json.dumps((before or after)["id"])] += units
        for index, (keys, _, _) in self._indexes.items():
            old, new = self._entry(index, before), self._entry(index, after)
            changes = []
            if old and new and [old[k] for k in keys] != [new[k] for k in keys]:
                changes = [old, new]
            elif old and new:
                changes = [new] if old != new else []
            elif old or new:
                changes = [old or new]
            for entry in changes:
                units = max(1, math.ceil(item_size(entry) / KB))
                self.write_units[index] += units
                self.key_units[index][json.dumps(entry[keys[0]])] += units

    def put_item(self, **request):
        return self._written({"id": request["Item"]["id"]}, lambda: self._client.put_item(**request))

    def update_item(self, **request):
        return self._written(request["Key"], lambda: self._client.update_item(**request))

    def delete_item(self, **request):
        return self._written(request["Key"], lambda: self._client.delete_item(**request))

    def _read(self, size: int, consistent: bool) -> None:
        if self.recording:
            with self._adding:
                self.read_units += max(1, math.ceil(size / (4 * KB))) * (1.0 if consistent else 0.5)

    def get_item(self, **request):
        response = self._client.get_item(**request)
        self._read(item_size(response.get("Item")), request.get("ConsistentRead", False))
        return response

    def batch_get_item(self, **request):
        response = self._client.batch_get_item(**request)
        for table, asked in request["RequestItems"].items():
            consistent = asked.get("ConsistentRead", False)
            items = response.get("Responses", {}).get(table, [])
            for item in items:
                self._read(item_size(item), consistent)
            unprocessed = len(response.get("UnprocessedKeys", {}).get(table, {}).get("Keys", []))
            for _ in range(len(asked["Keys"]) - len(items) - unprocessed):
                self._read(0, consistent)  # a key with no item still costs the minimum
        return response

    def query(self, **request):
        response = self._client.query(**request)
        # The entries read, with their sizes, are what the query is billed for: read
        # them again without Select=COUNT where the call only counted.
        if request.get("Select") == "COUNT":
            again = {k: v for k, v in request.items() if k != "Select"}
            entries = self._client.query(**again).get("Items", [])
        else:
            entries = response.get("Items", [])
        self._read(sum(item_size(entry) for entry in entries), request.get("ConsistentRead", False))
        return response


def main(tasks: int, stats_at: list) -> dict:
    import boto3
    from moto import mock_aws

    for name in [n for n in os.environ if n.startswith("TASKS_")]:
        del os.environ[name]
    os.environ.update(AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x")
    from chalicelib.service import TaskService
    from chalicelib.store.dynamodb import TABLE_SCHEMA, DynamoTaskStore
    from chalicelib.validation import NewTask
    from chalicelib.worker import Worker

    def catalog() -> tuple:
        """The service's catalog of actions, in a tree that has one (--compare runs older trees)."""
        try:
            from chalicelib.actions import ACTIONS
            from chalicelib.catalog import Catalog
            from chalicelib.retry import RetryPolicy
        except ImportError:
            return ()
        return (Catalog(ACTIONS, RetryPolicy()),)

    class Queue:  # the messages the service publishes, for the worker to take
        def __init__(self):
            self.messages = []

        def publish_task(self, task_id):
            self.messages.append(json.dumps({"task_id": task_id}))
            return str(uuid.uuid4())

    with mock_aws():
        raw = boto3.client("dynamodb", region_name="us-east-1")
        raw.create_table(TableName="tasks", **TABLE_SCHEMA)
        meter = Meter(raw, TABLE_SCHEMA)
        meter.table = "tasks"
        store = DynamoTaskStore(meter, "tasks")
        queue = Queue()
        service = TaskService(store, queue, *catalog())
        worker = Worker(store, queue, work_delay_seconds=0)
        for number in range(tasks):
            service.submit(NewTask("uppercase", {"text": "hello world"}))
        submit_units = sum(meter.write_units.values())
        for start in range(0, len(queue.messages), 5):
            batch = queue.messages[start:start + 5]
            assert worker.process_batch([(str(n), str(n), body) for n, body in enumerate(batch)]) == []
        total = dict(meter.write_units)
        shares = {}
        for where, per_key in meter.key_units.items():
            hottest = max(per_key.values())
            shares[where] = {"hottest_share": hottest / sum(per_key.values()),
                             "hottest_units_per_task": hottest / tasks, "keys": len(per_key)}

        def reads(call):
            meter.read_units = 0.0
            call()
            return meter.read_units

        fold = getattr(store, "fold_counts", None)
        if fold is not None:  # what the scheduled function does every minute
            from datetime import datetime, timezone
            fold(datetime.now(timezone.utc))
        counts = store.count_by_status()
        figures = {
            "tasks": tasks,
            "write_units_per_task": sum(total.values()) / tasks,
            "write_units_per_task_by_place": {k: v / tasks for k, v in sorted(total.items())},
            "submit_write_units_per_task": submit_units / tasks,
            "partitions": shares,
            "counts": counts,
            "stats_read_units": reads(store.count_by_status),
            "list_read_units": reads(lambda: store.list(limit=100)),
            "list_completed_read_units": reads(lambda: store.list(_status("completed"), limit=100)),
            "list_failed_read_units": reads(lambda: store.list(_status("failed"), limit=100)),
        }
        try:  # GET /tasks?action=uppercase, in a tree that can list by action
            figures["list_action_read_units"] = reads(lambda: store.list(limit=100, action="uppercase"))
        except TypeError:
            pass
        if hasattr(store, "minutes"):  # GET /stats/series?minutes=60
            from datetime import datetime, timezone
            from chalicelib import series
            figures["series_read_units"] = reads(
                lambda: store.minutes(series.minute_of(datetime.now(timezone.utc)) - 59))
        for extra in stats_at:  # the counts' read cost with `extra` more tasks counted
            grow = getattr(store, "_counts", None)
            if grow is None:
                continue
            from collections import Counter
            from datetime import datetime, timezone
            meter.recording = False
            grow.add(Counter(completed=extra - tasks), datetime.now(timezone.utc))
            meter.recording = True
            figures[f"stats_read_units_at_{extra}"] = reads(store.count_by_status)
    return figures


def _status(name):
    from chalicelib.tasks import Status
    return Status(name)


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), [int(n) for n in sys.argv[2:]])))
