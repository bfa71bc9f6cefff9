"""One virtual clock for the service, the embedded queue and moto's SQS.

The code reads the time in four ways: `chalicelib.tasks.utcnow` (imported by name
into the modules that use it), `datetime.now` in a few modules, the embedded
queue's `clock` (time.time by default), and moto's SQS, which holds delays and
visibility timeouts by `moto.core.utils.unix_time`. Each is pointed at the real
time plus `offset`, so a jump moves all of them together, and real time still
passes as it does.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

# Modules that import utcnow by name: each keeps its own reference.
UTCNOW_MODULES = ("chalicelib.tasks", "chalicelib.service", "chalicelib.recovery", "chalicelib.validation")
WORKER_MODULE = "chalicelib.worker"  # its clock may run behind the queue's (a skewed worker)
DATETIME_MODULES = ("chalicelib.queue.base", "chalicelib.series", "chalicelib.store.dynamodb",
                    "chalicelib.store.dynamo_series")


class VirtualClock:
    def __init__(self) -> None:
        self.offset = 0.0  # seconds ahead of the real time
        self.worker_behind = 0.0  # seconds the worker's clock lags the others'

    def jump(self, seconds: float) -> None:
        self.offset += seconds

    def time(self) -> float:
        return time.time() + self.offset

    def utcnow(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=self.offset)

    def worker_utcnow(self) -> datetime:
        return self.utcnow() - timedelta(seconds=self.worker_behind)

    def install(self, monkeypatch) -> None:
        import importlib

        clock = self

        class ShiftedDatetime(datetime):
            @classmethod
            def now(cls, tz=None):
                return datetime.now(tz) + timedelta(seconds=clock.offset)

        for name in UTCNOW_MODULES:
            monkeypatch.setattr(importlib.import_module(name), "utcnow", self.utcnow)
        monkeypatch.setattr(importlib.import_module(WORKER_MODULE), "utcnow", self.worker_utcnow)
        for name in DATETIME_MODULES:
            monkeypatch.setattr(importlib.import_module(name), "datetime", ShiftedDatetime)
        import moto.sqs.models as sqs_models

        monkeypatch.setattr(sqs_models, "unix_time", lambda dt=None: time.time() + clock.offset if dt is None
                            else _real_unix_time(dt))
        monkeypatch.setattr(sqs_models, "unix_time_millis", lambda dt=None: sqs_models.unix_time(dt) * 1000.0)

    def attach_embedded_queue(self, queue) -> None:
        queue._clock = self.time


def _real_unix_time(dt: datetime) -> float:
    from moto.core.utils import unix_time

    return unix_time(dt)
