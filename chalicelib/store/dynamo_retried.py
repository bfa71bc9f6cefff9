"""Telling a conditional write DynamoDB already applied from one that lost a race.

botocore sends a request again when its response is lost (a dropped connection,
a read timeout, a 5xx after the write). A conditional write that was applied
then fails its own condition on the retry: an insert finds its item there, an
outcome finds its task final already. Each write asks for the item as it stands
when its condition fails (ReturnValuesOnConditionCheckFailure=ALL_OLD: no extra
call, no extra write unit), and these functions say whether that item is this
very write's result, so that the caller carries on as after a success: a submit
publishes, an outcome is counted. Another writer's item differs in a time this
write chose to the microsecond (created_at, finished_at, due_at), so the two
cannot be told apart only if they made the same write.
"""
from __future__ import annotations

from typing import Mapping, Optional

from botocore.exceptions import ClientError

from chalicelib.store.dynamo_codec import encode
from chalicelib.tasks import Status


def current_item(exc: ClientError) -> Optional[dict]:
    """The item as it stood when the condition failed (None: there was none)."""
    return exc.response.get("Item")


def is_own_put(found: Optional[dict], written: Mapping[str, dict]) -> bool:
    """Whether the item found is the one this PutItem wrote, attribute for attribute."""
    return found is not None and dict(found) == dict(written)


def is_own_update(found: Optional[dict], to: Status, attempts: Optional[int], fields: Mapping) -> bool:
    """Whether the item found is in the state this UpdateItem moves a task to: status
    `to`, `attempts` (when the write knows it), and each of `fields` as written (a
    None field removed)."""
    if found is None or found.get("status") != {"S": to.value}:
        return False
    if attempts is not None and found.get("attempts") != {"N": str(attempts)}:
        return False
    for name, value in fields.items():
        if found.get(name) != (None if value is None else encode(name, value)):
            return False
    return True
