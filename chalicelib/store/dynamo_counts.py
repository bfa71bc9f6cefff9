"""Counts of tasks per status on DynamoDB, in O(1) reads, without a write per transition.

Each request or worker batch adds its net changes (+1 queued on a submit; -5
queued and +5 running for a batch of claims) with one UpdateItem on a counter
item for the current UTC day, one of SHARDS chosen at random so that no item
takes every write. A move is added to one item in one call, so however the
items are read, their sum is the number of tasks counted in, minus those
counted out.

Finished tasks expire after the retention; so do their counts: completed,
failed and cancelled are counted by the day they were recorded, and a day
stops counting once it is `retention_days` old, when its first tasks expire.
Queued and running are counted since the table began.

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
from datetime import date, datetime, timedelta, timezone
from typing import Any, Dict, Optional

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


def _day(moment: datetime) -> date:
    return moment.astimezone(timezone.utc).date()


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

    def add(self, changes: Counter, now: datetime) -> None:
        """Add net changes {status value: n} to one of today's counter items."""
        changes = {status: n for status, n in changes.items() if n}
        if changes:
            expires = datetime.combine(_day(now), datetime.min.time(), timezone.utc) + timedelta(
                days=self._retention_days + KEEP_DAYS_AFTER_RETENTION)
            add_numbers(self._client, self._table, item_id(_day(now), random.randrange(SHARDS)), changes,
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

    def _days(self, first: date, last: date) -> Dict[date, Counter]:
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        totals: Dict[date, Counter] = {day: Counter() for day in days}
        by_id = {item_id(day, shard): day for day in days for shard in range(SHARDS)}
        for item in batch_get(self._client, self._table, by_id).values():
            day = by_id[item["id"]["S"]]
            for status in LIVE + WINDOWED:
                totals[day][status] += _number(item, status)
        return totals

    def read(self, now: datetime) -> Dict[str, int]:
        """{status value: count} for the statuses that have any."""
        today = _day(now)
        rollup = self._rollup()
        counted = Counter()
        oldest_counted = today - timedelta(days=self._retention_days - 1)
        if rollup is not None:
            for status in LIVE:
                counted[status] += _number(rollup, status)
            for key, totals in rollup.get("days", {}).get("M", {}).items():
                if datetime.strptime(key, "%Y%m%d").date() >= oldest_counted:
                    for status in WINDOWED:
                        counted[status] += _number(totals["M"], status)
        for day, totals in self._days(self._first_unfolded(rollup, today), today).items():
            for status in LIVE:
                counted[status] += totals[status]
            if day >= oldest_counted:
                for status in WINDOWED:
                    counted[status] += totals[status]
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
        kept = dict(rollup.get("days", {}).get("M", {})) if rollup else {}
        oldest_kept = _day(now) - timedelta(days=self._retention_days)
        for day, totals in self._days(first, last).items():
            for status in LIVE:
                live[status] += totals[status]
            if any(totals[status] for status in WINDOWED):
                kept[_day_key(day)] = {"M": {status: {"N": str(totals[status])} for status in WINDOWED}}
        kept = {key: value for key, value in kept.items()
                if datetime.strptime(key, "%Y%m%d").date() >= oldest_kept}
        item = {"id": {"S": ROLLUP_ID}, "through": {"N": str(last.toordinal())}, "days": {"M": kept},
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
