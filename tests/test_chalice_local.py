"""The real `chalice local` process runs the whole flow: POST -> queue -> worker -> SQLite -> GET."""
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.local_server import PROJECT_DIR, LocalServer

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


def copy_project(target):
    """The app as a user's project holds it, in a folder of its own, with a virtual
    environment inside it whose interpreter links outside the project."""
    ignore = shutil.ignore_patterns("__pycache__")
    target.mkdir()
    shutil.copy(PROJECT_DIR / "app.py", target / "app.py")
    for folder in ("chalicelib", ".chalice", "tests"):
        shutil.copytree(PROJECT_DIR / folder, target / folder, ignore=ignore)
    (target / ".venv" / "bin").mkdir(parents=True)
    os.symlink(os.path.realpath(sys.executable), target / ".venv" / "bin" / "python")
    (target / ".venv" / "pyvenv.cfg").write_text("home = /usr\n")
    return target


def submit_until_accepted(server, number):
    """POST one task, again with the same Idempotency-Key while the server restarts."""
    body = json.dumps({"action": "sum", "data": {"numbers": [number, 1]}}).encode()
    deadline = time.monotonic() + 30
    while True:
        request = urllib.request.Request(server.base_url + "/tasks", data=body, method="POST", headers={
            "Content-Type": "application/json", "Idempotency-Key": f"task-{number}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())["id"]
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_plain_chalice_local_restarts_once_per_code_edit_and_loses_no_task(tmp_path):
    project = copy_project(tmp_path / "project")
    # Plain `chalice local`: autoreload on and the seed's ./data/tasks.db inside the project.
    server = LocalServer(tmp_path, autoreload=True, project_dir=project,
                         env={"TASKS_DB_PATH": None, "TASKS_WORK_DELAY_MS": "20"}).start()

    def servers_started():
        return server.log_path.read_text().count("Serving on")

    edits, ids = 2, {}
    try:
        for round_number in range(edits + 1):
            for number in range(round_number * 15, round_number * 15 + 15):
                ids[submit_until_accepted(server, number)] = number
            if round_number < edits:
                with open(project / "chalicelib" / "actions" / "uppercase.py", "a") as source:
                    source.write(f"\n# edit {round_number + 1}\n")
                assert server.wait_until(lambda: servers_started() == round_number + 2, timeout=30), \
                    server.log_path.read_text()[-3000:]

        def all_completed():
            tasks = server.all_tasks()
            return len(tasks) == len(ids) and all(task["status"] == "completed" for task in tasks)

        assert server.wait_until(all_completed, timeout=60), server.log_path.read_text()[-3000:]
        time.sleep(2)  # a restart caused by the last writes would show by now
        assert servers_started() == edits + 1, server.log_path.read_text()[-3000:]
        assert {task["id"]: task["result"] for task in server.all_tasks()} == {
            task_id: {"output": number + 1} for task_id, number in ids.items()}
    finally:
        server.stop()
    assert (project / "data" / "tasks.db").exists()
    completions = [line["task_id"] for line in server.log_lines() if line.get("status") == "completed"]
    assert sorted(completions) == sorted(ids)  # each task's outcome recorded once
