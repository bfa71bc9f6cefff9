"""The state machine: random submits, cancels, retries, deletes and waits through
the API; worker batches, recovery passes, clock jumps and faults between them;
then everything settles and the promise is checked.

The model keeps what a client could know (the answers it got) and what the test
action saw (each run of each task); the store and queue are read only to check.
A series is a task's attempts between operator retries.
"""
from __future__ import annotations

import json
import re
import shutil
import sqlite3
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Set

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.queue import PublishError
from chalicelib.queue.base import message_of
from chalicelib.store import StoreError
from chalicelib.tasks import FINAL, Status
from tests.model import actions as model_actions
from tests.model.actions import RETRIED, Recorder, WorkerKilled
from tests.model.faults import Armed, Faults
from tests.model.stack import ModelStack

MAX_ATTEMPTS = 3  # the service's default, which the model action keeps
KEY_TTL_SECONDS = 86_400
STORED_AS = re.compile(r"stored as ([0-9a-f-]{36})")
FINAL_VALUES = {status.value for status in FINAL}
DELAYS = (None, None, 0, 3, 40, 1000)  # 1000: past what a queue holds, published by recovery
JUMPS = (1, 5, 31, 61, 301, 901, 3601)
MAX_SETTLE_ROUNDS = 40
STATS = Counter()  # examples and steps run, for the test to report


# What a worker batch or a recovery pass may fail with when an injected fault met it.
INFRASTRUCTURE_ERRORS = (StoreError, PublishError, sqlite3.Error, BotoCoreError, ClientError)


class Broken(AssertionError):
    """The promise does not hold."""


@dataclass
class ModelTask:
    id: str
    token: int
    key: Optional[str]
    earliest: float  # virtual time before which no run may start
    answer: str  # "202" or "503 stored as"
    series: int = 0  # operator retries accepted
    disturbed: Set[int] = field(default_factory=set)  # series that a fault may have made run again
    deleted: bool = False


@dataclass
class KeyUse:
    body: dict
    first_used: float
    task_id: Optional[str] = None


def build_machine(kind: str, client, app, clock, faults_on: Set[str], tolerated: Set[str], workdir: Path, setenv):
    """The machine class for one stack, its rules drawn from the faults that are on."""
    behaviours = ["ok", "ok", "slow" if "action_slow" in faults_on else "ok"]
    for name, fault in (("raise", "action_raises"), ("refuse", "action_refuses"),
                        ("timeout", "action_times_out"), ("exit", "action_exits")):
        if fault in faults_on:
            behaviours.append(name)
    plans = st.lists(st.sampled_from(behaviours), max_size=4)
    store_faults = []
    if "store_fails" in faults_on:
        store_faults += [("store_fails", "write"), ("store_fails", "read"), ("store_fails", "claim")]
    for op in ("read", "insert", "update", "delete"):
        if f"store_loses_{op}" in faults_on:
            store_faults.append(("store_loses", op))
    publish_faults = [name for name in ("publish_fails", "publish_slow", "publish_duplicates") if name in faults_on]
    if kind == "dynamodb" and "stale_due_index" in faults_on:
        publish_faults.append("stale_due_index")
    armable = st.one_of(
        *([st.tuples(st.sampled_from(store_faults), st.integers(0, 3), st.sampled_from([1, 2])).map(
            lambda t: Armed(t[0][0], t[0][1], skip=t[1], times=t[2]))] if store_faults else []),
        *([st.tuples(st.sampled_from(publish_faults), st.integers(0, 2), st.sampled_from([5, 40])).map(
            lambda t: Armed(t[0], skip=t[1], seconds=t[2]))] if publish_faults else []),
    ) if (store_faults or publish_faults) else None
    kills = (st.none() | st.tuples(st.integers(0, 3), st.sampled_from(["before", "after"]))
             if "worker_killed" in faults_on else st.none())
    acks = st.sampled_from(["all", "lost"]) if "ack_lost" in faults_on else st.just("all")
    skews = st.sampled_from([0, 10, 60]) if "worker_clock_behind" in faults_on else st.just(0)
    # A batch whose claims fail together: armed with the batch, since an armed fault
    # would most often fire in some other one.
    claim_failures = st.sampled_from([False] * 5 + [True]) if "store_fails" in faults_on else st.just(False)

    class TaskQueueMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            STATS["examples"] += 1
            clock.offset, clock.worker_behind = 0.0, 0.0
            self.faults = Faults(clock=clock, spare_counts="store_fails_counts" not in faults_on)
            self.recorder = Recorder(clock, series_of=self._series_of_token)
            model_actions.CURRENT = self.recorder
            self.dir = Path(tempfile.mkdtemp(dir=workdir))
            self.stack = ModelStack(kind, client, app, self.dir, setenv, clock, self.faults)
            if "stale_due_index" in faults_on and kind == "dynamodb":
                _lagging_due_index(self.stack.store, self.faults)
            self.tokens = 0
            self.tasks: Dict[str, ModelTask] = {}
            self.by_token: Dict[int, ModelTask] = {}
            self.keys: Dict[str, KeyUse] = {}
            self.settled = False

        # -- the model's bookkeeping ------------------------------------------------

        def _series_of_token(self, token: int) -> int:
            task = self.by_token.get(token)
            return task.series if task else 0

        def _track(self, task_id: str, token: int, key: Optional[str], earliest: float, answer: str) -> None:
            known = self.tasks.get(task_id)
            if known is not None:
                if known.token != token:
                    raise Broken(f"task {task_id} answered for request {token} was made for request {known.token}")
                return
            task = ModelTask(task_id, token, key, earliest, answer)
            self.tasks[task_id] = task
            self.by_token[token] = task

        def _disturb(self, task_ids, why: str) -> None:
            for task_id in task_ids:
                task = self.tasks.get(task_id)
                if task is not None:
                    task.disturbed.add(task.series)

        def _live(self, call):
            """Run the service's code with the armed faults live; what it returned, and the faults that fired."""
            self.faults.fired = []
            self.faults.live = True
            try:
                return call(), list(self.faults.fired)
            finally:
                self.faults.live = False
                STATS.update(f"fired {fault}" for fault in self.faults.fired)

        def _check_answer(self, what: str, response, fired: List[str], allowed=(200, 202, 204, 404, 409)) -> None:
            status = response.status_code
            if status >= 500:
                body = response.body.decode(errors="replace")
                if status != 503:
                    raise Broken(f"{what} answered {status}: {body}")
                if not fired:
                    raise Broken(f"{what} answered 503 with no fault injected: {body}")
            elif status not in allowed:
                raise Broken(f"{what} answered {status}: {response.body!r}")

        def _read_back(self, task_id: str) -> Optional[dict]:
            """The task as it is, read with no fault armed."""
            response = client.http.get(f"/tasks/{task_id}")
            if response.status_code == 404:
                return None
            assert response.status_code == 200, response.body
            return json.loads(response.body)

        def _post(self, body: dict, key: Optional[str], token: int) -> None:
            headers = {"Content-Type": "application/json"}
            if key is not None:
                headers["Idempotency-Key"] = key
            earliest = clock.time() + (body.get("delay_seconds") or 0)
            response, fired = self._live(lambda: client.http.post("/tasks", body=json.dumps(body), headers=headers))
            what = f"POST /tasks (request {token}{', key ' + key if key else ''})"
            self._check_answer(what, response, fired, allowed=(202,))
            answer = json.loads(response.body)
            known = self.keys.get(key) if key is not None else None
            expected = None
            if known is not None and known.task_id is not None and not self.tasks[known.task_id].deleted \
                    and clock.time() < known.first_used + KEY_TTL_SECONDS - 60:
                expected = known.task_id
            if response.status_code == 202:
                if expected is not None and answer["id"] != expected:
                    raise Broken(f"{what} answered 202 for {answer['id']}, but the key's task is {expected}")
                if expected is None and answer["id"] in self.tasks:
                    raise Broken(f"{what} answered 202 for {answer['id']}, a task made by an earlier request")
                self._track(answer["id"], token if expected is None else self.tasks[expected].token,
                            key, earliest, "202")
                if known is not None:
                    known.task_id = answer["id"]
                return
            kept = STORED_AS.search(answer.get("detail", ""))
            if kept:
                stored = self._read_back(kept.group(1))
                if stored is None:
                    raise Broken(f"{what} answered 503 saying the task is stored as {kept.group(1)}; it is not")
                if expected is not None and kept.group(1) != expected:
                    raise Broken(f"{what} kept {kept.group(1)}, but the key's task is {expected}")
                self._track(kept.group(1), token if expected is None else self.tasks[expected].token,
                            key, earliest, "503 stored as")
                if known is not None:
                    known.task_id = kept.group(1)

        # -- requests -----------------------------------------------------------

        @rule(plan=plans, delay=st.sampled_from(DELAYS), keyed=st.booleans())
        def submit(self, plan, delay, keyed):
            self.tokens += 1
            token = self.tokens
            body = {"action": model_actions.NAME, "data": {"token": token, "plan": plan}}
            if delay is not None:
                body["delay_seconds"] = delay
            key = f"key-{token}" if keyed else None
            if key is not None:
                self.keys[key] = KeyUse(body, clock.time())
            self._post(body, key, token)

        @precondition(lambda self: self.keys)
        @rule(data=st.data())
        def repeat_with_the_same_key(self, data):
            # A deleted task's key is forgotten with it; its reuse is tested elsewhere.
            usable = sorted(key for key, use in self.keys.items()
                            if use.task_id is None or not self.tasks[use.task_id].deleted)
            if not usable:
                return
            key = data.draw(st.sampled_from(usable), label="key")
            use = self.keys[key]
            self._post(use.body, key, use.body["data"]["token"])

        def _pick(self, data, live_only=True) -> Optional[ModelTask]:
            # In the order they were answered: ids are random, the order of the steps is not.
            candidates = [task for task in self.tasks.values() if not (live_only and task.deleted)]
            if not candidates:
                return None
            return candidates[data.draw(st.integers(0, len(candidates) - 1), label="task, by order of answer")]

        @precondition(lambda self: self.tasks)
        @rule(data=st.data())
        def cancel(self, data):
            task = self._pick(data, live_only=False)
            response, fired = self._live(lambda: client.http.post(f"/tasks/{task.id}/cancel", body="{}",
                                                                  headers={"Content-Type": "application/json"}))
            self._check_answer(f"cancel {task.id}", response, fired)
            if response.status_code == 404 and not task.deleted:
                raise Broken(f"cancel of {task.id} answered 404, but it was accepted and not deleted")

        @precondition(lambda self: self.tasks)
        @rule(data=st.data())
        def retry(self, data):
            task = self._pick(data, live_only=False)
            before = self._read_back(task.id)
            response, fired = self._live(lambda: client.http.post(f"/tasks/{task.id}/retry", body="{}",
                                                                  headers={"Content-Type": "application/json"}))
            self._check_answer(f"retry {task.id}", response, fired)
            if response.status_code == 202 or (response.status_code == 503 and before is not None
                                                and before["status"] == "failed"
                                                and (self._read_back(task.id) or {}).get("status") == "queued"):
                task.series += 1
            if response.status_code == 404 and not task.deleted:
                raise Broken(f"retry of {task.id} answered 404, but it was accepted and not deleted")

        @precondition(lambda self: self.tasks)
        @rule(data=st.data())
        def delete(self, data):
            task = self._pick(data, live_only=False)
            response, fired = self._live(lambda: client.http.delete(f"/tasks/{task.id}"))
            self._check_answer(f"delete {task.id}", response, fired)
            if response.status_code == 204 or (fired and self._read_back(task.id) is None):
                task.deleted = True  # a fault may hide that it was: a 503, or a retried delete's 409
            elif response.status_code == 404 and not task.deleted:
                raise Broken(f"delete of {task.id} answered 404, but it was accepted and not deleted")

        @precondition(lambda self: self.tasks)
        @rule(data=st.data(), wait=st.sampled_from(["0", "0.05"]))
        def get_with_wait(self, data, wait):
            task = self._pick(data, live_only=False)
            response, fired = self._live(lambda: client.http.get(f"/tasks/{task.id}?wait={wait}"))
            self._check_answer(f"GET {task.id}?wait={wait}", response, fired, allowed=(200, 404))
            if response.status_code == 404 and not task.deleted:
                raise Broken(f"GET {task.id} answered 404, but it was accepted and not deleted")

        # -- the worker, recovery and time -------------------------------------------

        @rule(size=st.integers(1, 5), kill=kills, ack=acks, behind=skews, claims_fail=claim_failures)
        def worker_batch(self, size, kill, ack, behind, claims_fail):
            if claims_fail:
                self.faults.armed.insert(0, Armed("store_fails", "claim", times=2))
            self._deliver(size, kill, ack, behind)
            self.faults.armed = [fault for fault in self.faults.armed if not (claims_fail and fault.op == "claim")]

        def _deliver(self, size, kill=None, ack="all", behind=0) -> int:
            messages = self.stack.receive(size)
            if not messages:
                return 0
            task_ids = [message_of(body).task_id for _, _, body in messages]
            twice = [task_id for task_id, n in Counter(task_ids).items() if n > 1]
            if twice and "rerun_of_duplicate_messages_in_one_batch" in tolerated:
                self._disturb(twice, "two messages for it in one batch")
            self.recorder.kill, self.recorder.killed = kill, False
            clock.worker_behind = behind
            try:
                failed, fired = self._live(lambda: self.stack.invoke("process_tasks", messages))
            except WorkerKilled:
                self._disturb(task_ids, "its worker was killed")
                return len(messages)  # nothing acknowledged: the batch comes back after its visibility timeout
            except Exception as exc:
                if not (self.faults.fired and isinstance(exc, INFRASTRUCTURE_ERRORS)):
                    raise Broken(f"the worker's handler raised {type(exc).__name__}: {exc} with no fault "
                                 f"injected, or not for one (batch of {len(messages)}: {task_ids})") from exc
                # Lambda fails the whole batch: every message comes back.
                self._disturb(task_ids, f"its batch failed on {self.faults.fired}")
                return len(messages)
            except BaseException as exc:  # noqa: B036 - what a Lambda process would die of
                raise Broken(f"the worker's handler raised {type(exc).__name__}: {exc} (batch of "
                             f"{len(messages)}: {task_ids})") from exc
            finally:
                self.recorder.kill = None
                clock.worker_behind = 0
            if fired:
                self._disturb(task_ids, f"faults fired in its batch: {fired}")
            if ack == "all" and kill is None:
                self.stack.ack([handle for message_id, handle, _ in messages if message_id not in failed])
            return len(messages)

        @rule()
        def recovery_pass(self):
            self._recover()

        def _recover(self) -> dict:
            started = clock.utcnow()
            try:
                counts, fired = self._live(self.stack.recover)
            except Exception as exc:
                if self.faults.fired and isinstance(exc, INFRASTRUCTURE_ERRORS):
                    return {}  # a scheduled pass that meets a failing store fails; the next goes on
                raise Broken(f"the recovery pass raised {type(exc).__name__}: {exc}") from exc
            if not fired:
                left = [task for task in self.stack.store.due(started, 1000)
                        if task.due_at <= started and not task.awaiting_publish]
                if left:
                    raise Broken(f"a recovery pass with no fault left {len(left)} overdue tasks, "
                                 f"such as {left[0].id} ({left[0].status.value}, due {left[0].due_at})")
            return counts

        @rule(seconds=st.sampled_from(JUMPS))
        def clock_jumps(self, seconds):
            clock.jump(seconds)

        @rule()
        def drain_dead_letters(self):
            self._live(self.stack.drain_dead_letters)

        if armable is not None:
            @rule(fault=armable)
            def arm_fault(self, fault):
                self.faults.armed.append(fault)

        if "queue_dead_letters" in faults_on:
            @rule()
            def queue_dead_letters_a_message(self):
                self.stack.dead_letter_one()

        if "recovery_backlog" in faults_on:
            @rule()
            def backlog_of_overdue_tasks(self):
                """More keyed tasks than a recovery pass reads, none taken before recovery
                watches them (stale_after): one fault-free pass must publish them all."""
                armed, self.faults.armed = self.faults.armed, []
                for _ in range(101):
                    self.submit([], None, True)
                self.faults.armed = armed
                clock.jump(901)

        # -- cheap checks during the run ------------------------------------------------

        @invariant()
        def runs_stay_within_the_attempts(self):
            STATS["steps"] += 1
            for token, runs in self.recorder.runs.items():
                task = self.by_token.get(token)
                if task is None:
                    raise Broken(f"an action ran for request {token}, whose task was never answered as kept")
                per_series = Counter(run.series for run in runs)
                for series, n in per_series.items():
                    if n > MAX_ATTEMPTS:
                        raise Broken(f"task {task.id} ran {n} times in series {series}, over its "
                                     f"{MAX_ATTEMPTS} attempts")
                early = [run for run in runs if run.at < task.earliest - 1]
                if early:
                    raise Broken(f"task {task.id} ran {task.earliest - early[0].at:.0f} s before its delay was over")

        @invariant()
        def sqlite_stats_equal_the_truth(self):
            if kind == "sqlite" and not self.settled:
                self._check_stats()

        # -- settling and the final check ---------------------------------------------

        def teardown(self):
            try:
                # Hypothesis tears down in a `finally`: after a failed step, that failure is the finding.
                if not self.settled and sys.exc_info()[0] is None:
                    self.settle_and_check()
            finally:
                model_actions.CURRENT = None
                self.stack.close()
                shutil.rmtree(self.dir, ignore_errors=True)

        def settle_and_check(self):
            self.settled = True
            self.faults.clear()
            jump = 31
            quiet_rounds = 0
            for _ in range(MAX_SETTLE_ROUNDS):
                activity = self._live(self.stack.drain_dead_letters)[0]
                while True:
                    delivered = self._deliver(5)
                    activity += delivered
                    if not delivered:
                        break
                counts = self._recover()
                activity += sum(counts.get(name, 0) for name in ("queued", "running", "scheduled"))
                if activity:
                    jump, quiet_rounds = 31, 0
                else:
                    quiet_rounds += 1
                    if quiet_rounds >= 2 and self._all_final():
                        break
                    jump = min(jump * 2, 3600)
                clock.jump(jump)
            self._check_final()

        def _all_final(self) -> bool:
            for task in self.tasks.values():
                if task.deleted:
                    continue
                stored = self.stack.store.get(task.id)
                if stored is None or not stored.status.is_final:
                    return False
            return True

        def _listed(self) -> Dict[str, dict]:
            listed, cursor = {}, None
            while True:
                response = client.http.get("/tasks?limit=100" + (f"&cursor={cursor}" if cursor else ""))
                assert response.status_code == 200, response.body
                page = json.loads(response.body)
                listed.update({task["id"]: task for task in page["tasks"]})
                cursor = page["next_cursor"]
                if not cursor:
                    return listed

        def _check_stats(self, listed=None) -> None:
            listed = self._listed() if listed is None else listed
            truth = Counter(task["status"] for task in listed.values())
            response = client.http.get("/stats")
            assert response.status_code == 200, response.body
            counts = json.loads(response.body)["counts"]
            for status in Status:
                shown, real = counts.get(status.value, 0), truth.get(status.value, 0)
                if kind == "sqlite" and shown != real:
                    raise Broken(f"/stats counts {shown} {status.value}; there are {real}")
                if shown < 0 or shown > real:
                    raise Broken(f"/stats counts {shown} {status.value}; there are {real} "
                                 "(a count may lag, never exceed the truth)")

        def _check_final(self) -> None:
            listed = self._listed()
            for task_id, listed_task in listed.items():
                if task_id not in self.tasks:
                    raise Broken(f"task {task_id} ({listed_task['status']}, data {listed_task['data']}) exists, "
                                 "but its request was not answered 202 nor told it was stored")
            transitions = self.stack.transitions_of()
            for task in self.tasks.values():
                stored = listed.get(task.id)
                if task.deleted:
                    if stored is not None:
                        raise Broken(f"task {task.id} was deleted (204) and is still listed")
                    continue
                if stored is None:
                    raise Broken(f"task {task.id} was answered {task.answer} and is gone")
                if stored["status"] not in FINAL_VALUES:
                    raise Broken(f"task {task.id} (answered {task.answer}) is still {stored['status']} after "
                                 f"everything settled (attempts {stored['attempts']}, error {stored['error']!r})")
                self._check_outcomes(task, stored, transitions.get(task.id, []))
                self._check_runs(task, stored)
            self._check_stats(listed)

        def _check_outcomes(self, task: ModelTask, stored: dict, moves) -> None:
            outcomes = sum(1 for frm, to in moves if to in FINAL_VALUES and frm not in FINAL_VALUES)
            retries = sum(1 for frm, to in moves if (frm, to) == ("failed", "queued"))
            if outcomes != retries + 1:
                raise Broken(f"task {task.id} had {outcomes} outcomes applied over {retries + 1} series: {moves}")
            if retries != task.series:
                raise Broken(f"task {task.id} was retried {retries} times in the store; "
                             f"{task.series} retries were answered 202")

        def _check_runs(self, task: ModelTask, stored: dict) -> None:
            runs = self.recorder.runs.get(task.token, [])
            status = stored["status"]
            last_series = [run for run in runs if run.series == task.series]
            if status == "completed":
                finished = next((run for run in last_series if run.behaviour in ("ok", "slow") and
                                 stored["result"] == {"output": {"token": task.token, "run": run.index}}), None)
                if finished is None:
                    raise Broken(f"task {task.id} completed with {stored['result']}, which no run of its "
                                 f"last series returned ({[(r.index, r.behaviour) for r in last_series]})")
                started = _seconds(stored["started_at"])
                if abs(started - finished.worker_at) > 2:
                    raise Broken(f"task {task.id} says it started at {stored['started_at']}, "
                                 f"{finished.worker_at - started:.0f} s before its run began")
            for series in range(task.series + 1):
                mine = [run for run in runs if run.series == series]
                if series in task.disturbed:
                    continue
                ended = status if series == task.series else "failed"
                self._check_series(task, series, mine, ended)

        def _check_series(self, task: ModelTask, series: int, runs, ended: str) -> None:
            """An undisturbed series runs exactly as its plan says: each retried failure
            is followed by one more run, and nothing runs after the last."""
            behaviours = [run.behaviour for run in runs]
            told = f"task {task.id} series {series} ran {behaviours} and ended {ended}"
            if any(b not in RETRIED for b in behaviours[:-1]):
                raise Broken(f"{told}: it ran again after a run that ended it")
            last = behaviours[-1] if behaviours else None
            if ended == "completed" and last not in ("ok", "slow"):
                raise Broken(f"{told}")
            if ended == "failed" and not (last == "refuse" or (last in RETRIED and len(runs) == MAX_ATTEMPTS)):
                raise Broken(f"{told}")
            if ended == "cancelled" and not (last is None or (last in RETRIED and len(runs) < MAX_ATTEMPTS)):
                raise Broken(f"{told}")

    TaskQueueMachine.__name__ = f"TaskQueueOn{kind.capitalize()}"
    return TaskQueueMachine


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _lagging_due_index(store, faults: Faults) -> None:
    """DynamoDB's by_due index is eventually consistent: a fired stale_due_index fault
    makes one read of it return, besides what is due, entries it held earlier."""
    from chalicelib.store.dynamo_codec import decode_item

    real_due = store._due
    seen: List[str] = []

    def lagging(now, limit):
        found = real_due(now, limit)
        fresh = {task.id for task in found}
        if faults.take("stale_due_index"):
            stale = [task_id for task_id in seen if task_id not in fresh]
            items = store._fetch(stale, consistent=True)
            found = found + [decode_item(items[task_id]) for task_id in stale if task_id in items]
        seen.extend(task_id for task_id in fresh if task_id not in seen)
        return found

    store._due = lagging
