"""The dispatcher under moto (template.yaml's queue and table) with the providers' HTTP under respx."""

import base64
import copy
import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
import respx

from avatarjobs import composition
from avatarjobs.domain.dispatch_service import INPUT_FETCH_MARGIN_SECONDS
from avatarjobs.domain.job import Job, JobStatus, isoformat, utc_now
from avatarjobs.domain.requests import FalMultiTextRequest, MirakoTalkingAvatarRequest
from avatarjobs.net.safe_fetch import SafeFetcher, UnsafeUrl
from devstack.cloudformation import REGION, Stack
from functions.dead_letter import app as dead_letter_app
from functions.dispatch import app as dispatch_app
from tests.api_events import OWNER, load_event
from tests.lambda_context import LambdaContext, SimulatedClock
from tests.support import moto_clients
from tests.support.aws_calls import calls_made

FAL = "https://queue.fal.run"
MIRAKO = "https://mirako.co"
PNG = b"\x89PNG\r\n\x1a\n" + b"face" * 16
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"voice" * 16
FAL_MODEL: Final = "fal-ai/ai-avatar/multi-text"


@pytest.fixture
def dispatch_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    for name, value in stack.function_environment("DispatchFunction").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FAL_KEY", "fal-secret-key")
    monkeypatch.setenv("MIRAKO_API_KEY", "mirako-secret-key")
    composition.reset()
    with respx.mock:  # any request to a route the test did not set fails loudly
        yield stack


def public_base_url() -> str:
    url = composition.provider_settings().public_base_url
    assert url is not None
    return url


def fal_job(**fields: Any) -> Job:
    request = FalMultiTextRequest(
        provider="fal",
        model=FAL_MODEL,
        image_url=fields.pop("image_url", "https://example.com/face.png"),
        first_text_input="Hi.",
        second_text_input="Hello!",
        prompt="Two people talking.",
        **fields,
    )
    return composition.jobs_service().create_job(OWNER, request).job


def mirako_job(image_url: str, audio_url: str) -> Job:
    request = MirakoTalkingAvatarRequest(
        provider="mirako", model="talking-avatar", image_url=image_url, audio_url=audio_url
    )
    return composition.jobs_service().create_job(OWNER, request).job


def data_uri(content_type: str, data: bytes) -> str:
    return f"data:{content_type};base64,{base64.b64encode(data).decode()}"


def received_records(stack: Stack, queue: str = "DispatchQueue", *, at_most: int = 1) -> list[dict[str, Any]]:
    """The next messages of the queue, as the SQS event source hands them to Lambda (with real receipt handles)."""
    sqs = moto_clients.sqs()
    messages = sqs.receive_message(
        QueueUrl=stack.refs[queue], MaxNumberOfMessages=at_most, MessageSystemAttributeNames=["All"]
    ).get("Messages", [])
    records = []
    for message in messages:
        record: dict[str, Any] = copy.deepcopy(load_event("sqs_dispatch.json")["Records"][0])
        record.update(
            messageId=message["MessageId"],
            receiptHandle=message["ReceiptHandle"],
            body=message["Body"],
            md5OfBody=message["MD5OfBody"],
            eventSourceARN=stack.attributes[(queue, "Arn")],
        )
        record["attributes"]["ApproximateReceiveCount"] = message["Attributes"]["ApproximateReceiveCount"]
        records.append(record)
    return records


def received_record(stack: Stack, queue: str = "DispatchQueue") -> dict[str, Any]:
    """The next message of the queue, as the SQS event source hands it to Lambda (with a real receipt handle)."""
    [record] = received_records(stack, queue)
    return record


def dispatch(
    *records: dict[str, Any], seconds_left: float = 120, clock: Callable[[], float] = time.monotonic
) -> list[str]:
    """Runs the dispatcher on one batch; returns the ids of the records it reported as failed."""
    context = LambdaContext("DispatchFunction", seconds_left=seconds_left, clock=clock)
    response = dispatch_app.lambda_handler({"Records": list(records)}, context)
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


def stored(job_id: str) -> Job:
    return composition.jobs_service().get_job(OWNER, job_id)


def fal_ticket(request_id: str) -> httpx.Response:
    """fal's answer to an accepted submit."""
    return httpx.Response(
        200,
        json={
            "request_id": request_id,
            "status": "IN_QUEUE",
            "status_url": f"{FAL}/fal-ai/ai-avatar/requests/{request_id}/status",
            "response_url": f"{FAL}/fal-ai/ai-avatar/requests/{request_id}",
            "cancel_url": f"{FAL}/fal-ai/ai-avatar/requests/{request_id}/cancel",
            "queue_position": 0,
        },
    )


def fal_accepts(request_id: str = "764cabcf-b745-4b3e-ae38-1200304cf45b") -> respx.Route:
    return respx.post(f"{FAL}/{FAL_MODEL}").mock(return_value=fal_ticket(request_id))


def test_a_job_is_submitted_with_our_webhook_and_its_request_id_recorded(dispatch_env: Stack) -> None:
    job = fal_job(num_frames=81)
    route = fal_accepts()
    with calls_made() as calls:
        assert dispatch(received_record(dispatch_env)) == []
    assert calls == ["dynamodb.UpdateItem", "dynamodb.UpdateItem"]  # the claim (no read first), then SUBMITTED

    [call] = route.calls
    url = urlsplit(str(call.request.url))
    assert parse_qs(url.query) == {"fal_webhook": [f"{public_base_url()}/webhooks/fal/{job.job_id}"]}
    assert call.request.headers["Authorization"] == "Key fal-secret-key"
    assert json.loads(call.request.content) == job.request
    submitted = stored(job.job_id)
    assert submitted.status == JobStatus.SUBMITTED
    assert submitted.provider_request_id == "764cabcf-b745-4b3e-ae38-1200304cf45b"
    # Kept as fal returned them: without the model's sub-path.
    assert submitted.provider_urls == {
        "status_url": f"{FAL}/fal-ai/ai-avatar/requests/764cabcf-b745-4b3e-ae38-1200304cf45b/status",
        "response_url": f"{FAL}/fal-ai/ai-avatar/requests/764cabcf-b745-4b3e-ae38-1200304cf45b",
        "cancel_url": f"{FAL}/fal-ai/ai-avatar/requests/764cabcf-b745-4b3e-ae38-1200304cf45b/cancel",
    }
    assert submitted.attempts == 1
    assert not submitted.submission_unconfirmed


def test_the_same_message_delivered_twice_submits_once(dispatch_env: Stack) -> None:
    job = fal_job()
    route = fal_accepts()
    record = received_record(dispatch_env)
    duplicate = {**record, "messageId": "duplicate-delivery"}
    assert dispatch(record, duplicate) == []
    submitted = stored(job.job_id)
    with calls_made() as calls:
        assert dispatch(record) == []
    assert calls == ["dynamodb.UpdateItem"]  # the refused claim returns the job: SUBMITTED, nothing to do
    assert route.call_count == 1
    assert stored(job.job_id) == submitted
    assert submitted.status == JobStatus.SUBMITTED
    assert submitted.attempts == 1


def test_a_job_another_dispatcher_holds_comes_back_later_unchanged(dispatch_env: Stack) -> None:
    job = fal_job()
    soon = isoformat(utc_now() + timedelta(minutes=2))
    held = composition.jobs_repository().update_fields(
        job, now=isoformat(utc_now()), changes={"dispatch_lease_until": soon, "attempts": 1}
    )
    route = fal_accepts()
    record = received_record(dispatch_env)
    with calls_made() as calls:
        assert dispatch(record) == [record["messageId"]]
    assert calls == ["dynamodb.UpdateItem", "sqs.ChangeMessageVisibility"]  # refused claim, then the backoff
    assert route.call_count == 0
    assert stored(job.job_id) == held


def test_too_little_time_for_a_submit_leaves_the_job_untouched(dispatch_env: Stack) -> None:
    job = fal_job()
    route = fal_accepts()
    record = received_record(dispatch_env)
    with calls_made() as calls:
        assert dispatch(record, seconds_left=60) == [record["messageId"]]
    assert calls == ["sqs.ChangeMessageVisibility"]
    assert route.call_count == 0
    assert stored(job.job_id) == job


def test_a_batch_longer_than_its_invocation_tries_every_message_before_it_spends_a_receive(
    dispatch_env: Stack,
) -> None:
    """Batches of 5, each submit taking 50 s of a 120 s invocation: one submit per invocation fits the budget, and
    the others go back as new messages, so no message is ever received a second time without having been tried."""
    jobs = [fal_job() for _ in range(5)]
    clock = SimulatedClock()
    request_ids = iter(f"0000000{n}-b745-4b3e-ae38-1200304cf45b" for n in range(5))

    def slow_accept(_: httpx.Request) -> httpx.Response:
        clock.advance(50)
        return fal_ticket(next(request_ids))

    route = respx.post(f"{FAL}/{FAL_MODEL}").mock(side_effect=slow_accept)
    sqs = moto_clients.sqs()
    receive_counts: dict[str, str] = {}  # message id: its ApproximateReceiveCount when handed to the dispatcher
    for _invocation in range(10):  # what the event source does: receive a batch, delete what was not reported
        records = received_records(dispatch_env, at_most=5)
        if not records:
            break
        for record in records:
            assert record["messageId"] not in receive_counts  # no message comes back
            receive_counts[record["messageId"]] = record["attributes"]["ApproximateReceiveCount"]
        failed = dispatch(*records, clock=clock)
        assert failed == []
        for record in records:
            sqs.delete_message(QueueUrl=dispatch_env.refs["DispatchQueue"], ReceiptHandle=record["receiptHandle"])

    assert route.call_count == 5
    # 5 + 4 + 3 + 2 + 1 messages: the untried ones were sent again as new messages, never received twice.
    assert len(receive_counts) == 15
    assert set(receive_counts.values()) == {"1"}
    for job in jobs:
        submitted = stored(job.job_id)
        assert (submitted.status, submitted.attempts) == (JobStatus.SUBMITTED, 1)
    dead = sqs.get_queue_attributes(
        QueueUrl=dispatch_env.refs["DispatchDeadLetterQueue"], AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert dead["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_two_concurrent_deliveries_submit_once(dispatch_env: Stack) -> None:
    job = fal_job()
    route = fal_accepts()
    accepted = route.return_value
    assert accepted is not None

    def slow_accept(_: httpx.Request) -> httpx.Response:
        time.sleep(0.3)  # keeps the first submit in flight while the second delivery arrives
        return accepted

    route.side_effect = slow_accept
    record = received_record(dispatch_env)
    barrier = threading.Barrier(2)
    failures: list[list[str]] = []

    def deliver(message_id: str) -> None:
        barrier.wait()
        failures.append(dispatch({**record, "messageId": message_id}))

    threads = [threading.Thread(target=deliver, args=(name,)) for name in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert route.call_count == 1
    assert len(failures) == 2
    assert stored(job.job_id).status == JobStatus.SUBMITTED


def test_a_retryable_failure_leaves_the_job_accepted_and_backs_off(dispatch_env: Stack) -> None:
    job = fal_job()
    respx.post(f"{FAL}/{FAL_MODEL}").mock(return_value=httpx.Response(429, headers={"Retry-After": "120"}))
    record = received_record(dispatch_env)
    assert dispatch(record) == [record["messageId"]]

    waiting = stored(job.job_id)
    assert waiting.status == JobStatus.ACCEPTED
    assert waiting.dispatch_lease_until is None
    assert waiting.last_error is not None
    assert waiting.last_error.code == "PROVIDER_RATE_LIMITED"
    # The message was made invisible for the provider's Retry-After instead of the queue's default.
    sqs = moto_clients.sqs()
    assert "Messages" not in sqs.receive_message(QueueUrl=dispatch_env.refs["DispatchQueue"])

    route = fal_accepts()  # the same route, now answering 200
    assert dispatch(record) == []  # the later delivery succeeds
    assert [call.response.status_code for call in route.calls] == [429, 200]
    assert stored(job.job_id).status == JobStatus.SUBMITTED


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_server_error_in_fals_own_words_is_retried(dispatch_env: Stack, status: int) -> None:
    job = fal_job()
    body = {"detail": "Service temporarily unavailable", "error_type": "runner_scheduling_failure"}
    respx.post(f"{FAL}/{FAL_MODEL}").mock(return_value=httpx.Response(status, json=body))
    record = received_record(dispatch_env)
    assert dispatch(record) == [record["messageId"]]
    assert stored(job.job_id).status == JobStatus.ACCEPTED


GATEWAY_PAGE = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"


@pytest.mark.parametrize(
    "lost",
    [
        *(
            httpx.Response(status, text=GATEWAY_PAGE, headers={"Content-Type": "text/html"})
            for status in (500, 502, 504)
        ),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("connection reset by peer"),
        httpx.WriteError("broken pipe"),
        httpx.WriteTimeout("write timed out"),
    ],
    ids=["gateway 500 page", "gateway 502 page", "gateway 504 page", "closed", "reset", "write error", "write timeout"],
)
def test_a_submit_that_may_have_reached_the_provider_is_never_sent_again(
    dispatch_env: Stack, lost: httpx.Response | httpx.TransportError
) -> None:
    job = fal_job()
    route = respx.post(f"{FAL}/{FAL_MODEL}")
    if isinstance(lost, httpx.Response):
        route.mock(return_value=lost)
    else:
        route.mock(side_effect=lost)
    record = received_record(dispatch_env)
    assert dispatch(record) == []
    assert dispatch(record) == []
    assert route.call_count == 1
    waiting = stored(job.job_id)
    assert (waiting.status, waiting.submission_unconfirmed) == (JobStatus.SUBMITTED, True)
    assert waiting.provider_request_id is None


@pytest.mark.parametrize("never_sent", [httpx.ConnectError("refused"), httpx.ConnectTimeout("syn lost")])
def test_a_request_that_never_left_is_retried(dispatch_env: Stack, never_sent: httpx.TransportError) -> None:
    job = fal_job()
    respx.post(f"{FAL}/{FAL_MODEL}").mock(side_effect=never_sent)
    record = received_record(dispatch_env)
    assert dispatch(record) == [record["messageId"]]
    released = stored(job.job_id)
    assert (released.status, released.dispatch_lease_until) == (JobStatus.ACCEPTED, None)


def test_fal_is_told_to_start_the_job_before_its_deadline_or_drop_it(dispatch_env: Stack) -> None:
    fal_job()
    route = fal_accepts()
    dispatch(received_record(dispatch_env))
    headers = route.calls.last.request.headers
    # FAL_START_TIMEOUT_SECONDS' default; the job's deadline (two hours) is later.
    assert headers["X-Fal-Request-Start-Timeout"] == headers["X-Fal-Request-Timeout"] == "1800"


def test_a_permanent_failure_fails_the_job_with_the_providers_message(dispatch_env: Stack) -> None:
    job = fal_job()
    detail = [{"loc": ["body", "image_url"], "msg": "Could not download the image", "type": "value_error"}]
    respx.post(f"{FAL}/{FAL_MODEL}").mock(return_value=httpx.Response(422, json={"detail": detail}))
    assert dispatch(received_record(dispatch_env)) == []
    failed = stored(job.job_id)
    assert failed.status == JobStatus.FAILED
    assert failed.error is not None
    assert "Could not download the image" in failed.error.message
    assert not failed.error.retryable


def test_a_lost_answer_is_never_resubmitted(dispatch_env: Stack) -> None:
    job = fal_job()
    route = respx.post(f"{FAL}/{FAL_MODEL}").mock(side_effect=httpx.ReadTimeout("no answer"))
    record = received_record(dispatch_env)
    assert dispatch(record) == []
    assert dispatch(record) == []
    assert route.call_count == 1
    waiting = stored(job.job_id)
    assert waiting.status == JobStatus.SUBMITTED
    assert waiting.submission_unconfirmed


def test_a_dispatcher_that_died_holding_the_lease_is_not_resubmitted(dispatch_env: Stack) -> None:
    job = fal_job()
    past = isoformat(utc_now() - timedelta(minutes=5))
    composition.jobs_repository().update_fields(job, now=past, changes={"dispatch_lease_until": past})
    route = fal_accepts()
    assert dispatch(received_record(dispatch_env)) == []
    assert route.call_count == 0
    assert stored(job.job_id).submission_unconfirmed


def test_a_job_canceled_during_its_submit_is_canceled_at_the_provider(dispatch_env: Stack) -> None:
    job = fal_job()
    accepted = fal_accepts()
    accepted_response = accepted.return_value
    assert accepted_response is not None

    def cancel_meanwhile(_: httpx.Request) -> httpx.Response:
        composition.jobs_service().cancel_job(OWNER, job.job_id)
        return accepted_response

    accepted.side_effect = cancel_meanwhile
    cancel = respx.put(f"{FAL}/fal-ai/ai-avatar/requests/764cabcf-b745-4b3e-ae38-1200304cf45b/cancel").mock(
        return_value=httpx.Response(200, json={"status": "CANCELLATION_REQUESTED"})
    )
    assert dispatch(received_record(dispatch_env)) == []
    assert cancel.call_count == 1
    assert stored(job.job_id).status == JobStatus.CANCELED


def test_an_unknown_job_is_acknowledged_without_a_call(dispatch_env: Stack) -> None:
    route = fal_accepts()
    record = copy.deepcopy(load_event("sqs_dispatch.json")["Records"][0])  # names a job that does not exist
    with calls_made() as calls:
        assert dispatch(record) == []
    assert calls == ["dynamodb.UpdateItem"]
    assert route.call_count == 0
    assert composition.jobs_repository().get(json.loads(record["body"])["job_id"]) is None  # no item made


def test_an_uploaded_input_reaches_fal_as_a_url_that_outlives_fals_start_deadline(dispatch_env: Stack) -> None:
    job = fal_job(image_url=data_uri("image/png", PNG))
    route = fal_accepts()
    assert dispatch(received_record(dispatch_env)) == []
    request = route.calls[0].request
    url = urlsplit(json.loads(request.content)["image_url"])
    assert url.scheme == "https"
    assert url.hostname == f"{dispatch_env.refs['InputsBucket']}.s3.amazonaws.com"
    assert url.path == f"/inline/{OWNER}/{job.job_id}/image_url"
    query = parse_qs(url.query)
    # Signed with a session of the input reader role (its end is known), not with the function's own credentials.
    assert query["X-Amz-Security-Token"] != [boto3.Session().get_credentials().token]  # type: ignore[union-attr]
    # It works for the start deadline fal is given plus the margin fal needs to fetch it as the run starts.
    start_deadline = int(request.headers["X-Fal-Request-Start-Timeout"])
    assert int(query["X-Amz-Expires"][0]) == start_deadline + INPUT_FETCH_MARGIN_SECONDS == 2100


def test_mirako_gets_the_bytes_and_a_per_job_webhook_token(dispatch_env: Stack) -> None:
    job = mirako_job(data_uri("image/png", PNG), data_uri("audio/wav", WAV))
    route = respx.post(f"{MIRAKO}/v1/video/async_generate_talking_avatar").mock(
        return_value=httpx.Response(200, json={"data": {"task_id": "xdac2o3c", "status": "IN_QUEUE"}})
    )
    assert dispatch(received_record(dispatch_env)) == []

    request = route.calls[0].request
    body = json.loads(request.content)
    assert request.headers["Authorization"] == "Bearer mirako-secret-key"
    assert set(body) == {"image", "audio", "webhook"}
    assert base64.b64decode(body["image"]) == PNG
    assert base64.b64decode(body["audio"]) == WAV
    assert body["webhook"]["url"] == f"{public_base_url()}/webhooks/mirako/{job.job_id}"
    submitted = stored(job.job_id)
    assert submitted.status == JobStatus.SUBMITTED
    assert submitted.provider_request_id == "xdac2o3c"
    # Only the token's hash is kept.
    assert submitted.webhook_token_sha256 == hashlib.sha256(body["webhook"]["auth_token"].encode()).hexdigest()
    assert body["webhook"]["auth_token"] not in json.dumps(submitted.model_dump())


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/face.png",
        "https://10.0.0.1/face.png",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/face.png",
    ],
)
def test_a_mirako_input_on_a_private_address_fails_the_job_and_nothing_is_fetched(
    dispatch_env: Stack, url: str
) -> None:
    job = mirako_job(url, data_uri("audio/wav", WAV))
    submit = respx.post(f"{MIRAKO}/v1/video/async_generate_talking_avatar")
    assert dispatch(received_record(dispatch_env)) == []
    failed = stored(job.job_id)
    assert failed.status == JobStatus.FAILED
    assert failed.error is not None
    assert failed.error.code == "INPUT_UNAVAILABLE"
    assert "image_url" in failed.error.message
    assert submit.call_count == 0


def test_a_dead_lettered_message_fails_its_job_with_the_last_reason(dispatch_env: Stack) -> None:
    job = fal_job()
    respx.post(f"{FAL}/{FAL_MODEL}").mock(return_value=httpx.Response(503, json={"detail": "overloaded"}))
    assert len(dispatch(received_record(dispatch_env))) == 1

    event = load_event("sqs_dead_letter.json")
    event["Records"][0]["body"] = json.dumps({"job_id": job.job_id})
    response = dead_letter_app.lambda_handler(event, LambdaContext("DeadLetterFunction"))
    assert response["batchItemFailures"] == []
    failed = stored(job.job_id)
    assert failed.status == JobStatus.FAILED
    assert failed.error is not None
    assert failed.error.code == "DISPATCH_FAILED"
    assert "after 1 tries" in failed.error.message
    assert failed.last_error is not None
    assert failed.last_error.message in failed.error.message


def test_a_dead_lettered_message_of_a_submitted_job_changes_nothing(dispatch_env: Stack) -> None:
    job = fal_job()
    fal_accepts()
    dispatch(received_record(dispatch_env))
    event = load_event("sqs_dead_letter.json")
    event["Records"][0]["body"] = json.dumps({"job_id": job.job_id})
    assert dead_letter_app.lambda_handler(event, LambdaContext("DeadLetterFunction"))["batchItemFailures"] == []
    assert stored(job.job_id).status == JobStatus.SUBMITTED


def test_the_sample_dispatch_event_runs(dispatch_env: Stack) -> None:
    route = fal_accepts()
    response = dispatch_app.lambda_handler(load_event("sqs_dispatch.json"), LambdaContext("DispatchFunction"))
    assert response == {"batchItemFailures": []}  # both name unknown jobs: acknowledged, nothing sent
    assert route.call_count == 0


def test_the_provider_key_comes_from_secrets_manager_when_no_key_is_set(
    dispatch_env: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="avatarjobs/fal", SecretString="fal-key-from-secrets-manager"
    )
    monkeypatch.delenv("FAL_KEY")
    monkeypatch.setenv("FAL_KEY_SECRET_ARN", secret["ARN"])
    composition.reset()
    fal_job()
    route = fal_accepts()
    assert dispatch(received_record(dispatch_env)) == []
    assert route.calls[0].request.headers["Authorization"] == "Key fal-key-from-secrets-manager"


def test_without_any_key_the_job_fails_and_says_so(dispatch_env: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAL_KEY")
    composition.reset()
    job = fal_job()
    assert dispatch(received_record(dispatch_env)) == []
    failed = stored(job.job_id)
    assert failed.status == JobStatus.FAILED
    assert failed.error is not None
    assert "no API key is configured" in failed.error.message


def test_a_key_secret_that_cannot_be_read_backs_the_job_off_with_nothing_sent(
    dispatch_env: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FAL_KEY")
    monkeypatch.setenv("FAL_KEY_SECRET_ARN", f"arn:aws:secretsmanager:{REGION}:123456789012:secret:missing-AbCdEf")
    composition.reset()
    job = fal_job()
    route = fal_accepts()
    record = received_record(dispatch_env)
    assert dispatch(record) == [record["messageId"]]
    assert route.call_count == 0
    retried = stored(job.job_id)
    assert (retried.status, retried.submission_unconfirmed) == (JobStatus.ACCEPTED, False)
    assert retried.last_error is not None
    assert "could not be read from Secrets Manager" in retried.last_error.message


def test_a_mirako_input_whose_name_resolves_to_a_private_address_fails_the_job(dispatch_env: Stack) -> None:
    lookups: list[str] = []

    def private_resolver(host: str, port: object, *args: object, **kwargs: object) -> list[Any]:
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.20.30.40", 443))]

    with composition.override(safe_fetcher=SafeFetcher(resolver=private_resolver)):
        respx.route(host="avatars.example.net").pass_through()  # to the fetcher's own vetting connection layer
        job = mirako_job("https://avatars.example.net/face.png", data_uri("audio/wav", WAV))
        submit = respx.post(f"{MIRAKO}/v1/video/async_generate_talking_avatar")
        assert dispatch(received_record(dispatch_env)) == []
        failed = stored(job.job_id)
        assert failed.status == JobStatus.FAILED
        assert failed.error is not None
        assert "avatars.example.net resolves to 10.20.30.40" in failed.error.message
        assert lookups == ["avatars.example.net"]
        assert submit.call_count == 0


def test_the_environment_template_yaml_gives_refuses_loopback(dispatch_env: Stack) -> None:
    assert composition.provider_settings().allow_loopback_http is False
    fetcher = composition.safe_fetcher()  # the one the dispatcher's media fetcher reads through
    with pytest.raises(UnsafeUrl):
        fetcher.fetch("http://127.0.0.1:8080/face.png", max_bytes=10, allowed_content_types={"image/png"})
