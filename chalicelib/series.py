"""Per-minute figures of finished tasks: how many completed, failed or were
cancelled, and how long they waited in the queue and ran, kept as histograms.

A store adds each finished task's figures to its minute's record when the
outcome is written, so a window of N minutes reads N records per action, however
many tasks are stored, and its percentiles come from the merged histograms.

A record is a Counter of flat keys: an outcome's name, `w<bucket>` for a queue
wait and `r<bucket>` for a run time. Buckets are logarithmic, eight to each
doubling of milliseconds, so a percentile is within about 5% of the true value.
"""
from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timezone
from typing import Dict, Iterable, Optional, Tuple

from chalicelib.tasks import Status, Task

OUTCOMES = (Status.COMPLETED.value, Status.FAILED.value, Status.CANCELLED.value)
BUCKETS_PER_DOUBLING = 8
MAX_MINUTES = 1440  # the longest window served; stores keep records a little longer
KEEP_MINUTES = 2 * MAX_MINUTES
OTHER_ACTION = "other"
PERCENTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))

Records = Dict[Tuple[int, str], Counter]


def minute_of(moment: datetime) -> int:
    return int(moment.timestamp() // 60)


def bucket(milliseconds: float) -> int:
    return int(math.log2(1 + max(0.0, milliseconds)) * BUCKETS_PER_DOUBLING)


def bucket_value(number: int) -> float:
    """The middle of a bucket (geometrically), in milliseconds."""
    return 2 ** ((number + 0.5) / BUCKETS_PER_DOUBLING) - 1


def bounded_action(action: str, known: Iterable[str]) -> str:
    """The action's own name if it is a known one, else "other": a client cannot
    make the records grow by inventing names."""
    return action if action in known else OTHER_ACTION


def record_of(task: Task, known_actions: Iterable[str]) -> Records:
    """The figures a task that has just become final adds to its minute."""
    # Each key is set once (an outcome, a "w" and an "r" bucket never meet): plain
    # assignments, cheaper than Counter's += on a missing key, once for every task.
    figures = Counter()
    figures[task.status.value] = 1
    if task.started_at is not None:
        figures[f"w{bucket((task.started_at - task.ready_at).total_seconds() * 1000)}"] = 1
        if task.finished_at is not None and task.status is not Status.CANCELLED:
            figures[f"r{bucket((task.finished_at - task.started_at).total_seconds() * 1000)}"] = 1
    when = task.finished_at or datetime.now(timezone.utc)
    return {(minute_of(when), bounded_action(task.action, known_actions)): figures}


def merge(into: Records, more: Records) -> Records:
    for key, figures in more.items():
        held = into.get(key)
        if held is None:
            into[key] = Counter(figures)
        else:
            for name, count in figures.items():
                held[name] = held.get(name, 0) + count
    return into


def _percentiles(histogram: Counter) -> Optional[dict]:
    total = sum(histogram.values())
    if not total:
        return None
    result, seen, ordered = {}, 0, sorted(histogram.items())
    targets = iter(PERCENTILES)
    name, share = next(targets)
    for number, count in ordered:
        seen += count
        while name is not None and seen >= share * total:
            result[name] = round(bucket_value(number), 3)
            name, share = next(targets, (None, None))
    return result


def window(records: Records, now: datetime, minutes: int, action: Optional[str] = None) -> dict:
    """The response of GET /stats/series: one point a minute, oldest first, the
    current minute last; minutes with nothing finished have zero counts and null
    percentiles."""
    last = minute_of(now)
    by_minute: Dict[int, Counter] = {}
    for (at, name), counts in records.items():
        if action is None or name == action:
            by_minute.setdefault(at, Counter()).update(counts)
    points = []
    for minute in range(last - minutes + 1, last + 1):
        figures = by_minute.get(minute, Counter())
        waits = Counter({int(k[1:]): v for k, v in figures.items() if k.startswith("w")})
        runs = Counter({int(k[1:]): v for k, v in figures.items() if k.startswith("r")})
        points.append({
            "minute": datetime.fromtimestamp(minute * 60, timezone.utc).isoformat().replace("+00:00", "Z"),
            **{outcome: figures[outcome] for outcome in OUTCOMES},
            "wait_ms": _percentiles(waits),
            "run_ms": _percentiles(runs),
        })
    return {"minutes": minutes, "action": action, "points": points}
