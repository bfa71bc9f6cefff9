"""What running the stack takes beyond its resources: alarms, a table that
survives mistakes, API throttling and access logs, and Lambda settings.

Merged by deploy/template.py into the stack. Every figure a team may want to
change is a stack parameter.
"""
from __future__ import annotations

import json
from typing import Any, Dict

API_NAME = "task-queue"  # the title of the OpenAPI body Chalice writes: API Gateway's name for the API
API_TIMEOUT_SECONDS = 29  # API Gateway cuts a request at 29 s; the function never outlives it

PARAMETERS: Dict[str, Any] = {
    "AlarmEmail": {"Type": "String", "Default": "",
                   "Description": "An address subscribed to the alarms' topic (empty: none)"},
    "OldestMessageAgeAlarmSeconds": {"Type": "Number", "Default": 900, "MinValue": 60,
                                     "Description": "Alarm when the oldest queued message is older than this"},
    "ApiThrottleRate": {"Type": "Number", "Default": 100, "MinValue": 1,
                        "Description": "Steady requests a second the API stage allows, in every auth mode"},
    "ApiThrottleBurst": {"Type": "Number", "Default": 200, "MinValue": 1,
                         "Description": "Requests the API stage allows in a burst"},
    "Tracing": {"Type": "String", "Default": "PassThrough", "AllowedValues": ["Active", "PassThrough"],
                "Description": "X-Ray tracing of the functions"},
    "ApiAccessLogs": {"Type": "String", "Default": "on", "AllowedValues": ["on", "off"],
                      "Description": "Access logs of the API stage; they need the region's API Gateway "
                                     "CloudWatch Logs role (an account setting)"},
}

CONDITIONS = {
    "HasAlarmEmail": {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]},
    "ApiAccessLogsOn": {"Fn::Equals": [{"Ref": "ApiAccessLogs"}, "on"]},
}


def _alarm(description: str, namespace: str, metric: str, dimensions: Dict[str, Any], statistic: str,
           threshold: Any, comparison: str = "GreaterThanThreshold", period: int = 60) -> dict:
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmDescription": description,
            "Namespace": namespace, "MetricName": metric,
            "Dimensions": [{"Name": name, "Value": value} for name, value in dimensions.items()],
            "Statistic": statistic, "Period": period, "EvaluationPeriods": 1,
            "Threshold": threshold, "ComparisonOperator": comparison,
            "TreatMissingData": "notBreaching",
            "AlarmActions": [{"Ref": "AlarmTopic"}], "OKActions": [{"Ref": "AlarmTopic"}],
        },
    }


def alarms(worker_function: str, api_stage: str) -> Dict[str, Any]:
    queue_name = {"Fn::GetAtt": ["TasksQueue", "QueueName"]}
    return {
        "AlarmTopic": {"Type": "AWS::SNS::Topic", "Properties": {"KmsMasterKeyId": "alias/aws/sns"}},
        "AlarmEmailSubscription": {
            "Type": "AWS::SNS::Subscription", "Condition": "HasAlarmEmail",
            "Properties": {"TopicArn": {"Ref": "AlarmTopic"}, "Protocol": "email",
                           "Endpoint": {"Ref": "AlarmEmail"}},
        },
        # Received, not visible: the dead-letter consumer takes a message within seconds,
        # so the queue's depth would rarely be sampled above zero.
        "DeadLetterAlarm": _alarm(
            "A message reached the dead-letter queue: a task failed all its attempts, or the queue "
            "gave up on its message",
            "AWS/SQS", "NumberOfMessagesReceived",
            {"QueueName": {"Fn::GetAtt": ["TasksDeadLetterQueue", "QueueName"]}}, "Sum", 0),
        "OldestMessageAlarm": _alarm(
            "The oldest queued message waits longer than OldestMessageAgeAlarmSeconds",
            "AWS/SQS", "ApproximateAgeOfOldestMessage", {"QueueName": queue_name}, "Maximum",
            {"Ref": "OldestMessageAgeAlarmSeconds"}),
        "WorkerErrorsAlarm": _alarm(
            "The worker function failed", "AWS/Lambda", "Errors",
            {"FunctionName": {"Ref": worker_function}}, "Sum", 0, period=300),
        "WorkerThrottlesAlarm": _alarm(
            "The worker function was throttled", "AWS/Lambda", "Throttles",
            {"FunctionName": {"Ref": worker_function}}, "Sum", 0, period=300),
        "Api5xxAlarm": _alarm(
            "The API answered 5xx", "AWS/ApiGateway", "5XXError",
            {"ApiName": API_NAME, "Stage": api_stage}, "Sum", 0, period=300),
    }


def table_protection() -> Dict[str, Any]:
    """Kept through a stack's deletion or replacement, and restorable to any second
    of the last 35 days."""
    return {
        "DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain",
        "Properties": {"PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True}},
    }


def api_stage_settings() -> Dict[str, Any]:
    access_format = ('{"requestId":"$context.requestId","ip":"$context.identity.sourceIp",'
                     '"method":"$context.httpMethod","path":"$context.resourcePath",'
                     '"status":"$context.status","latencyMs":"$context.responseLatency",'
                     '"bytes":"$context.responseLength"}')
    return {
        "MethodSettings": [{"ResourcePath": "/*", "HttpMethod": "*",
                            "ThrottlingRateLimit": {"Ref": "ApiThrottleRate"},
                            "ThrottlingBurstLimit": {"Ref": "ApiThrottleBurst"}}],
        "AccessLogSetting": {"Fn::If": ["ApiAccessLogsOn", {
            "DestinationArn": {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}, "Format": access_format,
        }, {"Ref": "AWS::NoValue"}]},
    }


def function_settings(log_group: str) -> Dict[str, Any]:
    """JSON logs (one object a line, the level and request id as fields) into the
    function's own log group, and tracing as the stack parameter says."""
    return {"LoggingConfig": {"LogFormat": "JSON", "LogGroup": {"Ref": log_group}},
            "Tracing": {"Ref": "Tracing"}}


def dashboard(worker_function: str, recovery_function: str, api_function: str, api_stage: str) -> Dict[str, Any]:
    """A CloudWatch dashboard of the flow: the worker's own metrics (chalicelib/metrics.py),
    the queue, the functions and the API."""
    def widget(title: str, metrics: list, stat: str = "Sum", y: int = 0, x: int = 0) -> dict:
        return {"type": "metric", "x": x, "y": y, "width": 12, "height": 6, "properties": {
            "title": title, "region": "${AWS::Region}", "stat": stat, "period": 60, "view": "timeSeries",
            "metrics": metrics}}

    functions = (("api", "${ApiFunction}"), ("worker", "${WorkerFunction}"), ("recovery", "${RecoveryFunction}"))
    body = {"widgets": [
        widget("Tasks a minute, by outcome", [
            ["TaskQueue", name, {"label": label}] for name, label in (
                ("TasksCompleted", "completed"), ("TasksFailed", "failed"),
                ("TasksRetried", "retried"), ("TasksDeadLettered", "dead-lettered"))]),
        widget("Queue wait and run time (ms)", [
            ["TaskQueue", name, {"stat": stat, "label": f"{label} {stat}"}]
            for name, label in (("QueueWait", "wait"), ("RunTime", "run")) for stat in ("p50", "p95")],
            stat="p50", x=12),
        widget("Queue", [
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "${QueueName}", {"label": "waiting"}],
            ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", "${QueueName}",
             {"label": "oldest (s)", "yAxis": "right"}],
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "${DeadLetterQueueName}",
             {"label": "dead letters", "color": "#d62728"}]], stat="Maximum", y=6),
        widget("Functions: errors and throttles", [
            ["AWS/Lambda", metric, "FunctionName", name, {"label": f"{label} {metric.lower()}"}]
            for label, name in functions for metric in ("Errors", "Throttles")], y=6, x=12),
        widget("Functions: duration p95 (ms)", [
            ["AWS/Lambda", "Duration", "FunctionName", name, {"label": label}] for label, name in functions],
            stat="p95", y=12),
        widget("API: errors and latency", [
            ["AWS/ApiGateway", "4XXError", "ApiName", API_NAME, "Stage", api_stage, {"label": "4xx"}],
            ["AWS/ApiGateway", "5XXError", "ApiName", API_NAME, "Stage", api_stage, {"label": "5xx"}],
            ["AWS/ApiGateway", "Latency", "ApiName", API_NAME, "Stage", api_stage,
             {"label": "latency p95 (ms)", "stat": "p95", "yAxis": "right"}]], y=12, x=12),
    ]}
    return {"Dashboard": {"Type": "AWS::CloudWatch::Dashboard", "Properties": {
        "DashboardName": {"Fn::Sub": "${AWS::StackName}"},
        "DashboardBody": {"Fn::Sub": [json.dumps(body), {
            "QueueName": {"Fn::GetAtt": ["TasksQueue", "QueueName"]},
            "DeadLetterQueueName": {"Fn::GetAtt": ["TasksDeadLetterQueue", "QueueName"]},
            "ApiFunction": {"Ref": api_function}, "WorkerFunction": {"Ref": worker_function},
            "RecoveryFunction": {"Ref": recovery_function}}]},
    }}}
