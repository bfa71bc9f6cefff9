"""Where a drained task's CPU goes: cProfile on drain.py's path (the local dispatcher
feeding the real SQS handler from the embedded queue), at the seed's batch of 5, on
one dispatcher thread that is not the main one, as under `chalice local`.

    python -m bench.profile_drain [--tasks 2000] [--synchronous FULL] [--top 25]

The profiler's clock is the thread's CPU time, so a busy machine changes the
figures little and their shares not at all; calls are counted exactly. Prints the
thread's CPU per task, the named places' cumulative share, and the functions that
spend most themselves.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import threading
import time

from bench.common import local_environment

# What the team asked about, by the functions that are each one's entry point.
PLACES = {
    "per-minute figures (series.record_of, the minute's read and write)": [
        ("series.py", "record_of"), ("sqlite.py", "_write_minutes")],
    "schema re-check of the data (Action.check)": [("_registry.py", "check")],
    "attempt timeout, runner handoff (actions.run)": [("_registry.py", "run")],
    "log lines (logs.state_change, logs.note)": [("logs.py", "state_change"), ("logs.py", "note")],
    "EMF lines (metrics record)": [("metrics.py", "record")],
    "waiting for the log's flush (GroupCommit.wait_durable)": [("sqlite_wal.py", "wait_durable")],
    "commit counters (Database._ticket)": [("sqlite_db.py", "_ticket")],
    "receive and delete (EmbeddedQueue.receive)": [("embedded.py", "receive")],
    "claims (Worker._claim_all)": [("worker.py", "_claim_all")],
    "outcomes' transaction (store.finish under batch)": [("base.py", "finish")],
    "the SQS event (build_event)": [("sqs_event.py", "build_event")],
}


def profile(tasks: int, synchronous: str, profiled: bool = True) -> tuple:
    """(pstats.Stats or None, thread CPU seconds, process CPU seconds) of draining `tasks`."""
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
        dispatcher = Dispatcher(EmbeddedSource(factory.queue(settings)), app.handler_map["process_tasks"],
                                "process_tasks", batch_size=5)
        profiler = cProfile.Profile(time.thread_time)
        spent = {}

        def drain() -> None:
            started, process_started = time.thread_time(), time.process_time()
            if profiled:
                profiler.enable()
            while dispatcher.deliver_one_batch():
                pass
            profiler.disable()
            spent["thread"] = time.thread_time() - started
            spent["process"] = time.process_time() - process_started

        worker = threading.Thread(target=drain, name="sqs-dispatch-0")
        worker.start()
        worker.join()
        assert factory.store(settings).count_by_status() == {"completed": tasks}
    return (pstats.Stats(profiler) if profiled else None), spent["thread"], spent["process"]


def cumulative(stats: pstats.Stats, file_suffix: str, name: str) -> float:
    """Seconds spent in calls of the function, counting each outermost call once."""
    return sum(entry[3] for (file, _, function), entry in stats.stats.items()
               if file.endswith(file_suffix) and function == name)


def report(stats: pstats.Stats, thread_s: float, process_s: float, tasks: int, top: int) -> None:
    per_task = lambda seconds: seconds / tasks * 1e6  # noqa: E731
    print(f"drain thread CPU: {per_task(thread_s):.1f} µs a task; the whole process: "
          f"{per_task(process_s):.1f} µs a task (the attempts' runner thread, the checkpointer, ...)")
    print("\nnamed places (cumulative, each counted once; they may contain one another):")
    for label, functions in PLACES.items():
        seconds = sum(cumulative(stats, suffix, name) for suffix, name in functions)
        print(f"  {per_task(seconds):7.1f} µs  {seconds / thread_s:6.1%}  {label}")
    print(f"\nthe {top} functions that spend most themselves:")
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:top]
    for (file, line, function), (_, calls, own, cum, _) in rows:
        where = f"{file.rsplit('/', 2)[-2:][-1]}:{line}" if line else file
        print(f"  {per_task(own):7.1f} µs  {own / thread_s:6.1%}  {calls / tasks:6.2f} calls/task  "
              f"cum {per_task(cum):7.1f} µs  {function} ({where})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--dump", help="also write the raw profile here (for snakeviz, pstats)")
    parser.add_argument("--plain", action="store_true",
                        help="no profiler: only the CPU per task, without the profiler's own cost")
    args = parser.parse_args()
    if args.plain:
        _, thread_s, process_s = profile(args.tasks, args.synchronous, profiled=False)
        print(f"drain thread CPU: {thread_s / args.tasks * 1e6:.1f} µs a task; the whole process: "
              f"{process_s / args.tasks * 1e6:.1f} µs a task (unprofiled)")
        return
    stats, thread_s, process_s = profile(args.tasks, args.synchronous)
    if args.dump:
        stats.dump_stats(args.dump)
    report(stats, thread_s, process_s, args.tasks, args.top)


if __name__ == "__main__":
    main()
