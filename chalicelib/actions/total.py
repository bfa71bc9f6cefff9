"""The seed's `sum`: the total of data.numbers."""
import math

from chalicelib.actions import ActionError, action

SCHEMA = {
    "type": "object",
    "properties": {"numbers": {"type": "array", "items": {"type": "number"},
                               "description": "The numbers to add up"}},
    "examples": [{"numbers": [1, 2, 3.5]}],
}


@action("sum", schema=SCHEMA, max_attempts=3, timeout_s=5)
def total(data: dict):
    """The total of data.numbers (0 when there are none)."""
    result = sum(data.get("numbers", []))
    if isinstance(result, float) and not math.isfinite(result):
        raise ActionError("sum of data.numbers is too large to represent")
    return result
