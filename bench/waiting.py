"""What parked `?wait` reads cost the worker: the drain rate of N tasks while W reads
wait on other tasks (delayed an hour, so they stay queued throughout)."""
from __future__ import annotations

import threading
import time

from bench.common import Stopwatch, local_environment, rate


def drain_with_waiters(tasks: int, waiters: int, max_waiters: int = None) -> dict:
    """Tasks per second through the real SQS handler while `waiters` threads read
    other tasks with ?wait=20, and how many of those reads were refused at once."""
    from app import app
    from chalicelib import factory
    from chalicelib.local.dispatcher import Dispatcher
    from chalicelib.local.sources import EmbeddedSource
    from chalicelib.validation import NewTask

    overrides = {} if max_waiters is None else {"TASKS_MAX_WAITERS": str(max_waiters)}
    with local_environment(**overrides):
        settings = factory.current_settings()
        service = factory.service(settings)
        parked = [service.submit(NewTask("sum", {}, delay_seconds=3600)).task.id for _ in range(waiters)]
        for number in range(tasks):
            service.submit(NewTask("uppercase", {"text": f"task {number}"}))
        refused, lock = [], threading.Lock()

        def wait_on(task_id: str) -> None:
            try:
                service.get(task_id, 20)
            except Exception as exc:  # past the bound: the route's 503
                with lock:
                    refused.append(type(exc).__name__)

        readers = [threading.Thread(target=wait_on, args=(task_id,), daemon=True) for task_id in parked]
        for reader in readers:
            reader.start()
        time.sleep(0.2 + waiters * 0.002)  # every reader parked (or refused)
        store = factory.store(settings)
        dispatcher = Dispatcher(EmbeddedSource(factory.queue(settings)), app.handler_map["process_tasks"],
                                "process_tasks", batch_size=5, concurrency=2, idle_poll_seconds=0.01)
        with Stopwatch() as watch:
            dispatcher.start()
            while store.count_by_status().get("completed", 0) < tasks:
                time.sleep(0.005)
        dispatcher.stop()
        for task_id in parked:  # an outcome for each: its reader answers
            service.cancel(task_id)
        for reader in readers:
            reader.join(5)
        return {"tasks_per_s": rate(tasks, watch.seconds), "refused": len(refused)}


def measure(tasks: int = 200) -> dict:
    """0, 50 and 200 parked reads (the default TASKS_MAX_WAITERS refuses the reads
    past it), and 200 with the bound raised to 200: every one of them parked."""
    return {
        "0": drain_with_waiters(tasks, 0),
        "50": drain_with_waiters(tasks, 50),
        "200": drain_with_waiters(tasks, 200),
        "200_all_parked": drain_with_waiters(tasks, 200, max_waiters=200),
    }
