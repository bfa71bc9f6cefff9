from chalicelib.store.base import InvalidCursor, StoreError, TaskStore

__all__ = ["InvalidCursor", "StoreError", "TaskStore"]
