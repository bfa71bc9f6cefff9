import boto3
import pytest
from moto import mock_aws

from chalicelib.store.dynamodb import TABLE_SCHEMA, DynamoTaskStore
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
