"""Before and after in one run: the submit, drain and HTTP figures of another
revision next to this tree's, alternating between the two so that both see the
same machine at the same moments.

    python3 dev.py bench --compare REV [--runs 3]

REV is any git revision that has `bench/`; it is checked out into a temporary
worktree, which is removed afterwards.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import ROOT

# Runs inside each tree, through APIs both sides have.
MEASURE = r'''
import json, sys, threading
sys.path.insert(0, ".")
from bench.common import Stopwatch, local_environment, rate
from bench import drain
from chalicelib import factory
from chalicelib.validation import NewTask

figures = {}
for sync in ("FULL", "NORMAL"):
    for threads in (1, 8):
        with local_environment(TASKS_SQLITE_SYNCHRONOUS=sync):
            service = factory.service(factory.current_settings())
            service.submit(NewTask("warm", {}))
            per_thread = 3000 // threads

            def submitter(offset):
                for number in range(per_thread):
                    service.submit(NewTask("uppercase", {"text": f"task {offset} {number}"}))

            workers = [threading.Thread(target=submitter, args=(n,)) for n in range(threads)]
            with Stopwatch() as watch:
                for worker in workers:
                    worker.start()
                for worker in workers:
                    worker.join()
            figures[f"submit in process, {threads} thread(s), {sync}"] = rate(per_thread * threads, watch.seconds)
figures["drain, seed settings, FULL"] = drain.embedded(3000, 5, 2, "FULL")
figures["drain, batch 10, FULL"] = drain.embedded(3000, 10, 2, "FULL")
print(json.dumps(figures))
'''


def _in_tree(tree: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", MEASURE], cwd=tree, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"measuring {tree} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _over_http(tree: Path) -> dict:
    from bench.submit import BODY, Server, http_rate

    figures = {}
    with tempfile.TemporaryDirectory() as folder:
        server = Server(tree, {"TASKS_DB_PATH": f"{folder}/tasks.db", "TASKS_LOCAL_DISPATCHER": "off",
                               "TASKS_WORK_DELAY_MS": "0", "TASKS_SQLITE_SYNCHRONOUS": "FULL"})
        try:
            http_rate(server.port, "POST", "/tasks", BODY, 50, keep_alive=True)
            for clients in (1, 8):
                figures[f"POST /tasks, keep-alive, {clients} client(s), FULL (req/s)"] = http_rate(
                    server.port, "POST", "/tasks", BODY, 1000, True, clients)
        finally:
            server.stop()
    return figures


def compare(revision: str, runs: int = 3) -> list:
    """Rows (measure, before median, after median, ratio, before runs, after runs)."""
    collected: dict = {}
    with tempfile.TemporaryDirectory(prefix="tq-compare-") as folder:
        before = Path(folder) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(before), revision],
                       cwd=ROOT, check=True, capture_output=True)
        try:
            for run in range(runs):
                for side, tree in (("before", before), ("after", ROOT)):
                    print(f"compare: run {run + 1}/{runs}, {side} ...", file=sys.stderr, flush=True)
                    for name, value in {**_in_tree(tree), **_over_http(tree)}.items():
                        collected.setdefault(name, {"before": [], "after": []})[side].append(value)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, capture_output=True)
    rows = []
    for name, sides in collected.items():
        old, new = statistics.median(sides["before"]), statistics.median(sides["after"])
        rows.append((name, old, new, new / old, sides["before"], sides["after"]))
    return rows


def main(revision: str, runs: int) -> int:
    rows = compare(revision, runs)
    print(f"\nBefore: {revision}; after: this tree. Medians of {runs} alternating runs (tasks/s unless noted).\n")
    print("| Measure | Before | After | Ratio | Runs before / after |")
    print("|---|---|---|---|---|")
    for name, old, new, ratio, olds, news in rows:
        runs_text = f"{', '.join(f'{v:,.0f}' for v in olds)} / {', '.join(f'{v:,.0f}' for v in news)}"
        print(f"| {name} | {old:,.0f} | {new:,.0f} | {ratio:.2f}x | {runs_text} |")
    return 0
