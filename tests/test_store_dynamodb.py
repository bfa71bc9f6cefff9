import boto3
import pytest
from moto import mock_aws

from chalicelib.store.dynamodb import TABLE_SCHEMA, DynamoTaskStore
from chalicelib.tasks import Status, utcnow
from tests.store_contract import StoreContract, make_task


@pytest.fixture
def dynamodb():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(TableName="tasks", **TABLE_SCHEMA)
        yield client


@pytest.fixture
def store(dynamodb):
    return DynamoTaskStore(dynamodb, "tasks")


class TestDynamoStore(StoreContract):
    pass


def test_listing_never_scans(store, dynamodb, monkeypatch):
    for n in range(3):
        store.insert(make_task(offset_us=n))

    def no_scan(*args, **kwargs):
        raise AssertionError("Scan on a request path")

    monkeypatch.setattr(dynamodb, "scan", no_scan)
    assert len(store.list(limit=2).tasks) == 2


def test_listing_by_action_queries_its_index(store, dynamodb, monkeypatch):
    for n in range(3):
        store.insert(make_task("sum" if n else "uppercase", offset_us=n))
    indexes = []
    query = dynamodb.query

    def recording(**request):
        indexes.append(request["IndexName"])
        return query(**request)

    monkeypatch.setattr(dynamodb, "query", recording)
    monkeypatch.setattr(dynamodb, "scan", lambda **_: (_ for _ in ()).throw(AssertionError("Scan")))
    assert [task.action for task in store.list(action="sum").tasks] == ["sum", "sum"]
    assert [task.action for task in store.list(Status.QUEUED, action="uppercase").tasks] == ["uppercase"]
    assert set(indexes) == {"by_action"}


def test_a_final_task_expires_through_ttl_and_a_retried_one_no_longer_does(store, dynamodb):
    from datetime import timedelta

    from chalicelib.tasks import Status, utcnow

    task = make_task()
    store.insert(task)
    claimed = store.claim(task.id, utcnow())
    finished = utcnow()
    store.finish(task.id, claimed.attempts, Status.FAILED, finished, error="bad")

    def expiry():
        item = dynamodb.get_item(TableName="tasks", Key={"id": {"S": task.id}})["Item"]
        return int(item["expires_at"]["N"]) if "expires_at" in item else None

    assert expiry() == int((finished + timedelta(days=30)).timestamp())
    store.retry(store.get(task.id), utcnow())
    assert expiry() is None


def test_oldest_is_not_answered_for_a_status_no_index_holds(store):
    store.insert(make_task())
    assert store.oldest(Status.QUEUED) is None  # /stats then points to the queue's metric


def test_a_walk_for_a_common_status_stops_after_a_bounded_read_and_hands_a_cursor(store, monkeypatch):
    import chalicelib.store.dynamodb as dynamodb_module

    monkeypatch.setattr(dynamodb_module, "MAX_WALK", 4)
    tasks = [make_task(offset_us=n) for n in range(10)]
    for task in tasks:
        store.insert(task)
    running = tasks[0]  # the oldest: a walk from the newest reaches it last
    store.claim(running.id, utcnow())
    page = store.list(Status.RUNNING, limit=5)
    assert page.tasks == [] and page.next_cursor is not None
    seen = []
    while page.next_cursor is not None:
        page = store.list(Status.RUNNING, limit=5, cursor=page.next_cursor)
        seen += [task.id for task in page.tasks]
    assert seen == [running.id]


def test_listing_merges_the_shards_newest_first(store):
    from chalicelib.store.dynamodb import SHARDS, shard_of

    tasks = [make_task(offset_us=n) for n in range(40)]
    assert len({shard_of(task.id) for task in tasks}) > SHARDS // 2
    for task in tasks:
        store.insert(task)
    newest_first = [task.id for task in reversed(tasks)]
    pages, cursor = [], None
    while True:
        page = store.list(limit=7, cursor=cursor)
        pages += [task.id for task in page.tasks]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == newest_first


def test_counts_read_the_same_items_at_any_number_of_tasks(store, dynamodb):
    from chalicelib.store import dynamo_counts

    calls = []
    real = dynamodb.batch_get_item

    def recorded(**request):
        calls.append(sum(len(table["Keys"]) for table in request["RequestItems"].values()))
        return real(**request)

    for n in range(5):
        store.insert(make_task(offset_us=n))
    now = utcnow().replace(hour=12)  # past the margin after midnight
    store.fold_counts(now)
    dynamodb.batch_get_item = recorded
    assert store._counts.read(now) == {"queued": 5}
    assert sum(calls) == dynamo_counts.SHARDS  # today's items, beside the roll-up


def test_counts_never_exceed_the_net_number_counted_in():
    from collections import Counter

    from chalicelib.store.dynamo_counts import never_above_total

    # Read mid-move: a claim's -1 queued seen, the submit's +1 not yet.
    assert never_above_total(Counter(queued=-1, running=1)) == {}
    assert never_above_total(Counter(queued=-1, running=2, completed=3)) == {"running": 2, "completed": 2}


def test_a_batch_adds_its_counts_in_one_write(store, dynamodb):
    tasks = [make_task(offset_us=n) for n in range(5)]
    for task in tasks:
        store.insert(task)
    counter_writes = []
    real = dynamodb.update_item

    def recorded(**request):
        if request["Key"]["id"]["S"].startswith("counts#"):
            counter_writes.append(request)
        return real(**request)

    dynamodb.update_item = recorded
    with store.batch():
        for task in tasks:
            store.claim(task.id, utcnow())
    assert len(counter_writes) == 1
    assert store.count_by_status() == {"running": 5}


def test_a_count_that_cannot_be_added_does_not_fail_the_stored_change(store, monkeypatch):
    from chalicelib.store import StoreError

    def unavailable(*args):
        raise StoreError("throttled")

    monkeypatch.setattr(store._counts, "add", unavailable)
    task = make_task()
    store.insert(task)
    assert store.get(task.id).status is Status.QUEUED


def test_folded_days_keep_queued_and_running_and_drop_finished_counts_past_retention(dynamodb):
    from collections import Counter
    from datetime import datetime, timedelta, timezone

    from chalicelib.store.dynamo_counts import StatusCounts

    counts = StatusCounts(dynamodb, "tasks", retention_days=3)
    day = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)
    counts.add(Counter(queued=5), day)
    counts.add(Counter(queued=-3, running=3), day)
    counts.add(Counter(running=-2, completed=2), day)
    assert counts.read(day) == {"queued": 2, "running": 1, "completed": 2}
    next_day = day + timedelta(days=1)
    assert counts.fold(next_day) > 0 and counts.fold(next_day) == 0  # folded once
    counts.add(Counter(running=-1, failed=1), next_day)
    assert counts.read(next_day) == {"queued": 2, "completed": 2, "failed": 1}
    # The first day's finished tasks expire three days on; the queued ones stay counted.
    later = day + timedelta(days=3)
    counts.fold(later)
    assert counts.read(later) == {"queued": 2, "failed": 1}
    assert counts.read(later + timedelta(days=1)) == {"queued": 2}


def test_a_finished_task_leaves_the_counts_from_the_day_it_was_counted_on(dynamodb):
    """Deleted or retried a day or more after it finished, a task's -1 goes with its
    +1 out of the window: the total never dips below the tasks stored."""
    from datetime import datetime, timedelta, timezone

    from chalicelib.tasks import Task

    # Today at noon: reads hide an item past its expiry by the real clock.
    clock = [datetime.now(timezone.utc).replace(hour=12, minute=0, second=0, microsecond=0)]
    store = DynamoTaskStore(dynamodb, "tasks", retention=timedelta(days=3), clock=lambda: clock[0])
    day0 = clock[0]
    for _ in range(3):
        store.insert(Task.new("sum", {}, now=day0))
    done, broken, late = (Task.new("sum", {}, now=day0) for _ in range(3))
    for task in (done, broken, late):
        store.insert(task)
        store.claim(task.id, day0)
    store.finish(done.id, 1, Status.COMPLETED, day0)
    store.finish(broken.id, 1, Status.FAILED, day0, error="bad")
    clock[0] = day0.replace(hour=23, minute=59, second=59) + timedelta(seconds=2)  # the batch ends after midnight
    store.finish(late.id, 1, Status.COMPLETED, day0.replace(hour=23, minute=59, second=59))
    clock[0] = day0 + timedelta(days=1)
    store.delete(done.id)
    retried = store.retry(store.get(broken.id), clock[0])
    store.finish(broken.id, store.claim(broken.id, clock[0]).attempts, Status.COMPLETED, clock[0])
    assert retried is not None
    clock[0] = day0 + timedelta(days=2)
    store.delete(late.id)
    for days in range(2, 8):
        clock[0] = day0 + timedelta(days=days)
        # The retried task completed on day 1, which leaves the 3-day window on day 4.
        expected = {"queued": 3, "completed": 1} if days < 4 else {"queued": 3}
        assert store.count_by_status() == expected, days
        store.fold_counts(clock[0])
        assert store.count_by_status() == expected, days
