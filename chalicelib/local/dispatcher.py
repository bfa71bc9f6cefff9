"""Delivers queued messages to the app's SQS handler, as Lambda's event source mapping would.

One thread per unit of `maximum_concurrency`; each receives up to `batch_size`
messages under a visibility timeout, invokes the registered handler with a
Lambda-shaped event and deletes the messages the handler did not report as
failed. A handler that raises leaves the whole batch to reappear when its
visibility timeout ends.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, List, Optional

from chalice.local import LambdaContext

from chalicelib import logs
from chalicelib.local.sqs_event import build_event, failed_ids

Handler = Callable[[dict, Any], Any]


class Dispatcher:
    def __init__(self, source: Any, handler: Handler, function_name: str,
                 batch_size: int = 1, concurrency: int = 1, idle_poll_seconds: float = 1.0) -> None:
        self._source = source
        self._handler = handler
        self._function_name = function_name
        self.batch_size = batch_size
        self.concurrency = concurrency
        self._idle_poll = idle_poll_seconds
        self._stopping = threading.Event()
        self._threads: List[threading.Thread] = []

    def start(self) -> None:
        for number in range(self.concurrency):
            thread = threading.Thread(target=self._run, name=f"sqs-dispatch-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout)

    def _run(self) -> None:
        """One dispatching thread, until stop(). Nothing a batch raises ends it, not
        even what is not an Exception (SystemExit from code the handler runs): a
        thread that ended would leave its share of the queue undelivered, and
        Python ends a thread on SystemExit without a word. Ctrl-C is the main
        thread's, never this one's."""
        while not self._stopping.is_set():
            try:
                if not self.deliver_one_batch():
                    self._source.wait(self._idle_poll)
            except BaseException as exc:  # keep dispatching whatever one batch did
                logs.problem("dispatcher error; a batch it held is delivered again when its lease ends",
                             error=f"{type(exc).__name__}: {exc}", thread=threading.current_thread().name)
                self._stopping.wait(self._idle_poll)
        self._source.flush()

    def deliver_one_batch(self) -> int:
        """Receive and deliver one batch; how many messages it held."""
        batch = self._source.receive(self.batch_size)
        if not batch:
            return 0
        event = build_event(batch, self._source.arn)
        context = LambdaContext(self._function_name, memory_size=128,
                                max_runtime_ms=int(self._source.visibility_timeout * 1000))
        try:
            response: Optional[Any] = self._handler(event, context)
        except Exception as exc:
            logs.problem("handler raised; batch will be delivered again",
                         error=f"{type(exc).__name__}: {exc}", messages=len(batch))
            return len(batch)
        failed = failed_ids(response, batch)
        done = [message.receipt_handle for message in batch if message.message_id not in failed]
        if done:
            self._source.delete_many(done)
        return len(batch)

    def drain(self, timeout: float = 30.0) -> None:
        """Deliver batches in the calling thread until none is ready (tests, scripts)."""
        deadline = time.monotonic() + timeout
        while self.deliver_one_batch() and time.monotonic() < deadline:
            pass
        self._source.flush()
