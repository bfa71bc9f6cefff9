from chalicelib.store.base import InvalidCursor, KeyRecord, StoreError, TaskStore

__all__ = ["InvalidCursor", "KeyRecord", "StoreError", "TaskStore"]
