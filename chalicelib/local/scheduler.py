"""Runs the app's @app.schedule functions inside `chalice local`, as EventBridge would."""
from __future__ import annotations

import threading
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from chalice import Rate
from chalice.local import LambdaContext

from chalicelib import logs

_UNIT_SECONDS = {Rate.MINUTES: 60, Rate.HOURS: 3600, Rate.DAYS: 86400}


def interval_of(expression: Any) -> Optional[float]:
    """Seconds between runs of a Rate; None for a cron expression (not run locally)."""
    if isinstance(expression, Rate):
        return expression.value * _UNIT_SECONDS[expression.unit]
    return None


def scheduled_event(rule_name: str) -> dict:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "local",
        "resources": [f"arn:aws:events:local:000000000000:rule/{rule_name}"],
        "detail": {},
    }


class Scheduler:
    """Calls `handler` at start and then every `interval` seconds, in a daemon thread."""

    def __init__(self, handler: Callable[[dict, Any], Any], name: str, interval: float) -> None:
        self._handler = handler
        self._name = name
        self.interval = interval
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"schedule-{self._name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread:
            self._thread.join(timeout)

    def run_once(self) -> Any:
        context = LambdaContext(self._name, memory_size=128, max_runtime_ms=60_000)
        return self._handler(scheduled_event(self._name), context)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.run_once()
            except Exception as exc:  # the next run tries again
                logs.problem("scheduled function failed", function=self._name,
                             error=f"{type(exc).__name__}: {exc}")
            self._stopping.wait(self.interval)
