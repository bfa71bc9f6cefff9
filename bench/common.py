"""Shared helpers for the benchmarks: isolated settings, timing, percentiles, machine facts."""
from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@contextlib.contextmanager
def local_environment(**overrides: str) -> Iterator[Path]:
    """A temporary folder with the service's SQLite files, and the TASKS_* variables
    pointing at it (plus `overrides`); everything is put back afterwards."""
    from chalicelib import factory

    saved = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="tq-bench-") as folder:
        for name in [n for n in os.environ if n.startswith("TASKS_")]:
            del os.environ[name]
        os.environ.update({
            "TASKS_DB_PATH": f"{folder}/tasks.db",
            "TASKS_WORK_DELAY_MS": "0",
            **overrides,
        })
        factory.reset()
        try:
            yield Path(folder)
        finally:
            factory.reset()
            os.environ.clear()
            os.environ.update(saved)


def percentile(values: List[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


class Stopwatch:
    def __enter__(self) -> "Stopwatch":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def machine() -> Dict[str, object]:
    try:
        with open("/proc/cpuinfo") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    except OSError:
        model = platform.processor()
    try:
        with open("/proc/meminfo") as handle:
            memory_kib = int(next(line for line in handle if line.startswith("MemTotal")).split()[1])
    except (OSError, StopIteration):
        memory_kib = 0
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }


def median(values: List[float]) -> float:
    return statistics.median(values) if values else float("nan")
