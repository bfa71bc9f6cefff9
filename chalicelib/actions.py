"""What each action does with a task's data."""
from __future__ import annotations

import math
from typing import Any, Callable, Dict


class ActionError(ValueError):
    """The task's data is not something its action can use; retrying will not help."""


def uppercase(data: dict) -> Any:
    text = data.get("text", "")
    if not isinstance(text, str):
        raise ActionError("uppercase needs data.text to be a string")
    return text.upper()


def total(data: dict) -> Any:
    numbers = data.get("numbers", [])
    if not isinstance(numbers, list):
        raise ActionError("sum needs data.numbers to be a list of numbers")
    for number in numbers:
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise ActionError(f"sum needs data.numbers to hold only numbers, not {number!r}")
    result = sum(numbers)
    if isinstance(result, float) and not math.isfinite(result):
        raise ActionError("sum of data.numbers is too large to represent")
    return result


ACTIONS: Dict[str, Callable[[dict], Any]] = {
    "uppercase": uppercase,
    "sum": total,
}


def run(action: str, data: dict) -> dict:
    """The task's result, `{"output": ...}` as in the seed; unknown actions output "processed"."""
    handler = ACTIONS.get(action)
    output = "processed" if handler is None else handler(data)
    return {"output": output}
