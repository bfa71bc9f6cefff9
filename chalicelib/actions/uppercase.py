"""The seed's `uppercase`: data.text in capitals."""
from chalicelib.actions import action

SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string", "description": "The text to put in capitals"}},
    "examples": [{"text": "hello world"}],
}


@action("uppercase", schema=SCHEMA, max_attempts=3, timeout_s=5)
def uppercase(data: dict) -> str:
    """data.text in capitals ("" when there is none)."""
    return data.get("text", "").upper()
