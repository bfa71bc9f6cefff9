"""A 202 means the task runs, once: a stateful model of the service, its worker,
recovery and the dead-letter consumer on both stacks, under injected faults.

Hypothesis drives random sequences of submits (with and without an
Idempotency-Key, delayed, repeated), cancels, operator retries, deletes and
?wait reads through the API, worker batches, recovery passes, clock jumps and
faults; then every fault is cleared, the worker and recovery run until nothing
moves (the clock jumping past every backoff, delay and visibility timeout), and
the model checks:

- every task answered 202 (or a 503 that says "stored as <id>") is final, with
  one outcome applied per series of attempts (an operator's retry starts one);
- a series that no fault touched ran exactly as its action's plan says, so an
  action runs again only where a fault forced it; no series runs more often
  than its attempts, no delayed task before its time;
- no task exists that its request was not told of;
- /stats equals the truth on SQLite, and on DynamoDB is never negative nor above it;
- no request got a 5xx but a 503 while a fault was injected, and a 503 that
  says what it kept kept it.

Time: one virtual clock moves the service's utcnow, the embedded queue's clock
and moto's SQS clock together (tests/model/clock.py), so delays, backoffs and
visibility timeouts pass in a jump on both stacks.

The started_at of a completed task is checked against the moment its run began,
and a fault-free recovery pass must leave no task overdue.

The dead-letter consumer (app.py's process_dead_letters) is called by the drain_dead_letters
rule and while settling: `factory.dead_letters().drain()`, or else an SQS handler
named `process_dead_letters` in app.py, fed the dead-letter queue's messages as
Lambda would; while neither exists the rule does nothing.

CI runs a fixed seed (derandomized), about 1,000 steps on SQLite and 300 on
DynamoDB, in about 25 s. To run at length:
    TASKS_MODEL_STEPS=20000 pytest tests/test_model.py   (steps per stack)
    TASKS_MODEL_SEED=7        another seed (with TASKS_MODEL_STEPS, random otherwise)
    TASKS_MODEL_FAULTS=all    every fault below, or e.g. +action_exits,-ack_lost;
                              ",strict" also drops the TOLERATED behaviours
"""
import os

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test
from moto import mock_aws

from tests.model import actions as model_actions
from tests.model.clock import VirtualClock
from tests.model.machine import STATS, build_machine

# Every fault the machine can inject; True: on in CI. Those off break the promise
# today, each for the defect named; switch one on once the fix for it is merged.
FAULTS = {
    # The action a task names.
    "action_raises": True,
    "action_refuses": True,  # ActionError: fails at once
    "action_times_out": True,
    "action_exits": False,  # SystemExit escapes the worker's handler: the batch's other tasks lose outcomes and run again
    "action_slow": False,  # a batch shares one started_at: a later task's started_at is before its run began
    # The store: a call that fails before it is applied, or whose answer is lost after it was.
    "store_fails": True,
    "store_fails_counts": False,  # DynamoDB: a counter write that fails is dropped; a lost decrement stays above the truth
    "store_loses_read": True,
    "store_loses_insert": False,  # DynamoDB lost PutItem answer: the retry's TaskExists is a 503, the task kept unpublished
    "store_loses_update": False,  # DynamoDB lost outcome-write answer: the count is never moved (running:1 stays)
    "store_loses_delete": False,  # DynamoDB lost DeleteItem answer: the count is never taken off (cancelled:1 stays)
    # The queue.
    "publish_fails": True,
    "publish_slow": True,
    "publish_duplicates": True,
    "ack_lost": True,  # a batch's deletes never arrive: the queue redelivers its messages
    "queue_dead_letters": False,  # a dead-lettered message orphans its task: no dead-letter consumer yet
    # The worker and recovery.
    "worker_killed": True,  # between the claim and the outcome: the message comes back after its visibility timeout
    "worker_clock_behind": False,  # an early message is deleted when its batch's claim fails (SQLite)
    "stale_due_index": False,  # DynamoDB's eventually consistent by_due index: a stale entry crashes recovery
    "recovery_backlog": False,  # recovery publishes only 100 tasks a pass
}

# Behaviours the model accepts as forced by the design, not by a fault.
TOLERATED = {
    # Recovery re-publishes a keyed task no worker took within stale_after while its
    # first message still waits; when both messages land in one batch, both claims
    # succeed (running -> running) and the action runs twice.
    "rerun_of_duplicate_messages_in_one_batch",
}

# Per stack, with a fixed seed: about 4 s on SQLite and 15 s on DynamoDB under moto.
CI_EXAMPLES = {"sqlite": 30, "dynamodb": 8}
CI_STEPS = 40

# Read at import: the autouse fixture clears every TASKS_ variable before a test runs.
RUN = {name: os.environ.get(name) for name in ("TASKS_MODEL_STEPS", "TASKS_MODEL_SEED", "TASKS_MODEL_FAULTS")}


def tolerated() -> set:
    """TOLERATED, or nothing with TASKS_MODEL_FAULTS=...,strict."""
    return set() if "strict" in (RUN["TASKS_MODEL_FAULTS"] or "").split(",") else set(TOLERATED)


def faults_on() -> set:
    chosen = {name for name, on in FAULTS.items() if on}
    for change in filter(None, (RUN["TASKS_MODEL_FAULTS"] or "").split(",")):
        change = change.strip()
        if change == "strict":
            continue
        if change == "all":
            chosen = set(FAULTS)
        elif change.lstrip("+-") not in FAULTS:
            raise ValueError(f"TASKS_MODEL_FAULTS: no fault named {change.lstrip('+-')}; they are {sorted(FAULTS)}")
        elif change.startswith("-"):
            chosen.discard(change[1:])
        else:
            chosen.add(change.lstrip("+"))
    return chosen


def hypothesis_settings(kind: str) -> settings:
    total = int(RUN["TASKS_MODEL_STEPS"] or 0)
    common = dict(deadline=None, database=None, phases=[Phase.explicit, Phase.generate, Phase.shrink],
                  suppress_health_check=list(HealthCheck), print_blob=True)
    if not total:
        return settings(max_examples=CI_EXAMPLES[kind], stateful_step_count=CI_STEPS, derandomize=True, **common)
    steps = 50
    return settings(max_examples=max(1, total // steps), stateful_step_count=steps, **common)


@pytest.fixture
def model_world(monkeypatch):
    """The clock, the model action and botocore retries without their backoff sleep."""
    import botocore.retries.standard

    clock = VirtualClock()
    clock.install(monkeypatch)
    model_actions.declare(monkeypatch)
    monkeypatch.setattr(botocore.retries.standard.ExponentialBackoff, "delay_amount", lambda self, context: 0)
    return clock


@pytest.mark.parametrize("kind", ["sqlite", "dynamodb"])
def test_a_202_means_the_task_runs_once(kind, client, chalice_app, model_world, tmp_path, monkeypatch):
    machine = build_machine(kind, client, chalice_app, model_world, faults_on(), tolerated(), tmp_path,
                            setenv=monkeypatch.setenv)
    seed = RUN["TASKS_MODEL_SEED"]
    if seed is not None:
        machine._hypothesis_internal_use_seed = int(seed)  # what @seed sets, read by run_state_machine_as_test
    STATS.clear()
    try:
        with mock_aws():
            run_state_machine_as_test(machine, settings=hypothesis_settings(kind))
    finally:
        print(f"\n{kind}: {STATS['examples']} examples, {STATS['steps']} steps (invariant checks); faults fired: "
              + ", ".join(f"{name[6:]} {n}" for name, n in sorted(STATS.items()) if name.startswith("fired ")))
