"""Faults injected where the service meets its store and its queue.

A fault is armed by the machine and fires on a later matching call (after
`skip` others), once. Faults fire only while the service's own code runs (a
request, a worker batch, a recovery pass): the harness's receives, deletes and
checks never meet one.

- store_fails: the call fails before it is applied. SQLite: the statement raises
  "disk I/O error" and the open transaction is rolled back, as SQLite does for
  SQLITE_IOERR. DynamoDB: the request never reaches the table (a connection
  error, at botocore's before-send, ahead of moto), on this attempt and, with
  times=2, on botocore's retry too.
- store_loses_*: the call is applied and its answer is lost. DynamoDB: moto
  applies the request, then a read timeout is raised at before-send (after
  moto), so botocore's own retry runs and meets what the first attempt did.
  SQLite has no lost answers inside a transaction (the statement is rolled back
  with it); a statement committed on its own, or the submit's shared commit,
  commits and then reports an I/O error (a flush that failed after the commit).
- publish_*: the queue's send fails, is slow (virtual time passes), or is made twice.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import List, Optional

from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

from chalicelib.queue import PublishError

# Which DynamoDB operations each store op names.
DYNAMO_OPS = {
    "write": {"PutItem", "UpdateItem", "DeleteItem"},
    "read": {"GetItem", "Query", "BatchGetItem"},
    "insert": {"PutItem"},
    "update": {"UpdateItem"},
    "delete": {"DeleteItem"},
}


@dataclass
class Armed:
    kind: str  # store_fails, store_loses, publish_fails, publish_slow, publish_duplicates
    op: str = "write"  # for store faults: write, read, claim (a worker's claim), insert, update, delete
    skip: int = 0
    times: int = 1  # store_fails on DynamoDB: attempts it fails (2: botocore's retry too)
    seconds: float = 0.0  # publish_slow

    def describe(self) -> str:
        return f"{self.kind}({self.op})" if self.kind.startswith("store") else self.kind


@dataclass
class Faults:
    armed: List[Armed] = field(default_factory=list)
    live: bool = False
    fired: List[str] = field(default_factory=list)  # during the current operation
    clock: object = None
    # DynamoDB's counter items (counts#...) are spared store_fails unless this is False.
    spare_counts: bool = True
    _failing_retry: Optional[str] = None  # DynamoDB operation whose retry must fail too

    def take(self, kind: str, op: Optional[str] = None) -> Optional[Armed]:
        """The armed fault that fires on this call, if any."""
        if not self.live:
            return None
        for fault in self.armed:
            if fault.kind == kind and (op is None or fault.op == op):
                if fault.skip:
                    fault.skip -= 1
                    return None
                self.armed.remove(fault)
                self.fired.append(fault.describe())
                return fault
        return None

    def clear(self) -> None:
        self.armed.clear()
        self._failing_retry = None

    # -- SQLite ---------------------------------------------------------------

    def wrap_sqlite(self, db) -> None:
        faults = self
        statement, query, shared = db._statement, db.query, db.shared_transaction

        def open_conn():
            return getattr(db._local, "conn", None)

        def io_error(conn):
            if conn is not None and conn.in_transaction:
                conn.rollback()
            return sqlite3.OperationalError("disk I/O error (injected)")

        def faulty_statement(run):
            conn = open_conn()
            if faults.take("store_fails", "write"):
                raise io_error(conn)
            lost = faults.take_sqlite_lost()
            result = statement(run)
            if lost:
                raise io_error(conn)
            return result

        write_returning = db.write_returning

        def faulty_write_returning(sql, params=()):
            # A claim: the worker's batch of claims is one transaction, and this fails it.
            if params and params[0] == "running" and faults.take("store_fails", "claim"):
                raise io_error(open_conn())
            return write_returning(sql, params)

        def faulty_query(sql, params=()):
            if faults.take("store_fails", "read") or faults.take("store_loses", "read"):
                raise sqlite3.OperationalError("disk I/O error (injected)")
            return query(sql, params)

        def faulty_shared(work):
            if faults.take("store_fails", "write"):
                raise sqlite3.OperationalError("disk I/O error (injected)")
            result = shared(work)
            if faults.take("store_loses", "insert"):
                raise sqlite3.OperationalError("disk I/O error after the commit (injected)")
            return result

        db._statement, db.query, db.shared_transaction = faulty_statement, faulty_query, faulty_shared
        db.write_returning = faulty_write_returning

    def take_sqlite_lost(self) -> bool:
        return bool(self.take("store_loses", "update") or self.take("store_loses", "delete"))

    # -- DynamoDB -------------------------------------------------------------

    def hook_dynamodb(self, client) -> None:
        faults = self

        def operation(event_name: str) -> str:
            return event_name.rsplit(".", 1)[-1]

        def before_the_table(request, event_name, **kwargs):
            name = operation(event_name)
            if faults.spare_counts and (request_task_id(request) or "").startswith("counts#"):
                return
            if faults._failing_retry == name:
                faults._failing_retry = None
                raise EndpointConnectionError(endpoint_url=request.url)
            claim = name == "UpdateItem" and _sets_status(request, "running") and faults.take("store_fails", "claim")
            if claim:
                if claim.times > 1:
                    faults._failing_retry = name
                raise EndpointConnectionError(endpoint_url=request.url)
            for op, names in DYNAMO_OPS.items():
                if name in names and op in ("write", "read"):
                    fault = faults.take("store_fails", op)
                    if fault:
                        if fault.times > 1:
                            faults._failing_retry = name
                        raise EndpointConnectionError(endpoint_url=request.url)

        def after_the_table(request, event_name, **kwargs):
            name = operation(event_name)
            for op, names in DYNAMO_OPS.items():
                if name in names and op not in ("write",) and faults.take("store_loses", op):
                    raise ReadTimeoutError(endpoint_url=request.url)

        client.meta.events.register_first("before-send.dynamodb", before_the_table)
        client.meta.events.register_last("before-send", after_the_table)

    # -- the queue ------------------------------------------------------------

    def wrap_queue(self, queue) -> None:
        faults = self
        send = queue.send

        def faulty_send(body: str, delay_seconds: float = 0) -> str:
            slow = faults.take("publish_slow")
            if slow:
                faults.clock.jump(slow.seconds)
            if faults.take("publish_fails"):
                raise PublishError("the queue did not answer (injected)")
            message_id = send(body, delay_seconds)
            if faults.take("publish_duplicates"):
                send(body, delay_seconds)  # a send retried after its answer was lost
            return message_id

        queue.send = faulty_send


def _sets_status(request, status: str) -> bool:
    try:
        return json.loads(request.body)["ExpressionAttributeValues"][":to"]["S"] == status
    except (TypeError, ValueError, KeyError):
        return False


def request_task_id(request) -> Optional[str]:
    try:
        return json.loads(request.body)["Key"]["id"]["S"]
    except (TypeError, ValueError, KeyError):
        return None
