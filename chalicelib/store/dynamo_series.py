"""Per-minute figures of finished tasks on DynamoDB (see chalicelib/series.py).

A worker batch adds its figures with one UpdateItem per minute, to one of SHARDS
items for that minute (`series#<minute>#<shard>`), so that no one item takes every
batch of a minute; attributes are `<action>~<key>`. Items expire after
series.KEEP_MINUTES. A window of N minutes reads N x SHARDS items.
"""
from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Optional

from chalicelib import series
from chalicelib.store.dynamo_items import add_numbers, batch_get

PREFIX = "series#"
SHARDS = 4


class MinuteRecords:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def add(self, records: series.Records) -> None:
        by_minute: dict = {}
        for (minute, action), figures in records.items():
            for key, count in figures.items():
                by_minute.setdefault(minute, Counter())[f"{action}~{key}"] += count
        for minute, figures in by_minute.items():
            add_numbers(self._client, self._table, f"{PREFIX}{minute}#{random.randrange(SHARDS)}", figures,
                        expires_at=(minute + series.KEEP_MINUTES) * 60)

    def read(self, since_minute: int, action: Optional[str] = None) -> series.Records:
        now = series.minute_of(datetime.now(timezone.utc))
        ids = [f"{PREFIX}{minute}#{shard}" for minute in range(since_minute, now + 1) for shard in range(SHARDS)]
        records: series.Records = {}
        for item in batch_get(self._client, self._table, ids).values():
            minute = int(item["id"]["S"].split("#")[1])
            for name, value in item.items():
                if "~" in name:
                    owner, key = name.rsplit("~", 1)
                    if action is None or owner == action:
                        records.setdefault((minute, owner), Counter())[key] += int(value["N"])
        return records
