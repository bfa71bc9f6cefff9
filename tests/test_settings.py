import pytest

from chalicelib import factory
from chalicelib.settings import ConfigurationError, Settings, current, from_environ, variables
from tests.conftest import PROJECT_DIR


def test_defaults_run_fully_local():
    settings = from_environ({})
    assert settings == Settings()
    assert (settings.store, settings.queue, settings.db_path) == ("sqlite", "embedded", "data/tasks.db")
    assert settings.work_delay_ms == 100 and settings.max_body_bytes == 256 * 1024


def test_variables_are_parsed():
    settings = from_environ({"TASKS_WORK_DELAY_MS": "0", "TASKS_MAX_RECEIVE_COUNT": "9",
                             "TASKS_SQLITE_SYNCHRONOUS": "normal", "TASKS_LOCAL_DISPATCHER": "off"})
    assert settings.work_delay_ms == 0 and settings.max_receive_count == 9
    assert settings.sqlite_synchronous == "NORMAL" and settings.dispatcher_enabled is False


@pytest.mark.parametrize("environ, message", [
    ({"TASKS_STORE": "postgres"}, "TASKS_STORE must be one of"),
    ({"TASKS_QUEUE": "kafka"}, "TASKS_QUEUE must be one of"),
    ({"TASKS_MAX_BODY_BYTES": "lots"}, "TASKS_MAX_BODY_BYTES='lots' is not valid"),
    ({"TASKS_MAX_ATTEMPTS": "\u0663"}, "TASKS_MAX_ATTEMPTS='\u0663' is not valid"),  # an Arabic-Indic 3
    ({"TASKS_RETRY_BASE_S": "1_0"}, "TASKS_RETRY_BASE_S='1_0' is not valid"),
    ({"TASKS_STALE_AFTER_S": "nan"}, "TASKS_STALE_AFTER_S='nan' is not valid"),
    ({"TASKS_WORK_DELAY_MS": "-1"}, "TASKS_WORK_DELAY_MS must be at least 0"),
    ({"TASKS_MAX_RECEIVE_COUNT": "0"}, "TASKS_MAX_RECEIVE_COUNT must be at least 1"),
    ({"TASKS_SQLITE_SYNCHRONOUS": "sometimes"}, "TASKS_SQLITE_SYNCHRONOUS must be"),
])
def test_bad_values_say_which_variable_to_fix(environ, message):
    with pytest.raises(ConfigurationError, match=message):
        from_environ(environ)


def test_current_settings_follow_the_environment_at_each_call(monkeypatch):
    monkeypatch.setenv("TASKS_WORK_DELAY_MS", "7")
    first = current()
    assert first.work_delay_ms == 7 and current() is first  # parsed once per set of values
    monkeypatch.setenv("TASKS_WORK_DELAY_MS", "8")
    assert current().work_delay_ms == 8
    monkeypatch.setenv("TASKS_WORK_DELAY_MS", "-1")
    with pytest.raises(ConfigurationError, match="TASKS_WORK_DELAY_MS must be at least 0"):
        current()
    monkeypatch.delenv("TASKS_WORK_DELAY_MS")
    assert current().work_delay_ms == Settings().work_delay_ms


def test_readme_documents_every_variable():
    readme = (PROJECT_DIR / "README.md").read_text()
    missing = [name for name in variables() if f"`{name}`" not in readme]
    assert missing == []


@pytest.mark.parametrize("environ, sentence", [
    ({"TASKS_MAX_ATTEMPTS": "5"}, "TASKS_MAX_ATTEMPTS (5) must be less than TASKS_MAX_RECEIVE_COUNT (5)"),
    ({"TASKS_MAX_ATTEMPTS": "3", "TASKS_MAX_RECEIVE_COUNT": "2"}, "must be less than TASKS_MAX_RECEIVE_COUNT"),
    ({"TASKS_QUEUE": "sqs"}, "TASKS_QUEUE=sqs needs TASKS_DLQ_URL"),
])
def test_settings_that_cannot_work_together_are_refused(environ, sentence):
    with pytest.raises(ConfigurationError) as refused:
        from_environ(environ)
    assert sentence in str(refused.value)


def test_one_sqlite_file_named_two_ways_is_one_database(client, tmp_path, monkeypatch):
    from tests.conftest import post_task

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TASKS_DB_PATH", "tasks.db")
    monkeypatch.setenv("TASKS_QUEUE_DB_PATH", str(tmp_path / "." / "tasks.db"))
    settings = factory.current_settings()
    assert factory.tasks_db(settings) is factory.queue_db(settings)
    assert post_task(client, {"action": "sum"}).status_code == 202
