"""End to end against the real `chalice local`: an action added the README's way, a
delayed task held and then run, ?wait answering as its task completes, and an
action that calls sys.exit failing its task alone."""
import re
import time
from datetime import datetime

import pytest

from tests.local_server import PROJECT_DIR, LocalServer
from tests.test_chalice_local import copy_project

pytestmark = pytest.mark.e2e


def readme_action() -> tuple:
    """(path, source) of the module the README's "Adding an action" shows."""
    readme = (PROJECT_DIR / "README.md").read_text()
    section = readme.split("## Adding an action", 1)[1]
    source = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    path = source.splitlines()[0].removeprefix("# ").strip()
    return path, source


# An action whose library ends the process its own way: in a dispatcher thread,
# SystemExit would end only that thread, with nothing said.
QUITS = '''import sys

from chalicelib.actions import action


@action("quits", max_attempts=1)
def quits(data):
    """Calls sys.exit, as a command-line library might."""
    sys.exit(2)
'''


def moment(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """chalice local on a copy of the project with the README's action and one that
    calls sys.exit added, its worker taking a second over each task (simulated work)."""
    root = tmp_path_factory.mktemp("e2e-actions")
    project = copy_project(root / "project")
    path, source = readme_action()
    (project / path).write_text(source)
    (project / "chalicelib" / "actions" / "quits.py").write_text(QUITS)
    local = LocalServer(root, project_dir=project, env={"TASKS_WORK_DELAY_MS": "1000"}).start()
    yield local
    local.stop()


def test_an_action_added_as_the_readme_shows_is_listed_checked_and_run(server):
    status, listed = server.call("GET", "/actions")
    greet = {entry["name"]: entry for entry in listed["actions"]}["greet"]
    assert greet["max_attempts"] == 4 and greet["timeout_s"] == 10 and greet["schema"]["required"] == ["name"]
    status, problem = server.call("POST", "/tasks", {"action": "greet", "data": {}})
    assert status == 400 and problem["pointer"] == "/data"
    status, accepted = server.call("POST", "/tasks", {"action": "greet", "data": {"name": "Ada"}})
    assert status == 202
    status, task = server.call("GET", f"/tasks/{accepted['id']}?wait=15")
    assert task["status"] == "completed" and task["result"] == {"output": "hello, Ada"}
    status, listing = server.call("GET", "/tasks?action=greet")
    assert [entry["id"] for entry in listing["tasks"]] == [accepted["id"]]


def test_a_four_second_delay_is_held_and_then_run(server):
    status, accepted = server.call("POST", "/tasks", {"action": "sum", "data": {"numbers": [4]},
                                                      "delay_seconds": 4})
    assert status == 202
    status, waiting = server.call("GET", f"/tasks/{accepted['id']}?wait=2")
    assert waiting["status"] == "queued" and waiting["attempts"] == 0  # held past a two-second wait
    run_at = moment(waiting["run_at"])
    assert run_at - moment(waiting["created_at"]) == pytest.approx(4, abs=0.001)
    status, done = server.call("GET", f"/tasks/{accepted['id']}?wait=15")
    assert done["status"] == "completed" and done["result"] == {"output": 4}
    assert run_at <= moment(done["started_at"]) < run_at + 2  # not before its time, and soon after


def test_wait_answers_within_a_second_of_completion(server):
    status, accepted = server.call("POST", "/tasks", {"action": "uppercase", "data": {"text": "now"}})
    assert status == 202
    status, task = server.call("GET", f"/tasks/{accepted['id']}?wait=15")
    answered = time.time()
    assert task["status"] == "completed" and task["result"] == {"output": "NOW"}
    # The worker took a second over it, so the request did wait; it answered on the commit.
    assert moment(task["finished_at"]) - moment(task["created_at"]) >= 1
    assert 0 <= answered - moment(task["finished_at"]) < 1


def test_an_action_calling_sys_exit_fails_its_task_and_the_dispatcher_runs_on(server):
    # One such task for each dispatcher thread: every thread meets one.
    for _ in range(2):
        status, accepted = server.call("POST", "/tasks", {"action": "quits"})
        assert status == 202
        status, task = server.call("GET", f"/tasks/{accepted['id']}?wait=8")  # inside the client's 10 s
        assert task["status"] == "failed" and task["error"] == "SystemExit: 2", task
    status, accepted = server.call("POST", "/tasks", {"action": "uppercase", "data": {"text": "after"}})
    status, task = server.call("GET", f"/tasks/{accepted['id']}?wait=15")
    assert task["status"] == "completed" and task["result"] == {"output": "AFTER"}
