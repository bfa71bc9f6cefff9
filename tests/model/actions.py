"""The action the model's tasks name: it does what the task's data plans for each
run, and records every run (the only way to see that an action ran twice)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from chalicelib import actions

NAME = "model"
TIMEOUT_S = 0.1  # a "timeout" run sleeps past it; SIGALRM cuts it off in real time
SLOW_SECONDS = 20  # virtual seconds a "slow" run takes: under the 30 s visibility timeout

# What a run can do. "ok" returns; the others fail in the ways an action can.
BEHAVIOURS = ("ok", "raise", "refuse", "timeout", "exit", "slow")
RETRIED = frozenset({"raise", "timeout", "exit"})  # failures the policy retries


class WorkerKilled(BaseException):
    """The worker process died (not an exception any code path may catch)."""


@dataclass
class Run:
    token: int
    index: int  # this token's run number, from 0
    behaviour: str
    at: float  # virtual time when it started
    worker_at: float  # the same moment on the worker's clock (which may run behind)
    series: int  # operator retries of its task before this run


@dataclass
class Recorder:
    clock: object
    series_of: Callable[[int], int] = lambda token: 0
    runs: Dict[int, List[Run]] = field(default_factory=dict)
    # A kill armed for the current batch: (how many runs of it go first, "before" or "after" the run).
    kill: Optional[tuple] = None
    killed: bool = False

    def invoke(self, data: dict):
        token, plan = data["token"], data.get("plan", [])
        if self.kill is not None and self.kill[0] == 0 and self.kill[1] == "before":
            self.kill, self.killed = None, True
            raise WorkerKilled("killed before the run")
        runs = self.runs.setdefault(token, [])
        index = len(runs)
        behaviour = plan[index] if index < len(plan) else "ok"
        now = self.clock.time()
        runs.append(Run(token, index, behaviour, now, now - self.clock.worker_behind, self.series_of(token)))
        if self.kill is not None:
            if self.kill[0] == 0:
                self.kill, self.killed = None, True
                raise WorkerKilled("killed after the run, before its outcome")
            self.kill = (self.kill[0] - 1, self.kill[1])
        if behaviour == "raise":
            raise RuntimeError(f"planned failure of run {index}")
        if behaviour == "refuse":
            raise actions.ActionError(f"planned refusal of run {index}")
        if behaviour == "timeout":
            time.sleep(5)
        if behaviour == "exit":
            raise SystemExit(f"planned exit of run {index}")
        if behaviour == "slow":
            self.clock.jump(SLOW_SECONDS)
        return {"token": token, "run": index}


CURRENT: Optional[Recorder] = None  # the running example's


def _run(data: dict):
    return CURRENT.invoke(data)


def declare(monkeypatch) -> None:
    """Declare the model action for one test; each example's Recorder sees its runs."""
    monkeypatch.setitem(actions.ACTIONS, NAME, actions.Action(NAME, _run, timeout_s=TIMEOUT_S))
