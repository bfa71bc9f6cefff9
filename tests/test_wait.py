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


def park(client, task_ids, seconds):
    """Start a ?wait read of each task in a thread of its own; the threads and their answers."""
    answers = {}

    def read(task_id):
        response = client.http.get(f"/tasks/{task_id}?wait={seconds}")
        answers[task_id] = (response.status_code, json.loads(response.body))

    threads = [threading.Thread(target=read, args=(task_id,)) for task_id in task_ids]
    for thread in threads:
        thread.start()
    return threads, answers


@pytest.fixture
def reads(monkeypatch):
    """How many times the SQLite store has read each task."""
    from collections import Counter

    from chalicelib.store.sqlite import SqliteTaskStore

    counted, real_get = Counter(), SqliteTaskStore.get

    def get(self, task_id):
        counted[task_id] += 1
        return real_get(self, task_id)

    monkeypatch.setattr(SqliteTaskStore, "get", get)
    return counted


def until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert predicate()


def test_an_outcome_wakes_only_the_reads_waiting_on_its_task(client, reads):
    parked = [json.loads(post_task(client, {"action": "sum", "delay_seconds": 3600}).body)["id"] for _ in range(20)]
    others = [json.loads(post_task(client, {"action": "sum", "delay_seconds": 3600}).body)["id"] for _ in range(10)]
    threads, answers = park(client, parked, 10)
    until(lambda: all(reads[task_id] >= 1 for task_id in parked))
    for task_id in others:  # ten outcomes of other tasks
        assert client.http.post(f"/tasks/{task_id}/cancel").status_code == 200
    time.sleep(0.2)
    assert {reads[task_id] for task_id in parked} == {1}  # none of them read its task again
    for task_id in parked:
        client.http.post(f"/tasks/{task_id}/cancel")
    for thread in threads:
        thread.join(5)
    assert {answer[1]["status"] for answer in answers.values()} == {"cancelled"} and len(answers) == 20
    # Each was read twice more: by its cancel, and by its waiting read once woken.
    assert {reads[task_id] for task_id in parked} == {3}


def test_a_read_past_the_waiting_bound_is_a_503_with_retry_after(client, reads, monkeypatch):
    monkeypatch.setenv("TASKS_MAX_WAITERS", "2")
    parked = [json.loads(post_task(client, {"action": "sum", "delay_seconds": 3600}).body)["id"] for _ in range(3)]
    threads, answers = park(client, parked[:2], 10)
    until(lambda: all(reads[task_id] >= 1 for task_id in parked[:2]))
    response, seconds = get_path(client, f"/tasks/{parked[2]}?wait=2")
    assert response.status_code == 503 and seconds < 0.5
    assert response.headers["Retry-After"] == "1"
    assert "TASKS_MAX_WAITERS" in json.loads(response.body)["error"]
    assert client.http.get(f"/tasks/{parked[2]}").status_code == 200  # a read that does not wait is served
    for task_id in parked[:2]:
        client.http.post(f"/tasks/{task_id}/cancel")
    for thread in threads:
        thread.join(5)
    assert [answers[task_id][0] for task_id in parked[:2]] == [200, 200]
    response, _ = get_path(client, f"/tasks/{parked[2]}?wait=0.1")  # their places are free again
    assert response.status_code == 200


def get_path(client, path):
    started = time.monotonic()
    response = client.http.get(path)
    return response, time.monotonic() - started
