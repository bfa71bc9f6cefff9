"""The real `chalice local` at its edges: inputs that once gave 500, a disk that
fails writes, requests a browser sends from other sites, HEAD, bursts of clients,
and settings that cannot work."""
import http.client
import json
import resource
import socket
import threading

import pytest

from tests.local_server import LocalServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    local = LocalServer(tmp_path_factory.mktemp("edges"), env={"TASKS_WORK_DELAY_MS": "0"}).start()
    yield local
    local.stop()


def raw(server, method, path, body=b"", headers=None):
    """(status, headers, body bytes) of one request on its own connection."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def count(server) -> int:
    return len(server.all_tasks())


# Inputs that gave 500 ---------------------------------------------------------

def test_a_lone_surrogate_is_a_400_and_takes_no_idempotency_key(server):
    before = count(server)
    status, _, body = raw(server, "POST", "/tasks", b'{"action": "\\ud800"}',
                          {"Content-Type": "application/json", "Idempotency-Key": "surrogate"})
    assert status == 400 and "lone UTF-16 surrogate" in json.loads(body)["error"]
    assert count(server) == before
    status, headers, _ = raw(server, "POST", "/tasks", b'{"action": "sum"}',
                             {"Content-Type": "application/json", "Idempotency-Key": "surrogate"})
    assert status == 202 and "Idempotent-Replayed" not in headers


def test_a_cursor_with_a_trailing_newline_is_a_400(server):
    status, page = server.call("GET", "/tasks?cursor=1_" + "a" * 32)
    assert status == 200
    status, problem = server.call("GET", "/tasks?cursor=1_" + "a" * 32 + "%0A")
    assert status == 400 and "cursor is not one this service returned" in problem["error"]


def test_json_nested_past_the_limit_is_a_400_and_stores_nothing(server):
    before = count(server)
    deep = b'{"action": "sum", "data": {"x": ' + b"[" * 960 + b"]" * 960 + b"}}"
    status, _, body = raw(server, "POST", "/tasks", deep, {"Content-Type": "application/json"})
    assert status == 400 and "more than 64 levels deep" in json.loads(body)["error"]
    fits = b'{"action": "sum", "data": {"x": ' + b"[" * 60 + b"]" * 60 + b"}}"
    assert raw(server, "POST", "/tasks", fits, {"Content-Type": "application/json"})[0] == 202
    assert count(server) == before + 1


def test_a_disk_that_fails_writes_is_a_503_while_reads_are_served(tmp_path):
    local = LocalServer(tmp_path, env={"TASKS_WORK_DELAY_MS": "0"}).start()
    limit = resource.RLIMIT_FSIZE
    try:
        status, first = local.call("POST", "/tasks", {"action": "sum", "data": {"numbers": [1]}})
        assert status == 202
        # Every write of the server's files past their first byte now fails (EFBIG).
        resource.prlimit(local.process.pid, limit, (1, resource.RLIM_INFINITY))
        for n in range(5):
            status, headers, body = raw(local, "POST", "/tasks", json.dumps({"action": "sum"}).encode(),
                                        {"Content-Type": "application/json"})
            assert status == 503 and int(headers["Retry-After"]) > 0
            assert headers["Content-Type"] == "application/problem+json"
            assert "try again shortly" in json.loads(body)["error"] and "Traceback" not in body.decode()
        status, page = local.call("GET", "/tasks")
        assert status == 200 and [task["id"] for task in page["tasks"]] == [first["id"]]
        assert local.call("GET", "/stats")[0] == 200
        resource.prlimit(local.process.pid, limit, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        status, second = local.call("POST", "/tasks", {"action": "sum", "data": {"numbers": [2]}})
        assert status == 202

        def both_completed():
            tasks = local.all_tasks()
            return len(tasks) == 2 and all(task["status"] == "completed" for task in tasks)

        # The first task's claim may have failed with the disk: its lease then runs out.
        assert local.wait_until(both_completed, timeout=60), local.log_path.read_text()[-3000:]
    finally:
        local.stop()


# Requests a browser sends from another site -----------------------------------

@pytest.mark.parametrize("content_type", [
    "text/plain;application/json",
    "text/plain, application/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/jsonx",
])
def test_a_body_that_is_not_exactly_json_is_a_415_on_every_state_change(server, content_type):
    before = count(server)
    status, _, body = raw(server, "POST", "/tasks", b'{"action": "sum"}', {"Content-Type": content_type})
    assert status == 415 and "Content-Type: application/json" in json.loads(body)["error"]
    task_id = server.call("POST", "/tasks", {"action": "sum"})[1]["id"]
    for path in (f"/tasks/{task_id}/retry", f"/tasks/{task_id}/cancel"):
        assert raw(server, "POST", path, b"{}", {"Content-Type": content_type})[0] == 415
    assert server.call("GET", f"/tasks/{task_id}")[1]["status"] in ("queued", "running", "completed")
    assert count(server) == before + 1


def test_cancel_and_retry_take_no_body_at_all_or_an_empty_one(server):
    """`curl -X POST .../cancel` works: no body needs no Content-Type."""
    queued = [server.call("POST", "/tasks", {"action": "sum", "delay_seconds": 3600})[1]["id"] for _ in range(2)]
    status, _, body = raw(server, "POST", f"/tasks/{queued[0]}/cancel")
    assert status == 200 and json.loads(body)["status"] == "cancelled"
    status, _, body = raw(server, "POST", f"/tasks/{queued[1]}/cancel", b"", {"Content-Type": "application/json"})
    assert status == 200 and json.loads(body)["status"] == "cancelled"
    failed = server.call("POST", "/tasks", {"action": "sum", "data": {"numbers": [1e308, 1e308]}})[1]["id"]
    assert server.wait_until(lambda: server.call("GET", f"/tasks/{failed}")[1]["status"] == "failed")
    status, _, body = raw(server, "POST", f"/tasks/{failed}/retry")
    assert status == 202 and json.loads(body)["id"] == failed
    assert server.wait_until(lambda: server.call("GET", f"/tasks/{failed}")[1]["status"] == "failed")
    status, _, body = raw(server, "POST", f"/tasks/{failed}/retry", b"", {"Content-Type": "application/json"})
    assert status == 202


def test_a_body_without_a_content_type_is_a_415(server):
    task_id = server.call("POST", "/tasks", {"action": "sum", "delay_seconds": 3600})[1]["id"]
    assert raw(server, "POST", f"/tasks/{task_id}/cancel", b"{}")[0] == 415
    assert raw(server, "POST", "/tasks", b'{"action": "sum"}')[0] == 415
    assert server.call("GET", f"/tasks/{task_id}")[1]["status"] == "queued"


def test_a_state_change_from_another_origin_is_a_403_with_a_sentence(server):
    before = count(server)
    queued = server.call("POST", "/tasks", {"action": "sum", "delay_seconds": 3600})[1]["id"]
    json_type = {"Content-Type": "application/json"}
    foreign = [
        {"Origin": "http://evil.example"},
        {"Origin": f"http://127.0.0.1:{server.port + 1}"},  # another port is another origin
        {"Origin": "https://127.0.0.1"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
    ]
    for headers in foreign:
        for method, path, body in (("POST", "/tasks", b'{"action": "sum"}'), ("POST", f"/tasks/{queued}/cancel", b""),
                                   ("POST", f"/tasks/{queued}/retry", b""), ("DELETE", f"/tasks/{queued}", b"")):
            status, _, answer = raw(server, method, path, body, {**json_type, **headers})
            assert status == 403, (method, path, headers)
            assert "may not change tasks here" in json.loads(answer)["error"]
    assert count(server) == before + 1
    assert server.call("GET", f"/tasks/{queued}")[1]["status"] == "queued"
    # Reads are served to any page (the browser keeps the answer from it), and the
    # server's own origin, or a browser that says same-origin, may change state.
    assert raw(server, "GET", "/stats", headers={"Origin": "http://evil.example"})[0] == 200
    own = {"Origin": f"http://127.0.0.1:{server.port}", "Sec-Fetch-Site": "same-origin"}
    assert raw(server, "POST", f"/tasks/{queued}/cancel", b"", own)[0] == 200
    own = {"Origin": f"http://localhost:{server.port}", "Host": f"localhost:{server.port}"}
    assert raw(server, "POST", "/tasks", b'{"action": "sum"}', {**json_type, **own})[0] == 202


def test_json_with_a_charset_is_json(server):
    status, _, _ = raw(server, "POST", "/tasks", b'{"action": "sum"}',
                       {"Content-Type": "Application/JSON; charset=utf-8"})
    assert status == 202


def test_a_host_that_could_be_rebound_to_this_machine_is_refused(server):
    before = count(server)
    for host in ("evil.example", f"evil.example:{server.port}", "127.0.0.1.nip.io"):
        status, headers, body = raw(server, "POST", "/tasks", b'{"action": "sum"}',
                                    {"Content-Type": "application/json", "Host": host})
        assert status == 421 and "TASKS_ALLOWED_HOSTS" in json.loads(body)["error"]
    assert count(server) == before
    for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}", "app.localhost"):
        assert raw(server, "GET", "/stats", headers={"Host": host})[0] == 200


def test_allowed_hosts_are_served(tmp_path):
    local = LocalServer(tmp_path, env={"TASKS_ALLOWED_HOSTS": "tasks.internal, other.internal"}).start()
    try:
        assert raw(local, "GET", "/stats", headers={"Host": "tasks.internal:8080"})[0] == 200
        assert raw(local, "GET", "/stats", headers={"Host": "evil.example"})[0] == 421
    finally:
        local.stop()


def test_the_dashboard_sends_security_headers_and_the_api_nosniff(server):
    for path in ("/", "/assets/dashboard.js", "/assets/dashboard.css"):
        status, headers, _ = raw(server, "GET", path)
        assert status == 200
        policy = headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"]
    for path in ("/tasks", "/stats", "/openapi.json", "/tasks/unknown"):
        assert raw(server, "GET", path)[1]["X-Content-Type-Options"] == "nosniff"


# HEAD and connections ---------------------------------------------------------

def test_head_answers_like_get_without_a_body_on_a_kept_alive_connection(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/stats")
        get = conn.getresponse()
        get_body = get.read()
        conn.request("HEAD", "/stats")
        head = conn.getresponse()
        assert head.status == 200 and head.read() == b""
        assert head.getheader("Content-Type") == get.getheader("Content-Type")
        assert int(head.getheader("Content-Length")) > 0
        conn.request("GET", "/tasks?limit=1")  # the same connection is still in step
        after = conn.getresponse()
        assert after.status == 200 and "tasks" in json.loads(after.read())
        assert get_body
        conn.request("HEAD", "/tasks/not-a-task")
        missing = conn.getresponse()
        assert missing.status == 404 and missing.read() == b""
    finally:
        conn.close()


def test_sixty_clients_at_once_are_all_served(server):
    clients = 60
    ready = threading.Barrier(clients)
    outcomes = []

    def one_client():
        try:
            ready.wait(10)
            with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
                sock.sendall(b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                reply = b""
                while chunk := sock.recv(65536):
                    reply += chunk
            outcomes.append(reply.split(b" ", 2)[1])
        except OSError as exc:
            outcomes.append(repr(exc).encode())

    threads = [threading.Thread(target=one_client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcomes == [b"200"] * clients


# Settings that cannot work ----------------------------------------------------

@pytest.mark.parametrize("env, sentence", [
    ({"TASKS_MAX_ATTEMPTS": "5", "TASKS_MAX_RECEIVE_COUNT": "5"},
     "TASKS_MAX_ATTEMPTS (5) must be less than TASKS_MAX_RECEIVE_COUNT (5)"),
    ({"TASKS_QUEUE": "sqs", "TASKS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/tasks"},
     "TASKS_QUEUE=sqs needs TASKS_DLQ_URL"),
])
def test_settings_that_cannot_work_are_refused_at_start_in_one_sentence(tmp_path, env, sentence):
    local = LocalServer(tmp_path, env=env)
    with pytest.raises(RuntimeError) as refused:
        local.start()
    assert sentence in str(refused.value) and "Traceback" not in str(refused.value)
    assert local.process.wait(10) != 0

