"""SQLite's own ceiling here: single-row commits per second with the project's pragmas."""
from __future__ import annotations

import tempfile

from bench.common import Stopwatch, rate


def commits_per_second(synchronous: str, rows: int = 2000) -> float:
    from chalicelib.sqlite_db import Database

    with tempfile.TemporaryDirectory() as folder:
        db = Database(f"{folder}/limit.db", synchronous=synchronous)
        db.migrate("bench", ((1, ("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",)),))
        with Stopwatch() as watch:
            for number in range(rows):
                db.execute("INSERT INTO t (v) VALUES (?)", (f"row {number}",))
        db.close()
    return rate(rows, watch.seconds)
