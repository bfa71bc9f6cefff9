from chalicelib.queue.base import PublishError, TaskQueue

__all__ = ["PublishError", "TaskQueue"]
