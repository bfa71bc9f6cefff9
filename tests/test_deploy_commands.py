"""The deploy commands a user types, tried against moto's server."""
import json
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


def test_dev_py_deploy_uploads_the_code_and_creates_a_change_set_on_motos_server(moto_server):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("TASKS_", "CHALICE_"))},
           "AWS_ENDPOINT_URL": moto_server}
    run = subprocess.run([sys.executable, str(PROJECT_DIR / "dev.py"), "deploy", "--stage", "prod",
                          "--param", "MaxReceiveCount=7"], cwd=PROJECT_DIR, env=env,
                         capture_output=True, text=True, timeout=300)
    output = run.stdout + run.stderr
    s3 = aws("s3", moto_server)
    [bucket] = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert bucket == "task-queue-artifacts-123456789012-us-east-1"
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
    # The code, and the template too where it is over what CloudFormation takes inline.
    [code] = [c for c in s3.list_objects_v2(Bucket=bucket)["Contents"] if c["Key"].endswith(".zip")]
    uploaded = s3.get_object(Bucket=bucket, Key=code["Key"])["Body"].read()
    assert uploaded == (PROJECT_DIR / "build" / "prod" / "deployment.zip").read_bytes()
    cfn = aws("cloudformation", moto_server)
    [summary] = cfn.list_change_sets(StackName="task-queue-prod")["Summaries"]
    change_set = cfn.describe_change_set(StackName="task-queue-prod", ChangeSetName=summary["ChangeSetName"])
    assert {"ParameterKey": "MaxReceiveCount", "ParameterValue": "7"} in change_set["Parameters"]
    # moto's API Gateway account has no CloudWatch Logs role: access logs go off, and it says so.
    assert {"ParameterKey": "ApiAccessLogs", "ParameterValue": "off"} in change_set["Parameters"]
    assert "API access logs off" in output
    template = json.loads((PROJECT_DIR / "build" / "prod" / "deployed.json").read_text())  # as sent
    functions = [r for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::Function"]
    assert len(functions) == 4
    assert all(f["Properties"]["CodeUri"] == {"Bucket": bucket, "Key": code["Key"]} for f in functions)
    # moto's CloudFormation has no SAM transform, so executing this change set is as
    # far as it goes: the command reports the failure instead of a traceback.
    assert run.returncode == 1 and "deploy failed:" in output and "Traceback" not in output, output[-3000:]
    assert "packaging stage prod" in output and "creating artifact bucket" in output


class _NoManagedPolicies:
    """What the SAM translator reads of IAM's managed policies: none are used here."""

    def load(self):
        return {}


def expanded_for_moto(template: dict) -> dict:
    """The template as AWS's SAM translator expands it, with the two parts moto's
    CloudFormation cannot create left out: a REST API built from its body (moto wants
    a Name and imports no methods, so its Deployment and Stage fail)."""
    from samtranslator.translator.transform import transform

    expanded = transform(json.loads(json.dumps(template)), {}, _NoManagedPolicies())
    resources = expanded["Resources"]
    for name, resource in list(resources.items()):
        if resource["Type"] == "AWS::ApiGateway::RestApi":
            resource["Properties"]["Name"] = "task-queue"
        if resource["Type"] in ("AWS::ApiGateway::Deployment", "AWS::ApiGateway::Stage"):
            del resources[name]
    for resource in resources.values():
        depends = resource.get("DependsOn")
        if depends is not None:
            depends = [name for name in ([depends] if isinstance(depends, str) else depends) if name in resources]
            resource["DependsOn"] = depends
    return expanded


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    from deploy.package import package

    return json.loads(package("prod", tmp_path_factory.mktemp("prod"), lint=False).read_text())


def test_the_stack_is_created_updated_and_destroyed_in_motos_cloudformation(moto_server, packaged, monkeypatch):
    from deploy import cloud

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    said = []
    s3, cfn = aws("s3", moto_server), aws("cloudformation", moto_server)
    bucket = cloud.artifact_bucket(s3, "123456789012", "us-east-1", said.append)
    zip_path = PROJECT_DIR / "build" / "moto-deployment.zip"
    zip_path.parent.mkdir(exist_ok=True)
    zip_path.write_bytes(b"PK\x05\x06" + b"\x00" * 18)  # an empty zip: moto stores, never runs, the code
    key = cloud.upload(s3, bucket, zip_path, "tq", said.append)
    template = expanded_for_moto(cloud.with_code_at(packaged, bucket, key))
    body = {"TemplateBody": json.dumps(template)}

    cloud.apply_change_set(cfn, "tq", body, {"MaxReceiveCount": "7"}, template, said.append, interval=0.1)
    assert cfn.describe_stacks(StackName="tq")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    exists = what_exists(moto_server)
    assert len(exists["functions"]) == 4 and len(exists["queues"]) == 2 and len(exists["tables"]) == 1
    assert any("CREATE_COMPLETE        tq (AWS::CloudFormation::Stack)" in line for line in said)
    [queue_url] = [url for url in exists["queues"] if "TasksQueue" in url and "Dead" not in url]
    redrive = json.loads(aws("sqs", moto_server).get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == 7

    said.clear()
    assert cloud.artifact_bucket(s3, "123456789012", "us-east-1", said.append) == bucket  # reused
    assert cloud.upload(s3, bucket, zip_path, "tq", said.append) == key and "code unchanged" in said[-1]
    said.clear()
    cloud.apply_change_set(cfn, "tq", body, {"MaxReceiveCount": "8"}, template, said.append, interval=0.1)
    assert said[0].startswith("updating stack tq")
    assert cfn.describe_stacks(StackName="tq")["Stacks"][0]["StackStatus"] == "UPDATE_COMPLETE"
    said.clear()
    cloud.apply_change_set(cfn, "tq", body, {}, template, said.append, interval=0.1)  # previous values kept
    assert said[-1] == "no changes: the stack already runs this code and template"

    said.clear()
    cloud.destroy("us-east-1", "tq", said.append, interval=0.1)
    assert said[-1] == "kept (their DeletionPolicy is Retain): TasksTable; delete them yourself when done"
    assert aws("lambda", moto_server).list_functions()["Functions"] == []
    assert len(aws("dynamodb", moto_server).list_tables()["TableNames"]) == 1  # the tasks outlive the stack
    cloud.destroy("us-east-1", "tq", said.append, interval=0.1)
    assert said[-1] == "no stack tq: nothing to remove"


def test_a_parameter_the_template_does_not_declare_is_refused(packaged):
    from deploy import cloud

    with pytest.raises(SystemExit) as refused:
        cloud.parameters(packaged, {"MaxRecieveCount": "7"}, updating=False)
    assert "no parameter MaxRecieveCount in the template; it has AlarmEmail" in str(refused.value)
    assert "MaxReceiveCount" in str(refused.value)
    kept = cloud.parameters(packaged, {"Tracing": "Active"}, updating=True)
    assert {"ParameterKey": "Tracing", "ParameterValue": "Active"} in kept
    assert {"ParameterKey": "MaxReceiveCount", "UsePreviousValue": True} in kept
    assert len(kept) == len(packaged["Parameters"])


def test_the_report_prints_the_endpoint_the_key_and_ready_to_paste_exports():
    from deploy import cloud

    said = []
    cloud.report({"EndpointURL": "https://abc.execute-api.eu-west-1.amazonaws.com/api/",
                  "TasksQueueUrl": "https://sqs/q", "DeadLetterQueueUrl": "https://sqs/dlq",
                  "TasksTableName": "t", "ApiKeyId": "k1"}, "eu-west-1", "api_key", said.append)
    text = "\n".join(said)
    assert "endpoint: https://abc.execute-api.eu-west-1.amazonaws.com/api/" in text
    assert "get_api_key(apiKey='k1', includeValue=True)" in text
    for line in ("export TASKS_QUEUE_URL=https://sqs/q", "export TASKS_DLQ_URL=https://sqs/dlq",
                 "export TASKS_TABLE_NAME=t", "export AWS_DEFAULT_REGION=eu-west-1",
                 "export TASKS_LOCAL_DISPATCHER=off"):
        assert line in text


class FailedCreate:
    """CloudFormation's answers for a stack whose create failed and rolled back."""

    def __init__(self):
        self.events = [{"EventId": "0", "LogicalResourceId": "task-queue-prod", "ResourceStatus": "CREATE_IN_PROGRESS",
                        "ResourceType": "AWS::CloudFormation::Stack", "ResourceStatusReason": "User Initiated"}]

    def describe_stack_events(self, StackName):
        return {"StackEvents": list(reversed(self.events))}  # newest first

    def describe_stacks(self, StackName):
        self.events += [
            {"EventId": "1", "LogicalResourceId": "TasksTable", "ResourceStatus": "CREATE_FAILED",
             "ResourceType": "AWS::DynamoDB::Table", "ResourceStatusReason": "Table already exists: prod-tasks"},
            {"EventId": "2", "LogicalResourceId": "task-queue-prod", "ResourceStatus": "ROLLBACK_COMPLETE",
             "ResourceType": "AWS::CloudFormation::Stack"}]
        return {"Stacks": [{"StackStatus": "ROLLBACK_COMPLETE"}]}


def test_a_failed_deploy_names_the_resource_that_failed_and_why():
    from deploy import cloud

    said, stack = [], FailedCreate()
    events = cloud.Events(stack, "task-queue-prod", said.append)
    assert cloud.wait_for(stack, "task-queue-prod", events, interval=0) == "ROLLBACK_COMPLETE"
    assert events.failures == [
        "CREATE_FAILED          TasksTable (AWS::DynamoDB::Table): Table already exists: prod-tasks"]
    assert said[-1].strip().startswith("ROLLBACK_COMPLETE")


@pytest.mark.e2e
def test_chalice_local_on_the_prod_stage_runs_against_the_stack_as_the_readme_says(emulated_stack, tmp_path):
    from tests.local_server import LocalServer

    # With the local dispatcher off, the task waits in the stack's queue for the deployed worker.
    quiet = LocalServer(tmp_path / "quiet", stage="prod",
                        env={**emulated_stack, "TASKS_LOCAL_DISPATCHER": "off"})
    (tmp_path / "quiet").mkdir()
    quiet.start()
    try:
        status, accepted = quiet.call("POST", "/tasks", {"action": "uppercase", "data": {"text": "cloud"}})
        assert status == 202, accepted
        status, stats = quiet.call("GET", "/stats")
        assert status == 200 and stats["queue"] == {"waiting": 1, "in_flight": 0, "delayed": 0, "dead_letter": 0}
        assert "takes a share of its messages" not in quiet.log_path.read_text()
    finally:
        quiet.stop()
    # With it on, it says that it shares the queue, and runs the task.
    (tmp_path / "busy").mkdir()
    busy = LocalServer(tmp_path / "busy", stage="prod", env=emulated_stack).start()
    try:
        done = busy.wait_until(lambda: busy.call("GET", f"/tasks/{accepted['id']}")[1]["status"] == "completed",
                               timeout=30)
        assert done, busy.log_path.read_text()[-3000:]
        assert busy.call("GET", f"/tasks/{accepted['id']}")[1]["result"] == {"output": "CLOUD"}
        assert "set TASKS_LOCAL_DISPATCHER=off to leave them to it" in busy.log_path.read_text()
    finally:
        busy.stop()
