"""The OpenAPI document is true: it matches the routes, and schemathesis, fuzzing the
real `chalice local` from it, finds no 5xx and no response the document does not allow."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.openapi import document
from tests.local_server import PROJECT_DIR, LocalServer

CONFIG = Path(__file__).parent / "fuzz" / "schemathesis.toml"


def test_document_lists_exactly_the_routes(chalice_app):
    documented = {(path.replace("{task_id}", "{task_id}"), method.upper())
                  for path, item in document()["paths"].items()
                  for method in item if method != "parameters"}
    routed = {(path, method) for path, entries in chalice_app.routes.items() for method in entries}
    assert documented == routed


def test_document_is_served(client):
    import json

    response = client.http.get("/openapi.json")
    assert response.status_code == 200
    assert json.loads(response.body)["openapi"].startswith("3.")


@pytest.mark.e2e
def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path):
    server = LocalServer(tmp_path, env={"TASKS_WORK_DELAY_MS": "0"}).start()
    schemathesis = Path(sys.executable).parent / "schemathesis"
    try:
        run = subprocess.run(
            [str(schemathesis), "--config-file", str(CONFIG), "run", f"{server.base_url}/openapi.json",
             "--checks", "all", "--max-examples", "40", "--seed", "20261123", "--workers", "2",
             "--max-time", "60", "--request-timeout", "10"],
            capture_output=True, text=True, timeout=300,
            env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false", "NO_COLOR": "1",
                 "SCHEMATHESIS_HOOKS": "tests.fuzz.hooks", "PYTHONPATH": str(PROJECT_DIR)},
            cwd=PROJECT_DIR,
        )
    finally:
        server.stop()
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    assert "ST101" not in output
