"""Configuration, read from the environment when it is used.

`chalice local` and a deployed Lambda put a stage's `environment_variables`
into the process environment; `chalice.test.Client` does so only during each
call. So settings are built from `os.environ` at the moment of use, never at
import, and everything built from them is cached per distinct `Settings`.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Mapping, Optional

from chalicelib.numbers import decimal, whole

STORES = ("sqlite", "dynamodb")
QUEUES = ("embedded", "sqs")


class ConfigurationError(ValueError):
    """A configuration variable holds a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    store: str = "sqlite"
    queue: str = "embedded"
    db_path: str = "data/tasks.db"
    queue_db_path: Optional[str] = None  # None: the tasks' own file
    sqlite_synchronous: str = "FULL"
    queue_url: Optional[str] = None
    queue_name: str = "tasks"
    table_name: str = "tasks"
    work_delay_ms: float = 100.0
    max_body_bytes: int = 256 * 1024
    # None: 30 s, or longer where a batch of the slowest declared action needs it
    # (the local dispatcher works that out; see local/runtime.py).
    visibility_timeout_seconds: Optional[float] = None
    max_receive_count: int = 5
    dispatcher_enabled: bool = True
    dead_letter_queue_url: Optional[str] = None
    max_attempts: int = 3
    retry_base_seconds: float = 2.0
    retry_max_seconds: float = 300.0
    stale_after_seconds: float = 900.0
    recovery_interval_seconds: Optional[float] = None
    idempotency_ttl_seconds: float = 86_400.0
    allowed_hosts: tuple = ()
    retention_days: float = 30.0
    metrics: Optional[str] = None  # "emf" or "off"; None: EMF inside Lambda only
    unknown_actions: str = "accept"  # or "reject": a 400 listing the known actions
    max_waiters: int = 100  # GET /tasks/{id}?wait reads waiting at once in one process; past it, a 503

    @property
    def queue_file(self) -> str:
        """The embedded queue's SQLite file: by default the tasks' own, so that a
        task and its message commit together."""
        return self.queue_db_path or self.db_path


_VARIABLES = {
    # variable: (field, parser); numbers in ASCII digits, as everywhere (chalicelib/numbers.py)
    "TASKS_STORE": ("store", str),
    "TASKS_QUEUE": ("queue", str),
    "TASKS_DB_PATH": ("db_path", str),
    "TASKS_QUEUE_DB_PATH": ("queue_db_path", str),
    "TASKS_SQLITE_SYNCHRONOUS": ("sqlite_synchronous", str.upper),
    "TASKS_QUEUE_URL": ("queue_url", str),
    "TASKS_QUEUE_NAME": ("queue_name", str),
    "TASKS_TABLE_NAME": ("table_name", str),
    "TASKS_WORK_DELAY_MS": ("work_delay_ms", decimal),
    "TASKS_MAX_BODY_BYTES": ("max_body_bytes", whole),
    "TASKS_VISIBILITY_TIMEOUT_S": ("visibility_timeout_seconds", decimal),
    "TASKS_MAX_RECEIVE_COUNT": ("max_receive_count", whole),
    "TASKS_LOCAL_DISPATCHER": ("dispatcher_enabled", lambda v: v.lower() in ("1", "true", "yes", "on")),
    "TASKS_DLQ_URL": ("dead_letter_queue_url", str),
    "TASKS_MAX_ATTEMPTS": ("max_attempts", whole),
    "TASKS_RETRY_BASE_S": ("retry_base_seconds", decimal),
    "TASKS_RETRY_MAX_S": ("retry_max_seconds", decimal),
    "TASKS_STALE_AFTER_S": ("stale_after_seconds", decimal),
    "TASKS_RECOVERY_INTERVAL_S": ("recovery_interval_seconds", decimal),
    "TASKS_IDEMPOTENCY_TTL_S": ("idempotency_ttl_seconds", decimal),
    "TASKS_RETENTION_DAYS": ("retention_days", decimal),
    "TASKS_METRICS": ("metrics", str.lower),
    "TASKS_UNKNOWN_ACTIONS": ("unknown_actions", str.lower),
    "TASKS_MAX_WAITERS": ("max_waiters", whole),
    "TASKS_ALLOWED_HOSTS": ("allowed_hosts", lambda v: tuple(h.strip() for h in v.split(",") if h.strip())),
}


def current() -> Settings:
    """The settings the environment holds now. It is read on every call (a test
    client sets a stage's variables only during a request); parsing and checking
    happen once per distinct set of values."""
    return _parsed(tuple(map(os.environ.get, _VARIABLES)))


@functools.lru_cache(maxsize=64)
def _parsed(raw_values: tuple) -> Settings:
    return from_environ({variable: raw for variable, raw in zip(_VARIABLES, raw_values) if raw is not None})


def from_environ(environ: Optional[Mapping[str, str]] = None) -> Settings:
    environ = os.environ if environ is None else environ
    values = {}
    for variable, (name, parse) in _VARIABLES.items():
        raw = environ.get(variable)
        if raw is None or raw == "":
            continue
        try:
            values[name] = parse(raw)
        except ValueError as exc:
            raise ConfigurationError(f"{variable}={raw!r} is not valid: {exc}") from exc
    settings = Settings(**values)
    if settings.store not in STORES:
        raise ConfigurationError(f"TASKS_STORE must be one of {', '.join(STORES)}")
    if settings.queue not in QUEUES:
        raise ConfigurationError(f"TASKS_QUEUE must be one of {', '.join(QUEUES)}")
    if settings.metrics not in (None, "emf", "off"):
        raise ConfigurationError("TASKS_METRICS must be emf or off")
    if settings.unknown_actions not in ("accept", "reject"):
        raise ConfigurationError("TASKS_UNKNOWN_ACTIONS must be accept (they output \"processed\") or reject")
    if settings.sqlite_synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ConfigurationError("TASKS_SQLITE_SYNCHRONOUS must be OFF, NORMAL, FULL or EXTRA")
    for variable, name, low in (
        ("TASKS_WORK_DELAY_MS", "work_delay_ms", 0),
        ("TASKS_MAX_BODY_BYTES", "max_body_bytes", 1),
        ("TASKS_VISIBILITY_TIMEOUT_S", "visibility_timeout_seconds", 0),
        ("TASKS_MAX_RECEIVE_COUNT", "max_receive_count", 1),
        ("TASKS_MAX_ATTEMPTS", "max_attempts", 1),
        ("TASKS_RETRY_BASE_S", "retry_base_seconds", 0),
        ("TASKS_RETRY_MAX_S", "retry_max_seconds", 0),
        ("TASKS_STALE_AFTER_S", "stale_after_seconds", 1),
        ("TASKS_IDEMPOTENCY_TTL_S", "idempotency_ttl_seconds", 86_400),
        ("TASKS_MAX_WAITERS", "max_waiters", 1),
    ):
        value = getattr(settings, name)
        if value is not None and value < low:
            raise ConfigurationError(f"{variable} must be at least {low}")
    _check_combination(settings)
    return settings


def _check_combination(settings: Settings) -> None:
    """Settings that are each valid but cannot work together."""
    if settings.max_attempts >= settings.max_receive_count:
        raise ConfigurationError(
            f"TASKS_MAX_ATTEMPTS ({settings.max_attempts}) must be less than TASKS_MAX_RECEIVE_COUNT "
            f"({settings.max_receive_count}), or the queue dead-letters a message before the worker "
            "gives up on its task; raise TASKS_MAX_RECEIVE_COUNT (and the queue's maxReceiveCount)")
    if settings.retention_days * 86_400 < settings.idempotency_ttl_seconds:
        raise ConfigurationError(
            f"TASKS_RETENTION_DAYS ({settings.retention_days:g}) must keep finished tasks at least as long as "
            f"TASKS_IDEMPOTENCY_TTL_S ({settings.idempotency_ttl_seconds:g} s) keeps their keys, or a repeat "
            "of a request could make its task again")
    if settings.queue == "sqs" and not settings.dead_letter_queue_url:
        raise ConfigurationError(
            "TASKS_QUEUE=sqs needs TASKS_DLQ_URL, the dead-letter queue's URL, or a task's message is "
            "deleted instead of dead-lettered after its last attempt; set it to the stack's DeadLetterQueueUrl output")


def variables() -> dict:
    """Variable name -> default value, for documentation and tests."""
    defaults = Settings()
    return {variable: getattr(defaults, name) for variable, (name, _) in _VARIABLES.items()}
