"""Counts of tasks per status on DynamoDB, in O(1) reads, without a write per transition.

Each request or worker batch adds its net changes (+1 queued on a submit; -5
queued and +5 running for a batch of claims) with one UpdateItem on a counter
item for the current UTC day, one of SHARDS chosen at random so that no item
takes every write. A move is added to one item in one call, so however the
items are read, their sum is the number of tasks counted in, minus those
counted out.

Finished tasks expire after the retention; so do their counts: completed,
failed and cancelled are counted by the day the task finished, and a day
stops counting once it is `retention_days` old, when its first tasks expire.
Whatever later takes a task out of a final status (a delete, an operator's
retry) takes it out of that same day, whichever day's item the change is
written to (an attribute `<status>@<day>`), so that the two leave the window
together: a -1 booked on a later day than its +1 would outlive it and push the
total below what is stored. Queued and running are counted since the table began.

The scheduled function folds each day, once it has been over for a few minutes,
into one roll-up item, so a read takes the roll-up and today's counter items
(and yesterday's, in a day's first minutes): 1 + SHARDS items, whatever the
number of tasks.

The counts are approximate: a change is counted when its batch ends, after it
is stored, and a crash in between loses its count. The total never exceeds the
tasks counted in, which never exceeds the tasks stored.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Dict, Mapping, Optional, Union

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.store.dynamo_items import add_numbers, batch_get, failed, is_condition_failure
from chalicelib.tasks import FINAL, Status

SHARDS = 16
PREFIX = "counts#"
ROLLUP_ID = PREFIX + "rollup"
LIVE = tuple(status.value for status in Status if not status.is_final)  # counted since the start
WINDOWED = tuple(status.value for status in sorted(FINAL, key=lambda s: s.value))  # counted per day
FOLD_MARGIN = timedelta(minutes=5)
KEEP_DAYS_AFTER_RETENTION = 7  # counter items outlive their window by this much, for a late fold


DAY_MARK = "@"  # `completed@20261101`: a change to the day 2026-11-01's count of completed tasks


def _day(moment: datetime) -> date:
    return moment.astimezone(timezone.utc).date()


@dataclass(frozen=True)
class Booking:
    """Where one task is counted: its status and, for a final status, the UTC day it
    finished on (None: a status counted since the start)."""

    status: str
    day: Optional[date] = None

    def __str__(self) -> str:
        return self.status if self.day is None else f"{self.status}{DAY_MARK}{_day_key(self.day)}"


def booking(status: Status, finished_at: Optional[datetime]) -> Booking:
    """Where a task in `status`, finished at `finished_at` (if final), is counted."""
    if status.is_final and finished_at is not None:
        return Booking(status.value, _day(finished_at))
    return Booking(status.value)


@dataclass
class Tally:
    """Counter items added up: the statuses counted since the start, and the final
    ones by the day their tasks finished."""

    live: Counter = field(default_factory=Counter)
    finished: Dict[date, Counter] = field(default_factory=dict)

    def add_item(self, item: Mapping[str, dict], day: date) -> None:
        """Add a counter item written on `day`."""
        for name, value in item.items():
            status, _, booked = name.partition(DAY_MARK)
            if status in LIVE and not booked:
                self.live[status] += int(value["N"])
            elif status in WINDOWED:
                on = datetime.strptime(booked, "%Y%m%d").date() if booked else day
                self.finished.setdefault(on, Counter())[status] += int(value["N"])


def _day_key(day: date) -> str:
    return day.strftime("%Y%m%d")


def item_id(day: date, shard: int) -> str:
    return f"{PREFIX}{_day_key(day)}#{shard}"


def _number(item: dict, name: str) -> int:
    return int(item[name]["N"]) if name in item else 0


class StatusCounts:
    def __init__(self, client: Any, table: str, retention_days: float) -> None:
        self._client = client
        self._table = table
        self._retention_days = max(1, int(retention_days))

    def add(self, changes: Mapping[Union[Booking, str], int], now: datetime) -> None:
        """Add net changes {Booking (or a status value, counted today): n} to one of
        today's counter items, in one write."""
        today = _day(now)
        numbers: Counter = Counter()
        for booked, n in changes.items():
            booked = booked if isinstance(booked, Booking) else Booking(booked)
            numbers[booked.status if booked.day in (None, today) else str(booked)] += n
        numbers = Counter({name: n for name, n in numbers.items() if n})
        if numbers:
            expires = datetime.combine(today, datetime.min.time(), timezone.utc) + timedelta(
                days=self._retention_days + KEEP_DAYS_AFTER_RETENTION)
            add_numbers(self._client, self._table, item_id(today, random.randrange(SHARDS)), numbers,
                        int(expires.timestamp()))

    def _rollup(self) -> Optional[dict]:
        try:
            return self._client.get_item(TableName=self._table, Key={"id": {"S": ROLLUP_ID}},
                                         ConsistentRead=True).get("Item")
        except (BotoCoreError, ClientError) as exc:
            raise failed("GetItem", exc) from exc

    def _first_unfolded(self, rollup: Optional[dict], today: date) -> date:
        if rollup is not None:
            return date.fromordinal(_number(rollup, "through") + 1)
        return today - timedelta(days=self._retention_days + KEEP_DAYS_AFTER_RETENTION)

    def _tally(self, first: date, last: date) -> Tally:
        """The counter items written from day `first` to day `last`, added up."""
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        by_id = {item_id(day, shard): day for day in days for shard in range(SHARDS)}
        tally = Tally()
        for item in batch_get(self._client, self._table, by_id).values():
            tally.add_item(item, by_id[item["id"]["S"]])
        return tally

    def read(self, now: datetime) -> Dict[str, int]:
        """{status value: count} for the statuses that have any."""
        today = _day(now)
        rollup = self._rollup()
        counted = Counter()
        oldest_counted = today - timedelta(days=self._retention_days - 1)
        if rollup is not None:
            for status in LIVE:
                counted[status] += _number(rollup, status)
            for day, totals in _folded_days(rollup).items():
                if day >= oldest_counted:
                    counted.update(totals)
        tally = self._tally(self._first_unfolded(rollup, today), today)
        counted.update(tally.live)
        for day, totals in tally.finished.items():
            if day >= oldest_counted:
                counted.update(totals)
        return never_above_total(counted)

    def fold(self, now: datetime) -> int:
        """Fold the days that have been over for FOLD_MARGIN (for a batch that read
        the clock just before midnight) into the roll-up item; how many days it folded."""
        last = _day(now - FOLD_MARGIN) - timedelta(days=1)
        rollup = self._rollup()
        first = self._first_unfolded(rollup, _day(now))
        if first > last:
            return 0
        live = Counter({status: _number(rollup, status) for status in LIVE}) if rollup else Counter()
        kept = _folded_days(rollup) if rollup else {}
        oldest_kept = _day(now) - timedelta(days=self._retention_days)
        tally = self._tally(first, last)
        live.update(tally.live)
        for day, totals in tally.finished.items():  # a day folded before may gain a late change
            kept.setdefault(day, Counter()).update(totals)
        days = {_day_key(day): {"M": {status: {"N": str(totals[status])} for status in WINDOWED}}
                for day, totals in kept.items() if day >= oldest_kept and any(totals.values())}
        item = {"id": {"S": ROLLUP_ID}, "through": {"N": str(last.toordinal())}, "days": {"M": days},
                **{status: {"N": str(live[status])} for status in LIVE}}
        condition = ({"ConditionExpression": "#through = :before", "ExpressionAttributeNames": {"#through": "through"},
                      "ExpressionAttributeValues": {":before": rollup["through"]}}
                     if rollup else {"ConditionExpression": "attribute_not_exists(id)"})
        try:
            self._client.put_item(TableName=self._table, Item=item, **condition)
        except ClientError as exc:
            if is_condition_failure(exc):
                return 0  # another pass folded meanwhile
            raise failed("PutItem", exc) from exc
        except BotoCoreError as exc:
            raise failed("PutItem", exc) from exc
        return (last - first).days + 1


def _folded_days(rollup: dict) -> Dict[date, Counter]:
    """The roll-up's final statuses by the day their tasks finished."""
    return {datetime.strptime(key, "%Y%m%d").date():
            Counter({status: _number(totals["M"], status) for status in WINDOWED})
            for key, totals in rollup.get("days", {}).get("M", {}).items()}


def never_above_total(counted: Counter) -> Dict[str, int]:
    """Counts with no negative entry (items read at slightly different moments can
    show a move's second half before its first), lowered where needed so that
    their sum stays at the net number counted in."""
    total = max(0, sum(counted.values()))
    counts = {status: max(0, n) for status, n in counted.items()}
    excess = sum(counts.values()) - total
    for status in sorted(counts, key=counts.get, reverse=True):
        if excess <= 0:
            break
        taken = min(excess, counts[status])
        counts[status] -= taken
        excess -= taken
    return {status: n for status, n in counts.items() if n}
