"""The real `chalice local` process runs the whole flow: POST -> queue -> worker -> SQLite -> GET."""
import pytest

from tests.local_server import LocalServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path):
    local = LocalServer(tmp_path).start()
    yield local
    local.stop()


def test_seed_curl_scenario_over_http(server):
    status, created = server.call("POST", "/tasks", {"action": "uppercase", "data": {"text": "hello world"}})
    assert status == 202 and created["status"] == "queued"
    status, summed = server.call("POST", "/tasks", {"action": "sum", "data": {"numbers": [1, 2, 3]}})
    assert status == 202

    def completed():
        _, page = server.call("GET", "/tasks?status=completed")
        return page if page["count"] == 2 else None

    page = server.wait_until(completed, timeout=20)
    assert page, server.log_path.read_text()[-2000:]
    assert [t["id"] for t in page["tasks"]] == [summed["id"], created["id"]]
    assert page["tasks"][1]["result"] == {"output": "HELLO WORLD"}
    assert page["tasks"][0]["result"] == {"output": 6}
    status, everything = server.call("GET", "/tasks")
    assert status == 200 and everything["count"] == 2
    status, one = server.call("GET", f"/tasks/{created['id']}")
    assert status == 200 and one["status"] == "completed"
    # The seed's 100 ms of simulated work is on by default.
    durations = [line["duration_ms"] for line in server.log_lines()
                 if line.get("status") == "completed"]
    assert len(durations) == 2 and min(durations) >= 100


def test_bad_input_over_http_is_a_clear_4xx(server):
    status, problem = server.call("POST", "/tasks", {"data": {}})
    assert status == 400 and "action required" in problem["error"]
    status, problem = server.call("GET", "/tasks?status=nope")
    assert status == 400 and "status must be one of" in problem["error"]
    status, _ = server.call("GET", "/tasks/not-a-task")
    assert status == 404


def test_autoreload_worker_process_runs_the_queue_too(tmp_path):
    # Databases outside the project: autoreload restarts on any change under it.
    local = LocalServer(tmp_path, autoreload=True).start()
    try:
        status, created = local.call("POST", "/tasks", {"action": "sum", "data": {"numbers": [2, 2]}})
        assert status == 202

        def done():
            return local.call("GET", f"/tasks/{created['id']}")[1]["status"] == "completed"

        assert local.wait_until(done, timeout=20), local.log_path.read_text()[-2000:]
    finally:
        local.stop()
