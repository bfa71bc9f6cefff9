"""One id from request to result: the request's id in the response, on the task,
and on every log line about the task."""
import json
import uuid

import pytest

from chalicelib import correlation
from tests.local_server import LocalServer


@pytest.mark.e2e
def test_one_request_id_runs_through_every_log_line_of_its_task(tmp_path):
    server = LocalServer(tmp_path, env={"TASKS_WORK_DELAY_MS": "0"}).start()
    try:
        status, created = server.call("POST", "/tasks", {"action": "uppercase", "data": {"text": "traced"}},
                                      headers={"X-Request-Id": "trace-7.a:b"})
        assert status == 202
        _, unnamed = server.call("POST", "/tasks", {"action": "sum"}, headers={"X-Request-Id": "not valid!"})
        done = server.wait_until(lambda: all(server.call("GET", f"/tasks/{task_id}")[1]["status"] == "completed"
                                             for task_id in (created["id"], unnamed["id"])), timeout=20)
        assert done, server.log_path.read_text()[-2000:]
        assert server.call("GET", f"/tasks/{created['id']}")[1]["request_id"] == "trace-7.a:b"
        generated = server.call("GET", f"/tasks/{unnamed['id']}")[1]["request_id"]
        assert generated != "not valid!" and uuid.UUID(generated)
        lines = [line for line in server.log_lines() if line.get("task_id") == created["id"]]
        assert [line["status"] for line in lines] == ["queued", "running", "completed"]
        assert all(line["request_id"] == "trace-7.a:b" for line in lines)
    finally:
        server.stop()


def test_responses_answer_with_the_request_id(client):
    response = client.http.get("/stats", headers={"X-Request-Id": "abc-123"})
    assert response.headers["X-Request-Id"] == "abc-123"
    assert uuid.UUID(client.http.get("/tasks").headers["X-Request-Id"])
    problem = client.http.get("/tasks?status=nope", headers={"X-Request-Id": "bad-1"})
    assert problem.status_code == 400 and problem.headers["X-Request-Id"] == "bad-1"


def test_behind_api_gateway_its_own_request_id_wins_over_a_clients_header(chalice_app):
    from chalice.local import LambdaContext

    event = {
        "resource": "/tasks", "path": "/tasks", "httpMethod": "POST",
        "headers": {"Content-Type": "application/json", "X-Request-Id": "spoofed"},
        "multiValueHeaders": {}, "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": None, "stageVariables": None, "isBase64Encoded": False,
        "requestContext": {"requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "resourcePath": "/tasks",
                           "httpMethod": "POST", "stage": "api", "identity": {"sourceIp": "203.0.113.9"}},
        "body": json.dumps({"action": "sum"}),
    }
    response = chalice_app(event, LambdaContext("api", 128))
    assert response["statusCode"] == 202
    assert response["headers"]["X-Request-Id"] == "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"


@pytest.mark.parametrize("sent, kept", [("a" * 128, True), ("a" * 129, False), ("x y", False), ("", False),
                                        ("req_1.2:3-4", True)])
def test_a_clients_request_id_is_kept_only_when_it_is_one(sent, kept):
    request_id = correlation.request_id_of({}, {"x-request-id": sent})
    assert (request_id == sent) is kept
