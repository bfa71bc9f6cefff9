"""The deploy commands a user types, tried against moto's server."""
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from tests.conftest import PROJECT_DIR

CHALICE = Path(sys.executable).parent / "chalice"


def aws(service, endpoint):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1")


def what_exists(endpoint) -> dict:
    return {
        "functions": aws("lambda", endpoint).list_functions()["Functions"],
        "roles": aws("iam", endpoint).list_roles()["Roles"],
        "apis": aws("apigateway", endpoint).get_rest_apis()["items"],
        "buckets": aws("s3", endpoint).list_buckets()["Buckets"],
        "queues": aws("sqs", endpoint).list_queues().get("QueueUrls", []),
        "tables": aws("dynamodb", endpoint).list_tables()["TableNames"],
        "stacks": aws("cloudformation", endpoint).list_stacks()["StackSummaries"],
    }


@pytest.mark.parametrize("stage, sentence", [
    ("prod", "deploy it with `python3 dev.py deploy --stage prod`"),
    ("dev", "run it with `chalice local`, or deploy the cloud stage with `python3 dev.py deploy --stage prod`"),
])
def test_chalice_deploy_stops_before_creating_anything_and_names_the_command(moto_server, stage, sentence):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKS_", "CHALICE_"))}
    run = subprocess.run([str(CHALICE), "deploy", "--stage", stage], cwd=PROJECT_DIR, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    output = run.stdout + run.stderr
    assert sentence in output and "Traceback" not in output
    assert len([line for line in output.splitlines() if line.strip()]) == 1
    assert all(found == [] for found in what_exists(moto_server).values()), what_exists(moto_server)
