"""Cost per million tasks on AWS, from handler durations measured here (the cloud
configuration against moto, in process), the AWS requests each task makes, and
the DynamoDB write units bench/capacity.py measures for a task."""
from __future__ import annotations

import collections
import json
import os
import time

from bench.common import local_environment, median

# us-east-1 on-demand list prices as published by AWS in 2025 (REST API Gateway,
# Lambda x86, SQS standard, DynamoDB on-demand after the November 2024 cut).
PRICES = {
    "date": "2025 list prices, us-east-1",
    "api_gateway_per_million": 3.50,
    "lambda_per_million_requests": 0.20,
    "lambda_per_gb_second": 0.0000166667,
    "sqs_per_million_requests": 0.40,
    "dynamodb_per_million_write_units": 0.625,
    "dynamodb_per_million_read_units": 0.125,
}
LAMBDA_MEMORY_GB = 128 / 1024
def measure(tasks: int = 200, write_units_per_task: float = None) -> dict:
    import boto3
    from chalice.test import Client
    from moto import mock_aws

    from app import app
    from chalicelib import factory
    from chalicelib.store.dynamodb import TABLE_SCHEMA

    with local_environment(), mock_aws():
        os.environ.update(AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x")
        boto3.setup_default_session(region_name="us-east-1")
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="tasks")["QueueUrl"]
        dlq_url = sqs.create_queue(QueueName="tasks-dlq")["QueueUrl"]
        boto3.client("dynamodb").create_table(TableName="tasks", **TABLE_SCHEMA)
        os.environ.update(TASKS_STORE="dynamodb", TASKS_QUEUE="sqs", TASKS_QUEUE_URL=url, TASKS_DLQ_URL=dlq_url,
                          TASKS_TABLE_NAME="tasks")
        factory.reset()
        calls = collections.Counter()
        boto3.DEFAULT_SESSION.events.register(
            "before-call", lambda model, **_: calls.update([f"{model.service_model.endpoint_prefix}:{model.name}"]))
        body = json.dumps({"action": "uppercase", "data": {"text": "hello world"}})
        api_ms, worker_ms = [], []
        with Client(app) as client:
            client.http.post("/tasks", body=body, headers={"Content-Type": "application/json"})
            sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
            calls.clear()
            for _ in range(tasks):
                started = time.perf_counter()
                assert client.http.post("/tasks", body=body,
                                        headers={"Content-Type": "application/json"}).status_code == 202
                api_ms.append((time.perf_counter() - started) * 1000)
            api_calls = dict(calls)
            worker_calls = collections.Counter()
            handled = 0
            while handled < tasks:
                messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=5,
                                               AttributeNames=["All"]).get("Messages", [])
                if not messages:
                    break
                event = {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"],
                                      "body": m["Body"], "attributes": m["Attributes"], "messageAttributes": {},
                                      "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs",
                                      "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:tasks",
                                      "awsRegion": "us-east-1"} for m in messages]}
                calls.clear()
                started = time.perf_counter()
                client.lambda_.invoke("process_tasks", event)
                worker_ms.append((time.perf_counter() - started) * 1000)
                handled += len(messages)
                worker_calls.update(calls)
    measured = {
        "api_handler_ms": median(api_ms),
        "worker_batch_ms": median(worker_ms),
        "worker_batch_size": 5,
        "api_calls_per_task": {k: v / tasks for k, v in sorted(api_calls.items())},
        "worker_calls_per_task": {k: v / handled for k, v in sorted(worker_calls.items())},
    }
    return {**measured, **per_million(measured, write_units_per_task)}


def per_million(measured: dict, write_units_per_task: float, work_ms_per_task: float = 100.0) -> dict:
    """Dollars per million tasks: each task is one POST; the worker runs batches of 5
    with the seed's 100 ms of simulated work per task on top of the measured time."""
    million = 1_000_000
    batches = million / measured["worker_batch_size"]
    api_gb_s = million * measured["api_handler_ms"] / 1000 * LAMBDA_MEMORY_GB
    worker_s = measured["worker_batch_ms"] / 1000 + measured["worker_batch_size"] * work_ms_per_task / 1000
    worker_gb_s = batches * worker_s * LAMBDA_MEMORY_GB
    # The worker's receives and deletes are made by Lambda's poller: one each per batch.
    sqs_requests = million * measured["api_calls_per_task"].get("sqs:SendMessage", 0) + 2 * batches
    write_units = million * write_units_per_task
    costs = {
        "api_gateway": million / 1e6 * PRICES["api_gateway_per_million"],
        "lambda_api": million / 1e6 * PRICES["lambda_per_million_requests"] + api_gb_s * PRICES["lambda_per_gb_second"],
        "lambda_worker": batches / 1e6 * PRICES["lambda_per_million_requests"]
        + worker_gb_s * PRICES["lambda_per_gb_second"],
        "sqs": sqs_requests / 1e6 * PRICES["sqs_per_million_requests"],
        "dynamodb": write_units / 1e6 * PRICES["dynamodb_per_million_write_units"],
    }
    costs["total"] = sum(costs.values())
    return {"cost_per_million_tasks_usd": {k: round(v, 2) for k, v in costs.items()}, "prices": PRICES}
