"""The completion path under moto and respx: webhooks, finalize, reconcile, and cancel at the provider."""

import hashlib
import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
from nacl.signing import SigningKey

from avatarjobs import composition
from avatarjobs.adapters.jobs_table import FINALIZING_OWNER_STATUS
from avatarjobs.call_deadline import API_GATEWAY_INTEGRATION_SECONDS, MARGIN_SECONDS
from avatarjobs.domain.ids import new_webhook_token
from avatarjobs.domain.job import Job, JobError, JobStatus, ProviderResult, isoformat, utc_now
from devstack.cloudformation import REGION, Stack
from functions.api import app as api_app
from functions.dead_letter import app as dead_letter_app
from functions.finalize import app as finalize_app
from functions.reconcile import app as reconcile_app
from functions.webhook import app as webhook_app
from tests.api_events import OWNER, api_event, load_event
from tests.lambda_context import LambdaContext
from tests.support import moto_clients
from tests.support.aws_calls import calls_made
from tests.support.completion import (
    FAL_URLS,
    MIRAKO,
    REQUEST_ID,
    VIDEO,
    VIDEO_URL,
    fal_body,
    new_fal_job,
    new_mirako_job,
    queued,
    submitted_fal_job,
    submitted_mirako_job,
)
from tests.support.job_states import backdate, move
from tests.support.subscribers import Channels, notify_from_stream


def fal_headers(key: SigningKey, body: bytes, *, request_id: str = REQUEST_ID, age: int = 0) -> dict[str, str]:
    timestamp = str(int(time.time()) - age)
    message = "\n".join([request_id, "user-9", timestamp, hashlib.sha256(body).hexdigest()]).encode()
    return {
        "Content-Type": "application/json",
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": "user-9",
        "X-Fal-Webhook-Timestamp": timestamp,
        "X-Fal-Webhook-Signature": key.sign(message).signature.hex(),
    }


def deliver(provider: str, job_id: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    event = api_event("POST", f"/webhooks/{provider}/{job_id}", raw_body=body.decode(), headers=headers, owner=None)
    event["headers"] = {name: value for name, value in event["headers"].items() if name != "x-api-key"}
    response = webhook_app.lambda_handler(event, LambdaContext("WebhookFunction"))
    return response["statusCode"], json.loads(response["body"])


def run_finalize(stack: Stack, messages: list[dict[str, Any]]) -> list[str]:
    template = load_event("sqs_finalize.json")["Records"][0]
    records = [
        {
            **template,
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "eventSourceARN": stack.attributes[("FinalizeQueue", "Arn")],
        }
        for m in messages
    ]
    response = finalize_app.lambda_handler({"Records": records}, LambdaContext("FinalizeFunction", seconds_left=900))
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


def stored(job_id: str) -> Job:
    return composition.jobs_service().get_job(OWNER, job_id)


def videos(stack: Stack) -> list[str]:
    listing = moto_clients.s3().list_objects_v2(Bucket=stack.refs["OutputsBucket"])
    return [item["Key"] for item in listing.get("Contents", [])]


# -- fal signatures -----------------------------------------------------------------------------------------


def finalize_message(job: Job, video_url: str | None = VIDEO_URL) -> dict[str, Any]:
    """The finalize message of a FINALIZING job: what the copy and the closing update need, so no read."""
    message = {"job_id": job.job_id, "owner": job.owner, "provider": job.provider, "version": job.version}
    return message | ({"video_url": video_url} if video_url else {})


def test_a_signed_fal_webhook_records_the_completion(env: Stack, fal_key: SigningKey) -> None:
    job = submitted_fal_job()
    body = fal_body()
    with calls_made() as calls:
        assert deliver("fal", job.job_id, body, fal_headers(fal_key, body)) == (200, {"status": "recorded"})
    # The signature is checked before the table is touched; then one conditional write, and the message.
    assert calls == ["dynamodb.UpdateItem", "sqs.SendMessage"]
    finalizing = stored(job.job_id)
    assert finalizing.status == JobStatus.FINALIZING
    assert finalizing.version == job.version + 1
    assert list(finalizing.timeline) == ["ACCEPTED", "SUBMITTED", "FINALIZING"]
    assert finalizing.provider_result is not None
    assert finalizing.provider_result.video_url == VIDEO_URL
    # The owner's status index follows, though the write never read the owner.
    listed = composition.jobs_service().list_jobs(OWNER, status=JobStatus.FINALIZING, limit=10, cursor=None)
    assert [item.job_id for item in listed.items] == [job.job_id]
    assert composition.jobs_service().list_jobs(OWNER, status=JobStatus.SUBMITTED, limit=10, cursor=None).items == []
    assert [json.loads(m["Body"]) for m in queued(env, "FinalizeQueue")] == [finalize_message(finalizing)]


def test_a_refused_webhook_write_tells_a_duplicate_from_another_request_or_job_without_a_read(
    env: Stack, fal_key: SigningKey
) -> None:
    job = submitted_fal_job()
    body = fal_body()
    assert deliver("fal", job.job_id, body, fal_headers(fal_key, body))[1] == {"status": "recorded"}
    queued(env, "FinalizeQueue")
    finalizing = stored(job.job_id)

    # The refused write returns the job as it was: it is the one write, for each of these.
    with calls_made() as calls:
        assert deliver("fal", job.job_id, body, fal_headers(fal_key, body)) == (200, {"status": "duplicate"})
    assert calls == ["dynamodb.UpdateItem"]
    other = fal_body(request_id="other-request")
    with calls_made() as calls:
        answer = deliver("fal", job.job_id, other, fal_headers(fal_key, other, request_id="other-request"))
    assert answer == (200, {"status": "ignored"})
    assert calls == ["dynamodb.UpdateItem"]
    unknown = "01JD0000000000000000000009"
    with calls_made() as calls:
        assert deliver("fal", unknown, body, fal_headers(fal_key, body)) == (200, {"status": "ignored"})
    assert calls == ["dynamodb.UpdateItem"]
    assert composition.jobs_repository().get(unknown) is None  # the conditional write made no item

    assert stored(job.job_id) == finalizing
    assert queued(env, "FinalizeQueue") == []


def test_a_signed_webhook_on_another_providers_job_changes_nothing(env: Stack, fal_key: SigningKey) -> None:
    job, _ = submitted_mirako_job()
    body = fal_body(request_id="xdac2o3c")  # even naming the Mirako job's own task
    assert deliver("fal", job.job_id, body, fal_headers(fal_key, body, request_id="xdac2o3c")) == (
        200,
        {"status": "ignored"},
    )
    assert stored(job.job_id) == job
    assert queued(env, "FinalizeQueue") == []


def test_a_signed_webhook_for_a_job_stored_before_its_finalizing_key_is_recorded_all_the_same(
    env: Stack, fal_key: SigningKey
) -> None:
    job = submitted_fal_job()
    moto_clients.dynamodb().update_item(
        TableName=env.refs["JobsTable"],
        Key={"job_id": {"S": job.job_id}},
        UpdateExpression="REMOVE #key",
        ExpressionAttributeNames={"#key": FINALIZING_OWNER_STATUS},
    )
    body = fal_body()
    with calls_made() as calls:
        assert deliver("fal", job.job_id, body, fal_headers(fal_key, body)) == (200, {"status": "recorded"})
    # Refused for want of the key, then the transition from the job as it was (status and version).
    assert calls == ["dynamodb.UpdateItem", "dynamodb.UpdateItem", "sqs.SendMessage"]
    finalizing = stored(job.job_id)
    assert finalizing.status == JobStatus.FINALIZING
    listed = composition.jobs_service().list_jobs(OWNER, status=JobStatus.FINALIZING, limit=10, cursor=None)
    assert [item.job_id for item in listed.items] == [job.job_id]
    assert [json.loads(m["Body"]) for m in queued(env, "FinalizeQueue")] == [finalize_message(finalizing)]


@pytest.mark.parametrize("status", [JobStatus.ACCEPTED, JobStatus.SUBMITTED])
def test_a_signed_webhook_for_a_job_whose_submit_answer_was_lost_adopts_the_request(
    env: Stack, fal_key: SigningKey, status: JobStatus
) -> None:
    # SUBMITTED: the submit timed out, so the provider may have it.
    job = unconfirmed_fal_job(minutes_ago=0) if status == JobStatus.SUBMITTED else new_fal_job()
    body = fal_body()
    assert deliver("fal", job.job_id, body, fal_headers(fal_key, body)) == (200, {"status": "recorded"})
    finalizing = stored(job.job_id)
    assert finalizing.status == JobStatus.FINALIZING
    assert finalizing.provider_request_id == REQUEST_ID
    assert not finalizing.submission_unconfirmed
    assert list(finalizing.timeline) == ["ACCEPTED", "SUBMITTED", "FINALIZING"]
    assert [json.loads(m["Body"]) for m in queued(env, "FinalizeQueue")] == [finalize_message(finalizing)]


def _forgeries(key: SigningKey) -> list[tuple[str, bytes, dict[str, str]]]:
    body = fal_body()
    flipped = bytearray(body)
    flipped[40] ^= 0x01
    reserialized = json.dumps(json.loads(body), indent=1).encode()
    missing = fal_headers(key, body)
    del missing["X-Fal-Webhook-Signature"]
    return [
        ("another key", body, fal_headers(SigningKey.generate(), body)),
        ("a flipped body byte", bytes(flipped), fal_headers(key, body)),
        ("a re-serialized body", reserialized, fal_headers(key, body)),
        ("a timestamp 301 s old", body, fal_headers(key, body, age=301)),
        ("no signature header", body, missing),
        ("no headers at all", body, {"Content-Type": "application/json"}),
    ]


@pytest.mark.parametrize("case", range(6), ids=[name for name, *_ in _forgeries(SigningKey.generate())])
def test_a_forged_fal_webhook_is_refused_and_changes_nothing(env: Stack, fal_key: SigningKey, case: int) -> None:
    job = submitted_fal_job()
    _, body, headers = _forgeries(fal_key)[case]
    status, problem = deliver("fal", job.job_id, body, headers)
    assert status == 401
    assert problem["code"] == "webhook_not_authentic"
    assert stored(job.job_id) == job
    assert queued(env, "FinalizeQueue") == []


def test_a_fal_error_webhook_fails_the_job_with_fals_message(env: Stack, fal_key: SigningKey) -> None:
    job = submitted_fal_job()
    body = fal_body("ERROR")
    assert deliver("fal", job.job_id, body, fal_headers(fal_key, body))[0] == 200
    failed = stored(job.job_id)
    assert failed.status == JobStatus.FAILED
    assert failed.error is not None
    assert "no face found" in failed.error.message
    assert queued(env, "FinalizeQueue") == []


def test_a_webhook_for_an_unknown_job_or_request_is_acknowledged_and_ignored(env: Stack, fal_key: SigningKey) -> None:
    job = submitted_fal_job()
    other = fal_body(request_id="other-request")
    assert deliver("fal", job.job_id, other, fal_headers(fal_key, other, request_id="other-request")) == (
        200,
        {"status": "ignored"},
    )
    body = fal_body()
    assert deliver("fal", "01JD0000000000000000000009", body, fal_headers(fal_key, body)) == (
        200,
        {"status": "ignored"},
    )
    assert stored(job.job_id) == job


def test_an_oversized_or_non_json_webhook_is_refused(env: Stack, fal_key: SigningKey) -> None:
    job = submitted_fal_job()
    big = b'{"pad":"' + b"x" * (1024 * 1024) + b'"}'
    assert deliver("fal", job.job_id, big, fal_headers(fal_key, big))[0] == 413
    body = fal_body()
    headers = {**fal_headers(fal_key, body), "Content-Type": "text/plain"}
    assert deliver("fal", job.job_id, body, headers)[0] == 415
    assert stored(job.job_id) == job


# -- ten deliveries -----------------------------------------------------------------------------------------


def told_once(channels: Channels, job_id: str, kind: str) -> None:
    """Exactly one message on each channel, about this job, of this type."""
    [message] = channels.topic_messages()
    [event] = channels.bus_events()
    assert message["MessageAttributes"]["type"]["Value"] == kind
    assert json.loads(message["Message"])["event_id"] == event["detail"]["event_id"]
    assert event["detail"]["job_id"] == job_id
    assert event["detail"]["type"] == kind


def test_ten_deliveries_make_one_finalize_message_one_object_and_one_success(
    env: Stack, fal_key: SigningKey, channels: Channels
) -> None:
    job = submitted_fal_job()
    body = fal_body()
    answers = [deliver("fal", job.job_id, body, fal_headers(fal_key, body)) for _ in range(10)]
    assert answers == [(200, {"status": "recorded"})] + [(200, {"status": "duplicate"})] * 9
    messages = queued(env, "FinalizeQueue")
    assert len(messages) == 1
    assert run_finalize(env, messages) == []
    assert run_finalize(env, messages) == []  # a redelivered message changes nothing
    done = stored(job.job_id)
    assert done.status == JobStatus.SUCCEEDED
    assert list(done.timeline) == ["ACCEPTED", "SUBMITTED", "FINALIZING", "SUCCEEDED"]
    assert videos(env) == [f"videos/{job.job_id}.mp4"]
    assert done.output is not None
    assert done.output.size == len(VIDEO)
    assert done.output.sha256 == hashlib.sha256(VIDEO).hexdigest()
    assert notify_from_stream(env) == []
    told_once(channels, job.job_id, "job.succeeded")


# -- Mirako -------------------------------------------------------------------------------------------------


def test_a_mirako_callback_is_confirmed_through_the_status_endpoint(env: Stack) -> None:
    job, token = submitted_mirako_job()
    status = respx.get(f"{MIRAKO}/v1/video/async_generate_talking_avatar/xdac2o3c/status").mock(
        return_value=httpx.Response(
            200,
            json={"data": {"task_id": "xdac2o3c", "status": "COMPLETED", "file_url": "https://cdn.mirako.co/v/x.mp4"}},
        )
    )
    body = json.dumps({"id": "xdac2o3c", "status": "COMPLETED", "delayTime": 1, "executionTime": 2}).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    assert deliver("mirako", job.job_id, body, headers) == (200, {"status": "recorded"})
    assert status.call_count == 1
    finalizing = stored(job.job_id)
    assert finalizing.status == JobStatus.FINALIZING
    assert finalizing.provider_result is not None
    assert finalizing.provider_result.video_url == "https://cdn.mirako.co/v/x.mp4"


def test_a_mirako_callback_whose_status_is_not_done_records_nothing_but_progress(env: Stack) -> None:
    job, token = submitted_mirako_job()
    respx.get(f"{MIRAKO}/v1/video/async_generate_talking_avatar/xdac2o3c/status").mock(
        return_value=httpx.Response(200, json={"data": {"task_id": "xdac2o3c", "status": "IN_PROGRESS"}})
    )
    body = b'{"id": "xdac2o3c", "status": "COMPLETED"}'  # the body lies; the status endpoint is believed
    assert (
        deliver("mirako", job.job_id, body, {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})[0]
        == 200
    )
    assert stored(job.job_id).status == JobStatus.RUNNING


MIRAKO_STATUS = f"{MIRAKO}/v1/video/async_generate_talking_avatar/{{}}/status"
MIRAKO_VIDEO = "https://cdn.mirako.co/v/x.mp4"


def mirako_completed(task_id: str) -> httpx.Response:
    return httpx.Response(200, json={"data": {"task_id": task_id, "status": "COMPLETED", "file_url": MIRAKO_VIDEO}})


def bearer(token: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("body", [{"id": "req-7f3a", "status": "COMPLETED"}, {"status": "COMPLETED"}, {}])
def test_a_mirako_callback_naming_another_id_or_none_asks_about_the_jobs_own_task(
    env: Stack, body: dict[str, Any]
) -> None:
    job, token = submitted_mirako_job()
    own = respx.get(MIRAKO_STATUS.format("xdac2o3c")).mock(return_value=mirako_completed("xdac2o3c"))
    other = respx.get(MIRAKO_STATUS.format("req-7f3a")).mock(return_value=httpx.Response(404))
    assert deliver("mirako", job.job_id, json.dumps(body).encode(), bearer(token)) == (200, {"status": "recorded"})
    assert (own.call_count, other.call_count) == (1, 0)
    finalizing = stored(job.job_id)
    assert (finalizing.status, finalizing.provider_request_id) == (JobStatus.FINALIZING, "xdac2o3c")


def unconfirmed_mirako_job() -> tuple[Job, str]:
    """A Mirako job whose submit answer was lost: SUBMITTED without a task id, its token's hash stored at claim."""
    job, token = submitted_mirako_job()
    job = composition.jobs_repository().update_fields(
        job, now=job.updated_at, changes={"submission_unconfirmed": True}, remove=("provider_request_id",)
    )
    return job, token


def test_a_mirako_callback_for_a_job_without_a_task_id_adopts_the_id_mirako_confirms(env: Stack) -> None:
    job, token = unconfirmed_mirako_job()
    status = respx.get(MIRAKO_STATUS.format("t-known")).mock(return_value=mirako_completed("t-known"))
    body = json.dumps({"id": "t-known", "status": "COMPLETED"}).encode()
    assert deliver("mirako", job.job_id, body, bearer(token)) == (200, {"status": "recorded"})
    assert status.call_count == 1  # the answer that confirmed the id is the one recorded
    adopted = stored(job.job_id)
    assert (adopted.status, adopted.provider_request_id) == (JobStatus.FINALIZING, "t-known")
    assert adopted.submission_unconfirmed is False


def test_a_mirako_callback_naming_an_id_mirako_does_not_know_is_not_adopted(env: Stack) -> None:
    job, token = unconfirmed_mirako_job()
    problem = {"title": "Not Found", "status": 404, "detail": "task not found"}
    respx.get(MIRAKO_STATUS.format("req-7f3a")).mock(
        return_value=httpx.Response(404, json=problem, headers={"Content-Type": "application/problem+json"})
    )
    body = json.dumps({"id": "req-7f3a", "status": "COMPLETED"}).encode()
    assert deliver("mirako", job.job_id, body, bearer(token)) == (200, {"status": "ignored"})
    assert stored(job.job_id) == job


def test_a_mirako_callback_racing_its_dispatcher_asks_to_be_sent_again(env: Stack) -> None:
    job = new_mirako_job()
    token, token_hash = new_webhook_token()
    # The dispatcher holds the job and has stored the token's hash; its SUBMITTED write has not landed yet.
    job = composition.jobs_repository().claim_for_dispatch(
        job.job_id, now=job.created_at, lease_until=isoformat(utc_now() + timedelta(minutes=2)),
        webhook_token_sha256=token_hash,
    )  # fmt: skip
    respx.get(MIRAKO_STATUS.format("req-7f3a")).mock(return_value=httpx.Response(404, json={"title": "Not Found"}))
    body = json.dumps({"id": "req-7f3a", "status": "COMPLETED"}).encode()
    assert deliver("mirako", job.job_id, body, bearer(token))[0] == 409
    assert stored(job.job_id) == job


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "Basic Zm9vOmJhcg=="])
def test_a_mirako_callback_without_the_jobs_token_is_refused(env: Stack, authorization: str | None) -> None:
    job, _ = submitted_mirako_job()
    headers = {"Content-Type": "application/json", **({"Authorization": authorization} if authorization else {})}
    assert deliver("mirako", job.job_id, b'{"id": "xdac2o3c"}', headers)[0] == 401
    assert stored(job.job_id) == job


def test_the_sample_webhook_events_run_through_the_handler(env: Stack) -> None:
    fal = webhook_app.lambda_handler(load_event("api_webhook_fal.json"), LambdaContext("WebhookFunction"))
    assert fal["statusCode"] == 401  # its signature is not by a key of our JWKS
    mirako = webhook_app.lambda_handler(load_event("api_webhook_mirako.json"), LambdaContext("WebhookFunction"))
    assert (mirako["statusCode"], json.loads(mirako["body"])) == (200, {"status": "ignored"})  # no such job


# -- finalize -----------------------------------------------------------------------------------------------


def test_a_video_on_a_host_that_is_not_the_providers_fails_the_job(env: Stack) -> None:
    job = submitted_fal_job()
    composition.provider_outcomes().completed(job, ProviderResult(video_url="https://evil.example/x.mp4"))
    assert run_finalize(env, queued(env, "FinalizeQueue")) == []
    failed = stored(job.job_id)
    assert failed.status == JobStatus.FAILED
    assert failed.error is not None
    assert "evil.example" in failed.error.message
    assert videos(env) == []


def test_a_failed_download_is_retried_then_dead_lettered_into_a_failed_job(env: Stack) -> None:
    job = submitted_fal_job()
    respx.get(VIDEO_URL).mock(return_value=httpx.Response(503))
    composition.provider_outcomes().completed(job, ProviderResult(video_url=VIDEO_URL))
    messages = queued(env, "FinalizeQueue")
    assert run_finalize(env, messages) == [messages[0]["MessageId"]]
    waiting = stored(job.job_id)
    assert waiting.status == JobStatus.FINALIZING
    assert waiting.last_error is not None

    event = load_event("sqs_dead_letter.json")
    event["Records"][0]["body"] = json.dumps({"job_id": job.job_id})
    dead_letter_app.lambda_handler(event, LambdaContext("DeadLetterFunction"))
    failed = stored(job.job_id)
    assert failed.status == JobStatus.FAILED
    assert failed.error is not None
    assert failed.error.code == "FINALIZE_FAILED"
    assert videos(env) == []


def finalizing_fal_job(result: ProviderResult | None = None) -> Job:
    """A job whose completion was recorded; its finalize message is taken off the queue and returned by `queued`."""
    job = submitted_fal_job()
    composition.provider_outcomes().completed(job, result or ProviderResult(video_url=VIDEO_URL))
    return stored(job.job_id)


def test_finalize_copies_from_the_message_without_reading_the_job(env: Stack, channels: Channels) -> None:
    job = finalizing_fal_job()
    messages = queued(env, "FinalizeQueue")
    assert [json.loads(m["Body"]) for m in messages] == [finalize_message(job)]
    with calls_made() as calls:
        assert run_finalize(env, messages) == []
    assert "dynamodb.GetItem" not in calls
    assert [call for call in calls if call.startswith("dynamodb.")] == ["dynamodb.UpdateItem"]
    done = stored(job.job_id)
    assert done.status == JobStatus.SUCCEEDED
    assert done.output is not None
    assert done.output.sha256 == hashlib.sha256(VIDEO).hexdigest()
    assert videos(env) == [f"videos/{job.job_id}.mp4"]
    assert notify_from_stream(env) == []
    told_once(channels, job.job_id, "job.succeeded")


def test_a_finalize_message_with_only_the_job_id_reads_the_job(env: Stack) -> None:
    """Messages sent before they carried the URL (in flight during a deploy) still finish their job."""
    job = finalizing_fal_job()
    [message] = queued(env, "FinalizeQueue")
    message["Body"] = json.dumps({"job_id": job.job_id})
    with calls_made() as calls:
        assert run_finalize(env, [message]) == []
    assert [call for call in calls if call.startswith("dynamodb.")] == ["dynamodb.GetItem", "dynamodb.UpdateItem"]
    assert stored(job.job_id).status == JobStatus.SUCCEEDED
    assert videos(env) == [f"videos/{job.job_id}.mp4"]


def test_a_result_without_a_url_is_fetched_from_fal_by_finalize(env: Stack) -> None:
    """fal's webhook may come without its payload (payload_error): the message has no URL, and finalize asks fal."""
    job = finalizing_fal_job(ProviderResult())
    [message] = queued(env, "FinalizeQueue")
    assert json.loads(message["Body"]) == finalize_message(job, video_url=None)
    result = respx.get(FAL_URLS["response_url"]).mock(
        return_value=httpx.Response(200, json={"video": {"url": VIDEO_URL, "content_type": "video/mp4"}, "seed": 1})
    )
    assert run_finalize(env, [message]) == []
    assert result.call_count == 1
    assert stored(job.job_id).status == JobStatus.SUCCEEDED


def test_a_copy_finished_after_the_job_changed_closes_against_its_current_version(env: Stack) -> None:
    job = finalizing_fal_job()
    messages = queued(env, "FinalizeQueue")
    # A write while FINALIZING (a retry's reason) makes the message's version stale.
    note = JobError(code="COPY_FAILED", message="a timeout", retryable=True)
    changed = composition.jobs_repository().update_fields(
        job, now=isoformat(utc_now()), changes={"last_error": note.model_dump()}
    )
    assert changed.version == job.version + 1
    assert run_finalize(env, messages) == []
    done = stored(job.job_id)
    assert done.status == JobStatus.SUCCEEDED
    assert done.version == changed.version + 1


def test_a_finalize_message_for_a_job_that_ended_otherwise_changes_nothing(env: Stack) -> None:
    job = finalizing_fal_job()
    messages = queued(env, "FinalizeQueue")
    failed = move(
        composition.jobs_repository(),
        job,
        JobStatus.FAILED,
        now=isoformat(utc_now()),
        changes={"error": {"code": "FINALIZE_FAILED", "message": "x"}},
    )
    assert run_finalize(env, messages) == []  # acknowledged: a terminal status never changes, a retry would not help
    assert stored(job.job_id) == failed
    respx.get(VIDEO_URL).mock(return_value=httpx.Response(503))
    assert run_finalize(env, messages) == []  # nor does a copy that fails for a job that has ended
    assert stored(job.job_id) == failed


# -- reconcile ----------------------------------------------------------------------------------------------


def _age(job: Job, **fields: str) -> Job:
    return backdate(job, **fields)


def test_a_job_whose_webhook_never_comes_is_finished_by_the_reconciler(env: Stack, channels: Channels) -> None:
    job = _age(submitted_fal_job(), status_since=isoformat(utc_now() - timedelta(minutes=30)))
    respx.get(FAL_URLS["status_url"]).mock(return_value=httpx.Response(200, json={"status": "COMPLETED"}))
    respx.get(FAL_URLS["response_url"]).mock(
        return_value=httpx.Response(200, json={"video": {"url": VIDEO_URL, "content_type": "video/mp4"}, "seed": 1})
    )
    result = reconcile_app.lambda_handler(load_event("schedule_reconcile.json"), LambdaContext("ReconcileFunction"))
    assert result["polled"] == 1
    assert stored(job.job_id).status == JobStatus.FINALIZING
    assert run_finalize(env, queued(env, "FinalizeQueue")) == []
    assert stored(job.job_id).status == JobStatus.SUCCEEDED
    assert videos(env) == [f"videos/{job.job_id}.mp4"]
    assert notify_from_stream(env) == []
    told_once(channels, job.job_id, "job.succeeded")


def test_a_job_past_its_deadline_times_out_and_is_canceled_at_the_provider(env: Stack, channels: Channels) -> None:
    job = _age(submitted_fal_job(), deadline_at=isoformat(utc_now() - timedelta(seconds=1)))
    cancel = respx.put(FAL_URLS["cancel_url"]).mock(return_value=httpx.Response(200, json={"status": "OK"}))
    result = reconcile_app.lambda_handler(load_event("schedule_reconcile.json"), LambdaContext("ReconcileFunction"))
    assert result["timed_out"] == 1
    timed_out = stored(job.job_id)
    assert timed_out.status == JobStatus.TIMED_OUT
    assert timed_out.error is not None
    assert timed_out.error.code == "DEADLINE_PASSED"
    assert cancel.call_count == 1
    assert notify_from_stream(env) == []
    told_once(channels, job.job_id, "job.timed_out")


def fal_status_completed(**fields: Any) -> respx.Route:
    return respx.get(FAL_URLS["status_url"]).mock(
        return_value=httpx.Response(200, json={"status": "COMPLETED", **fields})
    )


def test_a_fal_app_error_after_completed_fails_the_job_at_the_first_poll_with_fals_message(
    env: Stack, channels: Channels
) -> None:
    # fal does not retry an app's own 500, so its answer is final: the job ends now, not at its deadline.
    job = _age(submitted_fal_job(), status_since=isoformat(utc_now() - timedelta(minutes=30)))
    fal_status_completed(error="CUDA out of memory")
    result = respx.get(FAL_URLS["response_url"]).mock(
        return_value=httpx.Response(500, json={"detail": "CUDA out of memory"})
    )
    assert reconcile()["polled"] == 1
    failed = stored(job.job_id)
    assert failed.status == JobStatus.FAILED
    assert failed.error == JobError(code="GENERATION_FAILED", message="CUDA out of memory")
    assert result.call_count == 1
    assert notify_from_stream(env) == []
    told_once(channels, job.job_id, "job.failed")


def test_a_completed_fal_run_whose_result_stays_unreadable_fails_on_the_third_poll(env: Stack) -> None:
    job = _age(submitted_fal_job(), status_since=isoformat(utc_now() - timedelta(minutes=30)))
    fal_status_completed(error="Internal Server Error")
    gateway = httpx.Response(502, text="<html>502 Bad Gateway</html>", headers={"Content-Type": "text/html"})
    result = respx.get(FAL_URLS["response_url"]).mock(return_value=gateway)
    for poll in (1, 2):
        reconcile()
        waiting = stored(job.job_id)
        assert (waiting.status, waiting.unreadable_result_polls) == (JobStatus.SUBMITTED, poll)
    reconcile()
    failed = stored(job.job_id)
    assert failed.status == JobStatus.FAILED
    assert failed.error is not None
    assert (failed.error.code, failed.error.message) == ("GENERATION_FAILED", "Internal Server Error")
    assert result.call_count == 3


def test_a_fal_model_error_is_coded_alike_by_its_webhook_and_by_polling(env: Stack, fal_key: SigningKey) -> None:
    detail = [{"loc": ["body", "image_url"], "msg": "No face found", "type": "face_detection_error", "url": "u"}]
    by_webhook = submitted_fal_job()
    body = json.dumps(
        {
            "request_id": REQUEST_ID,
            "status": "ERROR",
            "payload": {"detail": detail},
            "error": "Invalid status code: 422",
        }
    ).encode()
    assert deliver("fal", by_webhook.job_id, body, fal_headers(fal_key, body))[0] == 200
    by_polling = _age(submitted_fal_job(), status_since=isoformat(utc_now() - timedelta(minutes=30)))
    fal_status_completed(error="No face found", error_type="face_detection_error")
    respx.get(FAL_URLS["response_url"]).mock(return_value=httpx.Response(422, json={"detail": detail}))
    reconcile()
    errors = [stored(job.job_id).error for job in (by_webhook, by_polling)]
    expected = JobError(code="PROVIDER_INVALID_REQUEST", message="body.image_url: No face found",
                        provider_code="face_detection_error")  # fmt: skip
    assert errors == [expected, expected]


def unconfirmed_fal_job(minutes_ago: float) -> Job:
    """A fal job whose submit answer was lost `minutes_ago`: SUBMITTED, unconfirmed, without a request id."""
    job = new_fal_job()
    job = move(
        composition.jobs_repository(),
        job,
        JobStatus.SUBMITTED,
        now=isoformat(utc_now()),
        changes={"submission_unconfirmed": True},
    )
    return _age(job, status_since=isoformat(utc_now() - timedelta(minutes=minutes_ago)))


def test_a_webhook_that_comes_after_an_unconfirmed_job_was_given_up_changes_nothing(
    env: Stack, fal_key: SigningKey
) -> None:
    job = unconfirmed_fal_job(minutes_ago=61)
    reconcile()
    failed = stored(job.job_id)
    body = fal_body()
    assert deliver("fal", job.job_id, body, fal_headers(fal_key, body)) == (200, {"status": "duplicate"})
    assert stored(job.job_id) == failed  # a finished job never changes
    assert queued(env, "FinalizeQueue") == []


def test_a_job_whose_submit_answer_was_lost_waits_for_its_webhook_within_the_bound(env: Stack) -> None:
    job = unconfirmed_fal_job(minutes_ago=59)  # UNCONFIRMED_SUBMIT_SECONDS is 3600 by default
    report = reconcile()
    assert (report["unconfirmed"], report["polled"]) == (0, 0)  # no request id: nothing to poll, nothing resent
    assert stored(job.job_id) == job


def test_a_job_whose_submit_answer_was_lost_fails_past_the_bound_saying_no_second_order_was_placed(
    env: Stack, channels: Channels
) -> None:
    job = unconfirmed_fal_job(minutes_ago=61)
    assert reconcile()["unconfirmed"] == 1
    failed = stored(job.job_id)
    assert failed.status == JobStatus.FAILED
    assert failed.error is not None
    assert failed.error.code == "SUBMISSION_UNCONFIRMED"
    assert "No second order was placed" in failed.error.message
    assert notify_from_stream(env) == []
    told_once(channels, job.job_id, "job.failed")


def _silent_for(job: Job, minutes: float, **changes: Any) -> Job:
    """The job as if nothing had been written to it for `minutes` (its last write then)."""
    then = isoformat(utc_now() - timedelta(minutes=minutes))
    return composition.jobs_repository().update_fields(job, now=then, changes=changes)


def reconcile() -> dict[str, Any]:
    result: dict[str, Any] = reconcile_app.lambda_handler(
        load_event("schedule_reconcile.json"), LambdaContext("ReconcileFunction")
    )
    return result


def test_an_accepted_job_whose_message_was_lost_is_queued_again_once_per_grace(env: Stack) -> None:
    job = new_fal_job()
    queued(env, "DispatchQueue")  # the message the API sent is lost
    _silent_for(stored(job.job_id), minutes=6)
    assert reconcile()["requeued"] == 1
    assert [json.loads(m["Body"]) for m in queued(env, "DispatchQueue")] == [{"job_id": job.job_id}]
    requeued = stored(job.job_id)
    assert requeued.requeued_at is not None
    assert requeued.status == JobStatus.ACCEPTED
    # The next runs wait a grace again: a job waiting in a long queue is not sent every minute.
    assert reconcile()["requeued"] == 0
    assert queued(env, "DispatchQueue") == []


RATE_LIMITED = {"code": "PROVIDER_RATE_LIMITED", "message": "429", "retryable": True}


@pytest.mark.parametrize(
    ("silent_minutes", "attempts", "lease_minutes", "requeued"),
    [
        (4, 0, None, 0),  # may still be waiting in the queue
        (6, 0, None, 1),
        (60, 1, 1, 0),  # a dispatcher holds it (its lease ends in a minute): it is being submitted
        (6, 1, None, 0),  # tried before: its message may be waiting out a backoff of up to 15 minutes
        (21, 1, None, 1),
        (21, 1, -18, 1),  # a dispatcher died holding it: a message lets dispatch settle it, never resubmit
    ],
)
def test_an_accepted_job_is_queued_again_only_past_its_silence(
    env: Stack, silent_minutes: int, attempts: int, lease_minutes: int | None, requeued: int
) -> None:
    job = new_fal_job()
    queued(env, "DispatchQueue")
    changes: dict[str, Any] = {"attempts": attempts}
    if attempts:
        changes["last_error"] = RATE_LIMITED
    if lease_minutes is not None:
        changes["dispatch_lease_until"] = isoformat(utc_now() + timedelta(minutes=lease_minutes))
    _silent_for(stored(job.job_id), minutes=silent_minutes, **changes)
    assert reconcile()["requeued"] == requeued
    assert len(queued(env, "DispatchQueue")) == requeued


def test_a_finalizing_job_whose_message_was_lost_is_queued_again_and_finished(env: Stack, channels: Channels) -> None:
    job = finalizing_fal_job()
    queued(env, "FinalizeQueue")  # lost: the webhook stopped between its transition and its send
    _silent_for(job, minutes=10)
    assert reconcile()["requeued"] == 0  # a copy may still be running
    _silent_for(stored(job.job_id), minutes=17)
    assert reconcile()["requeued"] == 1
    noted = stored(job.job_id)
    messages = queued(env, "FinalizeQueue")
    assert [json.loads(m["Body"]) for m in messages] == [finalize_message(noted)]
    assert reconcile()["requeued"] == 0
    assert run_finalize(env, messages) == []
    assert stored(job.job_id).status == JobStatus.SUCCEEDED
    assert notify_from_stream(env) == []
    told_once(channels, job.job_id, "job.succeeded")


def test_a_slow_finalize_and_its_requeued_duplicate_succeed_once(env: Stack, channels: Channels) -> None:
    job = finalizing_fal_job()
    original = queued(env, "FinalizeQueue")  # still being copied, say, when the reconciler gives up on it
    _silent_for(job, minutes=17)
    assert reconcile()["requeued"] == 1
    duplicate = queued(env, "FinalizeQueue")
    assert run_finalize(env, duplicate) == []
    assert run_finalize(env, original) == []  # its version is stale and the job is done: acknowledged
    done = stored(job.job_id)
    assert done.status == JobStatus.SUCCEEDED
    assert list(done.timeline) == ["ACCEPTED", "SUBMITTED", "FINALIZING", "SUCCEEDED"]
    assert videos(env) == [f"videos/{job.job_id}.mp4"]
    assert notify_from_stream(env) == []
    told_once(channels, job.job_id, "job.succeeded")


def test_a_cancel_requested_mirako_job_follows_the_provider_to_canceled(env: Stack) -> None:
    job, _ = submitted_mirako_job()
    job = move(composition.jobs_repository(), job, JobStatus.CANCEL_REQUESTED, now=isoformat(utc_now()))
    job = _age(job, status_since=isoformat(utc_now() - timedelta(minutes=30)))
    respx.get(f"{MIRAKO}/v1/video/async_generate_talking_avatar/xdac2o3c/status").mock(
        return_value=httpx.Response(200, json={"data": {"task_id": "xdac2o3c", "status": "CANCELED"}})
    )
    reconcile_app.lambda_handler(load_event("schedule_reconcile.json"), LambdaContext("ReconcileFunction"))
    assert stored(job.job_id).status == JobStatus.CANCELED


# -- cancel at the provider ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("OK", JobStatus.CANCELED),
        ("CANCELLATION_REQUESTED", JobStatus.CANCEL_REQUESTED),
        ("ALREADY_COMPLETED", JobStatus.CANCEL_REQUESTED),
    ],
)
def test_canceling_a_submitted_job_asks_the_provider(env: Stack, answer: str, expected: JobStatus) -> None:
    job = submitted_fal_job()
    cancel = respx.put(FAL_URLS["cancel_url"]).mock(return_value=httpx.Response(200, json={"status": answer}))
    assert composition.jobs_service().cancel_job(OWNER, job.job_id).status == expected
    assert cancel.call_count == 1
    assert stored(job.job_id).status == expected


def test_a_repeated_cancel_of_a_job_fal_canceled_at_once_answers_200_canceled_without_asking_again(
    env: Stack,
) -> None:
    job = submitted_fal_job()
    cancel = respx.put(FAL_URLS["cancel_url"]).mock(return_value=httpx.Response(200, json={"status": "OK"}))
    event = api_event("POST", f"/jobs/{job.job_id}/cancel")
    answers = [api_app.lambda_handler(event, LambdaContext("ApiFunction")) for _ in range(2)]
    assert [(answer["statusCode"], json.loads(answer["body"])["status"]) for answer in answers] == [
        (200, "CANCELED"),
        (200, "CANCELED"),
    ]
    assert cancel.call_count == 1


def test_a_fal_run_canceled_while_running_ends_canceled_not_failed(env: Stack, fal_key: SigningKey) -> None:
    job = submitted_fal_job()
    respx.put(FAL_URLS["cancel_url"]).mock(return_value=httpx.Response(202, json={"status": "CANCELLATION_REQUESTED"}))
    assert composition.jobs_service().cancel_job(OWNER, job.job_id).status == JobStatus.CANCEL_REQUESTED
    body = fal_body("ERROR")  # fal's way of ending a canceled run
    assert deliver("fal", job.job_id, body, fal_headers(fal_key, body)) == (200, {"status": "recorded"})
    assert stored(job.job_id).status == JobStatus.CANCELED


# -- signatures before keys ---------------------------------------------------------------------------------


@pytest.fixture
def keys_unreachable(env: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """No key in the environment, and secret ARNs that Secrets Manager cannot read (no such secret)."""
    missing = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:avatarjobs/missing-AbCdEf"
    for direct, arn in (("FAL_KEY", "FAL_KEY_SECRET_ARN"), ("MIRAKO_API_KEY", "MIRAKO_KEY_SECRET_ARN")):
        monkeypatch.delenv(direct)
        monkeypatch.setenv(arn, missing)
    composition.reset()


@pytest.mark.usefixtures("keys_unreachable")
def test_with_the_key_secret_unreachable_a_forged_fal_webhook_is_refused_and_a_genuine_one_recorded(
    fal_key: SigningKey,
) -> None:
    job = submitted_fal_job()
    body = fal_body()
    forged = {**fal_headers(fal_key, body), "X-Fal-Webhook-Signature": "00" * 64}
    assert deliver("fal", job.job_id, body, forged)[0] == 401
    assert stored(job.job_id) == job
    assert deliver("fal", job.job_id, body, fal_headers(fal_key, body)) == (200, {"status": "recorded"})
    assert stored(job.job_id).status == JobStatus.FINALIZING


@pytest.mark.usefixtures("keys_unreachable")
def test_with_the_key_secret_unreachable_a_mirako_callback_is_refused_without_its_token_else_retried() -> None:
    """Its token is checked without a key; only the status call that confirms it needs one (a 503: Mirako retries)."""
    job, token = submitted_mirako_job()
    status = respx.get(f"{MIRAKO}/v1/video/async_generate_talking_avatar/xdac2o3c/status")
    body = b'{"id": "xdac2o3c"}'
    assert deliver("mirako", job.job_id, body, bearer("wrong-token"))[0] == 401
    answer, problem = deliver("mirako", job.job_id, body, bearer(token))
    assert (answer, problem["code"]) == (503, "service_unavailable")
    assert status.call_count == 0
    assert stored(job.job_id) == job


# -- call timeouts that fit the invocation ------------------------------------------------------------------


def answers_after(
    seconds: float, answer: httpx.Response, timeouts: list[dict[str, float]]
) -> Callable[[httpx.Request], httpx.Response]:
    """A provider that answers `seconds` after the request: a call whose read timeout is shorter times out.

    Simulated, not waited for: each call's timeouts are kept in `timeouts`."""

    def respond(request: httpx.Request) -> httpx.Response:
        timeout = request.extensions["timeout"]
        timeouts.append(timeout)
        if timeout["read"] < seconds:
            raise httpx.ReadTimeout("no answer within the read timeout (simulated)", request=request)
        return answer

    return respond


def test_the_api_function_ends_before_api_gateways_integration_timeout(env: Stack) -> None:
    assert env.template["Resources"]["ApiFunction"]["Properties"]["Timeout"] <= API_GATEWAY_INTEGRATION_SECONDS


@pytest.mark.parametrize(
    ("fal_answers_after", "answer", "status"),
    [(10, 200, JobStatus.CANCELED), (40, 202, JobStatus.CANCEL_REQUESTED)],
    ids=["in-time", "too-slow"],
)
def test_a_cancel_waits_for_the_provider_only_as_long_as_api_gateway_leaves_it(
    env: Stack, fal_answers_after: float, answer: int, status: JobStatus
) -> None:
    """A provider slower than the time left does not make the client wait for a 504: the cancel is recorded and
    answered 202 (the provider's answer follows through its webhook or the reconciler)."""
    job = submitted_fal_job()
    timeouts: list[dict[str, float]] = []
    canceled = httpx.Response(200, json={"status": "OK"})
    respx.put(FAL_URLS["cancel_url"]).mock(side_effect=answers_after(fal_answers_after, canceled, timeouts))
    event = api_event("POST", f"/jobs/{job.job_id}/cancel")
    response = api_app.lambda_handler(event, LambdaContext("ApiFunction", seconds_left=29))
    assert (response["statusCode"], json.loads(response["body"])["status"]) == (answer, status)
    [timeout] = timeouts
    assert timeout["connect"] + timeout["read"] <= API_GATEWAY_INTEGRATION_SECONDS - MARGIN_SECONDS


def test_a_mirako_callback_whose_status_call_would_outlast_the_function_is_answered_503_in_time(env: Stack) -> None:
    """WebhookFunction has 15 s; a status answer 20 s away is not waited for: 503, and Mirako calls again."""
    job, token = submitted_mirako_job()
    timeouts: list[dict[str, float]] = []
    done = httpx.Response(200, json={"data": {"task_id": "xdac2o3c", "status": "COMPLETED", "file_url": VIDEO_URL}})
    status = respx.get(f"{MIRAKO}/v1/video/async_generate_talking_avatar/xdac2o3c/status")
    status.mock(side_effect=answers_after(20, done, timeouts))
    event = api_event("POST", f"/webhooks/mirako/{job.job_id}", raw_body='{"id": "xdac2o3c"}', headers=bearer(token))
    response = webhook_app.lambda_handler(event, LambdaContext("WebhookFunction", seconds_left=15))
    assert (response["statusCode"], json.loads(response["body"])["code"]) == (503, "service_unavailable")
    [timeout] = timeouts
    assert timeout["connect"] + timeout["read"] <= 15 - MARGIN_SECONDS
    assert stored(job.job_id) == job


def test_a_call_the_deadline_leaves_no_time_for_is_not_made(env: Stack) -> None:
    job, token = submitted_mirako_job()
    status = respx.get(f"{MIRAKO}/v1/video/async_generate_talking_avatar/xdac2o3c/status")
    event = api_event("POST", f"/webhooks/mirako/{job.job_id}", raw_body='{"id": "xdac2o3c"}', headers=bearer(token))
    response = webhook_app.lambda_handler(event, LambdaContext("WebhookFunction", seconds_left=MARGIN_SECONDS + 0.5))
    assert response["statusCode"] == 503
    assert status.call_count == 0
    assert stored(job.job_id) == job
