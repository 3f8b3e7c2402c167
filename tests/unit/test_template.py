"""template.yaml keeps the promises the code relies on."""

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


def test_every_api_route_requires_an_api_key() -> None:
    api_auth = RESOURCES["JobsApi"]["Properties"]["Auth"]
    assert api_auth["ApiKeyRequired"] is True
    events = RESOURCES["ApiFunction"]["Properties"]["Events"]
    routes = {(event["Properties"]["Path"], event["Properties"]["Method"].upper()) for event in events.values()}
    assert routes == {
        ("/jobs", "POST"),
        ("/jobs", "GET"),
        ("/jobs/{job_id}", "GET"),
        ("/jobs/{job_id}/cancel", "POST"),
        ("/uploads", "POST"),
    }
    for event in events.values():
        assert event["Properties"]["RestApiId"] == {"Ref": "JobsApi"}
        assert event["Properties"].get("Auth", {}).get("ApiKeyRequired", True) is True


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
