"""The packaged cloud template: built by the one packaging command, linted, and checked."""
import json

import pytest

from app import BATCH_SIZE
from chalicelib import actions
from chalicelib.store.dynamodb import TABLE_SCHEMA
from deploy import package as packaging

pytestmark = pytest.mark.package


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("prod")
    packaging.package("prod", out, lint=True)
    assert (out / "deployment.zip").exists()
    return out


@pytest.fixture(scope="module")
def template(package_dir):
    return json.loads((package_dir / "sam.json").read_text())


def resources_of(template, kind):
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def test_queue_has_dead_letter_queue_and_long_enough_visibility(template):
    resources = template["Resources"]
    queue = resources["TasksQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["TasksDeadLetterQueue", "Arn"]}
    assert queue["RedrivePolicy"]["maxReceiveCount"] == {"Ref": "MaxReceiveCount"}
    assert template["Parameters"]["MaxReceiveCount"]["Default"] == 5
    worker_timeout = resources["ProcessTasks"]["Properties"]["Timeout"]
    assert queue["VisibilityTimeout"] >= 6 * worker_timeout
    # A batch runs its messages one after another, each for up to its action's timeout.
    assert worker_timeout >= BATCH_SIZE * max(declared.timeout_s for declared in actions.ACTIONS.values())
    assert resources["TasksDeadLetterQueue"]["Type"] == "AWS::SQS::Queue"


def test_table_is_on_demand_with_the_store_indexes(template):
    table = template["Resources"]["TasksTable"]["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == TABLE_SCHEMA["KeySchema"]
    assert {i["IndexName"]: i["KeySchema"] for i in table["GlobalSecondaryIndexes"]} == {
        i["IndexName"]: i["KeySchema"] for i in TABLE_SCHEMA["GlobalSecondaryIndexes"]
    }


def test_recovery_runs_on_a_schedule(template):
    recovery = template["Resources"]["RecoverTasks"]["Properties"]
    [event] = recovery["Events"].values()
    assert event["Type"] == "Schedule"
    assert event["Properties"]["Schedule"] == "rate(1 minute)"


def test_idempotency_records_expire_through_ttl(template):
    table = template["Resources"]["TasksTable"]["Properties"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_worker_reports_batch_item_failures_from_the_tasks_queue(template):
    worker = template["Resources"]["ProcessTasks"]["Properties"]
    [source] = worker["Events"].values()
    assert source["Type"] == "SQS"
    props = source["Properties"]
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["Queue"] == {"Fn::Sub": "${TasksQueue.Arn}"}
    assert props["BatchSize"] == 5 and props["ScalingConfig"] == {"MaximumConcurrency": 2}


def test_the_dead_letter_queue_has_a_consumer_that_reports_batch_item_failures(template):
    consumer = template["Resources"]["ProcessDeadLetters"]["Properties"]
    [source] = consumer["Events"].values()
    assert source["Type"] == "SQS"
    assert source["Properties"]["Queue"] == {"Fn::Sub": "${TasksDeadLetterQueue.Arn}"}
    assert source["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # It reads and deletes the dead-letter queue's messages, and fails tasks: nothing more.
    statements = list(policy_statements(template["Resources"]["ProcessDeadLettersRole"]))
    granted = {action for statement in statements for action in statement["Action"]}
    assert granted == {"logs:CreateLogStream", "logs:PutLogEvents", "sqs:ReceiveMessage", "sqs:DeleteMessage",
                       "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility", "dynamodb:GetItem",
                       "dynamodb:UpdateItem"}


def test_functions_get_resource_names_through_refs(template):
    for name in ("APIHandler", "ProcessTasks", "RecoverTasks", "ProcessDeadLetters"):
        variables = template["Resources"][name]["Properties"]["Environment"]["Variables"]
        assert variables["TASKS_QUEUE_URL"] == {"Ref": "TasksQueue"}
        assert variables["TASKS_DLQ_URL"] == {"Ref": "TasksDeadLetterQueue"}
        assert variables["TASKS_TABLE_NAME"] == {"Ref": "TasksTable"}
        assert variables["TASKS_STORE"] == "dynamodb" and variables["TASKS_QUEUE"] == "sqs"


def policy_statements(role):
    for policy in role["Properties"]["Policies"]:
        yield from policy["PolicyDocument"]["Statement"]


def test_no_wildcard_action_or_resource_in_any_role(template):
    roles = resources_of(template, "AWS::IAM::Role")
    assert set(roles) == {"ApiHandlerRole", "ProcessTasksRole", "RecoverTasksRole", "ProcessDeadLettersRole"}
    for name, role in roles.items():
        statements = list(policy_statements(role))
        assert statements, name
        for statement in statements:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert all("*" not in action for action in actions), (name, statement)
            text = json.dumps(statement["Resource"])
            assert '"*"' not in text and "*:" not in text, (name, statement)


def test_every_route_requires_iam_auth(template):
    body = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    assert body["securityDefinitions"]["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    methods = [(path, verb, op) for path, ops in body["paths"].items() for verb, op in ops.items()]
    assert methods
    for path, verb, op in methods:
        assert op["security"] == [{"sigv4": []}], (path, verb)


def test_api_key_protection_packages_and_lints(tmp_path):
    from deploy.template import merge_template

    merge = merge_template(worker="process_tasks", worker_timeout=30, api_stage="api", auth="api_key",
                           max_receive_count=5, routes=packaging.app_routes())
    path = packaging.package("prod", tmp_path, lint=True, merge_with=merge)
    template = json.loads(path.read_text())
    body = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    assert body["securityDefinitions"]["api_key"]["name"] == "x-api-key"
    assert {"ApiKey", "UsagePlan", "UsagePlanKey"} <= set(template["Resources"])
    # The dashboard's page and files load without the key; every API route needs it.
    for path, verb in packaging.app_routes():
        security = body["paths"][path][verb.lower()].get("security")
        if (path, verb) in (("/", "GET"), ("/assets/{name}", "GET")):
            assert security is None, (path, verb)
        else:
            assert security == [{"api_key": []}], (path, verb)


def test_the_readme_lists_exactly_the_permissions_the_template_grants(template):
    from deploy.template import permissions_summary
    from tests.conftest import PROJECT_DIR

    expected = permissions_summary(template)
    assert expected in (PROJECT_DIR / "README.md").read_text(), f"put this in the README's IAM list:\n{expected}"


def test_the_readme_states_the_package_size(package_dir):
    import re

    from tests.conftest import PROJECT_DIR

    stated = int(re.search(r"the package is about (\d+) KB", (PROJECT_DIR / "README.md").read_text()).group(1))
    actual = (package_dir / "deployment.zip").stat().st_size / 1000
    assert abs(actual - stated) <= 0.15 * actual, f"the package is {actual:.1f} KB"


def test_alarms_go_to_a_topic_with_an_optional_email_subscription(template):
    alarms = resources_of(template, "AWS::CloudWatch::Alarm")
    watched = {(a["Properties"]["Namespace"], a["Properties"]["MetricName"]) for a in alarms.values()}
    assert watched == {("AWS/SQS", "NumberOfMessagesReceived"), ("AWS/SQS", "ApproximateAgeOfOldestMessage"),
                       ("AWS/Lambda", "Errors"), ("AWS/Lambda", "Throttles"), ("AWS/ApiGateway", "5XXError")}
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    dead_letter = alarms["DeadLetterAlarm"]["Properties"]
    assert dead_letter["Dimensions"] == [{"Name": "QueueName",
                                          "Value": {"Fn::GetAtt": ["TasksDeadLetterQueue", "QueueName"]}}]
    assert dead_letter["Threshold"] == 0 and dead_letter["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarms["OldestMessageAlarm"]["Properties"]["Threshold"] == {"Ref": "OldestMessageAgeAlarmSeconds"}
    assert alarms["Api5xxAlarm"]["Properties"]["Dimensions"] == [
        {"Name": "ApiName", "Value": template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]["info"]["title"]},
        {"Name": "Stage", "Value": "api"}]
    subscription = template["Resources"]["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail" and subscription["Properties"]["Protocol"] == "email"
    assert template["Parameters"]["AlarmEmail"]["Default"] == ""


def test_the_table_survives_a_deleted_or_replaced_stack_and_restores_to_any_second(template):
    table = template["Resources"]["TasksTable"]
    assert table["DeletionPolicy"] == "Retain" and table["UpdateReplacePolicy"] == "Retain"
    assert table["Properties"]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["Properties"]["TimeToLiveSpecification"]["Enabled"] is True


@pytest.mark.parametrize("auth", ["iam", "api_key", "none"])
def test_the_api_stage_is_throttled_in_every_auth_mode_and_logs_access(auth):
    from deploy.template import merge_template

    merge = merge_template(worker="process_tasks", worker_timeout=30, api_stage="api", auth=auth,
                           max_receive_count=5, routes=packaging.app_routes())
    api = merge["Resources"]["RestAPI"]["Properties"]
    [setting] = api["MethodSettings"]
    assert setting["ThrottlingRateLimit"] == {"Ref": "ApiThrottleRate"}
    assert setting["ThrottlingBurstLimit"] == {"Ref": "ApiThrottleBurst"}
    condition, logs, _ = api["AccessLogSetting"]["Fn::If"]
    assert condition == "ApiAccessLogsOn" and "$context.requestId" in logs["Format"]
    assert logs["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}


def test_functions_log_json_trace_by_parameter_and_fit_api_gateways_limit(template):
    resources = template["Resources"]
    for function, log_group in (("APIHandler", "ApiLogGroup"), ("ProcessTasks", "WorkerLogGroup"),
                                ("RecoverTasks", "RecoveryLogGroup")):
        properties = resources[function]["Properties"]
        assert properties["LoggingConfig"] == {"LogFormat": "JSON", "LogGroup": {"Ref": log_group}}
        assert properties["Tracing"] == {"Ref": "Tracing"}
    assert resources["APIHandler"]["Properties"]["Timeout"] <= 29
    assert resources["RecoverTasks"]["Properties"]["ReservedConcurrentExecutions"] == 1
    assert template["Parameters"]["Tracing"]["AllowedValues"] == ["Active", "PassThrough"]


def test_the_cloudwatch_dashboard_shows_the_flow(template):
    import re

    body, variables = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert variables["QueueName"] == {"Fn::GetAtt": ["TasksQueue", "QueueName"]}
    assert variables["WorkerFunction"] == {"Ref": "ProcessTasks"}
    placeholders = set(re.findall(r"\$\{([^}]+)\}", body))
    assert placeholders <= set(variables) | {"AWS::Region"}, placeholders - set(variables)
    widgets = json.loads(re.sub(r"\$\{([^}]+)\}", r"<\1>", body))["widgets"]
    shown = {(metric[0], metric[1], *[part for part in metric[2:] if isinstance(part, str)])
             for widget in widgets for metric in widget["properties"]["metrics"]}
    names = {(namespace, name) for namespace, name, *_ in shown}
    from chalicelib.metrics import NAMESPACE, UNITS
    assert {(NAMESPACE, name) for name in UNITS} <= names  # every metric the worker emits
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "<QueueName>") in shown
    assert ("AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", "<QueueName>") in shown
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "<DeadLetterQueueName>") in shown
    for function in ("<ApiFunction>", "<WorkerFunction>", "<RecoveryFunction>"):
        for metric in ("Errors", "Throttles", "Duration"):
            assert ("AWS/Lambda", metric, "FunctionName", function) in shown
    for metric in ("4XXError", "5XXError", "Latency"):
        assert ("AWS/ApiGateway", metric, "ApiName", "task-queue", "Stage", "api") in shown
