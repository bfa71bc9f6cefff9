"""Actions as declarations: found in their package, checked at submit, listed, limited."""
import json
import sys
import threading
import time

import pytest

from chalicelib import actions, factory
from chalicelib.openapi import document
from chalicelib.settings import ConfigurationError
from tests.conftest import declare_action, post_task
from tests.stacks import stack  # noqa: F401 (a fixture)


def stored_tasks(client):
    return json.loads(client.http.get("/tasks").body)["tasks"]


def test_the_seed_actions_are_declared_in_modules_of_their_own():
    assert actions.ACTIONS["uppercase"].function.__module__ == "chalicelib.actions.uppercase"
    assert actions.ACTIONS["sum"].function.__module__ == "chalicelib.actions.total"


def test_get_actions_lists_each_schema_and_the_limits_in_force(client, monkeypatch):
    monkeypatch.setenv("TASKS_RETRY_MAX_S", "42")
    body = json.loads(client.http.get("/actions").body)
    listed = {entry["name"]: entry for entry in body["actions"]}
    assert {"uppercase", "sum"} <= set(listed) and body["unknown_actions"] == "accept"
    assert listed["sum"]["schema"] == actions.ACTIONS["sum"].schema
    assert listed["sum"]["max_attempts"] == 3 and listed["sum"]["timeout_s"] == 5
    assert listed["sum"]["retry_max_s"] == 42  # not declared by the action: the global setting
    assert listed["uppercase"]["description"].startswith("data.text in capitals")


def test_the_document_publishes_the_very_schema_that_validates(monkeypatch):
    branches = document()["components"]["schemas"]["NewTask"]["anyOf"]
    by_action = {branch["properties"]["action"].get("const"): branch for branch in branches}
    for name, declared in actions.ACTIONS.items():
        assert by_action[name]["properties"]["data"]["anyOf"][1] is declared.schema
    assert None in by_action  # the branch for any other action


def test_a_declared_action_appears_in_the_listing_and_the_document(client, monkeypatch):
    schema = {"type": "object", "required": ["to"], "properties": {"to": {"type": "string", "format": "email"}}}
    declare_action(monkeypatch, "send_mail", lambda data: "sent", schema=schema, max_attempts=4, timeout_s=20)
    listed = {entry["name"]: entry for entry in json.loads(client.http.get("/actions").body)["actions"]}
    assert listed["send_mail"]["schema"] == schema and listed["send_mail"]["max_attempts"] == 4
    served = json.loads(client.http.get("/openapi.json").body)
    assert any(branch["properties"]["action"].get("const") == "send_mail"
               for branch in served["components"]["schemas"]["NewTask"]["anyOf"])
    missing = post_task(client, {"action": "send_mail", "data": {}})
    assert missing.status_code == 400 and json.loads(missing.body)["pointer"] == "/data"
    assert "must contain ['to'] properties" in json.loads(missing.body)["detail"]


def test_unknown_actions_are_processed_unless_refused(client, monkeypatch):
    assert post_task(client, {"action": "resize"}).status_code == 202
    monkeypatch.setenv("TASKS_UNKNOWN_ACTIONS", "reject")
    refused = post_task(client, {"action": "resize_image"})
    assert refused.status_code == 400
    problem = json.loads(refused.body)
    assert problem["pointer"] == "/action"
    assert "unknown action 'resize_image'" in problem["detail"] and "sum, uppercase" in problem["detail"]
    assert [task["action"] for task in stored_tasks(client)] == ["resize"]
    assert json.loads(client.http.get("/actions").body)["unknown_actions"] == "reject"
    branches = json.loads(client.http.get("/openapi.json").body)["components"]["schemas"]["NewTask"]["anyOf"]
    assert all("const" in branch["properties"]["action"] for branch in branches)


def test_validating_does_not_change_the_data(client):
    declared = actions.Action("defaults", lambda data: data, schema={
        "type": "object", "properties": {"size": {"type": "integer", "default": 100}}})
    data = {}
    declared.check(data)
    assert data == {}


def test_an_action_declared_twice_is_refused():
    with pytest.raises(ValueError, match="declared twice"):
        actions.action("uppercase")(lambda data: data)


@pytest.mark.parametrize("limits, says", [
    ({"max_attempts": 0}, "max_attempts"),
    ({"timeout_s": 0}, "timeout_s"),
    ({"timeout_s": 1000}, "timeout_s"),
    ({"retry_base_s": -1}, "negative"),
    ({"schema": {"type": "array"}}, "JSON object"),
])
def test_declarations_that_cannot_work_are_refused(limits, says):
    with pytest.raises(ValueError, match=says):
        actions.Action("bad", lambda data: data, **limits)


def test_an_action_whose_attempts_reach_the_receive_count_is_a_configuration_error(monkeypatch):
    declare_action(monkeypatch, "stubborn", lambda data: data, max_attempts=5)
    with pytest.raises(ConfigurationError, match="action stubborn declares max_attempts=5"):
        factory.catalog()


BROKEN_ACTION = """from chalicelib.actions import action


@action("broken", schema={"type": "object", "properties": {"n": {"type": "integr"}}})
def broken(data):
    return data
"""


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"n": {"type": "integr"}}},
    {"type": "object", "properties": {"n": {"type": "string", "pattern": "("}}},
])
def test_a_schema_that_cannot_be_compiled_is_a_configuration_error_naming_its_action(monkeypatch, schema):
    declare_action(monkeypatch, "broken", lambda data: data, schema=schema)
    with pytest.raises(ConfigurationError, match="action broken declares a schema that fastjsonschema cannot "
                                                 "compile"):
        factory.catalog()


@pytest.mark.e2e
def test_chalice_local_refuses_to_start_with_a_schema_that_cannot_be_compiled(tmp_path):
    import shutil

    from tests.local_server import PROJECT_DIR, LocalServer

    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(PROJECT_DIR / "app.py", project / "app.py")
    for folder in ("chalicelib", ".chalice"):
        shutil.copytree(PROJECT_DIR / folder, project / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (project / "chalicelib" / "actions" / "broken.py").write_text(BROKEN_ACTION)
    local = LocalServer(tmp_path, project_dir=project)
    try:
        with pytest.raises(RuntimeError) as refused:
            local.start()
    finally:
        local.stop()  # when it did start
    said = str(refused.value)
    assert "task-queue: action broken declares a schema that fastjsonschema cannot compile" in said, said
    assert "chalicelib.actions.broken" in said and "Traceback" not in said
    assert local.process.wait(10) != 0


def test_within_interrupts_an_attempt_in_the_main_thread():
    started = time.monotonic()
    with pytest.raises(actions.ActionTimeout):
        actions.within(0.2, lambda data: time.sleep(5), {})
    assert time.monotonic() - started < 2
    assert actions.within(1, lambda data: data["n"] + 1, {"n": 1}) == 2


def test_within_gives_up_on_an_attempt_in_another_thread():
    outcome = {}

    def attempt():
        started = time.monotonic()
        try:
            actions.within(0.2, lambda data: time.sleep(3), {})
        except actions.ActionTimeout as exc:
            outcome["error"] = exc
        outcome["seconds"] = time.monotonic() - started
        try:
            actions.within(1, lambda data: 1 / 0, {})
        except ZeroDivisionError as exc:
            outcome["raised"] = exc

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join(10)
    assert isinstance(outcome["error"], actions.ActionTimeout) and outcome["seconds"] < 2
    assert isinstance(outcome["raised"], ZeroDivisionError)  # the action's own error reaches the worker


def test_an_attempt_that_calls_sys_exit_leaves_its_threads_runner_serving():
    outcome = {}

    def attempts():
        try:
            actions.within(1, lambda data: sys.exit(2), {})
        except SystemExit as exc:
            outcome["code"] = exc.code
        runners = {thread for thread in threading.enumerate() if thread.name == "action-attempts"}
        outcome["next"] = actions.within(1, lambda data: data["n"] + 1, {"n": 1})
        outcome["new runners"] = {thread for thread in threading.enumerate()
                                  if thread.name == "action-attempts"} - runners

    thread = threading.Thread(target=attempts)
    thread.start()
    thread.join(10)
    # SystemExit reaches the worker's thread; the runner lives on and takes the next attempt.
    assert outcome == {"code": 2, "next": 2, "new runners": set()}


# The same behaviours on both stacks: SQLite with the embedded queue, DynamoDB with SQS.

def test_data_its_schema_refuses_stores_and_publishes_nothing_on_either_stack(stack):
    response = post_task(stack.client, {"action": "sum", "data": {"numbers": ["1"]}})
    assert response.status_code == 400 and json.loads(response.body)["pointer"] == "/data/numbers/0"
    assert json.loads(stack.client.http.get("/tasks").body)["tasks"] == [] and stack.messages() == 0


def test_refused_unknown_actions_store_and_publish_nothing_on_either_stack(stack, monkeypatch):
    monkeypatch.setenv("TASKS_UNKNOWN_ACTIONS", "reject")
    assert post_task(stack.client, {"action": "resize"}).status_code == 400
    assert json.loads(stack.client.http.get("/tasks").body)["tasks"] == [] and stack.messages() == 0


def test_a_declared_action_runs_with_its_own_limits_on_either_stack(stack, monkeypatch):
    monkeypatch.setenv("TASKS_RETRY_BASE_S", "0")
    calls = []

    def flaky_partner(data):
        calls.append(data["order"])
        if len(calls) < 2:
            raise ConnectionError("partner API down")
        return {"confirmed": data["order"]}

    declare_action(monkeypatch, "confirm", flaky_partner, max_attempts=2,
                   schema={"type": "object", "required": ["order"], "properties": {"order": {"type": "integer"}}})
    assert post_task(stack.client, {"action": "confirm", "data": {"order": "7"}}).status_code == 400
    task = stack.submit({"action": "confirm", "data": {"order": 7}})
    stack.deliver()
    time.sleep(0.05)
    stack.deliver()  # the retry, once its zero backoff has passed
    done = stack.task(task["id"])
    assert done["status"] == "completed" and done["attempts"] == 2 and done["result"] == {"output": {"confirmed": 7}}
    listed = json.loads(stack.client.http.get("/tasks?action=confirm").body)["tasks"]
    assert [entry["id"] for entry in listed] == [task["id"]]


def test_an_attempt_past_its_timeout_is_retried_on_either_stack(stack, monkeypatch):
    monkeypatch.setenv("TASKS_RETRY_BASE_S", "1")
    runs = []

    def slow_once(data):
        runs.append(threading.current_thread() is threading.main_thread())
        if len(runs) == 1:
            time.sleep(3)
        return "done"

    declare_action(monkeypatch, "slow", slow_once, timeout_s=0.3)
    task = stack.submit({"action": "slow"})
    in_lambda = factory.current_settings().store == "dynamodb"  # its handler runs in the main thread

    def deliver():
        if in_lambda:
            return stack.deliver()
        # The local dispatcher runs the worker in threads of its own, where no signal reaches.
        worker = threading.Thread(target=stack.deliver)
        worker.start()
        worker.join()

    started = time.monotonic()
    deliver()
    first = stack.task(task["id"])
    assert first["status"] == "queued" and first["error"].startswith("ActionTimeout")
    assert time.monotonic() - started < 2  # given up on at its timeout, not waited out
    time.sleep(1.1)  # the backoff
    deliver()
    done = stack.task(task["id"])
    assert done["status"] == "completed" and done["attempts"] == 2
    # Interrupted by a timer signal in Lambda's main thread; run in a thread of its own locally.
    assert runs == [in_lambda, in_lambda]


def test_the_local_lease_covers_a_batch_of_the_slowest_action_unless_set(chalice_app, monkeypatch):
    from chalicelib.local.runtime import build_dispatcher

    assert build_dispatcher(chalice_app)._source.visibility_timeout == 30  # the seed's actions fit in 30 s
    declare_action(monkeypatch, "render", lambda data: data, timeout_s=20)
    assert build_dispatcher(chalice_app)._source.visibility_timeout == 5 * 20 + 5
    monkeypatch.setenv("TASKS_VISIBILITY_TIMEOUT_S", "7")
    factory.reset()
    assert build_dispatcher(chalice_app)._source.visibility_timeout == 7
