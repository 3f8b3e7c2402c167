"""The local stack runs template.yaml: API Gateway's behaviour, Lambda's event sources, and a clean stop.

One stack serves the module (see conftest); the template-drift and Ctrl-C tests start their own.
"""

import base64
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from devstack.api_gateway import LOCAL_API_KEY_ID, ApiGateway
from devstack.cloudformation import REGION, TEMPLATE_PATH, load_template
from devstack.event_sources import UnsupportedTemplate
from devstack.event_sources.dynamodb_stream import DynamoDBStreamSource, stream_record
from devstack.event_sources.patterns import check_pattern, filter_patterns, pattern_matches
from devstack.event_sources.sqs import sqs_record
from devstack.lambda_worker import FunctionError
from devstack.moto_server import local_session
from devstack.processes import REPO_ROOT
from devstack.stack import LocalStack
from tests.e2e.conftest import BROWSER_ORIGIN, FakeFal, Moto, moto_clients
from tests.support.polling import eventually

if TYPE_CHECKING:
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient

EVENTS = REPO_ROOT / "events"
PROBLEM_JSON = "application/problem+json"


def sample(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return document


def job_body(prompt: str = "Two people talking in a studio.", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(sample("api_create_job.json")["body"])
    return {**body, "prompt": prompt, **extra}


def create_job(api: httpx.Client, body: dict[str, Any]) -> str:
    response = api.post("/jobs", json=body)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def job_status(api: httpx.Client, job_id: str) -> dict[str, Any]:
    response = api.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


def assert_stopped(pids: list[int], threads: list[threading.Thread]) -> None:
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert [thread.name for thread in threads if thread.is_alive()] == []


# --- API Gateway ---------------------------------------------------------------------------------------------


def test_a_request_without_the_api_key_gets_api_gateways_403_problem(local: LocalStack) -> None:
    for headers in ({}, {"x-api-key": "not-the-key"}):
        response = httpx.post(f"{local.api_url}/jobs", json=job_body(), headers=headers)

        assert response.status_code == 403
        assert response.headers["content-type"] == PROBLEM_JSON
        assert response.json() == {
            "type": "about:blank",
            "title": "Forbidden",
            "status": 403,
            "code": "invalid_api_key",
            "detail": "Forbidden",
        }


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert (problem["status"], problem["code"]) == (status, code)
    assert problem["title"]
    assert problem["detail"]


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name.startswith("access-control-")}


def test_an_unknown_route_is_a_404_problem_even_with_a_valid_key(local: LocalStack, api: httpx.Client) -> None:
    stage_root = local.api_url.rsplit("/", 1)[0]
    for url in ("/nope", "/jobs/", "/jobs/x/y/z", "/webhooks/fal/x", f"{stage_root}/jobs"):
        assert_problem(api.get(url), 404, "not_found")


def test_a_method_a_resource_does_not_take_is_a_405_problem_with_allow(api: httpx.Client) -> None:
    for method, path, allow in [
        ("DELETE", "/jobs/01HZZZZZZZZZZZZZZZZZZZZZZZ", "GET, OPTIONS"),
        ("DELETE", "/jobs", "GET, OPTIONS, POST"),
        ("GET", "/jobs/01HZZZZZZZZZZZZZZZZZZZZZZZ/cancel", "OPTIONS, POST"),
        ("PUT", "/uploads", "OPTIONS, POST"),
    ]:
        response = api.request(method, path)

        assert_problem(response, 405, "method_not_allowed")
        assert response.headers["allow"] == allow


def test_a_preflight_from_the_allowed_origin_needs_no_key_and_is_allowed_what_the_api_reads(
    local: LocalStack,
) -> None:
    preflight = {
        "Origin": BROWSER_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, idempotency-key, prefer, x-api-key",
    }
    response = httpx.options(f"{local.api_url}/jobs", headers=preflight)

    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == BROWSER_ORIGIN
    assert response.headers["access-control-allow-methods"] == "GET, OPTIONS, POST"
    allowed = {name.strip().lower() for name in response.headers["access-control-allow-headers"].split(",")}
    assert allowed >= {"content-type", "idempotency-key", "prefer", "x-api-key"}
    assert int(response.headers["access-control-max-age"]) > 0
    assert response.headers["vary"] == "Origin"


def test_a_preflight_from_another_origin_gets_no_cors_headers(local: LocalStack) -> None:
    preflight = {"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"}
    response = httpx.options(f"{local.api_url}/jobs/01HZZZZZZZZZZZZZZZZZZZZZZZ", headers=preflight)

    assert response.status_code == 204
    assert response.headers["allow"] == "GET, OPTIONS"
    assert cors_headers(response) == {}


def test_the_functions_answers_name_the_allowed_origin_to_it_and_carry_no_cors_to_another(
    local: LocalStack, api: httpx.Client
) -> None:
    for method, path, status in [("GET", "/jobs", 200), ("DELETE", "/jobs", 405), ("GET", "/jobs/", 404)]:
        allowed = api.request(method, path, headers={"Origin": BROWSER_ORIGIN})
        other = api.request(method, path, headers={"Origin": "https://elsewhere.example"})

        assert allowed.status_code == other.status_code == status
        assert allowed.headers["access-control-allow-origin"] == BROWSER_ORIGIN
        assert "Location" in allowed.headers["access-control-expose-headers"]
        assert allowed.headers["vary"] == other.headers["vary"] == "Origin"
        assert cors_headers(other) == {}


def test_api_gateways_own_answers_name_the_one_allowed_origin_whoever_asks(local: LocalStack) -> None:
    # Gateway responses have static headers: the other origin is told which one may read it, so its browser refuses.
    for origin in (BROWSER_ORIGIN, "https://elsewhere.example"):
        unknown_route = httpx.get(f"{local.api_url}/nope", headers={"Origin": origin, "x-api-key": local.api_key})
        without_key = httpx.get(f"{local.api_url}/jobs", headers={"Origin": origin})

        for response, status in ((unknown_route, 404), (without_key, 403)):
            assert response.status_code == status
            assert cors_headers(response) == {"access-control-allow-origin": BROWSER_ORIGIN}
            assert response.headers["vary"] == "Origin"


def test_a_body_over_10_mb_is_refused_with_413(api: httpx.Client) -> None:
    response = api.post("/jobs", content=b"{" + b" " * (10 * 1024 * 1024) + b"}")

    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM_JSON


@pytest.fixture
def captured(local: LocalStack) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A second gateway on the same template whose "function" records its events and answers in binary."""
    events: list[dict[str, Any]] = []

    def record(_: str, event: dict[str, Any]) -> dict[str, Any]:
        events.append(event)
        body = base64.b64encode(b"\x00\xffvideo").decode()
        headers = {"Content-Type": "video/mp4"}
        return {"statusCode": 200, "headers": headers, "multiValueHeaders": {"X-Two": ["a", "b"]}, "body": body,
                "isBase64Encoded": True}  # fmt: skip

    gateway = ApiGateway(local.stack, record, "the-key")
    gateway.start()
    yield gateway.url, events
    gateway.stop()


def test_requests_become_rest_proxy_events_shaped_like_api_gateways(
    captured: tuple[str, list[dict[str, Any]]],
) -> None:
    url, events = captured

    response = httpx.get(f"{url}/jobs/01JD0000000000000000000000", params=[("a", "1"), ("a", "2")],
                         headers={"x-api-key": "the-key"})  # fmt: skip

    (event,) = events
    expected = sample("api_get_job.json")
    assert event.keys() == expected.keys()
    assert event["requestContext"].keys() == expected["requestContext"].keys()
    assert event["requestContext"]["identity"].keys() == expected["requestContext"]["identity"].keys()
    assert event["resource"] == "/jobs/{job_id}"
    assert event["path"] == "/jobs/01JD0000000000000000000000"
    assert event["pathParameters"] == {"job_id": "01JD0000000000000000000000"}
    assert event["requestContext"]["path"] == "/v1/jobs/01JD0000000000000000000000"
    assert event["requestContext"]["stage"] == "v1"
    assert event["requestContext"]["identity"]["apiKeyId"] == LOCAL_API_KEY_ID
    assert event["queryStringParameters"] == {"a": "2"}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"]}
    assert event["body"] is None
    assert event["isBase64Encoded"] is False
    # The function's answer back into HTTP: a base64 body as bytes, every header value.
    assert response.content == b"\x00\xffvideo"
    assert response.headers["content-type"] == "video/mp4"
    assert response.headers.get_list("x-two") == ["a", "b"]


def test_a_route_without_the_key_requirement_gets_no_key_identity_and_binary_bodies_in_base64(
    captured: tuple[str, list[dict[str, Any]]],
) -> None:
    url, events = captured

    text = httpx.post(f"{url}/webhooks/fal/01JD0000000000000000000000", content='{"é": 1}'.encode())
    binary = httpx.post(f"{url}/webhooks/mirako/01JD0000000000000000000000", content=b"\xff\xfe\x00")

    assert text.status_code == binary.status_code == 200
    first, second = events
    assert (first["body"], first["isBase64Encoded"]) == ('{"é": 1}', False)
    assert (second["body"], second["isBase64Encoded"]) == (base64.b64encode(b"\xff\xfe\x00").decode(), True)
    assert first["requestContext"]["identity"]["apiKeyId"] is None
    assert second["resource"] == "/webhooks/mirako/{job_id}"


# --- Lambda event sources ------------------------------------------------------------------------------------


def test_an_accepted_job_is_dispatched_to_the_provider_by_the_queue_poller(
    api: httpx.Client, local: LocalStack, fake_fal: FakeFal
) -> None:
    response = api.post("/jobs", json=job_body())
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert response.headers["location"] == f"/v1/jobs/{job_id}"

    submitted = eventually(lambda: (view := job_status(api, job_id))["status"] == "SUBMITTED" and view)

    (submit,) = fake_fal.submits_for(job_id)
    assert submit.model == "fal-ai/ai-avatar/multi-text"
    assert submit.webhook_url == f"{local.api_url}/webhooks/fal/{job_id}"  # PUBLIC_BASE_URL is the gateway
    assert submitted["timeline"].keys() >= {"ACCEPTED", "SUBMITTED"}


def test_a_message_that_fails_every_time_ends_in_the_dead_letter_queue_and_fails_its_job(
    api: httpx.Client, fake_fal: FakeFal, local: LocalStack
) -> None:
    # The fake answers 429 with Retry-After 1: the dispatcher backs off a second each time, and after the
    # dispatch queue's maxReceiveCount the message is in the dead-letter queue, where DeadLetterFunction
    # fails the job.
    receives = local.stack.template["Resources"]["DispatchQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"]
    job_id = create_job(api, job_body("[busy:1] Always busy."))

    failed = eventually(lambda: (view := job_status(api, job_id))["status"] == "FAILED" and view, timeout=40)

    assert failed["error"]["code"] == "DISPATCH_FAILED"
    assert f"after {receives} tries" in failed["error"]["message"]
    assert len(fake_fal.submits_for(job_id)) == receives


@pytest.fixture(scope="module")
def topic_queue(local: LocalStack, moto: Moto) -> str:
    """An SQS queue subscribed to the job events topic, as a subscriber would."""
    url = moto.sqs.create_queue(QueueName="e2e-topic-subscriber")["QueueUrl"]
    arn = moto.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    moto.sns.subscribe(TopicArn=local.stack.refs["JobEventsTopic"], Protocol="sqs", Endpoint=arn)
    return url


def subscriber_events(moto: Moto, queue_url: str, job_id: str, seen: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for message in moto.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        seen.append(json.loads(json.loads(message["Body"])["Message"]))
        moto.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return [event for event in seen if event["job_id"] == job_id]


def test_a_terminal_transition_reaches_the_notifier_through_the_table_stream(
    api: httpx.Client, moto: Moto, topic_queue: str
) -> None:
    job_id = create_job(api, job_body("[busy:60] Busy for a minute, so the job stays ACCEPTED."))
    canceled = api.post(f"/jobs/{job_id}/cancel")
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "CANCELED"

    seen: list[dict[str, Any]] = []
    (event,) = eventually(lambda: subscriber_events(moto, topic_queue, job_id, seen))

    assert (event["type"], event["status"], event["event_id"]) == ("job.canceled", "CANCELED", f"{job_id}:CANCELED")
    # Only terminal transitions pass the template's FilterCriteria: ACCEPTED (an INSERT) told nobody.
    assert [event["status"] for event in subscriber_events(moto, topic_queue, job_id, seen)] == ["CANCELED"]


def test_a_manifest_dropped_into_incoming_becomes_a_job_through_s3_eventbridge_and_the_rule(
    local: LocalStack, moto: Moto
) -> None:
    bucket = local.stack.refs["InputsBucket"]
    folder = f"incoming/{uuid.uuid4().hex}"
    moto.s3.put_object(Bucket=bucket, Key=f"{folder}/order.json", Body=json.dumps(job_body()).encode())

    def job_report() -> dict[str, Any] | None:
        listed = moto.s3.list_objects_v2(Bucket=bucket, Prefix=f"{folder}/order.job.json").get("Contents", [])
        if not listed:
            return None
        report: dict[str, Any] = json.loads(moto.s3.get_object(Bucket=bucket, Key=listed[0]["Key"])["Body"].read())
        return report

    report = eventually(job_report)

    item = moto.dynamodb.get_item(TableName=local.stack.refs["JobsTable"], Key={"job_id": {"S": report["job_id"]}})
    assert item["Item"]["owner"]["S"] == "intake:s3"


def test_an_avatar_video_requested_event_on_the_job_bus_becomes_a_job(local: LocalStack, moto: Moto) -> None:
    marker = uuid.uuid4().hex
    detail = job_body(metadata={"marker": marker})
    moto.events.put_events(
        Entries=[
            {
                "EventBusName": local.stack.refs["JobEventBus"],
                "Source": "com.example.orders",
                "DetailType": "Avatar Video Requested",
                "Detail": json.dumps(detail),
            }
        ]
    )

    def job_with_marker() -> list[dict[str, Any]]:
        items = moto.dynamodb.scan(TableName=local.stack.refs["JobsTable"])["Items"]
        return [item for item in items if marker in item.get("metadata", {}).get("S", "")]

    (item,) = eventually(job_with_marker)
    assert item["owner"]["S"] == "intake:events"


def test_a_stream_batch_that_keeps_failing_is_described_on_the_on_failure_queue(
    local: LocalStack, moto: Moto, api: httpx.Client
) -> None:
    job_id = create_job(api, job_body("[busy:60] Stays ACCEPTED until canceled."))
    assert api.post(f"/jobs/{job_id}/cancel").status_code == 200  # a terminal transition on the stream
    notify = local.stack.function("NotifyFunction")
    # The template's event source, with one retry instead of ten, around a notifier that always fails.
    properties = {**notify.events["JobsTableStream"].properties, "MaximumRetryAttempts": 1}
    invocations: list[int] = []

    def failing_notifier(_: str, event: dict[str, Any]) -> Any:
        invocations.append(len(event["Records"]))
        raise FunctionError("NotifyFunction", "Unhandled", "the topic is down")

    poller = DynamoDBStreamSource(failing_notifier, notify, local_streams(local), moto.sqs, properties)
    failure_queue = local.stack.refs["NotifyFailureQueue"]
    poller.start()
    try:
        (message,) = eventually(
            lambda: moto.sqs.receive_message(QueueUrl=failure_queue, WaitTimeSeconds=1).get("Messages", [])
        )
    finally:
        poller.stop()
        poller.join()

    document = json.loads(message["Body"])
    assert document["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert document["DDBStreamBatchInfo"]["streamArn"] == local.stack.attributes[("JobsTable", "StreamArn")]
    assert len(invocations) >= 2  # the first try and its retry (halves of the batch, when it had several)


def test_filter_criteria_match_exact_values_and_refuse_what_is_not_emulated(local: LocalStack) -> None:
    properties = local.stack.function("NotifyFunction").events["JobsTableStream"].properties
    (pattern,) = filter_patterns(properties)
    succeeded = sample("ddb_stream_job_succeeded.json")["Records"][0]
    inserted = {**succeeded, "eventName": "INSERT"}
    running = json.loads(json.dumps(succeeded).replace('"S": "SUCCEEDED"', '"S": "RUNNING"'))

    assert pattern_matches(pattern, succeeded)
    assert not pattern_matches(pattern, inserted)
    assert not pattern_matches(pattern, running)
    with pytest.raises(UnsupportedTemplate):
        check_pattern({"dynamodb": {"NewImage": {"status": {"S": [{"prefix": "SUCC"}]}}}})


def test_the_schedule_fires_the_reconciler_every_few_seconds(local: LocalStack) -> None:
    log = local.log_dir / "ReconcileFunction.log"

    def runs() -> int:
        return log.read_text().count('"message":"reconciled"') if log.exists() else 0

    before = runs()
    eventually(lambda: runs() >= before + 2, timeout=4 * 2.0 + 5)


def test_a_function_can_be_invoked_directly(local: LocalStack) -> None:
    result = local.invoke("ReconcileFunction", sample("schedule_reconcile.json"))

    assert result.keys() == {"polled", "timed_out", "requeued", "unconfirmed", "errors"}


def test_a_killed_worker_is_replaced_at_the_next_invocation_like_a_new_execution_environment(
    local: LocalStack,
) -> None:
    log = local.log_dir / "ReconcileFunction.log"
    before = log.read_bytes()
    killed = local.kill_worker("ReconcileFunction")

    result = local.invoke("ReconcileFunction", sample("schedule_reconcile.json"))

    assert result.keys() == {"polled", "timed_out", "requeued", "unconfirmed", "errors"}
    assert local.worker_pid("ReconcileFunction") != killed
    assert local.worker_restarts == {"ReconcileFunction": 1}
    assert [(fault["fault"], fault["function"], fault["pid"]) for fault in local.injected_faults()] == [
        ("worker_killed", "ReconcileFunction", killed)
    ]
    # The new worker logs after the old one, in the same log (one log group per function), cold.
    after = log.read_bytes()
    assert after.startswith(before)
    assert b'"cold_start":true' in after[len(before) :]


def test_pollers_shape_records_like_lambdas_sample_events(local: LocalStack, moto: Moto) -> None:
    queue_url = moto.sqs.create_queue(QueueName="e2e-shape")["QueueUrl"]
    moto.sqs.send_message(QueueUrl=queue_url, MessageBody='{"job_id": "01JD0000000000000000000001"}')
    (message,) = moto.sqs.receive_message(QueueUrl=queue_url, MessageSystemAttributeNames=["All"])["Messages"]
    record = sqs_record(message, "arn:aws:sqs:us-east-1:123456789012:e2e-shape")
    expected = sample("sqs_dispatch.json")["Records"][0]
    assert record.keys() == expected.keys()
    assert record["attributes"].keys() >= expected["attributes"].keys()

    streams = local_streams(local)
    stream_arn = local.stack.attributes[("JobsTable", "StreamArn")]
    shard = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    raw = streams.get_records(ShardIterator=iterator["ShardIterator"], Limit=1)["Records"][0]
    shaped = stream_record(raw, stream_arn)
    expected = sample("ddb_stream_job_succeeded.json")["Records"][0]
    assert shaped.keys() == expected.keys()
    assert shaped["dynamodb"].keys() <= expected["dynamodb"].keys()
    assert isinstance(shaped["dynamodb"]["ApproximateCreationDateTime"], int)


def local_streams(local: LocalStack) -> "DynamoDBStreamsClient":
    return local_session().client("dynamodbstreams", region_name=REGION, endpoint_url=local.endpoint_url)


# --- Made from the template; stopped completely ------------------------------------------------------------


def test_the_stack_follows_a_renamed_queue_in_its_template_and_leaves_nothing_running(
    fake_fal: FakeFal, tmp_path: Path
) -> None:
    renamed = tmp_path / "template.yaml"
    renamed.write_text(re.sub(r"\bDispatchQueue\b", "SubmitQueue", TEMPLATE_PATH.read_text()))

    with LocalStack(load_template(renamed), fal_base_url=fake_fal.url, log_dir=tmp_path / "logs") as local:
        pids, threads = local.child_pids, local.threads
        queues = moto_clients(local.endpoint_url).sqs.list_queues()["QueueUrls"]
        assert any(url.endswith("/avatarjobs-SubmitQueue") for url in queues)
        assert not any(url.endswith("/avatarjobs-DispatchQueue") for url in queues)
        with httpx.Client(base_url=local.api_url, headers={"x-api-key": local.api_key}) as api:
            job_id = create_job(api, job_body())  # the API sends to the renamed queue; its poller takes it
            eventually(lambda: job_status(api, job_id)["status"] == "SUBMITTED")
        assert len(pids) == 1 + len(local.stack.functions())  # moto and one worker per function
        assert all(thread.is_alive() for thread in threads)

    assert_stopped(pids, threads)


def _read_until(process: "subprocess.Popen[str]", last: str, timeout: float) -> list[str]:
    """Lines of the process's stdout up to one starting with `last` (read in a thread: readline blocks)."""
    assert process.stdout is not None
    stdout = process.stdout
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:  # ends at the end of the output, when the process exits
        for line in iter(stdout.readline, ""):
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    said: list[str] = []
    while not said or not said[-1].startswith(last):
        try:
            said.append(lines.get(timeout=timeout).strip())
        except queue.Empty:
            pytest.fail(f"`devstack up` said only {said!r} in {timeout} s")
    return said


def test_ctrl_c_on_devstack_up_stops_every_process_it_started(tmp_path: Path) -> None:
    with (tmp_path / "up.log").open("w") as log:
        process = subprocess.Popen(  # noqa: S603  # our own interpreter and module
            [sys.executable, "-m", "devstack", "up", "--no-emulators", "--log-dir", str(tmp_path / "logs")],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, "DEVSTACK_SCHEDULE_SECONDS": "1"},
        )
        try:
            lines = _read_until(process, "# Ctrl-C", timeout=120)
            said = dict(line.removeprefix("export ").split("=", 1) for line in lines if line.startswith("export "))
            pids = [int(pid) for pid in lines[-2].removeprefix("# child pids:").split()]
            answer = httpx.get(f"{said['AVATARJOBS_BASE_URL']}/jobs", headers={"x-api-key": said["AVATARJOBS_API_KEY"]})
            assert answer.status_code == 200, answer.text

            process.send_signal(signal.SIGINT)

            assert process.wait(timeout=20) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert len(pids) >= 2
    assert_stopped(pids, [])
