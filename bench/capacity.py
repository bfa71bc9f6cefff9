"""DynamoDB write and read units, and the hottest partition key, for this tree's
data model and for the one before it (BEFORE), measured in one run: the same
probe (bench/capacity_probe.py) runs in both trees at once, each under moto."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import ROOT

BEFORE = "429c0b0"  # the last revision with one partition per index and a status index
PROBE = ROOT / "bench" / "capacity_probe.py"
PARTITION_WCU_PER_S = 1000  # what one partition key takes, index entries included


def _probe(tree: Path, tasks: int, stats_at: list) -> dict:
    result = subprocess.run([sys.executable, str(PROBE), str(tasks), *map(str, stats_at)], cwd=tree,
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"capacity probe failed in {tree}:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def ceiling(figures: dict) -> dict:
    """The hottest key's share of its table or index, and the tasks/s at which it reaches a partition's limit."""
    where, hottest = max(figures["partitions"].items(), key=lambda item: item[1]["hottest_units_per_task"])
    return {"where": where, "tasks_per_s": PARTITION_WCU_PER_S / hottest["hottest_units_per_task"],
            "worst_share": max(p["hottest_share"] for p in figures["partitions"].values())}


def measure(tasks: int = 10_000, big: int = 1_000_000) -> dict:
    with tempfile.TemporaryDirectory(prefix="tq-capacity-") as folder:
        before_tree = Path(folder) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(before_tree), BEFORE],
                       cwd=ROOT, check=True, capture_output=True)
        try:
            with ThreadPoolExecutor(max_workers=2) as pool:
                after = pool.submit(_probe, ROOT, tasks, [big])
                before = pool.submit(_probe, before_tree, tasks, [])
                figures = {"after": after.result(), "before": before.result()}
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before_tree)], cwd=ROOT,
                           capture_output=True)
    for side in figures.values():
        side["ceiling"] = ceiling(side)
    # The old counts Query reads every task's status entry: its cost grows in step
    # with the tasks, so its figure at `big` is this one scaled.
    before = figures["before"]
    before[f"stats_read_units_at_{big}"] = before["stats_read_units"] * big / tasks
    before["stats_at_big_extrapolated"] = True
    figures["big"] = big
    return figures
