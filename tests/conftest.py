import json
import os
import urllib.request
from pathlib import Path

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws

from chalicelib import factory

PROJECT_DIR = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path, monkeypatch):
    """Every test gets its own database files, no simulated work and no AWS credentials."""
    for name in list(os.environ):
        if name.startswith("TASKS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TASKS_DB_PATH", str(tmp_path / "tasks.db"))
    monkeypatch.setenv("TASKS_WORK_DELAY_MS", "0")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    # boto3's default session outlives a test that set it up (with its own region and
    # event hooks); each test starts without one.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    factory.reset()
    yield
    factory.reset()


@pytest.fixture
def chalice_app():
    from app import app
    return app


@pytest.fixture
def client(chalice_app):
    with Client(chalice_app, project_dir=str(PROJECT_DIR)) as test_client:
        yield test_client


@pytest.fixture
def sqs_queue(monkeypatch):
    """A moto SQS queue configured as the tasks queue, with its dead-letter queue;
    yields the boto3 client and the tasks queue's URL."""
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="tasks")["QueueUrl"]
        monkeypatch.setenv("TASKS_QUEUE", "sqs")
        monkeypatch.setenv("TASKS_QUEUE_URL", url)
        monkeypatch.setenv("TASKS_DLQ_URL", sqs.create_queue(QueueName="tasks-dlq")["QueueUrl"])
        factory.reset()
        yield sqs, url


@pytest.fixture
def dynamodb_store(sqs_queue, monkeypatch):
    """With sqs_queue: a moto DynamoDB table configured as the task store, as in the cloud stage."""
    from chalicelib.store.dynamodb import TABLE_SCHEMA

    boto3.client("dynamodb", region_name="us-east-1").create_table(TableName="tasks", **TABLE_SCHEMA)
    monkeypatch.setenv("TASKS_STORE", "dynamodb")
    monkeypatch.setenv("TASKS_TABLE_NAME", "tasks")
    factory.reset()
    return sqs_queue


@pytest.fixture
def moto_server(monkeypatch):
    """moto as a real server on loopback (a long poll really waits; subprocesses can
    reach it); AWS_ENDPOINT_URL points boto3 at it. Yields its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # moto's servers in one process share its state: start from an empty account.
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    factory.reset()
    yield endpoint
    server.stop()


@pytest.fixture
def emulated_stack(moto_server):
    """The stack's queue, dead-letter queue and table on moto's server, named as
    `dev.py deploy` prints them: the variables its export lines set."""
    from chalicelib.store.dynamodb import TABLE_SCHEMA

    sqs = boto3.client("sqs", endpoint_url=moto_server, region_name="us-east-1")
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_server, region_name="us-east-1")
    dynamodb.create_table(TableName="task-queue-prod-TasksTable", **TABLE_SCHEMA)
    return {
        "AWS_ENDPOINT_URL": moto_server, "AWS_DEFAULT_REGION": "us-east-1",
        "TASKS_QUEUE_URL": sqs.create_queue(QueueName="task-queue-prod-TasksQueue")["QueueUrl"],
        "TASKS_DLQ_URL": sqs.create_queue(QueueName="task-queue-prod-TasksDeadLetterQueue")["QueueUrl"],
        "TASKS_TABLE_NAME": "task-queue-prod-TasksTable",
    }


@pytest.fixture
def cloud_like(client, dynamodb_store):
    """The test client on DynamoDB and SQS under moto; yields it, the SQS client and the queue URL."""
    sqs, url = dynamodb_store
    return client, sqs, url


def post_empty(client, path, content_type="application/json"):
    """POST an operation that takes no input, as the dashboard does: `{}` as JSON."""
    return client.http.post(path, body="{}", headers={"Content-Type": content_type})


def post_task(client, body, content_type="application/json", headers=None):
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.http.post(
        "/tasks", body=raw, headers={"Content-Type": content_type, **(headers or {})}
    )


def declare_action(monkeypatch, name, function, **limits):
    """Declare an action for one test, as `@action(name, **limits)` would."""
    from chalicelib import actions

    monkeypatch.setitem(actions.ACTIONS, name, actions.Action(name, function, **limits))


def task_of(client, task_id):
    """GET /tasks/{id}, as JSON."""
    return json.loads(client.http.get(f"/tasks/{task_id}").body)


def submit(client, body):
    """POST /tasks, which must be accepted; the new task's id."""
    response = post_task(client, body)
    assert response.status_code == 202, response.body
    return json.loads(response.body)["id"]
