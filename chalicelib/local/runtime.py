"""Runs the SQS handler inside `chalice local`, which by itself only serves routes.

`chalice local`, `chalice package`, `chalice deploy` and the tests all import
app.py; only the process that serves HTTP for `chalice local` starts the
dispatcher. With autoreload that is the worker child, marked by the
CHALICE_WORKER variable Chalice's reloader sets; without it, the process
running the `local` command itself.
"""
from __future__ import annotations

import atexit
import os
from typing import Optional

from chalice import Chalice
from chalice.app import ScheduledEventConfig, SQSEventConfig

from chalicelib import factory, logs
from chalicelib.settings import ConfigurationError

# The dispatcher (and chalice.local with it) is imported only where it runs,
# keeping it out of a Lambda's cold start.
_dispatcher = None
_dead_letter_dispatcher = None
_schedulers: list = []


def serving_locally() -> bool:
    if not os.environ.get("AWS_CHALICE_CLI_MODE"):
        return False  # a Lambda, a test or a script: not the chalice CLI
    if os.environ.get("CHALICE_WORKER"):
        return True
    import click
    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.info_name == "local" and ctx.params.get("autoreload") is False


def sqs_source(app: Chalice, queue_name: str) -> Optional[SQSEventConfig]:
    for source in app.event_sources:
        if isinstance(source, SQSEventConfig) and source.queue == queue_name:
            return source
    return None


def build_dispatcher(app: Chalice, settings=None):
    """A Dispatcher feeding the configured queue (embedded, or a real SQS queue)
    to the app's handler for it, or None when the app has no such handler."""
    from chalicelib.local.dispatcher import Dispatcher
    from chalicelib.local.sources import EmbeddedSource, SqsSource

    settings = settings or factory.current_settings()
    registration = sqs_source(app, settings.queue_name)
    if registration is None:
        logs.problem("no @app.on_sqs_message handler for the queue", queue=settings.queue_name)
        return None
    factory.store(settings)  # applies pending migrations before the first request
    queue = factory.queue(settings)
    if settings.queue == "embedded":
        source = EmbeddedSource(queue, lease_seconds(settings, registration.batch_size))
    else:
        source = SqsSource(factory.aws_client("sqs", "long_poll"), queue.url, factory.LONG_POLL_SECONDS)
    return Dispatcher(
        source, app.handler_map[registration.name], registration.name,
        batch_size=registration.batch_size, concurrency=registration.maximum_concurrency or 2,
    )


def build_schedulers(app: Chalice, settings=None) -> list:
    """A Scheduler for each @app.schedule function with a Rate; TASKS_RECOVERY_INTERVAL_S
    overrides the rate (tests and demos want it faster)."""
    from chalicelib.local.scheduler import Scheduler, interval_of

    settings = settings or factory.current_settings()
    schedulers = []
    for source in app.event_sources:
        if not isinstance(source, ScheduledEventConfig):
            continue
        interval = settings.recovery_interval_seconds or interval_of(source.schedule_expression)
        if interval:
            schedulers.append(Scheduler(app.handler_map[source.name], source.name, interval))
    return schedulers


def build_dead_letter_dispatcher(app: Chalice, settings=None):
    """A Dispatcher feeding the dead-letter queue to the app's handler for it (which
    fails the tasks the queue gave up on), or None when there is no such handler or,
    on SQS, no dead-letter queue URL."""
    from chalicelib.local.dispatcher import Dispatcher
    from chalicelib.local.sources import EmbeddedSource, SqsSource
    from chalicelib.queue.embedded import dead_letter_name

    settings = settings or factory.current_settings()
    registration = sqs_source(app, dead_letter_name(settings.queue_name))
    if registration is None:
        return None
    if settings.queue == "embedded":
        source = EmbeddedSource(factory.dead_letter_queue(settings))
    elif settings.dead_letter_queue_url:
        source = SqsSource(factory.aws_client("sqs", "long_poll"), settings.dead_letter_queue_url,
                           factory.LONG_POLL_SECONDS)
    else:
        return None
    return Dispatcher(source, app.handler_map[registration.name], registration.name,
                      batch_size=registration.batch_size, concurrency=1, idle_poll_seconds=5.0)


def start_if_serving_locally(app: Chalice) -> None:
    global _dispatcher, _dead_letter_dispatcher
    if _dispatcher is not None or not serving_locally():
        return
    from chalicelib.local import server

    try:
        settings = factory.current_settings()
        factory.catalog(settings)  # actions whose limits the settings cannot serve
    except ConfigurationError as exc:  # refused at start, in one sentence, not at the first request
        raise SystemExit(f"task-queue: {exc}") from None
    server.install(settings.allowed_hosts)
    if os.environ.get("CHALICE_WORKER"):  # autoreload: watch the code, not the databases
        from chalicelib.local import watch

        watch.install(watch.Ignored(_project_dir(), {settings.db_path, settings.queue_file}))
    if not settings.dispatcher_enabled:
        return
    _dispatcher = build_dispatcher(app, settings)
    atexit.register(_stop_at_exit)
    if _dispatcher is not None:
        _warn_if_a_batch_outlasts_its_lease(_dispatcher, settings)
        _dispatcher.start()
        logs.note("local queue dispatcher started", queue=settings.queue_name,
                  batch_size=_dispatcher.batch_size, concurrency=_dispatcher.concurrency)
        _dead_letter_dispatcher = build_dead_letter_dispatcher(app, settings)
        if _dead_letter_dispatcher is not None:
            _dead_letter_dispatcher.start()
        if settings.queue == "sqs":
            logs.problem("this dispatcher long-polls an SQS queue that a deployed worker may read too, and "
                         "takes a share of its messages; set TASKS_LOCAL_DISPATCHER=off to leave them to it",
                         queue_url=settings.queue_url)
    for scheduler in build_schedulers(app, settings):
        scheduler.start()
        _schedulers.append(scheduler)
        logs.note("local schedule started", every_s=scheduler.interval)


def lease_seconds(settings, batch_size: int) -> float:
    """How long the dispatcher leases a batch: TASKS_VISIBILITY_TIMEOUT_S when set, else
    30 s or what a batch of the slowest declared action needs, whichever is longer."""
    from chalicelib import actions

    if settings.visibility_timeout_seconds is not None:
        return settings.visibility_timeout_seconds
    return max(factory.DEFAULT_VISIBILITY_SECONDS, actions.batch_seconds(batch_size))


def _warn_if_a_batch_outlasts_its_lease(dispatcher, settings) -> None:
    from chalicelib import actions

    needed = actions.batch_seconds(dispatcher.batch_size)
    if settings.queue == "embedded" and lease_seconds(settings, dispatcher.batch_size) < needed:
        logs.problem(f"a batch of the longest declared action may take {needed} s, longer than "
                     f"TASKS_VISIBILITY_TIMEOUT_S ({settings.visibility_timeout_seconds:g} s): its messages would "
                     f"be delivered again while they run; set TASKS_VISIBILITY_TIMEOUT_S to at least {needed}")


def _project_dir() -> str:
    """The folder Chalice watches: --project-dir, or the current one."""
    import click
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx is not None else None
    project_dir = (root.obj or {}).get("project_dir") if root is not None else None
    return project_dir or os.getcwd()


def _stop_at_exit() -> None:
    """Let the batches under way finish and their deletes commit when the server
    stops (autoreload restarts it by ending this process): nothing waits out a
    visibility timeout to run again."""
    for dispatcher in (_dispatcher, _dead_letter_dispatcher):
        if dispatcher is not None:
            dispatcher.stop()
    for scheduler in _schedulers:
        scheduler.stop()
