"""The actions tasks can name. Each lives in a module of this package, declared
with `@action`; a new module here is found without any list to edit.

    from chalicelib.actions import action

    @action("greet", schema={"type": "object", "required": ["name"],
                             "properties": {"name": {"type": "string"}}}, timeout_s=5)
    def greet(data):
        return f"hello {data['name']}"
"""
from chalicelib.actions._registry import (ACTIONS, DEFAULT_TIMEOUT_S, Action, ActionError, ActionTimeout,
                                          DataMismatch, SchemaError, action, batch_seconds, discover, run,
                                          within)

__all__ = ["ACTIONS", "DEFAULT_TIMEOUT_S", "Action", "ActionError", "ActionTimeout", "DataMismatch",
           "SchemaError", "action", "batch_seconds", "discover", "run", "within"]

discover(__name__, __path__)
