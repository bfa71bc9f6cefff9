"""Numbers written as text (query parameters, configuration variables): ASCII digits only.

Python's own parsing is wider than what a client means by a number: int() and
float() take any Unicode decimal digit ("٣" is 3), underscores between digits
("1_0" is 10) and white space around them, float() takes "nan" and "infinity",
and str.isdigit() is true for "²", which int() then refuses. Here a number is
spelled as JSON and the OpenAPI document spell one, in ASCII (leading zeros and a
bare fraction such as ".5" allowed); anything else is a ValueError.
"""
from __future__ import annotations

import re

_WHOLE = re.compile(r"-?[0-9]+")
_DECIMAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def whole(text: str) -> int:
    """`text` as an integer, if it is one written in ASCII digits (a minus sign allowed)."""
    if not isinstance(text, str) or not _WHOLE.fullmatch(text):
        raise ValueError(f"{text!r} is not a whole number written in ASCII digits")
    return int(text)


def decimal(text: str) -> float:
    """`text` as a finite float, if it is a decimal number written in ASCII digits."""
    if not isinstance(text, str) or not _DECIMAL.fullmatch(text):
        raise ValueError(f"{text!r} is not a number written in ASCII digits")
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{text!r} is too large")
    return value
