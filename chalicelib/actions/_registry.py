"""Declaring actions, finding them, checking their data and running them within their time.

An action is one function and one declaration:

    @action("uppercase", schema={...}, max_attempts=3, timeout_s=5)
    def uppercase(data): ...

Every module in the `chalicelib.actions` package whose name does not start with
an underscore is imported once, when the package is, and its declarations land
in ACTIONS: adding a module is all it takes. Schemas are compiled (with
fastjsonschema) when the catalog is built (catalog.Catalog.compile_schemas), so a
schema that cannot be compiled stops the service at start, naming its action,
instead of answering every submit of that action with a 500.
"""
from __future__ import annotations

import importlib
import math
import pkgutil
import queue
import signal
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Optional

# An attempt that declares no time limit gets this one: a worker processes a
# batch's messages one after another, so every attempt needs a bound for the
# function and queue timeouts to cover the batch.
DEFAULT_TIMEOUT_S = 10.0
MAX_TIMEOUT_S = 120.0  # five of these in a batch still fit Lambda's 15 minutes


class ActionError(ValueError):
    """The task's data is not something its action can use; retrying will not help."""


class ActionTimeout(RuntimeError):
    """An attempt ran past its action's timeout_s; the retry policy decides what follows."""


class SchemaError(ValueError):
    """A declared schema that fastjsonschema cannot compile; the message names the action."""


class DataMismatch(ValueError):
    """Submitted data that does not match its action's schema."""

    def __init__(self, message: str, pointer: str) -> None:
        super().__init__(message)
        self.pointer = pointer  # JSON pointer into the request body, such as /data/numbers/0


@dataclass(eq=False)
class Action:
    """A declared action: what runs, the data it takes, and its limits (None: the
    service's global setting)."""

    name: str
    function: Callable[[dict], Any]
    schema: Optional[dict] = None
    max_attempts: Optional[int] = None
    retry_base_s: Optional[float] = None
    retry_max_s: Optional[float] = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    description: str = ""
    _validator: Optional[Callable[[Any], Any]] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"action {self.name}: max_attempts must be at least 1")
        if not 0 < self.timeout_s <= MAX_TIMEOUT_S:
            raise ValueError(f"action {self.name}: timeout_s must be above 0 and at most {MAX_TIMEOUT_S:g}")
        for limit in (self.retry_base_s, self.retry_max_s):
            if limit is not None and limit < 0:
                raise ValueError(f"action {self.name}: retry_base_s and retry_max_s cannot be negative")
        if self.schema is not None and self.schema.get("type", "object") != "object":
            raise ValueError(f"action {self.name}: the schema describes data, which is a JSON object")

    def compile(self) -> None:
        """Compile the schema, once; raise SchemaError when it cannot be."""
        if self.schema is None or self._validator is not None:
            return
        import fastjsonschema  # here: importing app.py does not pay for it

        try:
            # use_default=False: validating must not change the data it checks.
            self._validator = fastjsonschema.compile(self.schema, use_default=False)
        except Exception as exc:  # JsonSchemaDefinitionException, re.error for a bad pattern, ...
            raise SchemaError(f"action {self.name} declares a schema that fastjsonschema cannot compile "
                              f"({type(exc).__name__}: {exc}); fix the schema in {self.function.__module__}") from None

    def check(self, data: dict) -> None:
        """Raise DataMismatch when `data` does not match the schema."""
        if self.schema is None:
            return
        import fastjsonschema

        self.compile()
        try:
            self._validator(data)
        except fastjsonschema.JsonSchemaValueException as exc:
            pointer = "/data" + "".join(f"/{_escape(part)}" for part in exc.path[1:])
            raise DataMismatch(
                f"{exc.message} (at {pointer}): send data that matches the {self.name} action's schema, "
                "listed by GET /actions", pointer) from None


def _escape(part: Any) -> str:
    return str(part).replace("~", "~0").replace("/", "~1")


ACTIONS: Dict[str, Action] = {}


def action(name: str, *, schema: Optional[dict] = None, max_attempts: Optional[int] = None,
           retry_base_s: Optional[float] = None, retry_max_s: Optional[float] = None,
           timeout_s: float = DEFAULT_TIMEOUT_S) -> Callable[[Callable[[dict], Any]], Callable[[dict], Any]]:
    """Declare `function(data) -> output` as the action `name`.

    - schema: JSON Schema of the task's data, checked at submit (a mismatch is a 400);
    - max_attempts, retry_base_s, retry_max_s: this action's retry policy, over the global one;
    - timeout_s: how long one attempt may run before it counts as failed and is retried.
    """
    def declare(function: Callable[[dict], Any]) -> Callable[[dict], Any]:
        if name in ACTIONS and ACTIONS[name].function is not function:
            raise ValueError(f"action {name!r} is declared twice: in {ACTIONS[name].function.__module__} "
                             f"and {function.__module__}")
        ACTIONS[name] = Action(name, function, schema, max_attempts, retry_base_s, retry_max_s,
                               timeout_s, (function.__doc__ or "").strip().split("\n\n")[0])
        return function
    return declare


def discover(package: str, path: Iterable[str]) -> None:
    """Import every public module of the package, so that their declarations run."""
    for module in sorted(pkgutil.iter_modules(path), key=lambda found: found.name):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package}.{module.name}")


# What a batch needs beyond its attempts: claims, outcomes and the queue's calls.
BATCH_OVERHEAD_S = 5


def batch_seconds(batch_size: int) -> int:
    """How long a worker may need for one batch: its messages run one after another,
    each for at most its action's timeout. The worker function's timeout and the
    queue's visibility timeout must cover it."""
    longest = max((declared.timeout_s for declared in ACTIONS.values()), default=DEFAULT_TIMEOUT_S)
    return math.ceil(batch_size * longest + BATCH_OVERHEAD_S)


def run(name: str, data: dict) -> dict:
    """The task's result, `{"output": ...}` as in the seed; unknown actions output "processed".
    Raises ActionTimeout when the attempt outlasts the action's timeout_s."""
    declared = ACTIONS.get(name)
    output = "processed" if declared is None else within(declared.timeout_s, declared.function, data)
    return {"output": output}


def within(seconds: float, function: Callable[[dict], Any], data: dict) -> Any:
    """function(data), or ActionTimeout after `seconds`.

    In a process's main thread (a Lambda's handler) a timer signal interrupts the
    function where it stands. Elsewhere (the threads of `chalice local`'s
    dispatcher, where signals cannot be used) the function runs in a thread of its
    own, and an attempt past its time is given up on: its outcome is discarded
    and the code runs on until it returns. Lambda's own timeout stays the hard stop.
    """
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        return _with_timer(seconds, function, data)
    return _in_thread(seconds, function, data)


def _with_timer(seconds: float, function: Callable[[dict], Any], data: dict) -> Any:
    def expire(signum, frame):
        raise ActionTimeout(f"the attempt ran past its {seconds:g} s timeout")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return function(data)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class _Runner:
    """A thread that runs one calling thread's attempts, one at a time: cheaper than a
    thread per attempt. A runner whose attempt outlasts its time is given up on, and
    the caller's next attempt gets a new one; the old one ends when its call returns."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._outcomes: queue.SimpleQueue = queue.SimpleQueue()
        self.abandoned = False
        threading.Thread(target=self._serve, name="action-attempts", daemon=True).start()

    def _serve(self) -> None:
        while not self.abandoned:
            function, data = self._calls.get()
            try:
                outcome = (True, function(data))
            except BaseException as exc:  # handed to the caller's thread as it is
                outcome = (False, exc)
            self._outcomes.put(outcome)

    def call(self, seconds: float, function: Callable[[dict], Any], data: dict) -> Any:
        self._calls.put((function, data))
        try:
            ok, value = self._outcomes.get(timeout=seconds)
        except queue.Empty:
            self.abandoned = True
            raise ActionTimeout(f"the attempt ran past its {seconds:g} s timeout; it was given up on") from None
        if not ok:
            raise value
        return value


_runners = threading.local()


def _in_thread(seconds: float, function: Callable[[dict], Any], data: dict) -> Any:
    runner = getattr(_runners, "runner", None)
    if runner is None or runner.abandoned:
        runner = _runners.runner = _Runner()
    return runner.call(seconds, function, data)
