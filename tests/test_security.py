"""Security basics that no other test pins down."""
import importlib.util
import json

import pytest

from chalicelib.queue import PublishError
from tests.conftest import PROJECT_DIR, post_task


def test_local_server_listens_on_loopback_only():
    spec = importlib.util.spec_from_file_location("dev", PROJECT_DIR / "dev.py")
    dev = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dev)
    command = dev.serve_command("8080", [])
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert "--no-autoreload" in command


def test_queued_message_names_only_the_task(client):
    from chalicelib import factory

    big = {"action": "uppercase", "data": {"text": "x" * 200_000}}
    assert post_task(client, big).status_code == 202
    [message] = factory.queue(factory.current_settings()).receive(1)
    assert len(message.body) < 100 and set(json.loads(message.body)) == {"task_id"}


def test_embedded_queue_refuses_messages_over_256_kib(client):
    from chalicelib import factory

    with pytest.raises(PublishError):
        factory.queue(factory.current_settings()).send("x" * (256 * 1024 + 1))


@pytest.mark.parametrize("path", [
    "/tasks?status=' OR 1=1 --",
    "/tasks?limit=1;DROP TABLE tasks",
    "/tasks?cursor=1_' OR '1'='1",
    "/tasks/1' OR '1'='1",
])
def test_injection_attempts_are_rejected_and_change_nothing(client, path):
    post_task(client, {"action": "sum"})
    response = client.http.get(path)
    assert response.status_code in (400, 404)
    assert json.loads(client.http.get("/tasks").body)["count"] == 1
