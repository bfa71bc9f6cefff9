"""Reading an index spread over several partition keys as one: the shards' Queries
run at once, and their entries are merged in the index's order."""
from __future__ import annotations

import heapq
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, List, Optional, Tuple

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.store.dynamo_items import failed


def _sort_value(attribute: dict):
    return int(attribute["N"]) if "N" in attribute else attribute["S"]


_INVERT = str.maketrans({chr(code): chr(0x10FFFF - code) for code in range(128)})


def _ordered(value, sign: int) -> tuple:
    """A heap key that puts entries in the index's order (sign 1) or its reverse (-1)."""
    if isinstance(value, int):
        return (sign * value,)
    micros, _, task_id = value.partition("#")
    return (sign * int(micros), task_id if sign > 0 else task_id.translate(_INVERT))


def merged(client: Any, table: str, index: str, partition: str, sort: str, shards: List[str],
           newest_first: bool, bound: Optional[dict], page: int) -> Iterator[Tuple[Any, str]]:
    """(sort value, id) of every entry of the index's shards, merged in order; each
    shard is read a page at a time, the first pages all at once."""
    def query(shard_key, start=None):
        condition = "#pk = :pk"
        names = {"#pk": partition}
        values = {":pk": {"S": shard_key}}
        if bound is not None:
            condition += f" AND #sk {bound['op']} :bound"
            names["#sk"] = sort
            values[":bound"] = bound["value"]
        request = {"TableName": table, "IndexName": index, "KeyConditionExpression": condition,
                   "ExpressionAttributeNames": names,
                   "ExpressionAttributeValues": values, "ScanIndexForward": not newest_first, "Limit": page}
        if start is not None:
            request["ExclusiveStartKey"] = start
        try:
            response = client.query(**request)
        except (BotoCoreError, ClientError) as exc:
            raise failed("Query", exc) from exc
        entries = [(_sort_value(item[sort]), item["id"]["S"]) for item in response.get("Items", [])]
        return entries, response.get("LastEvaluatedKey")

    with ThreadPoolExecutor(max_workers=len(shards)) as pool:
        first = list(pool.map(query, shards))
    buffers = {shard: deque(entries) for shard, (entries, _) in zip(shards, first)}
    more = {shard: start for shard, (_, start) in zip(shards, first)}
    sign = -1 if newest_first else 1

    def head(shard):
        value, task_id = buffers[shard][0]
        return (_ordered(value, sign), task_id, shard)

    heap = [head(shard) for shard in shards if buffers[shard]]
    heapq.heapify(heap)
    while heap:
        _, task_id, shard = heapq.heappop(heap)
        yield buffers[shard].popleft()
        if not buffers[shard] and more[shard] is not None:
            entries, more[shard] = query(shard, more[shard])
            buffers[shard] = deque(entries)
        if buffers[shard]:
            heapq.heappush(heap, head(shard))
