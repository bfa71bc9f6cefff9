"""The one place that chooses backends from settings.

Everything is built on first use and cached per distinct `Settings`, so a
process creates its clients and connections once, and tests that change the
environment get backends that match it.
"""
from __future__ import annotations

import functools
import os
from datetime import timedelta
from typing import Optional

from chalicelib import settings as settings_module
from chalicelib.queue import TaskQueue
from chalicelib.service import TaskService
from chalicelib.settings import Settings
from chalicelib.store import TaskStore
from chalicelib.worker import Worker


def current_settings() -> Settings:
    return settings_module.current()


# Backends are imported where they are chosen: a Lambda on DynamoDB and SQS
# never imports sqlite3, and one on SQLite never imports boto3.
@functools.lru_cache(maxsize=None)
def _database(path: str, synchronous: str):
    """One Database per file, so that components sharing a file share its transactions."""
    from chalicelib.sqlite_db import Database

    return Database(path, synchronous=synchronous)


@functools.lru_cache(maxsize=None)
def _migrated(path: str, synchronous: str, component: str, migrations: tuple):
    db = _database(path, synchronous)
    db.migrate(component, migrations)
    return db


# Databases are keyed by the file's real path: one file named two ways (relative
# and absolute, or through a link) is still one Database with one write lock.
def tasks_db(settings: Settings):
    from chalicelib.store.sqlite import MIGRATIONS
    return _migrated(os.path.realpath(settings.db_path), settings.sqlite_synchronous, "tasks", MIGRATIONS)


def queue_db(settings: Settings):
    from chalicelib.queue.embedded import MIGRATIONS
    return _migrated(os.path.realpath(settings.queue_file), settings.sqlite_synchronous, "queue", MIGRATIONS)


@functools.lru_cache(maxsize=None)
def store(settings: Settings) -> TaskStore:
    if settings.store == "sqlite":
        from chalicelib.store.sqlite import SqliteTaskStore
        return SqliteTaskStore(tasks_db(settings))
    from chalicelib.store.dynamodb import DynamoTaskStore
    return DynamoTaskStore(aws_client("dynamodb", "request"), settings.table_name,
                           retention=timedelta(days=settings.retention_days))


DEFAULT_VISIBILITY_SECONDS = 30.0  # the embedded queue's, when TASKS_VISIBILITY_TIMEOUT_S is not set


@functools.lru_cache(maxsize=None)
def queue(settings: Settings) -> TaskQueue:
    if settings.queue == "embedded":
        from chalicelib.queue.embedded import EmbeddedQueue
        return EmbeddedQueue(
            queue_db(settings), settings.queue_name,
            visibility_timeout=settings.visibility_timeout_seconds or DEFAULT_VISIBILITY_SECONDS,
            max_receive_count=settings.max_receive_count,
        )
    from chalicelib.queue.sqs import SqsTaskQueue
    client = aws_client("sqs", "request")
    url = settings.queue_url or client.get_queue_url(QueueName=settings.queue_name)["QueueUrl"]
    return SqsTaskQueue(client, url, settings.dead_letter_queue_url)


# How long an AWS call may take, by what waits on it (seconds, and attempts in all).
# - request: the calls of an API request (and of the worker, which redelivery
#   retries anyway) give up after about 10 s, well inside API Gateway's 29 s, so
#   that a hanging queue is a 503 rather than a cut connection.
# - long_poll: a receive waits up to LONG_POLL_SECONDS for a message by design; its
#   read timeout must outlast that wait, or an empty poll is an error and a message
#   handed to the abandoned poll stays hidden for the whole visibility timeout.
LONG_POLL_SECONDS = 10
CLIENT_TIMEOUTS = {
    "request": {"connect_timeout": 1, "read_timeout": 4, "max_attempts": 2},
    "long_poll": {"connect_timeout": 3, "read_timeout": LONG_POLL_SECONDS + 10, "max_attempts": 3},
}


@functools.lru_cache(maxsize=None)
def aws_client(service: str, purpose: str):
    """One client per service, purpose and process: a Lambda container creates each once."""
    import boto3
    from botocore.config import Config

    timeouts = CLIENT_TIMEOUTS[purpose]
    return boto3.client(service, config=Config(
        connect_timeout=timeouts["connect_timeout"], read_timeout=timeouts["read_timeout"],
        retries={"mode": "standard", "total_max_attempts": timeouts["max_attempts"]},
    ))


def service(settings: Optional[Settings] = None) -> TaskService:
    return _service(settings or current_settings())


@functools.lru_cache(maxsize=None)
def _service(settings: Settings) -> TaskService:
    from chalicelib.waiting import Waiters

    tasks = store(settings)
    return TaskService(tasks, queue(settings), catalog(settings),
                       stale_after_seconds=settings.stale_after_seconds,
                       idempotency_ttl_seconds=settings.idempotency_ttl_seconds,
                       max_body_bytes=min(settings.max_body_bytes, tasks.max_body_bytes or settings.max_body_bytes),
                       waiters=Waiters.on(tasks, settings.max_waiters))


def retry_policy(settings: Settings):
    from chalicelib.retry import RetryPolicy

    return RetryPolicy(settings.max_attempts, settings.retry_base_seconds, settings.retry_max_seconds)


def catalog(settings: Optional[Settings] = None):
    """The declared actions with the limits these settings put under them; raises
    ConfigurationError when an action's attempts do not fit the queue's receive count,
    or fastjsonschema cannot compile its schema."""
    settings = settings or current_settings()
    built = _catalog(settings)
    built.check_receive_count(settings.max_receive_count)
    built.compile_schemas()
    return built


def _catalog(settings: Settings):
    from chalicelib import actions
    from chalicelib.catalog import Catalog

    return Catalog(actions.ACTIONS, retry_policy(settings), reject_unknown=settings.unknown_actions == "reject")


def recovery(settings: Optional[Settings] = None):
    from chalicelib.recovery import Recovery

    settings = settings or current_settings()
    return Recovery(store(settings), queue(settings), stale_after_seconds=settings.stale_after_seconds,
                    retention_days=settings.retention_days)


def worker(settings: Optional[Settings] = None) -> Worker:
    settings = settings or current_settings()
    return Worker(
        store(settings), queue(settings),
        work_delay_seconds=settings.work_delay_ms / 1000,
        # Unchecked: tasks accepted already run even when a new deploy's limits no
        # longer fit the queue (submits are refused meanwhile).
        catalog=_catalog(settings),
        stale_after_seconds=settings.stale_after_seconds,
        metrics=metrics(settings),
    )


def dead_letters(settings: Optional[Settings] = None):
    """The consumer of the dead-letter queue, which fails the tasks the queue gave up on."""
    from chalicelib.dead_letters import DeadLetters

    settings = settings or current_settings()
    return DeadLetters(store(settings), settings.max_receive_count, metrics(settings))


@functools.lru_cache(maxsize=None)
def dead_letter_queue(settings: Settings):
    """The embedded queue's dead-letter queue, read by the local dispatcher as a queue of
    its own. It has no redrive: a message stays until its task is settled."""
    from chalicelib.queue.embedded import EmbeddedQueue, dead_letter_name

    return EmbeddedQueue(queue_db(settings), dead_letter_name(settings.queue_name),
                         visibility_timeout=DEFAULT_VISIBILITY_SECONDS, max_receive_count=None)


def metrics(settings: Settings):
    """EMF lines where CloudWatch reads them (inside Lambda, or TASKS_METRICS=emf)."""
    from chalicelib import actions
    from chalicelib.metrics import Emf, NoMetrics

    inside_lambda = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))
    if settings.metrics == "emf" or (settings.metrics is None and inside_lambda):
        return Emf(actions.ACTIONS)
    return NoMetrics()


def reset() -> None:
    """Forget every cached backend (tests, and after settings change in-process)."""
    for cached in (_database, _migrated, store, queue, dead_letter_queue, _service, aws_client):
        cached.cache_clear()
