"""Cold start: what importing app.py costs in each configuration, next to chalice and
boto3 alone, and the size of the deployment package."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import validation
from bench.common import ROOT, median

LOCAL = {"TASKS_STORE": "sqlite", "TASKS_QUEUE": "embedded"}
CLOUD = {"TASKS_STORE": "dynamodb", "TASKS_QUEUE": "sqs", "TASKS_TABLE_NAME": "t",
         "TASKS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/q",
         "TASKS_DLQ_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/q-dlq",
         "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}


def _time_import(statement: str, env: dict, runs: int) -> dict:
    script = ("import sys, time; started = time.perf_counter(); " + statement +
              "; print(time.perf_counter() - started, 'boto3' in sys.modules, 'sqlite3' in sys.modules)")
    samples, flags = [], None
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                             env={**os.environ, **env}, check=True).stdout.split()
        samples.append(float(out[0]) * 1000)
        flags = {"boto3_loaded": out[1] == "True", "sqlite3_loaded": out[2] == "True"}
    return {"median_ms": median(samples), **flags}


def measure(runs: int = 7) -> dict:
    first_use_local = ("import app; from chalicelib import factory; "
                       "factory.service(); import chalicelib.worker")
    first_use_cloud = ("import app; from chalicelib import factory; "
                       "factory.store(factory.current_settings()); factory.aws_client('sqs', 'request')")
    with tempfile.TemporaryDirectory() as folder:
        local_env = {**LOCAL, "TASKS_DB_PATH": f"{folder}/t.db"}
        figures = {
            "import_app_local": _time_import("import app", local_env, runs),
            "import_app_cloud": _time_import("import app", CLOUD, runs),
            "import_chalice": _time_import("import chalice", {}, runs),
            "import_boto3": _time_import("import boto3", {}, runs),
            "first_use_local": _time_import(first_use_local, local_env, runs),
            "first_use_cloud": _time_import(first_use_cloud, CLOUD, runs),
        }
        from deploy.package import package

        out = Path(folder) / "package"
        package("prod", out, lint=False)
        figures["package_bytes"] = (out / "deployment.zip").stat().st_size
        figures["package_validator_bytes"] = validation.package_share(out / "deployment.zip")
    return figures
