"""template.yaml keeps the promises the code relies on."""

import json
import re
from pathlib import Path
from typing import Any

import pytest

from avatarjobs.settings import Settings
from devstack.cloudformation import Stack, load_template

TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]


def test_every_allowed_dispatcher_timeout_gives_a_visibility_of_six_times_it() -> None:
    parameter = TEMPLATE["Parameters"]["DispatchFunctionTimeout"]
    mapping = TEMPLATE["Mappings"]["DispatchTimeouts"]
    assert sorted(int(value) for value in parameter["AllowedValues"]) == sorted(int(key) for key in mapping)
    for timeout, row in mapping.items():
        assert row["VisibilityTimeout"] >= 6 * int(timeout)
    visibility = RESOURCES["DispatchQueue"]["Properties"]["VisibilityTimeout"]
    assert visibility == {
        "Fn::FindInMap": ["DispatchTimeouts", {"Ref": "DispatchFunctionTimeout"}, "VisibilityTimeout"]
    }


def test_the_dispatch_queue_redrives_to_its_dead_letter_queue() -> None:
    policy = RESOURCES["DispatchQueue"]["Properties"]["RedrivePolicy"]
    assert policy["deadLetterTargetArn"] == {"Fn::GetAtt": ["DispatchDeadLetterQueue", "Arn"]}
    assert 3 <= policy["maxReceiveCount"] <= 5


def _api_function_routes() -> dict[tuple[str, str], dict[str, Any]]:
    events = RESOURCES["ApiFunction"]["Properties"]["Events"].values()
    return {
        (event["Properties"]["Path"], event["Properties"]["Method"].upper()): event["Properties"] for event in events
    }


def test_every_api_route_requires_an_api_key() -> None:
    api_auth = RESOURCES["JobsApi"]["Properties"]["Auth"]
    assert api_auth["ApiKeyRequired"] is True
    routes = {route for route in _api_function_routes() if route[1] not in ("ANY", "OPTIONS")}
    assert routes == {
        ("/jobs", "POST"),
        ("/jobs", "GET"),
        ("/jobs/{job_id}", "GET"),
        ("/jobs/{job_id}/cancel", "POST"),
        ("/uploads", "POST"),
        ("/models", "GET"),
        ("/voices", "GET"),
    }
    for (_, method), properties in _api_function_routes().items():
        assert properties["RestApiId"] == {"Ref": "JobsApi"}
        assert properties.get("Auth", {}).get("ApiKeyRequired", True) is (method != "OPTIONS")


def test_every_resource_of_the_api_function_takes_every_method_and_a_preflight_without_a_key() -> None:
    routes = _api_function_routes()
    resources = {path for path, _ in routes} | {"/models", "/voices"}
    for resource in resources:
        assert (resource, "ANY") in routes, resource  # the function answers 405 with Allow
        assert routes[(resource, "OPTIONS")]["Auth"] == {"ApiKeyRequired": False}, resource


def _gateway_response_headers(cors_allowed_origins: str) -> dict[str, dict[str, str]]:
    stack = Stack(TEMPLATE, parameters={"CorsAllowedOrigins": cors_allowed_origins})
    responses = stack.resolve(RESOURCES["JobsApi"]["Properties"]["GatewayResponses"])
    return {kind: response["ResponseParameters"]["Headers"] for kind, response in responses.items()}


def test_an_unknown_route_is_api_gateways_404_problem() -> None:
    unknown_route = RESOURCES["JobsApi"]["Properties"]["GatewayResponses"]["MISSING_AUTHENTICATION_TOKEN"]
    assert unknown_route["StatusCode"] == "404"
    for template in unknown_route["ResponseTemplates"].values():
        problem = json.loads(template)
        assert (problem["status"], problem["code"], problem["title"]) == (404, "not_found", "Not Found")
        assert problem["detail"]


def test_cors_is_off_unless_origins_are_given_and_the_api_function_reads_them() -> None:
    parameter = TEMPLATE["Parameters"]["CorsAllowedOrigins"]
    assert parameter["Default"] == ""
    environment = RESOURCES["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert environment["CORS_ALLOWED_ORIGINS"] == {"Ref": "CorsAllowedOrigins"}
    for origins in ("", "https://app.example.com", "https://a.example.com,http://localhost:5173"):
        assert re.fullmatch(parameter["AllowedPattern"], origins)
    for origins in ("*", "app.example.com", "https://app.example.com/", "https://a.example.com, https://b.example"):
        assert not re.fullmatch(parameter["AllowedPattern"], origins)


@pytest.mark.parametrize(
    ("origins", "allowed_origin"),
    [
        ("", None),
        ("https://app.example.com", "'https://app.example.com'"),
        ("https://a.example,https://b.example", None),
    ],
)
def test_gateway_responses_name_the_allowed_origin_only_when_there_is_exactly_one(
    origins: str, allowed_origin: str | None
) -> None:
    for kind, headers in _gateway_response_headers(origins).items():
        assert headers["Content-Type"] == "'application/problem+json'", kind
        assert headers.get("Access-Control-Allow-Origin") == allowed_origin, kind
        assert headers.get("Vary") == ("'Origin'" if allowed_origin else None), kind


def test_the_jobs_table_has_the_indexes_the_repository_queries() -> None:
    table = RESOURCES["JobsTable"]["Properties"]
    indexes = {index["IndexName"]: index["KeySchema"] for index in table["GlobalSecondaryIndexes"]}
    assert indexes == {
        "by_owner": [{"AttributeName": "owner", "KeyType": "HASH"}, {"AttributeName": "job_id", "KeyType": "RANGE"}],
        "by_owner_status": [
            {"AttributeName": "owner_status", "KeyType": "HASH"},
            {"AttributeName": "job_id", "KeyType": "RANGE"},
        ],
        "by_status": [
            {"AttributeName": "status", "KeyType": "HASH"},
            {"AttributeName": "status_since", "KeyType": "RANGE"},
        ],
    }
    assert table["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


@pytest.mark.parametrize("bucket", ["InputsBucket", "OutputsBucket"])
def test_buckets_are_private_encrypted_and_abort_stale_uploads(bucket: str) -> None:
    properties = RESOURCES[bucket]["Properties"]
    assert all(properties["PublicAccessBlockConfiguration"].values())
    assert properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    rules = properties["LifecycleConfiguration"]["Rules"]
    assert any(rule.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation") == 1 for rule in rules)


def test_the_api_function_gets_every_setting_the_code_reads(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    environment = stack.function_environment("ApiFunction")
    for name in list(environment):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_environment()
    assert settings.jobs_table_name == stack.refs["JobsTable"]
    assert settings.dispatch_queue_url == stack.refs["DispatchQueue"]


def test_the_dispatcher_reads_its_queue_with_partial_failures_and_capped_concurrency() -> None:
    dispatcher = RESOURCES["DispatchFunction"]["Properties"]
    assert dispatcher["Timeout"] == {"Ref": "DispatchFunctionTimeout"}  # the queue's visibility is 6x this
    [source] = dispatcher["Events"].values()
    assert source["Type"] == "SQS"
    assert source["Properties"]["Queue"] == {"Fn::GetAtt": ["DispatchQueue", "Arn"]}
    assert source["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert source["Properties"]["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "ProviderMaxConcurrency"}}
    # The dispatcher needs 75 s per submit attempt: its default timeout must leave room for that.
    assert int(TEMPLATE["Parameters"]["DispatchFunctionTimeout"]["Default"]) >= 75 + 30


def test_every_dead_letter_queue_of_a_job_queue_has_the_consumer_that_fails_the_jobs() -> None:
    sources = RESOURCES["DeadLetterFunction"]["Properties"]["Events"].values()
    queues = {source["Properties"]["Queue"]["Fn::GetAtt"][0] for source in sources}
    redriven = {
        resource["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for resource in RESOURCES.values()
        if resource["Type"] == "AWS::SQS::Queue" and "RedrivePolicy" in resource.get("Properties", {})
    }
    assert queues == redriven == {"DispatchDeadLetterQueue", "FinalizeDeadLetterQueue"}
    for source in sources:
        assert source["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_the_webhooks_need_no_api_key_and_everything_else_does() -> None:
    events = RESOURCES["WebhookFunction"]["Properties"]["Events"].values()
    assert {event["Properties"]["Path"] for event in events} == {
        "/webhooks/fal/{job_id}",
        "/webhooks/mirako/{job_id}",
    }
    for event in events:
        assert event["Properties"]["Auth"] == {"ApiKeyRequired": False}


def test_the_finalize_queue_visibility_is_six_times_the_finalizer_timeout() -> None:
    mapping = TEMPLATE["Mappings"]["FinalizeTimeouts"]
    for timeout, row in mapping.items():
        assert row["VisibilityTimeout"] >= 6 * int(timeout)
    finalize = RESOURCES["FinalizeFunction"]["Properties"]
    assert finalize["Timeout"] == {"Ref": "FinalizeFunctionTimeout"}
    policy = RESOURCES["FinalizeQueue"]["Properties"]["RedrivePolicy"]
    assert policy["deadLetterTargetArn"] == {"Fn::GetAtt": ["FinalizeDeadLetterQueue", "Arn"]}


def test_no_deployed_function_may_reach_loopback_or_plain_http() -> None:
    for logical_id, resource in RESOURCES.items():
        if resource["Type"] == "AWS::Serverless::Function":
            variables = resource["Properties"].get("Environment", {}).get("Variables", {})
            assert "AVATARJOBS_ALLOW_LOOPBACK_HTTP" not in variables, logical_id
    assert "AVATARJOBS_ALLOW_LOOPBACK_HTTP" not in TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]


def test_every_queue_a_job_can_end_in_is_alarmed() -> None:
    alarmed = {
        resource["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for resource in RESOURCES.values()
        if resource["Type"] == "AWS::CloudWatch::Alarm" and resource["Properties"].get("Namespace") == "AWS/SQS"
    }
    last_stops = {"DispatchDeadLetterQueue", "FinalizeDeadLetterQueue", "NotifyFailureQueue", "IngestDeadLetterQueue"}
    assert last_stops <= alarmed


def _statements(function: str) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    for policy in RESOURCES[function]["Properties"].get("Policies", []):
        for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
            statements.append(statement)
    return statements


def test_the_reconciler_may_send_to_both_job_queues() -> None:
    """It resends the message of a silent ACCEPTED job (dispatch) and of a silent FINALIZING job (finalize)."""
    queues: set[str] = set()
    for statement in _statements("ReconcileFunction"):
        if "sqs:SendMessage" in statement.get("Action", []):
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            queues |= {resource["Fn::GetAtt"][0] for resource in resources}
    assert queues == {"DispatchQueue", "FinalizeQueue"}


def _parameter_default(name: str) -> str:
    return str(TEMPLATE["Parameters"][name]["Default"])


def test_the_account_wide_api_gateway_role_is_set_only_when_asked_and_stage_logs_follow_the_choice() -> None:
    assert _parameter_default("ApiStageLogging") == "off"
    assert TEMPLATE["Conditions"]["CreatesApiGatewayAccountRole"] == {
        "Fn::Equals": [{"Ref": "ApiStageLogging"}, "create-account-role"]
    }
    assert TEMPLATE["Conditions"]["HasApiStageLogging"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ApiStageLogging"}, "off"]}]
    }
    for logical_id in ("ApiGatewayCloudWatchRole", "ApiGatewayAccount"):
        assert RESOURCES[logical_id]["Condition"] == "CreatesApiGatewayAccountRole"
    # The stage waits for the account setting when this stack makes it, without naming a resource that may not exist.
    api = RESOURCES["JobsApi"]
    handle = RESOURCES[api["DependsOn"]]
    assert handle["Metadata"]["AccountSettings"]["Fn::If"][:2] == [
        "CreatesApiGatewayAccountRole",
        {"Ref": "ApiGatewayAccount"},
    ]
    # API Gateway refuses access and execution logs while the account has no role: both follow the same condition.
    assert api["Properties"]["AccessLogSetting"]["Fn::If"][0] == "HasApiStageLogging"
    assert RESOURCES["JobsApiAccessLogGroup"]["Condition"] == "HasApiStageLogging"
    for setting in api["Properties"]["MethodSettings"]:
        assert setting["LoggingLevel"] == {"Fn::If": ["HasApiStageLogging", "ERROR", "OFF"]}
        assert setting["DataTraceEnabled"] is False


def test_each_webhook_route_has_a_throttle_of_its_own_apart_from_the_clients() -> None:
    settings = RESOURCES["JobsApi"]["Properties"]["MethodSettings"]
    routes = [event["Properties"] for event in RESOURCES["WebhookFunction"]["Properties"]["Events"].values()]
    for route in routes:
        escaped = route["Path"].replace("/", "~1")
        [setting] = [s for s in settings if s["ResourcePath"] == f"/{escaped}"]
        assert setting["HttpMethod"] == route["Method"].upper() == "POST"
        assert setting["ThrottlingRateLimit"] == {"Ref": "WebhookThrottleRateLimit"}
        assert setting["ThrottlingBurstLimit"] == {"Ref": "WebhookThrottleBurstLimit"}
    assert int(_parameter_default("WebhookThrottleRateLimit")) < int(_parameter_default("StageThrottleRateLimit"))
    assert int(_parameter_default("WebhookThrottleBurstLimit")) < int(_parameter_default("StageThrottleBurstLimit"))


def test_the_finalize_and_dead_letter_consumers_have_capped_concurrency_that_leaves_a_new_account_room() -> None:
    [finalize] = RESOURCES["FinalizeFunction"]["Properties"]["Events"].values()
    assert finalize["Properties"]["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "FinalizeMaxConcurrency"}}
    for source in RESOURCES["DeadLetterFunction"]["Properties"]["Events"].values():
        assert source["Properties"]["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "DeadLetterMaxConcurrency"}}
    for name in ("FinalizeMaxConcurrency", "DeadLetterMaxConcurrency"):
        parameter = TEMPLATE["Parameters"][name]
        assert (parameter["MinValue"], parameter["MaxValue"]) == (2, 1000)  # Lambda's bounds
    # A new account may have 10: the steady consumers leave at least 3 for the API, webhooks and notifier.
    assert int(_parameter_default("ProviderMaxConcurrency")) + int(_parameter_default("FinalizeMaxConcurrency")) <= 7


def _alarms() -> dict[str, dict[str, Any]]:
    return {k: r["Properties"] for k, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def _dimension_refs(alarm: dict[str, Any]) -> set[str]:
    values = [dimension["Value"] for dimension in alarm.get("Dimensions", [])]
    return {value.get("Ref") or value.get("Fn::GetAtt", [""])[0] for value in values if isinstance(value, dict)}


def test_the_pipeline_gaps_are_alarmed() -> None:
    alarms = list(_alarms().values())

    def alarmed(namespace: str, metric: str, resource: str | None = None) -> list[dict[str, Any]]:
        return [
            a
            for a in alarms
            if a["Namespace"] == namespace
            and a["MetricName"] == metric
            and (resource is None or resource in _dimension_refs(a))
        ]

    assert alarmed("AWS/Lambda", "Errors", "ApiFunction")
    assert alarmed("AWS/ApiGateway", "5XXError", "AWS::StackName")
    [latency] = alarmed("AWS/ApiGateway", "Latency", "AWS::StackName")
    assert latency["ExtendedStatistic"] == "p99"
    [throttles] = alarmed("AWS/Lambda", "Throttles")
    assert "Dimensions" not in throttles  # account-wide: every function shares the account's concurrency
    assert alarmed("AWS/Lambda", "IteratorAge", "NotifyFunction")
    assert alarmed("AWS/SQS", "ApproximateAgeOfOldestMessage", "DispatchQueue")
    # The runtime's Powertools metric: its namespace and service dimension as the functions get them.
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    [poison] = alarmed(variables["POWERTOOLS_METRICS_NAMESPACE"], "PoisonMessagesDropped")
    assert poison["Dimensions"] == [{"Name": "service", "Value": variables["POWERTOOLS_SERVICE_NAME"]}]


def test_every_alarm_notifies_the_alarm_topic_and_the_stack_says_when_there_is_none() -> None:
    actions = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    for logical_id, alarm in _alarms().items():
        assert alarm["AlarmActions"] == alarm["OKActions"] == actions, logical_id
    assert _parameter_default("AlarmTopicArn") == ""
    assert TEMPLATE["Conditions"]["HasNoAlarmTopic"] == {"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}
    assert TEMPLATE["Outputs"]["AlarmsNotifyNobody"]["Condition"] == "HasNoAlarmTopic"


def test_the_dashboard_body_is_json_and_shows_jobs_failures_by_code_and_queue_ages() -> None:
    body, variables = RESOURCES["PipelineDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert (
        variables["Namespace"]
        == TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]
    )
    assert (
        variables["Service"] == TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    )
    for reference in re.findall(r"\$\{([^}]+)\}", body):
        name = reference.split(".")[0]
        assert name in RESOURCES or name in TEMPLATE["Parameters"] or name in variables or name.startswith("AWS::")
    widgets = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))["widgets"]
    text = json.dumps(widgets)
    for shown in ("JobsAccepted", "'job failed'", "by code", "'job event published'", "ApproximateAgeOfOldestMessage"):
        assert shown in text
    # Metric names of our namespace are the ones the code emits (add_metric), or the runtime's poison count.
    emitted = set(re.findall(r'add_metric\(name="(\w+)"', _source_text())) | {
        "WebhookRecorded",
        "PoisonMessagesDropped",
    }
    ours: set[str] = set()
    for widget in (w for w in widgets if w["type"] == "metric"):
        namespace = ""
        for row in widget["properties"]["metrics"]:
            namespace = namespace if row[0] in (".", "...") else row[0]
            if namespace == "x" and row[0] != "...":  # ${Namespace}
                ours.add(row[1])
    assert ours <= emitted


def _source_text() -> str:
    root = Path(__file__).resolve().parents[2]
    return "".join(
        path.read_text() for folder in ("functions", "layers/common") for path in (root / folder).rglob("*.py")
    )


def test_a_deploy_without_any_provider_key_is_refused() -> None:
    [assertion] = TEMPLATE["Rules"]["AProviderKeyIsGiven"]["Assertions"]
    assert assertion["Assert"] == {
        "Fn::Not": [
            {
                "Fn::And": [
                    {"Fn::Equals": [{"Ref": "FalKeySecretArn"}, ""]},
                    {"Fn::Equals": [{"Ref": "MirakoKeySecretArn"}, ""]},
                ]
            }
        ]
    }


@pytest.mark.parametrize("parameter", ["FalKeySecretArn", "MirakoKeySecretArn"])
def test_a_secret_parameter_takes_only_a_full_arn_with_its_random_suffix(parameter: str) -> None:
    pattern = TEMPLATE["Parameters"][parameter]["AllowedPattern"]
    assert re.fullmatch(pattern, "")
    assert re.fullmatch(pattern, "arn:aws:secretsmanager:eu-west-1:123456789012:secret:avatarjobs/fal-key-AbC1eF")
    assert not re.fullmatch(pattern, "arn:aws:secretsmanager:eu-west-1:123456789012:secret:avatarjobs/fal-key")
    assert not re.fullmatch(pattern, "arn:aws:secretsmanager:eu-west-1:123456789012:secret:fal-key-AbC1")


def test_the_layer_is_named_after_the_stack() -> None:
    assert RESOURCES["CommonLayer"]["Properties"]["LayerName"] == {"Fn::Sub": "${AWS::StackName}-common"}


def test_queues_use_free_sqs_managed_encryption_and_tables_the_aws_owned_key() -> None:
    for logical_id, resource in RESOURCES.items():
        if resource["Type"] == "AWS::SQS::Queue":
            assert resource["Properties"]["SqsManagedSseEnabled"] is True, logical_id
            assert "KmsMasterKeyId" not in resource["Properties"], logical_id
        if resource["Type"] == "AWS::DynamoDB::Table":
            # No SSESpecification: DynamoDB's AWS-owned key, free (SSEEnabled: aws/dynamodb, billed by KMS).
            assert "SSESpecification" not in resource["Properties"], logical_id


@pytest.mark.parametrize(
    ("content_length", "refused"),
    [
        ("5242881", False),  # over our own 5 MiB limit: our handler answers 413 itself
        ("5999999", False),
        ("6000000", True),
        ("6291456", True),  # Lambda's invoke payload limit
        ("10485760", True),  # API Gateway's own limit
        ("123456789", True),
        ("600000", False),
    ],
)
def test_when_asked_a_web_acl_answers_413_to_bodies_lambdas_invoke_cannot_take(
    content_length: str, refused: bool
) -> None:
    assert _parameter_default("RejectOversizeBodies") == "false"  # a web ACL costs money: opt in
    acl = RESOURCES["OversizeBodyWebAcl"]
    association = RESOURCES["OversizeBodyWebAclAssociation"]
    assert acl["Condition"] == association["Condition"] == "RejectsOversizeBodies"
    [rule] = acl["Properties"]["Rules"]
    match = rule["Statement"]["RegexMatchStatement"]
    assert match["FieldToMatch"] == {"SingleHeader": {"Name": "content-length"}}
    assert bool(re.fullmatch(match["RegexString"], content_length)) is refused
    response = rule["Action"]["Block"]["CustomResponse"]
    body = acl["Properties"]["CustomResponseBodies"][response["CustomResponseBodyKey"]]
    assert response["ResponseCode"] == 413
    assert json.loads(body["Content"])["code"] == "payload_too_large"
    assert "${JobsApi.Stage}" in association["Properties"]["ResourceArn"]["Fn::Sub"]
