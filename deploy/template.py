"""The CloudFormation merged into `chalice package`'s template for a cloud stage.

Chalice packages the functions and the API; this adds what they run on: the
tasks queue with its dead-letter queue, the DynamoDB table, least-privilege
roles, log groups, partial batch responses on the worker, and API protection.
Resource names are CloudFormation's; the functions get them as environment
variables through Ref, so nothing is hard-coded.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, Tuple

from chalicelib.store.dynamodb import BY_ACTION, BY_DUE, BY_OUTCOME, BY_TIME, TABLE_SCHEMA, TTL_ATTRIBUTE
from deploy import operations

API_FUNCTION = "APIHandler"
API_ROLE = "ApiHandlerRole"
VISIBILITY_PER_TIMEOUT = 6  # AWS: queue visibility timeout at least 6x the function timeout
AUTH_MODES = ("iam", "api_key", "none")
# The dashboard's page and static files: public in api_key mode (they hold no
# data; every API call the page makes still needs the key).
DASHBOARD_ROUTES = frozenset({("/", "GET"), ("/assets/{name}", "GET")})
# Chalice names the runtime after the local Python; Lambda no longer creates
# python3.11 functions. The code needs only the standard library and boto3.
LAMBDA_RUNTIME = "python3.13"


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _arn(resource: str) -> dict:
    return {"Fn::GetAtt": [resource, "Arn"]}


def _log_statement(log_group: str) -> dict:
    return {
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": _arn(log_group),
    }


def _role_policy(role: str, statements: list) -> dict:
    return {"Properties": {"Policies": [{
        "PolicyName": f"{role}Policy",
        "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
    }]}}


def _function_name(suffix: str) -> dict:
    return {"Fn::Sub": f"${{AWS::StackName}}-{suffix}"}


def _log_group(suffix: str) -> dict:
    return {
        "Type": "AWS::Logs::LogGroup",
        "Properties": {
            "LogGroupName": {"Fn::Sub": f"/aws/lambda/${{AWS::StackName}}-{suffix}"},
            "RetentionInDays": 14,
        },
    }


def _environment() -> dict:
    return {"Environment": {"Variables": {
        "TASKS_QUEUE_URL": {"Ref": "TasksQueue"},
        "TASKS_DLQ_URL": {"Ref": "TasksDeadLetterQueue"},
        "TASKS_TABLE_NAME": {"Ref": "TasksTable"},
    }}}


def _function(suffix: str, **properties) -> dict:
    return {"Properties": {"FunctionName": _function_name(suffix), "Runtime": LAMBDA_RUNTIME,
                           **_environment(), **properties}}


def _security(routes: Iterable[Tuple[str, str]], auth: str) -> Dict[str, Any]:
    if auth == "none":
        return {}
    scheme = {
        "iam": ("sigv4", {"type": "apiKey", "name": "Authorization", "in": "header",
                          "x-amazon-apigateway-authtype": "awsSigv4"}),
        "api_key": ("api_key", {"type": "apiKey", "name": "x-api-key", "in": "header"}),
    }[auth]
    paths: Dict[str, Any] = {}
    for path, method in routes:
        if auth == "api_key" and (path, method) in DASHBOARD_ROUTES:
            continue  # the page asks for the key itself; without it, it could not load to ask
        paths.setdefault(path, {})[method.lower()] = {"security": [{scheme[0]: []}]}
    return {"securityDefinitions": {scheme[0]: scheme[1]}, "paths": paths}


def _api_key_resources(api_stage: str) -> dict:
    stage_resource = f"RestAPI{api_stage}Stage"
    return {
        "ApiKey": {
            "Type": "AWS::ApiGateway::ApiKey",
            "DependsOn": [stage_resource],
            "Properties": {"Enabled": True, "Name": {"Fn::Sub": "${AWS::StackName}-key"}},
        },
        "UsagePlan": {
            "Type": "AWS::ApiGateway::UsagePlan",
            "DependsOn": [stage_resource],
            "Properties": {
                "ApiStages": [{"ApiId": {"Ref": "RestAPI"}, "Stage": api_stage}],
                "Throttle": {"BurstLimit": 100, "RateLimit": 50},
            },
        },
        "UsagePlanKey": {
            "Type": "AWS::ApiGateway::UsagePlanKey",
            "Properties": {"KeyId": {"Ref": "ApiKey"}, "KeyType": "API_KEY",
                           "UsagePlanId": {"Ref": "UsagePlan"}},
        },
    }


def merge_template(*, worker: str, worker_timeout: int, api_stage: str, auth: str,
                   max_receive_count: int, routes: Iterable[Tuple[str, str]],
                   recovery: str = "recover_tasks", dead_letters: str = "process_dead_letters") -> dict:
    """The template to merge for a stage whose SQS handler is named `worker`, whose
    scheduled recovery function is named `recovery` and whose consumer of the
    dead-letter queue is named `dead_letters`."""
    if auth not in AUTH_MODES:
        raise ValueError(f"TASKS_API_AUTH must be one of {', '.join(AUTH_MODES)}; got {auth!r}")
    worker_function = _camel(worker)
    worker_role = f"{worker_function}Role"
    recovery_function = _camel(recovery)
    recovery_role = f"{recovery_function}Role"
    dead_letters_function = _camel(dead_letters)
    dead_letters_role = f"{dead_letters_function}Role"
    table_arn = _arn("TasksTable")

    def index_arns(*indexes):
        return [{"Fn::Sub": f"${{TasksTable.Arn}}/index/{index}"} for index in indexes]

    resources: Dict[str, Any] = {
        "TasksDeadLetterQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {"MessageRetentionPeriod": 1_209_600, "SqsManagedSseEnabled": True},
        },
        "TasksQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "VisibilityTimeout": VISIBILITY_PER_TIMEOUT * worker_timeout,
                "SqsManagedSseEnabled": True,
                "RedrivePolicy": {
                    "deadLetterTargetArn": _arn("TasksDeadLetterQueue"),
                    "maxReceiveCount": {"Ref": "MaxReceiveCount"},
                },
            },
        },
        "TasksTable": {
            "Type": "AWS::DynamoDB::Table",
            **operations.table_protection(),
            "Properties": {
                **TABLE_SCHEMA,
                "SSESpecification": {"SSEEnabled": True},
                "TimeToLiveSpecification": {"AttributeName": TTL_ATTRIBUTE, "Enabled": True},
                **operations.table_protection()["Properties"],
            },
        },
        "ApiLogGroup": _log_group("api"),
        "ApiAccessLogGroup": _log_group("api-access"),
        "WorkerLogGroup": _log_group("worker"),
        "RecoveryLogGroup": _log_group("recovery"),
        "DeadLettersLogGroup": _log_group("dead-letters"),
        API_FUNCTION: _function("api", Timeout=operations.API_TIMEOUT_SECONDS,
                                **operations.function_settings("ApiLogGroup")),
        worker_function: _function("worker", **operations.function_settings("WorkerLogGroup"),
                                   Timeout=worker_timeout, Events={f"{worker_function}SqsEventSource": {"Properties": {
            # Same key as Chalice's Fn::Sub, so the merge replaces its value.
            "Queue": {"Fn::Sub": "${TasksQueue.Arn}"},
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        }}}),
        # Fails the task of every message the queue's redrive gave up on (chalicelib/dead_letters.py).
        dead_letters_function: _function("dead-letters", **operations.function_settings("DeadLettersLogGroup"),
                                         Events={f"{dead_letters_function}SqsEventSource": {"Properties": {
            "Queue": {"Fn::Sub": "${TasksDeadLetterQueue.Arn}"},
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        }}}),
        # One recovery pass at a time: two would publish the same due tasks twice.
        recovery_function: _function("recovery", ReservedConcurrentExecutions=1,
                                     **operations.function_settings("RecoveryLogGroup")),
        API_ROLE: _role_policy(API_ROLE, [
            _log_statement("ApiLogGroup"),
            {"Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": _arn("TasksQueue")},
            {"Effect": "Allow", "Action": ["sqs:GetQueueAttributes"],
             "Resource": [_arn("TasksQueue"), _arn("TasksDeadLetterQueue")]},
            {"Effect": "Allow",
             "Action": ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:DeleteItem",
                        "dynamodb:UpdateItem", "dynamodb:BatchGetItem"],
             "Resource": table_arn},
            {"Effect": "Allow", "Action": ["dynamodb:Query"], "Resource": index_arns(BY_TIME, BY_OUTCOME, BY_ACTION)},
        ]),
        worker_role: _role_policy(worker_role, [
            _log_statement("WorkerLogGroup"),
            {"Effect": "Allow",
             "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                        "sqs:ChangeMessageVisibility"],
             "Resource": _arn("TasksQueue")},
            {"Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": _arn("TasksDeadLetterQueue")},
            {"Effect": "Allow", "Action": ["dynamodb:UpdateItem"], "Resource": table_arn},
        ]),
        dead_letters_role: _role_policy(dead_letters_role, [
            _log_statement("DeadLettersLogGroup"),
            {"Effect": "Allow",
             "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                        "sqs:ChangeMessageVisibility"],
             "Resource": _arn("TasksDeadLetterQueue")},
            {"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:UpdateItem"], "Resource": table_arn},
        ]),
        recovery_role: _role_policy(recovery_role, [
            _log_statement("RecoveryLogGroup"),
            {"Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": _arn("TasksQueue")},
            {"Effect": "Allow",
             "Action": ["dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:BatchGetItem"],
             "Resource": table_arn},
            {"Effect": "Allow", "Action": ["dynamodb:Query"], "Resource": index_arns(BY_DUE)},
        ]),
    }
    security = _security(routes, auth)
    resources["RestAPI"] = {"Properties": {**operations.api_stage_settings(),
                                           **({"DefinitionBody": security} if security else {})}}
    resources.update(operations.alarms(worker_function, api_stage))
    resources.update(operations.dashboard(worker_function, recovery_function, API_FUNCTION, api_stage))
    if auth == "api_key":
        resources.update(_api_key_resources(api_stage))
    outputs = {
        "TasksQueueUrl": {"Value": {"Ref": "TasksQueue"}},
        "DeadLetterQueueUrl": {"Value": {"Ref": "TasksDeadLetterQueue"}},
        "TasksTableName": {"Value": {"Ref": "TasksTable"}},
        "ApiLogGroupName": {"Value": {"Ref": "ApiLogGroup"}},
        "WorkerLogGroupName": {"Value": {"Ref": "WorkerLogGroup"}},
        "RecoveryLogGroupName": {"Value": {"Ref": "RecoveryLogGroup"}},
        "DeadLettersLogGroupName": {"Value": {"Ref": "DeadLettersLogGroup"}},
        "AlarmTopicArn": {"Value": {"Ref": "AlarmTopic"}},
        "DashboardName": {"Value": {"Ref": "Dashboard"}},
    }
    if auth == "api_key":
        outputs["ApiKeyId"] = {"Value": {"Ref": "ApiKey"}}
    return {
        "Parameters": {"MaxReceiveCount": {
            "Type": "Number", "Default": max_receive_count, "MinValue": 1, "MaxValue": 1000,
            "Description": "Deliveries of a message before it moves to the dead-letter queue",
        }, **operations.PARAMETERS},
        "Conditions": operations.CONDITIONS,
        "Resources": resources,
        "Outputs": outputs,
    }


def _resource_name(resource: Any) -> str:
    """What a policy statement's resource refers to, in words for the README."""
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        return resource["Fn::GetAtt"][0]
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        return resource["Fn::Sub"].replace("${TasksTable.Arn}", "TasksTable")
    return str(resource)


def permissions_summary(template: dict) -> str:
    """Each role's allowed actions and on what, as the README lists them: built from
    the template, so that the list cannot drift from what the stack grants."""
    roles = {"ApiHandlerRole": "API", "ProcessTasksRole": "worker", "RecoverTasksRole": "recovery",
             "ProcessDeadLettersRole": "dead-letter"}
    lines = []
    for role, who in roles.items():
        statements = template["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        grants = []
        for statement in statements:
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            grants.append(f"`{', '.join(statement['Action'])}` on {', '.join(_resource_name(r) for r in resources)}")
        lines.append(f"  - the {who} function: " + "; ".join(grants))
    return "\n".join(lines)
