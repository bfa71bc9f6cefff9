"""The HTTP API through chalice.test.Client, with the embedded queue."""
import json
import uuid

import pytest

from chalicelib import factory
from chalicelib.local.runtime import build_dispatcher
from chalicelib.validation import NewTask
from tests.conftest import post_task


def drain(app):
    build_dispatcher(app).drain()


def queued_messages():
    return factory.queue(factory.current_settings()).depth()


def stored_tasks(client):
    return json.loads(client.http.get("/tasks?limit=1000").body)["tasks"]


def test_post_accepts_task_and_answers_202_with_location(client):
    response = post_task(client, {"action": "uppercase", "data": {"text": "hello world"}})
    assert response.status_code == 202
    body = json.loads(response.body)
    assert body["status"] == "queued"
    assert uuid.UUID(body["id"]).version == 4
    assert response.headers["Location"] == f"/tasks/{body['id']}"
    assert queued_messages() == 1


def test_seed_scenario_uppercase_and_sum_complete(client, chalice_app):
    upper = json.loads(post_task(client, {"action": "uppercase", "data": {"text": "hello world"}}).body)
    total = json.loads(post_task(client, {"action": "sum", "data": {"numbers": [1, 2, 3.5]}}).body)
    other = json.loads(post_task(client, {"action": "resize"}).body)
    drain(chalice_app)
    results = {t["id"]: t for t in stored_tasks(client)}
    assert results[upper["id"]]["result"] == {"output": "HELLO WORLD"}
    assert results[total["id"]]["result"] == {"output": 6.5}
    assert results[other["id"]]["result"] == {"output": "processed"}
    assert all(t["status"] == "completed" and t["attempts"] == 1 for t in results.values())
    assert queued_messages() == 0


def test_missing_inputs_default_like_the_seed(client, chalice_app):
    upper = json.loads(post_task(client, {"action": "uppercase"}).body)["id"]
    total = json.loads(post_task(client, {"action": "sum", "data": {}}).body)["id"]
    drain(chalice_app)
    assert json.loads(client.http.get(f"/tasks/{upper}").body)["result"] == {"output": ""}
    assert json.loads(client.http.get(f"/tasks/{total}").body)["result"] == {"output": 0}


@pytest.mark.parametrize("action, data, pointer, message", [
    ("sum", {"numbers": [1, "two"]}, "/data/numbers/1", "must be number"),
    ("sum", {"numbers": "12"}, "/data/numbers", "must be array"),
    ("sum", {"numbers": [True]}, "/data/numbers/0", "must be number"),
    ("uppercase", {"text": 5}, "/data/text", "must be string"),
])
def test_data_its_action_cannot_use_is_a_400_naming_the_field(client, action, data, pointer, message):
    response = post_task(client, {"action": action, "data": data})
    assert response.status_code == 400
    problem = json.loads(response.body)
    assert problem["pointer"] == pointer
    assert message in problem["detail"] and pointer in problem["detail"] and "GET /actions" in problem["detail"]
    assert stored_tasks(client) == [] and queued_messages() == 0


def test_sum_that_overflows_fails_the_task_once(client, chalice_app):
    task_id = json.loads(post_task(client, {"action": "sum", "data": {"numbers": [1e308, 1e308]}}).body)["id"]
    drain(chalice_app)
    task = json.loads(client.http.get(f"/tasks/{task_id}").body)
    assert task["status"] == "failed" and "too large" in task["error"]
    assert task["result"] is None and task["attempts"] == 1
    assert queued_messages() == 0


def test_task_fields_are_json_values_and_rfc3339_times(client, chalice_app):
    accepted = post_task(client, {"action": "sum", "data": {"numbers": [2, 3]}})
    task_id = json.loads(accepted.body)["id"]
    drain(chalice_app)
    task = json.loads(client.http.get(f"/tasks/{task_id}").body)
    assert set(task) == {"id", "action", "data", "status", "result", "error", "attempts",
                         "created_at", "started_at", "finished_at", "request_id", "run_at"}
    assert task["request_id"] == accepted.headers["X-Request-Id"]
    assert task["data"] == {"numbers": [2, 3]}
    for name in ("created_at", "started_at", "finished_at"):
        assert task[name].endswith("Z") and "." in task[name]
    assert task["created_at"] <= task["started_at"] <= task["finished_at"]


BAD_BODIES = [
    (b"{not json", "application/json", 400, "invalid JSON"),
    (b"", "application/json", 400, "invalid JSON"),
    (b"[1, 2]", "application/json", 400, "action required"),
    (b'"uppercase"', "application/json", 400, "action required"),
    (b'{"data": {}}', "application/json", 400, "action required"),
    (b'{"action": ""}', "application/json", 400, "action required"),
    (b'{"action": "   "}', "application/json", 400, "action required"),
    (b'{"action": 7}', "application/json", 400, "action required"),
    (b'{"action": "sum", "data": [1, 2]}', "application/json", 400, "data must be a JSON object"),
    (b'{"action": "sum", "data": "x"}', "application/json", 400, "data must be a JSON object"),
    (b'{"action": "sum", "data": {"n": NaN}}', "application/json", 400, "invalid JSON"),
    (b'{"action": "sum", "data": {"n": 1e999}}', "application/json", 400, "invalid JSON"),
    (b'[' * 100_000, "application/json", 400, "invalid JSON"),
    (b'{"action": "sum"}', "text/plain", 415, "Content-Type: application/json"),
    (b"action=sum", "application/x-www-form-urlencoded", 415, "application/json"),
]


@pytest.mark.parametrize("raw, content_type, status, message", BAD_BODIES)
def test_bad_input_is_rejected_and_nothing_is_stored_or_published(client, raw, content_type, status, message):
    response = post_task(client, raw, content_type=content_type)
    assert response.status_code == status
    problem = json.loads(response.body)
    assert message in problem["error"]
    assert problem["status"] == status and problem["detail"] == problem["error"]
    assert response.headers["Content-Type"] == "application/problem+json"
    assert stored_tasks(client) == []
    assert queued_messages() == 0


def test_body_over_the_limit_is_413(client, monkeypatch):
    monkeypatch.setenv("TASKS_MAX_BODY_BYTES", "1024")
    response = post_task(client, {"action": "uppercase", "data": {"text": "x" * 2000}})
    assert response.status_code == 413
    assert "limit is 1024 bytes" in json.loads(response.body)["error"]
    assert stored_tasks(client) == [] and queued_messages() == 0


def test_default_body_limit_is_256_kib(client):
    fits = {"action": "uppercase", "data": {"text": "x" * (256 * 1024 - 100)}}
    assert post_task(client, fits).status_code == 202
    too_big = {"action": "uppercase", "data": {"text": "x" * (256 * 1024)}}
    assert post_task(client, too_big).status_code == 413


def test_publish_failure_is_503_and_leaves_no_task(client, monkeypatch):
    from chalicelib.queue import PublishError
    from chalicelib.queue.embedded import EmbeddedQueue

    def refuse(self, body):
        raise PublishError("queue down")

    monkeypatch.setattr(EmbeddedQueue, "send", refuse)
    response = post_task(client, {"action": "uppercase", "data": {"text": "x"}})
    assert response.status_code == 503
    assert "queue is unavailable" in json.loads(response.body)["error"]
    assert stored_tasks(client) == []


def test_get_task_by_id_and_404s(client):
    task_id = json.loads(post_task(client, {"action": "sum"}).body)["id"]
    found = client.http.get(f"/tasks/{task_id}")
    assert found.status_code == 200 and json.loads(found.body)["id"] == task_id
    for unknown in (str(uuid.uuid4()), "not-a-uuid", task_id.upper().replace("-", "")):
        response = client.http.get(f"/tasks/{unknown}")
        assert response.status_code == 404
        assert "no task with id" in json.loads(response.body)["error"]


def test_list_is_newest_first_with_status_filter(client, chalice_app):
    first = json.loads(post_task(client, {"action": "sum"}).body)["id"]
    drain(chalice_app)
    second = json.loads(post_task(client, {"action": "uppercase"}).body)["id"]
    listing = json.loads(client.http.get("/tasks").body)
    assert [t["id"] for t in listing["tasks"]] == [second, first]
    assert listing["count"] == 2 and listing["next_cursor"] is None
    completed = json.loads(client.http.get("/tasks?status=completed").body)
    assert [t["id"] for t in completed["tasks"]] == [first]
    queued = json.loads(client.http.get("/tasks?status=queued").body)
    assert [t["id"] for t in queued["tasks"]] == [second]


def test_list_filters_by_action_alone_and_with_status(client, chalice_app):
    first = json.loads(post_task(client, {"action": "sum"}).body)["id"]
    drain(chalice_app)
    second = json.loads(post_task(client, {"action": "sum"}).body)["id"]
    post_task(client, {"action": "uppercase"})
    assert [t["id"] for t in json.loads(client.http.get("/tasks?action=sum").body)["tasks"]] == [second, first]
    both = json.loads(client.http.get("/tasks?action=sum&status=completed").body)["tasks"]
    assert [t["id"] for t in both] == [first]
    assert json.loads(client.http.get("/tasks?action=resize").body)["tasks"] == []
    blank = client.http.get("/tasks?action=%20")
    assert blank.status_code == 400 and "action must be" in json.loads(blank.body)["detail"]


def test_cursor_pagination_reaches_every_task_once(client):
    ids = [json.loads(post_task(client, {"action": "sum"}).body)["id"] for _ in range(23)]
    seen, cursor = [], None
    while True:
        path = "/tasks?limit=5" + (f"&cursor={cursor}" if cursor else "")
        page = json.loads(client.http.get(path).body)
        assert page["count"] == len(page["tasks"]) <= 5
        seen += [t["id"] for t in page["tasks"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))


def test_default_limit_is_100(client):
    for _ in range(101):
        post_task(client, {"action": "sum"})
    page = json.loads(client.http.get("/tasks").body)
    assert page["count"] == 100 and page["next_cursor"] is not None


@pytest.mark.parametrize("query, message", [
    ("status=done", "status must be one of queued, running, completed, failed"),
    ("limit=0", "limit must be a whole number from 1 to 1000"),
    ("limit=1001", "limit must be a whole number from 1 to 1000"),
    ("limit=ten", "limit must be a whole number from 1 to 1000"),
    ("limit=-5", "limit must be a whole number from 1 to 1000"),
    ("cursor=bm90LWEtY3Vyc29y", "cursor is not one this service returned"),
    ("cursor=%%%", "cursor is not one this service returned"),
    ("cursor=", "cursor is not one this service returned"),
])
def test_bad_list_queries_are_400_with_a_sentence(client, query, message):
    response = client.http.get(f"/tasks?{query}")
    assert response.status_code == 400
    assert message in json.loads(response.body)["error"]


def test_unknown_route_and_method_answer_problem_json(client):
    response = client.http.delete("/tasks")
    assert response.status_code == 405
    assert json.loads(response.body)["status"] == 405


def test_queue_in_its_own_file_works_too(client, chalice_app, monkeypatch, tmp_path):
    monkeypatch.setenv("TASKS_QUEUE_DB_PATH", str(tmp_path / "separate-queue.db"))
    task_id = json.loads(post_task(client, {"action": "sum", "data": {"numbers": [2, 3]}}).body)["id"]
    assert (tmp_path / "separate-queue.db").exists()
    drain(chalice_app)
    assert json.loads(client.http.get(f"/tasks/{task_id}").body)["result"] == {"output": 5}


def test_task_and_message_share_one_transaction_by_default(client, monkeypatch):
    from chalicelib.queue.embedded import EmbeddedQueue

    real_send = EmbeddedQueue.send

    def send_then_fail(self, body, delay_seconds=0):
        real_send(self, body)  # the message is written ...
        raise RuntimeError("... but the process fails before the commit")

    monkeypatch.setattr(EmbeddedQueue, "send", send_then_fail)
    with pytest.raises(RuntimeError):
        factory.service(factory.current_settings()).submit(NewTask("sum", {}))
    assert stored_tasks(client) == [] and queued_messages() == 0


def test_action_blankness_matches_the_documented_pattern(client):
    # JSON Schema's \s does not cover the ASCII separators U+001C..U+001F; Python's does.
    assert post_task(client, {"action": "\u001f"}).status_code == 202
    for blank in (" \t\n", "\u00a0", "\u3000 "):
        assert post_task(client, {"action": blank}).status_code == 400


@pytest.mark.parametrize("query, says", [
    ("/stats/series?minutes=%C2%B2", "minutes must be a whole number"),  # "²": isdigit() is true, int() refuses it
    ("/stats/series?minutes=%D9%A3", "minutes must be a whole number"),  # "٣", an Arabic-Indic three
    ("/tasks?limit=%D9%A3", "limit must be a whole number"),
    ("/tasks?limit=%C2%B2", "limit must be a whole number"),
    ("/tasks?limit=1_0", "limit must be a whole number"),
    ("/tasks?limit=%205", "limit must be a whole number"),
    ("/tasks/{id}?wait=%D9%A3", "wait must be a number of seconds"),
    ("/tasks/{id}?wait=1_0", "wait must be a number of seconds"),
    ("/tasks/{id}?wait=%C2%B2", "wait must be a number of seconds"),
])
def test_numbers_in_queries_take_ascii_digits_only(client, query, says):
    task_id = json.loads(post_task(client, {"action": "sum"}).body)["id"]
    response = client.http.get(query.replace("{id}", task_id))
    assert response.status_code == 400, response.body
    assert says in json.loads(response.body)["error"]


@pytest.mark.parametrize("query", ["/tasks?limit=007", "/stats/series?minutes=5", "/tasks/{id}?wait=0.5",
                                   "/tasks/{id}?wait=1e-1", "/tasks/{id}?wait=.2"])
def test_numbers_in_ascii_digits_are_taken(client, query):
    task_id = json.loads(post_task(client, {"action": "sum"}).body)["id"]
    assert client.http.get(query.replace("{id}", task_id)).status_code == 200
