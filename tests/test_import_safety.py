"""Importing app.py, as chalice package, chalice deploy and Lambda do, has no side effects."""
import os
import subprocess
import sys
import textwrap

from tests.conftest import PROJECT_DIR


def test_importing_app_starts_no_thread_creates_no_file_and_loads_no_boto3(tmp_path):
    script = textwrap.dedent(f"""
        import os, sys, threading
        before = set(os.listdir("."))
        sys.path.insert(0, {str(PROJECT_DIR)!r})
        import app
        assert threading.active_count() == 1, threading.enumerate()
        assert set(os.listdir(".")) == before, set(os.listdir(".")) ^ before
        assert "boto3" not in sys.modules
        assert "sqlite3" not in sys.modules
        assert "chalice.local" not in sys.modules
        print("clean")
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKS_", "CHALICE_"))}
    env["AWS_CHALICE_CLI_MODE"] = "true"  # as when chalice package imports the app
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clean"


def test_cloud_handler_imports_no_sqlite_and_creates_clients_once():
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(PROJECT_DIR)!r})
        from moto import mock_aws
        with mock_aws():
            import boto3
            created = []
            real_client = boto3.client
            boto3.client = lambda *a, **k: created.append(a[0]) or real_client(*a, **k)
            from chalicelib.store.dynamodb import TABLE_SCHEMA
            real_client("dynamodb").create_table(TableName="t", **TABLE_SCHEMA)
            url = real_client("sqs").create_queue(QueueName="q")["QueueUrl"]
            dlq = real_client("sqs").create_queue(QueueName="q-dlq")["QueueUrl"]
            import os
            os.environ.update(TASKS_STORE="dynamodb", TASKS_QUEUE="sqs", TASKS_TABLE_NAME="t",
                              TASKS_QUEUE_URL=url, TASKS_DLQ_URL=dlq)
            from app import app
            from chalice.test import Client
            with Client(app) as client:
                for _ in range(3):
                    assert client.http.post("/tasks", body='{{"action": "sum"}}',
                        headers={{"Content-Type": "application/json"}}).status_code == 202
                    assert client.http.get("/tasks").status_code == 200
            assert "sqlite3" not in sys.modules
            assert sorted(created) == ["dynamodb", "sqs"], created
            print("clean")
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKS_", "CHALICE_"))}
    env.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_DEFAULT_REGION="us-east-1")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("clean")
