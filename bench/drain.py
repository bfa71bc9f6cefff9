"""Drain rate: how fast the embedded engine empties a queue of N tasks (0 ms of
work), next to Huey's SqliteHuey with the same workers and the same durability."""
from __future__ import annotations

import time

from bench.common import Stopwatch, local_environment, rate


def embedded(tasks: int, batch_size: int, concurrency: int, synchronous: str = "FULL") -> float:
    """Tasks per second through the real SQS handler, fed by the local dispatcher."""
    from app import app
    from chalicelib import factory
    from chalicelib.local.dispatcher import Dispatcher
    from chalicelib.local.sources import EmbeddedSource
    from chalicelib.validation import NewTask

    with local_environment(TASKS_SQLITE_SYNCHRONOUS=synchronous):
        settings = factory.current_settings()
        service = factory.service(settings)
        for number in range(tasks):
            service.submit(NewTask("uppercase", {"text": f"task {number}"}))
        store = factory.store(settings)
        dispatcher = Dispatcher(EmbeddedSource(factory.queue(settings)), app.handler_map["process_tasks"],
                                "process_tasks", batch_size=batch_size, concurrency=concurrency,
                                idle_poll_seconds=0.01)
        with Stopwatch() as watch:
            dispatcher.start()
            while store.count_by_status().get("completed", 0) < tasks:
                time.sleep(0.005)
        dispatcher.stop()
        return rate(tasks, watch.seconds)


def huey(tasks: int, workers: int, fsync: bool = True) -> float:
    """Tasks per second through SqliteHuey's consumer with `workers` threads, results stored."""
    import logging

    from huey import SqliteHuey

    from bench.common import local_environment as folder_for

    with folder_for() as folder:
        queue = SqliteHuey("bench", filename=str(folder / "huey.db"), fsync=fsync)

        @queue.task()
        def uppercase(text):
            return {"output": text.upper()}

        results = [uppercase(f"task {number}") for number in range(tasks)]
        logging.getLogger("huey").setLevel(logging.ERROR)
        consumer = queue.create_consumer(workers=workers, worker_type="thread", initial_delay=0.01,
                                         max_delay=0.05, check_worker_health=False, periodic=False)
        consumer._set_signal_handlers = lambda: None  # not the main thread's consumer
        with Stopwatch() as watch:
            consumer.start()
            while queue.pending_count() or len(queue.all_results()) < tasks:
                time.sleep(0.005)
        consumer.stop(graceful=True)
        assert all(result.get(preserve=True) for result in results[:3])
        return rate(tasks, watch.seconds)
