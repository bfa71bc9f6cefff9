"""The two stacks a behaviour is tested on: SQLite with the embedded queue, and
DynamoDB with SQS under moto, each behind the API and with a way to run the worker."""
import json

import pytest

from chalicelib import factory
from chalicelib.local.runtime import build_dispatcher
from tests.conftest import post_task
from tests.sqs_events import lambda_event, receive_all


class Stack:
    """The API and a way to deliver what the queue holds now to the worker."""

    def __init__(self, client, app, sqs=None, url=None):
        self.client, self._app, self._sqs, self._url = client, app, sqs, url

    def deliver(self) -> int:
        """Run the worker on every message visible now; how many there were."""
        if self._sqs is None:
            dispatcher, delivered = build_dispatcher(self._app), 0
            while True:
                batch = dispatcher.deliver_one_batch()
                if not batch:
                    dispatcher.drain()  # commits the deletes it holds back
                    return delivered
                delivered += batch
        messages = receive_all(self._sqs, self._url, expected=10)
        if messages:
            event = lambda_event(self._sqs, self._url, messages)
            payload = self.client.lambda_.invoke("process_tasks", event).payload
            failed = {failure["itemIdentifier"] for failure in payload["batchItemFailures"]}
            for message in messages:  # as Lambda's event source mapping does
                if message["MessageId"] not in failed:
                    self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)

    def messages(self) -> int:
        """Messages in the queue, visible or held."""
        if self._sqs is None:
            return factory.queue(factory.current_settings()).depth()
        attributes = self._sqs.get_queue_attributes(QueueUrl=self._url, AttributeNames=["All"])["Attributes"]
        return sum(int(attributes[name]) for name in ("ApproximateNumberOfMessages",
                                                      "ApproximateNumberOfMessagesNotVisible",
                                                      "ApproximateNumberOfMessagesDelayed"))

    def submit(self, body, headers=None) -> dict:
        response = post_task(self.client, body, headers=headers)
        assert response.status_code == 202, response.body
        return self.task(json.loads(response.body)["id"])

    def task(self, task_id) -> dict:
        return json.loads(self.client.http.get(f"/tasks/{task_id}").body)


@pytest.fixture(params=["sqlite", "dynamodb"])
def stack(request, client, chalice_app):
    if request.param == "sqlite":
        return Stack(client, chalice_app)
    sqs, url = request.getfixturevalue("dynamodb_store")
    return Stack(client, chalice_app, sqs, url)


