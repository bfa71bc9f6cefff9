"""GET /tasks/{id}?wait=N on both stacks: answered when the task is final, or after N seconds."""
import json
import threading
import time

import pytest

from chalicelib import factory
from tests.conftest import post_task
from tests.stacks import stack  # noqa: F401 (a fixture)


def get(stack, path):
    started = time.monotonic()
    response = stack.client.http.get(path)
    return response, time.monotonic() - started


def test_wait_answers_as_soon_as_the_task_completes(stack):
    task = stack.submit({"action": "uppercase", "data": {"text": "soon"}})
    done_at = {}

    def work_in_a_second():
        time.sleep(1.0)
        stack.deliver()
        done_at["t"] = time.monotonic()

    worker = threading.Thread(target=work_in_a_second)
    worker.start()
    response, _ = get(stack, f"/tasks/{task['id']}?wait=10")
    answered = time.monotonic()
    worker.join()
    body = json.loads(response.body)
    assert response.status_code == 200 and body["status"] == "completed" and body["result"] == {"output": "SOON"}
    # SQLite wakes on the worker's commit; DynamoDB is polled at most a second apart.
    assert answered - done_at["t"] < (0.3 if factory.current_settings().store == "sqlite" else 1.2)


def test_wait_answers_with_the_current_state_when_the_time_is_up(stack):
    task = stack.submit({"action": "sum"})
    response, seconds = get(stack, f"/tasks/{task['id']}?wait=1.5")
    assert response.status_code == 200 and json.loads(response.body)["status"] == "queued"
    assert 1.4 <= seconds < 3


def test_wait_on_a_final_task_answers_at_once(stack):
    task = stack.submit({"action": "sum", "data": {"numbers": [1]}})
    stack.deliver()
    response, seconds = get(stack, f"/tasks/{task['id']}?wait=20")
    assert json.loads(response.body)["status"] == "completed" and seconds < 0.5


def test_wait_on_an_unknown_task_is_a_404_at_once(stack):
    response, seconds = get(stack, "/tasks/00000000-0000-4000-8000-000000000000?wait=20")
    assert response.status_code == 404 and seconds < 0.5


@pytest.mark.parametrize("value", ["-1", "21", "ten", "nan", "inf", ""])
def test_a_bad_wait_is_a_400(client, value):
    task_id = json.loads(post_task(client, {"action": "sum"}).body)["id"]
    response = client.http.get(f"/tasks/{task_id}?wait={value}")
    assert response.status_code == 400
    assert "wait must be a number of seconds from 0 to 20" in json.loads(response.body)["detail"]
