"""Forged, replayed, tampered, oversized and mistyped webhooks through the real handler under moto: each one is
refused (or, where the provider would only retry, acknowledged and ignored) and leaves the job's item exactly as
it was, with no finalize message queued.

test_completion.py has the first forgeries (another key, a flipped byte, a re-serialized body, a stale timestamp,
missing headers, a wrong Mirako token); tests/unit/providers check the verifiers alone. These add the rest, and
compare the stored item itself (status, version and every attribute), not the job read back through the model.
"""

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import respx
from nacl.signing import SigningKey

from avatarjobs.domain.job import Job
from avatarjobs.domain.limits import WEBHOOK_BODY_MAX_BYTES
from devstack.cloudformation import Stack
from functions.webhook import app as webhook_app
from tests.api_events import api_event
from tests.lambda_context import LambdaContext
from tests.support import moto_clients
from tests.support.completion import (
    MIRAKO,
    REQUEST_ID,
    fal_body,
    queued,
    submitted_fal_job,
    submitted_mirako_job,
)

PROBLEM_JSON = "application/problem+json"
REPLACED_HEADERS = ("content-type", "x-api-key")  # the sample event's, which a provider's call has not
MIRAKO_STATUS = f"{MIRAKO}/v1/video/async_generate_talking_avatar/xdac2o3c/status"


def call(provider: str, job_id: str, body: bytes, headers: dict[str, str], *, binary: bool = False) -> dict[str, Any]:
    """The handler's proxy response to a provider's POST (no API key), the body as API Gateway passes it."""
    raw = base64.b64encode(body).decode() if binary else body.decode()
    event = api_event("POST", f"/webhooks/{provider}/{job_id}", raw_body=raw, headers=headers, owner=None)
    # Exactly the given headers on top of the sample's: no API key, and no Content-Type unless given.
    kept = {name: value for name, value in event["headers"].items() if name.lower() not in REPLACED_HEADERS}
    event["headers"] = {**kept, **headers}
    event["multiValueHeaders"] = {name: [value] for name, value in event["headers"].items()}
    event["isBase64Encoded"] = binary
    response: dict[str, Any] = webhook_app.lambda_handler(event, LambdaContext("WebhookFunction"))
    return response


def stored_item(stack: Stack, job_id: str) -> dict[str, Any]:
    found = moto_clients.dynamodb().get_item(
        TableName=stack.refs["JobsTable"], Key={"job_id": {"S": job_id}}, ConsistentRead=True
    )
    return dict(found["Item"])


@dataclass(frozen=True)
class Snapshot:
    """A job's stored item before a delivery: after a refused one, the item is the same and nothing is queued."""

    stack: Stack
    job_id: str
    item: dict[str, Any]

    @classmethod
    def of(cls, stack: Stack, job: Job) -> "Snapshot":
        return cls(stack, job.job_id, stored_item(stack, job.job_id))

    def assert_unchanged(self) -> None:
        assert stored_item(self.stack, self.job_id) == self.item
        assert queued(self.stack, "FinalizeQueue") == []


def content_type(response: dict[str, Any]) -> str | None:
    """The response's Content-Type, from its single or its multi-value headers (the resolver uses the latter)."""
    headers = {name.lower(): value for name, value in (response.get("headers") or {}).items()}
    for name, values in (response.get("multiValueHeaders") or {}).items():
        headers[name.lower()] = values[-1]
    return headers.get("content-type")


def assert_refused(response: dict[str, Any], status: int, code: str, before: Snapshot) -> None:
    assert response["statusCode"] == status, response["body"]
    assert content_type(response) == PROBLEM_JSON
    problem = json.loads(response["body"])
    assert (problem["status"], problem["code"]) == (status, code)
    assert "Traceback" not in response["body"]
    before.assert_unchanged()


def sign(key: SigningKey, body: bytes, *, request_id: str = REQUEST_ID, timestamp: int | None = None) -> dict[str, str]:
    when = str(int(time.time()) if timestamp is None else timestamp)
    message = "\n".join([request_id, "user-9", when, hashlib.sha256(body).hexdigest()]).encode()
    return {
        "Content-Type": "application/json",
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": "user-9",
        "X-Fal-Webhook-Timestamp": when,
        "X-Fal-Webhook-Signature": key.sign(message).signature.hex(),
    }


# -- fal ----------------------------------------------------------------------------------------------------


def test_the_genuine_delivery_is_recorded(env: Stack, fal_key: SigningKey) -> None:
    """The control: what the forgeries below change is what makes them refused."""
    job = submitted_fal_job()
    body = fal_body()
    response = call("fal", job.job_id, body, sign(fal_key, body))
    assert (response["statusCode"], json.loads(response["body"])) == (200, {"status": "recorded"})
    assert len(queued(env, "FinalizeQueue")) == 1


def _unauthentic(key: SigningKey) -> dict[str, tuple[bytes, dict[str, str]]]:
    body = fal_body()
    evil = body.replace(b"v3.fal.media", b"evil.example")
    now = int(time.time())
    return {
        "signed by a key that is not in fal's JWKS": (body, sign(SigningKey.generate(), body)),
        "another video URL than the signed one": (evil, sign(key, body)),
        "a body grown after signing": (body[:-1] + b',"extra":1}', sign(key, body)),
        "replayed 10 minutes after it was signed": (body, sign(key, body, timestamp=now - 600)),
        "signed 10 minutes in the future": (body, sign(key, body, timestamp=now + 600)),
        "the signature of another request id": (body, sign(key, body, request_id="another-request")),
        "a signature that is not hex": (body, {**sign(key, body), "X-Fal-Webhook-Signature": "zz" * 64}),
        "an empty signature": (body, {**sign(key, body), "X-Fal-Webhook-Signature": ""}),
    }


@pytest.mark.parametrize("case", list(_unauthentic(SigningKey.generate())))
def test_an_unauthentic_fal_delivery_is_a_401_that_changes_nothing(env: Stack, fal_key: SigningKey, case: str) -> None:
    job = submitted_fal_job()
    before = Snapshot.of(env, job)
    body, headers = _unauthentic(fal_key)[case]
    assert_refused(call("fal", job.job_id, body, headers), 401, "webhook_not_authentic", before)


def test_another_jobs_genuine_delivery_replayed_here_is_ignored(env: Stack, fal_key: SigningKey) -> None:
    """Authentic, but about another request: acknowledged (fal would retry an error for hours), nothing recorded."""
    job = submitted_fal_job()
    other = submitted_fal_job(provider_request_id="another-request")
    before = Snapshot.of(env, job)
    body = fal_body(request_id="another-request")
    response = call("fal", job.job_id, body, sign(fal_key, body, request_id="another-request"))
    assert (response["statusCode"], json.loads(response["body"])) == (200, {"status": "ignored"})
    before.assert_unchanged()
    assert stored_item(env, other.job_id)["status"] == {"S": "SUBMITTED"}


def test_an_oversized_fal_delivery_is_a_413_before_anything_reads_it(env: Stack, fal_key: SigningKey) -> None:
    job = submitted_fal_job()
    before = Snapshot.of(env, job)
    document = json.loads(fal_body())
    document["padding"] = "x" * WEBHOOK_BODY_MAX_BYTES
    big = json.dumps(document).encode()
    assert_refused(call("fal", job.job_id, big, sign(fal_key, big)), 413, "payload_too_large", before)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "application/jsonp", None],
)
def test_a_fal_delivery_that_is_not_declared_json_is_a_415(
    env: Stack, fal_key: SigningKey, content_type: str | None
) -> None:
    job = submitted_fal_job()
    before = Snapshot.of(env, job)
    body = fal_body()
    headers = sign(fal_key, body)
    del headers["Content-Type"]
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = call("fal", job.job_id, body, headers)
    assert_refused(response, 415, "unsupported_media_type", before)


def test_a_fal_delivery_that_is_not_utf_8_is_a_400(env: Stack, fal_key: SigningKey) -> None:
    job = submitted_fal_job()
    before = Snapshot.of(env, job)
    body = b"\xff\xfe" + fal_body()
    response = call("fal", job.job_id, body, sign(fal_key, body), binary=True)
    assert_refused(response, 400, "malformed_json", before)


def test_a_signed_body_that_is_not_json_changes_nothing(env: Stack, fal_key: SigningKey) -> None:
    job = submitted_fal_job()
    before = Snapshot.of(env, job)
    body = b"<xml>not json</xml>"
    # Signed by fal's key, but not a webhook fal's verifier can read: refused like a forgery.
    assert_refused(call("fal", job.job_id, body, sign(fal_key, body)), 401, "webhook_not_authentic", before)


def test_an_unknown_provider_is_a_404(env: Stack, fal_key: SigningKey) -> None:
    job = submitted_fal_job()
    before = Snapshot.of(env, job)
    body = fal_body()
    assert_refused(call("evil", job.job_id, body, sign(fal_key, body)), 404, "not_found", before)


# -- Mirako -------------------------------------------------------------------------------------------------


def _mirako_body(**fields: Any) -> bytes:
    return json.dumps({"id": "xdac2o3c", "status": "COMPLETED", **fields}).encode()


def test_another_mirako_jobs_token_is_a_401(env: Stack) -> None:
    job, _ = submitted_mirako_job()
    _, other_token = submitted_mirako_job()
    before = Snapshot.of(env, job)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {other_token}"}
    assert_refused(call("mirako", job.job_id, _mirako_body(), headers), 401, "webhook_not_authentic", before)


@pytest.mark.parametrize("authorization", ["Bearer ", "Bearer", "bearer  ", "Token {token}", "{token}"])
def test_a_mangled_mirako_authorization_is_a_401(env: Stack, authorization: str) -> None:
    job, token = submitted_mirako_job()
    before = Snapshot.of(env, job)
    headers = {"Content-Type": "application/json", "Authorization": authorization.format(token=token)}
    assert_refused(call("mirako", job.job_id, _mirako_body(), headers), 401, "webhook_not_authentic", before)


def test_a_tampered_mirako_body_with_the_jobs_token_is_not_believed(env: Stack) -> None:
    """The body is a hint: a COMPLETED with a video URL of its own records nothing while Mirako says running."""
    job, token = submitted_mirako_job()
    status = respx.get(MIRAKO_STATUS).mock(
        return_value=httpx.Response(200, json={"data": {"task_id": "xdac2o3c", "status": "IN_PROGRESS"}})
    )
    body = _mirako_body(file_url="https://evil.example/x.mp4", output={"file_url": "https://evil.example/x.mp4"})
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    assert call("mirako", job.job_id, body, headers)["statusCode"] == 200
    assert status.call_count == 1
    item = stored_item(env, job.job_id)
    assert item["status"] == {"S": "RUNNING"}
    assert "provider_result" not in item
    assert "evil.example" not in json.dumps(item)
    assert queued(env, "FinalizeQueue") == []


def test_an_oversized_mirako_callback_is_a_413(env: Stack) -> None:
    job, token = submitted_mirako_job()
    before = Snapshot.of(env, job)
    big = _mirako_body(padding="x" * WEBHOOK_BODY_MAX_BYTES)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    assert_refused(call("mirako", job.job_id, big, headers), 413, "payload_too_large", before)


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", None])
def test_a_mirako_callback_that_is_not_declared_json_is_a_415(env: Stack, content_type: str | None) -> None:
    job, token = submitted_mirako_job()
    before = Snapshot.of(env, job)
    headers = {"Authorization": f"Bearer {token}", **({"Content-Type": content_type} if content_type else {})}
    response = call("mirako", job.job_id, _mirako_body(), headers)
    assert_refused(response, 415, "unsupported_media_type", before)
