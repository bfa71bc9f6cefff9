from chalicelib.store.base import InvalidCursor, KeyRecord, StoreError, TaskExists, TaskStore

__all__ = ["InvalidCursor", "KeyRecord", "StoreError", "TaskExists", "TaskStore"]
