"""What checking a task's data against its action's JSON Schema costs: per submit,
at a cold start, and in the deployment package."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from bench.common import ROOT, median

# After app.py is imported (as in a Lambda's cold start), the first check of each
# action imports fastjsonschema and compiles that action's schema.
_COLD = ("import app, time; from chalicelib.actions import ACTIONS; started = time.perf_counter(); "
         "[ACTIONS[name].check(data) for name, data in (('sum', {'numbers': [1]}), ('uppercase', {'text': 'a'}))]; "
         "print((time.perf_counter() - started) * 1000)")
_APP = "import time; started = time.perf_counter(); import app; print((time.perf_counter() - started) * 1000)"


def _per_call_us(call, calls: int, rounds: int = 5) -> float:
    """The best of `rounds` rounds, in microseconds a call (the least disturbed round)."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - started) / calls)
    return best * 1e6


def per_submit(calls: int = 20_000) -> dict:
    from chalicelib.actions import ACTIONS
    from chalicelib.catalog import Catalog
    from chalicelib.retry import RetryPolicy
    from chalicelib.validation import NewTask

    catalog = Catalog(ACTIONS, RetryPolicy())
    bodies = {"sum": NewTask("sum", {"numbers": [1, 2, 3.5]}),
              "uppercase": NewTask("uppercase", {"text": "hello world"}),
              "undeclared": NewTask("resize", {"width": 10})}
    for new in bodies.values():
        catalog.check(new)  # compiled before timing
    return {name: _per_call_us(lambda new=new: catalog.check(new), calls) for name, new in bodies.items()}


def cold(runs: int = 7) -> dict:
    def sample(script: str) -> float:
        out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                             env={**os.environ}, check=True).stdout
        return float(out.split()[-1])

    return {"first_checks_ms": median([sample(_COLD) for _ in range(runs)]),
            "import_app_ms": median([sample(_APP) for _ in range(runs)])}


def package_share(package: Path) -> int:
    """Bytes of the deployment package that fastjsonschema takes (compressed)."""
    with zipfile.ZipFile(package) as archive:
        return sum(entry.compress_size for entry in archive.infolist() if entry.filename.startswith("fastjsonschema"))


def measure() -> dict:
    return {"check_us": per_submit(), "cold": cold()}
