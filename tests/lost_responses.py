"""A DynamoDB call applied by the service whose response never came back: botocore
sends the same request again, as it does after a dropped connection or a timeout."""
import json
from typing import Callable, List


class LostResponse:
    """Drops the response of the first `operation` call whose request body `when`
    accepts, once the call has succeeded, so that botocore's retry handler sends
    it again; `lost` holds the bodies of the calls it dropped."""

    def __init__(self, client, operation: str, when: Callable[[dict], bool], times: int = 1) -> None:
        self._when, self._times = when, times
        self.lost: List[dict] = []
        client.meta.events.register(f"needs-retry.dynamodb.{operation}", self._retry)

    def _retry(self, response=None, caught_exception=None, attempts=None, request_dict=None, **_):
        if caught_exception is not None or response is None or len(self.lost) >= self._times:
            return None
        if response[0].status_code != 200:
            return None
        body = json.loads(request_dict["body"])
        if not self._when(body):
            return None
        self.lost.append(body)
        return 0  # seconds to wait before sending it again


def task_put(body: dict) -> bool:
    """A task's own item (not a key record or a counter)."""
    return "action" in body.get("Item", {})


def outcome_update(body: dict) -> bool:
    """A worker's outcome write: the one that sets finished_at."""
    return "#finished_at = :finished_at" in body.get("UpdateExpression", "")
