"""Deploy a cloud stage, or tear it down, with boto3 alone (no AWS CLI).

    python3 dev.py deploy --stage prod [--region R] [--stack-name N] [--param K=V ...]
    python3 dev.py destroy --stage prod [--region R] [--stack-name N]

deploy: packages and lints the stage (as `dev.py package`), keeps the code in an
artifact bucket of the account and region (created once: encrypted, public
access blocked), creates or updates the stack through a change set while
printing its events, and prints where the service is: the endpoint and the
`export` lines for `chalice local --stage prod`. On failure it prints each
resource that failed and why, and exits 1.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

ROOT = Path(__file__).resolve().parent.parent
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
MAX_TEMPLATE_BODY = 51_200  # CloudFormation's limit for a template sent inline
DONE = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "DELETE_COMPLETE", "IMPORT_COMPLETE")
# Stack outputs -> the variables `chalice local --stage prod` reads.
EXPORTS = {"TasksQueueUrl": "TASKS_QUEUE_URL", "DeadLetterQueueUrl": "TASKS_DLQ_URL",
           "TasksTableName": "TASKS_TABLE_NAME"}

Say = Callable[[str], None]


class DeployFailed(RuntimeError):
    """The stack did not reach a complete state; the message says which resources failed and why."""


def artifact_bucket(s3: Any, account: str, region: str, say: Say) -> str:
    """The account's bucket for this app's code in `region`, created the first time:
    encrypted at rest and closed to the public."""
    name = f"task-queue-artifacts-{account}-{region}"
    try:
        s3.head_bucket(Bucket=name)
        return name
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    say(f"creating artifact bucket {name}")
    location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=name, **location)
    s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    return name


def upload(s3: Any, bucket: str, path: Path, prefix: str, say: Say) -> str:
    """Put the file under a key named by its content (an unchanged package is not
    sent again); the key."""
    body = path.read_bytes()
    key = f"{prefix}/{hashlib.sha256(body).hexdigest()[:32]}{path.suffix}"
    try:
        s3.head_object(Bucket=bucket, Key=key)
        say(f"code unchanged: s3://{bucket}/{key}")
    except ClientError:
        say(f"uploading {path.name} ({len(body):,} bytes) to s3://{bucket}/{key}")
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    return key


def with_code_at(template: dict, bucket: str, key: str) -> dict:
    """The packaged template with every function's code in the bucket instead of beside it."""
    template = json.loads(json.dumps(template))
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = {"Bucket": bucket, "Key": key}
    return template


def template_argument(s3: Any, bucket: str, path: Path, prefix: str, say: Say) -> dict:
    """The template at `path` as CloudFormation takes it: inline, or from the bucket when large."""
    body = path.read_text()
    if len(body.encode()) <= MAX_TEMPLATE_BODY:
        return {"TemplateBody": body}
    key = upload(s3, bucket, path, prefix, say)
    return {"TemplateURL": f"https://{bucket}.s3.amazonaws.com/{key}"}


def parameters(template: dict, given: Dict[str, str], updating: bool) -> List[dict]:
    """Given values; on an update, the stack's previous values for the ones not given."""
    declared = template.get("Parameters", {})
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise SystemExit(f"no parameter {', '.join(unknown)} in the template; it has {', '.join(sorted(declared))}")
    values = [{"ParameterKey": key, "ParameterValue": value} for key, value in sorted(given.items())]
    if updating:
        values += [{"ParameterKey": key, "UsePreviousValue": True} for key in sorted(declared) if key not in given]
    return values


def access_logs_parameter(apigateway: Any, given: Dict[str, str], say: Say) -> Dict[str, str]:
    """`given`, with ApiAccessLogs=off where the region has no API Gateway CloudWatch
    Logs role: an account-wide setting without which a stage with access logs fails
    to deploy, and which one app's stack should not take over."""
    if "ApiAccessLogs" in given or apigateway.get_account().get("cloudwatchRoleArn"):
        return given
    say("API access logs off: this region's API Gateway has no CloudWatch Logs role (an account "
        "setting: `cloudwatchRoleArn` of apigateway update-account); set one and deploy with "
        "--param ApiAccessLogs=on to turn them on")
    return {**given, "ApiAccessLogs": "off"}


def stack_status(cfn: Any, stack: str) -> Optional[str]:
    try:
        return cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise


class Events:
    """Prints a stack's events as they arrive, oldest first, each once."""

    def __init__(self, cfn: Any, stack: str, say: Say) -> None:
        self._cfn, self._stack, self._say = cfn, stack, say
        self._seen = {event["EventId"] for event in self._all()}
        self.failures: List[str] = []

    def _all(self) -> list:
        try:
            return self._cfn.describe_stack_events(StackName=self._stack)["StackEvents"]
        except ClientError:
            return []

    def poll(self) -> None:
        for event in reversed(self._all()):
            if event["EventId"] in self._seen:
                continue
            self._seen.add(event["EventId"])
            reason = f": {event['ResourceStatusReason']}" if event.get("ResourceStatusReason") else ""
            line = f"{event['ResourceStatus']:<22} {event['LogicalResourceId']} ({event['ResourceType']}){reason}"
            self._say("  " + line)
            if event["ResourceStatus"].endswith("_FAILED"):
                self.failures.append(line)


def wait_for(cfn: Any, stack: str, events: Events, interval: float, timeout: float = 3600) -> str:
    """Follow the stack until it settles; its final status."""
    deadline = time.monotonic() + timeout
    while True:
        events.poll()
        status = stack_status(cfn, stack) or "DELETE_COMPLETE"
        if not status.endswith("_IN_PROGRESS"):
            events.poll()
            return status
        if time.monotonic() > deadline:
            raise DeployFailed(f"stack {stack} still {status} after {timeout:.0f} s")
        time.sleep(interval)


def apply_change_set(cfn: Any, stack: str, template_args: dict, given: Dict[str, str], template: dict,
                     say: Say, interval: float = 5.0) -> Dict[str, str]:
    """Create or update the stack through a change set; its outputs."""
    status = stack_status(cfn, stack)
    updating = status is not None and status != "REVIEW_IN_PROGRESS"
    if status == "ROLLBACK_COMPLETE":  # a first create that failed: it can only be deleted
        raise DeployFailed(f"stack {stack} is ROLLBACK_COMPLETE after a failed create; run "
                           f"`python3 dev.py destroy` and deploy again")
    name = f"deploy-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    say(f"{'updating' if updating else 'creating'} stack {stack} (change set {name})")
    try:
        cfn.create_change_set(StackName=stack, ChangeSetName=name, ChangeSetType="UPDATE" if updating else "CREATE",
                              Capabilities=CAPABILITIES, Parameters=parameters(template, given, updating),
                              **template_args)
    except ClientError as exc:
        if "No updates are to be performed" not in str(exc):
            raise
        say("no changes: the stack already runs this code and template")
        return outputs_of(cfn, stack)
    while True:
        change_set = cfn.describe_change_set(StackName=stack, ChangeSetName=name)
        if change_set["Status"] in ("CREATE_COMPLETE", "FAILED"):
            break
        time.sleep(interval / 5)
    if change_set["Status"] == "FAILED":
        reason = change_set.get("StatusReason", "")
        if "didn't contain changes" in reason or "No updates" in reason:
            say("no changes: the stack already runs this code and template")
            cfn.delete_change_set(StackName=stack, ChangeSetName=name)
            return outputs_of(cfn, stack)
        raise DeployFailed(f"change set {name} failed: {reason}")
    for change in change_set.get("Changes", []):
        detail = change.get("ResourceChange", {})
        say(f"  {detail.get('Action', '?'):<8} {detail.get('LogicalResourceId')} ({detail.get('ResourceType')})")
    events = Events(cfn, stack, say)
    cfn.execute_change_set(StackName=stack, ChangeSetName=name)
    final = wait_for(cfn, stack, events, interval)
    if final not in DONE:
        failed = "\n".join(f"  {line}" for line in events.failures) or "  (no resource reported a reason)"
        raise DeployFailed(f"stack {stack} ended {final}; what failed:\n{failed}")
    return outputs_of(cfn, stack)


def outputs_of(cfn: Any, stack: str) -> Dict[str, str]:
    described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    return {output["OutputKey"]: output["OutputValue"] for output in described.get("Outputs", [])}


def report(outputs: Dict[str, str], region: str, auth: str, say: Say) -> None:
    say("")
    if outputs.get("EndpointURL"):
        say(f"endpoint: {outputs['EndpointURL']}")
    if auth == "api_key" and outputs.get("ApiKeyId"):
        say("API key (send it as x-api-key; the dashboard asks for it once):")
        say(f"  python3 -c \"import boto3; print(boto3.client('apigateway', region_name='{region}')"
            f".get_api_key(apiKey='{outputs['ApiKeyId']}', includeValue=True)['value'])\"")
    say("to run chalice local --stage prod against this stack:")
    say(f"  export AWS_DEFAULT_REGION={region}")
    for output, variable in EXPORTS.items():
        if output in outputs:
            say(f"  export {variable}={outputs[output]}")
    say("  export TASKS_LOCAL_DISPATCHER=off   # the deployed worker consumes the queue")


def session(region: Optional[str]):
    import boto3

    return boto3.session.Session(region_name=region) if region else boto3.session.Session()


def deploy(stage: str, region: Optional[str], stack: str, given: Dict[str, str], say: Say = print,
           interval: float = 5.0) -> Dict[str, str]:
    from deploy.package import package, stage_config

    aws = session(region)
    region = aws.region_name or "us-east-1"
    out = ROOT / "build" / stage
    say(f"packaging stage {stage} into {out} (chalice package, cfn-lint)")
    template_path = package(stage, out, lint=True)
    s3, cfn = aws.client("s3"), aws.client("cloudformation")
    account = aws.client("sts").get_caller_identity()["Account"]
    bucket = artifact_bucket(s3, account, region, say)
    key = upload(s3, bucket, out / "deployment.zip", stack, say)
    template = with_code_at(json.loads(template_path.read_text()), bucket, key)
    deployed = out / "deployed.json"  # the template exactly as sent
    deployed.write_text(json.dumps(template, indent=2))
    given = access_logs_parameter(aws.client("apigateway"), given, say)
    outputs = apply_change_set(cfn, stack, template_argument(s3, bucket, deployed, stack, say), given,
                               template, say, interval)
    auth = stage_config(stage).environment_variables.get("TASKS_API_AUTH", "iam")
    report(outputs, region, auth, say)
    return outputs


def destroy(region: Optional[str], stack: str, say: Say = print, interval: float = 5.0) -> None:
    cfn = session(region).client("cloudformation")
    if stack_status(cfn, stack) is None:
        say(f"no stack {stack}: nothing to remove")
        return
    template = cfn.get_template(StackName=stack, TemplateStage="Processed")["TemplateBody"]
    template = json.loads(template) if isinstance(template, str) else template
    kept = sorted(name for name, resource in template.get("Resources", {}).items()
                  if resource.get("DeletionPolicy") in ("Retain", "RetainExceptOnCreate"))
    events = Events(cfn, stack, say)
    say(f"deleting stack {stack}")
    cfn.delete_stack(StackName=stack)
    final = wait_for(cfn, stack, events, interval)
    if final != "DELETE_COMPLETE":
        raise DeployFailed(f"stack {stack} ended {final}; what failed:\n" + "\n".join(events.failures))
    if kept:
        say(f"kept (their DeletionPolicy is Retain): {', '.join(kept)}; delete them yourself when done")
    else:
        say("nothing kept: every resource of the stack, the tasks table and its tasks included, is deleted")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("deploy", "destroy"))
    parser.add_argument("--stage", default="prod")
    parser.add_argument("--region", help="AWS region (default: the configured one)")
    parser.add_argument("--stack-name", help="default task-queue-<stage>")
    parser.add_argument("--param", action="append", default=[], metavar="K=V", help="a stack parameter")
    args = parser.parse_args(argv)
    given = {}
    for pair in args.param:
        key, sep, value = pair.partition("=")
        if not sep:
            parser.error(f"--param takes KEY=VALUE, not {pair!r}")
        given[key] = value
    stack = args.stack_name or f"task-queue-{args.stage}"
    try:
        if args.command == "deploy":
            deploy(args.stage, args.region, stack, given)
        else:
            destroy(args.region, stack)
    except (DeployFailed, ClientError, BotoCoreError, ResponseParserError) as exc:
        print(f"{args.command} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
