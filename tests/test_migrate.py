import sqlite3

from chalicelib import migrate
from chalicelib.sqlite_db import Database


def test_migration_creates_schema_once_and_exits_zero(tmp_path, capsys):
    assert migrate.main(["--project-dir", "."]) == 0
    assert "applied 1" in capsys.readouterr().out
    tables = sqlite3.connect(tmp_path / "tasks.db").execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'index')").fetchall()
    assert {"tasks", "tasks_by_time", "tasks_by_status_time"} <= {name for (name,) in tables}
    assert migrate.main(["--project-dir", "."]) == 0
    assert "nothing (up to date)" in capsys.readouterr().out


def test_migration_failure_exits_non_zero_with_a_message(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TASKS_DB_PATH", str(blocker / "tasks.db"))
    assert migrate.main(["--project-dir", "."]) == 1
    assert "migration failed" in capsys.readouterr().err


def test_migrations_apply_in_order_from_the_recorded_version(tmp_path):
    db = Database(str(tmp_path / "x.db"))
    first = ((1, ("CREATE TABLE a (x INTEGER)",)),)
    assert db.migrate("a", first) == [1]
    second = first + ((2, ("ALTER TABLE a ADD COLUMN y TEXT",)), (3, ("CREATE INDEX a_y ON a (y)",)))
    assert db.migrate("a", second) == [2, 3]
    assert db.migrate("a", second) == []
    assert db.version("a") == 3


def test_failed_migration_leaves_the_previous_version(tmp_path):
    db = Database(str(tmp_path / "x.db"))
    db.migrate("a", ((1, ("CREATE TABLE a (x INTEGER)",)),))
    broken = ((1, ()), (2, ("CREATE TABLE b (x INTEGER)", "NOT SQL")))
    try:
        db.migrate("a", broken)
    except sqlite3.OperationalError:
        pass
    assert db.version("a") == 1
    assert db.query("SELECT name FROM sqlite_master WHERE name = 'b'") == []
