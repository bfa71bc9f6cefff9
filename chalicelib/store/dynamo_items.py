"""The DynamoDB calls the task store and its counters share: errors translated to
StoreError, BatchGetItem in chunks with its unprocessed keys retried, and ADD to
numeric attributes of an item that expires."""
from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.store.base import StoreError

BATCH_GET = 100  # BatchGetItem's limit


def failed(operation: str, exc: Exception) -> StoreError:
    return StoreError(f"DynamoDB {operation} failed: {exc}")


def is_condition_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def batch_get(client: Any, table: str, ids: Iterable[str], consistent: bool = False) -> Dict[str, dict]:
    """{id: item} for those of `ids` that have an item."""
    ids, found = list(ids), {}
    try:
        for start in range(0, len(ids), BATCH_GET):
            request = {table: {"Keys": [{"id": {"S": item_id}} for item_id in ids[start:start + BATCH_GET]],
                               "ConsistentRead": consistent}}
            while request:
                response = client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(table, []):
                    found[item["id"]["S"]] = item
                request = response.get("UnprocessedKeys") or None
    except (BotoCoreError, ClientError) as exc:
        raise failed("BatchGetItem", exc) from exc
    return found


def add_numbers(client: Any, table: str, item_id: str, numbers: Mapping[str, int], expires_at: int) -> None:
    """ADD each number to its attribute (created at 0 when missing); the item expires
    at `expires_at` (seconds since the epoch) unless it already has an expiry."""
    names = {f"#n{number}": name for number, name in enumerate(numbers)}
    values = {f":n{number}": {"N": str(value)} for number, value in enumerate(numbers.values())}
    names["#exp"] = "expires_at"
    values[":exp"] = {"N": str(expires_at)}
    try:
        client.update_item(
            TableName=table, Key={"id": {"S": item_id}},
            UpdateExpression="ADD " + ", ".join(f"#n{n} :n{n}" for n in range(len(numbers)))
            + " SET #exp = if_not_exists(#exp, :exp)",
            ExpressionAttributeNames=names, ExpressionAttributeValues=values)
    except (BotoCoreError, ClientError) as exc:
        raise failed("UpdateItem", exc) from exc
