"""Hostile input over HTTP on the local stack: forged webhooks, and schemathesis against docs/openapi.json.

The providers are one small fake on loopback (not devstack's emulators): fal's submit, cancel and status, its
JWKS with this module's signing key (so the tests can sign genuine deliveries and forge the rest), a video to
download, and Mirako's submit and status, keeping the per-job webhook token the dispatcher sends. Nothing here
completes by itself: a job stays SUBMITTED until a test delivers its webhook.

schemathesis generates requests from the document with every one of its checks: its examples, coverage and
fuzzing phases (positive and negative data) per operation, then its stateful phase, which follows the document's
links (a created job read and canceled, a page's next page, an upload used as a job's input). Each runs a bounded
number of examples from a fixed seed, so a run is the same every time.
"""

import base64
import hashlib
import io
import json
import time
import uuid
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import schemathesis
from hypothesis import settings
from nacl.signing import SigningKey
from schemathesis.checks import CheckFunction
from schemathesis.core.transport import Response as SchemathesisResponse
from schemathesis.specs.openapi.checks import positive_data_acceptance

from avatarjobs.domain.media import MAGIC
from devstack.emulators.mirako import CUSTOM_VOICES_PATH, PREMADE_VOICE_PROFILES, PREMADE_VOICES_PATH
from devstack.media import SAMPLE_FACE
from devstack.moto_server import local_session
from devstack.stack import LocalStack
from tests.support.generated_video import generated_chunks
from tests.support.loopback_server import serving
from tests.support.polling import eventually

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

API_KEY = "hostile-input-api-key-4b1f0c9e"
DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
MAX_EXAMPLES = 60  # per operation and generation phase
STATEFUL_SCENARIOS = 40  # chains of linked calls, each of at most STATEFUL_STEPS
STATEFUL_STEPS = 6
UPLOAD_PUT_MAX_BYTES = 64 * 1024
SEED = 20_250_601
WEBHOOK_MAX_BYTES = 1024 * 1024  # limits.WEBHOOK_BODY_MAX_BYTES
VIDEO = b"".join(generated_chunks(64 * 1024))
FACE = "data:image/png;base64," + base64.b64encode(SAMPLE_FACE.read_bytes()).decode()
FAL_USER = "fal-user-1"
# Every check of schemathesis is on (its default); the one exception is in `excused_checks`.
schema = schemathesis.openapi.from_path(
    DOCUMENT,
    config=schemathesis.Config.from_dict({"seed": SEED, "auth": {"openapi": {"apiKey": {"api_key": API_KEY}}}}),
)


def _wav() -> str:
    out = io.BytesIO()
    with wave.open(out, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(16_000)
        audio.writeframes(b"\x00\x00" * 1_600)
    return "data:audio/wav;base64," + base64.b64encode(out.getvalue()).decode()


SPEECH = _wav()


# -- the fake providers -----------------------------------------------------------------------------------------


@dataclass
class FakeProviders:
    """fal and Mirako on one loopback server; what the dispatcher submitted, by provider request id."""

    key: SigningKey = field(default_factory=SigningKey.generate)
    url: str = ""
    fal_webhooks: dict[str, str] = field(default_factory=dict)  # request id -> our webhook URL
    mirako_webhooks: dict[str, tuple[str, str]] = field(default_factory=dict)  # task id -> (URL, auth token)

    @property
    def video_url(self) -> str:
        return f"{self.url}/media/video.mp4"

    def jwks(self) -> dict[str, Any]:
        x = base64.urlsafe_b64encode(bytes(self.key.verify_key)).rstrip(b"=").decode()
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x}]}


def _handler(fake: FakeProviders) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/.well-known/jwks.json":
                self._json(200, fake.jwks())
            elif path == "/media/video.mp4":
                self._send(200, VIDEO, "video/mp4")
            elif path.startswith("/fal-ai/ai-avatar/requests/") and path.endswith("/status"):
                self._json(202, {"status": "IN_QUEUE", "queue_position": 0})
            elif path in {PREMADE_VOICES_PATH, CUSTOM_VOICES_PATH}:  # Mirako's listings, as its spec shapes them
                self._json(200, {"data": list(PREMADE_VOICE_PROFILES) if path == PREMADE_VOICES_PATH else None})
            elif path.startswith("/v1/video/async_generate_talking_avatar/") and path.endswith("/status"):
                task_id = path.split("/")[-2]
                self._json(200, {"data": {"task_id": task_id, "status": "IN_PROGRESS"}})
            else:
                self._json(404, {"detail": "Not Found"})

        def do_POST(self) -> None:
            address = urlsplit(self.path)
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            request_id = str(uuid.uuid4())
            if address.path == "/v1/video/async_generate_talking_avatar":
                webhook = body.get("webhook") or {}
                fake.mirako_webhooks[request_id] = (webhook.get("url", ""), webhook.get("auth_token", ""))
                self._json(200, {"data": {"task_id": request_id, "status": "IN_QUEUE"}})
                return
            fake.fal_webhooks[request_id] = parse_qs(address.query).get("fal_webhook", [""])[0]
            base = f"{fake.url}/fal-ai/ai-avatar/requests/{request_id}"  # fal drops the model's sub-path
            ticket = {"request_id": request_id, "status": "IN_QUEUE", "queue_position": 0}
            self._json(
                200, {**ticket, "status_url": f"{base}/status", "response_url": base, "cancel_url": f"{base}/cancel"}
            )

        def do_PUT(self) -> None:  # fal's cancel
            self._json(200, {"status": "OK"})

        def _json(self, status: int, document: dict[str, Any]) -> None:
            self._send(status, json.dumps(document).encode(), "application/json")

        def _send(self, status: int, raw: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def providers() -> Iterator[FakeProviders]:
    fake = FakeProviders()
    with serving(_handler(fake)) as url:
        fake.url = url
        yield fake


@pytest.fixture(scope="module")
def local(providers: FakeProviders, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(
        fal_base_url=providers.url,
        fal_jwks_url=f"{providers.url}/.well-known/jwks.json",
        mirako_base_url=providers.url,
        api_key=API_KEY,
        schedule_seconds=600,  # no reconcile tick during the module: only the tests move jobs
        log_dir=tmp_path_factory.mktemp("hostile-logs"),
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def api(local: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=local.api_url, headers={"x-api-key": API_KEY}, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def dynamodb(local: LocalStack) -> "DynamoDBClient":
    return local_session().client("dynamodb", endpoint_url=local.endpoint_url)


# -- helpers ------------------------------------------------------------------------------------------------


def job_status(api: httpx.Client, job_id: str) -> str:
    response = api.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


def order(api: httpx.Client, body: dict[str, Any]) -> str:
    response = api.post("/jobs", json=body)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    eventually(lambda: job_status(api, job_id) == "SUBMITTED", timeout=30.0)
    return job_id


def fal_job(api: httpx.Client, providers: FakeProviders) -> tuple[str, str]:
    """A fal job SUBMITTED to the fake; returns its id and fal's request id."""
    job_id = order(
        api,
        {
            "provider": "fal",
            "model": "fal-ai/ai-avatar/single-text",
            "image_url": "https://example.com/face.png",
            "text_input": "Hello.",
            "voice": "Aria",
            "prompt": "A person talking.",
        },
    )
    [request_id] = [rid for rid, url in providers.fal_webhooks.items() if url.endswith(f"/webhooks/fal/{job_id}")]
    return job_id, request_id


def mirako_job(api: httpx.Client, providers: FakeProviders) -> tuple[str, str, str]:
    """A Mirako job SUBMITTED to the fake; returns its id, Mirako's task id and the webhook token it was given."""
    job_id = order(api, {"provider": "mirako", "model": "talking-avatar", "image_url": FACE, "audio_url": SPEECH})
    [(task_id, token)] = [
        (task_id, token)
        for task_id, (url, token) in providers.mirako_webhooks.items()
        if url.endswith(f"/webhooks/mirako/{job_id}")
    ]
    return job_id, task_id, token


def item(dynamodb: "DynamoDBClient", local: LocalStack, job_id: str) -> dict[str, Any]:
    """The job's item as stored (status, version and every other attribute)."""
    found = dynamodb.get_item(
        TableName=local.stack.refs["JobsTable"], Key={"job_id": {"S": job_id}}, ConsistentRead=True
    )
    return dict(found["Item"])


def fal_delivery(
    providers: FakeProviders, request_id: str, *, key: SigningKey | None = None, age: int = 0, pad: int = 0
) -> tuple[bytes, dict[str, str]]:
    """A completion webhook as fal sends it, signed by `key` (fal's own by default) `age` seconds ago."""
    video = {"url": providers.video_url, "content_type": "video/mp4", "file_size": len(VIDEO)}
    document: dict[str, Any] = {
        "request_id": request_id,
        "gateway_request_id": request_id,
        "status": "OK",
        "payload": {"video": video, "seed": 7},
    }
    if pad:
        document["padding"] = "x" * pad
    body = json.dumps(document, separators=(",", ":")).encode()
    timestamp = str(int(time.time()) - age)
    message = "\n".join([request_id, FAL_USER, timestamp, hashlib.sha256(body).hexdigest()]).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": FAL_USER,
        "X-Fal-Webhook-Timestamp": timestamp,
        "X-Fal-Webhook-Signature": (key or providers.key).sign(message).signature.hex(),
    }
    return body, headers


def deliver(local: LocalStack, provider: str, job_id: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """A provider's call: no API key, straight to the webhook route."""
    return httpx.post(f"{local.api_url}/webhooks/{provider}/{job_id}", content=body, headers=headers, timeout=30)


# -- forged webhooks ----------------------------------------------------------------------------------------


def test_forged_fal_webhooks_are_refused_over_http_and_change_nothing(
    local: LocalStack, api: httpx.Client, providers: FakeProviders, dynamodb: "DynamoDBClient"
) -> None:
    job_id, request_id = fal_job(api, providers)
    _, other_request_id = fal_job(api, providers)
    before = item(dynamodb, local, job_id)
    body, headers = fal_delivery(providers, request_id)
    tampered = body.replace(b'"seed":7', b'"seed":8')
    big_body, big_headers = fal_delivery(providers, request_id, pad=WEBHOOK_MAX_BYTES)
    unsigned = {name: value for name, value in headers.items() if not name.startswith("X-Fal")}
    forgeries: list[tuple[str, bytes, dict[str, str], int, str]] = [
        ("signed by a key not in fal's JWKS", *fal_delivery(providers, request_id, key=SigningKey.generate()),
         401, "webhook_not_authentic"),
        ("tampered after signing", tampered, headers, 401, "webhook_not_authentic"),
        ("replayed 400 s later", *fal_delivery(providers, request_id, age=400), 401, "webhook_not_authentic"),
        ("signed 400 s ahead", *fal_delivery(providers, request_id, age=-400), 401, "webhook_not_authentic"),
        ("not signed", body, unsigned, 401, "webhook_not_authentic"),
        ("over 1 MiB", big_body, big_headers, 413, "payload_too_large"),
        ("not JSON", body, {**headers, "Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    ]  # fmt: skip
    for name, forged_body, forged_headers, status, code in forgeries:
        response = deliver(local, "fal", job_id, forged_body, forged_headers)
        assert response.status_code == status, (name, response.text)
        assert response.headers["content-type"] == "application/problem+json", name
        assert response.json()["code"] == code, name
    # Another job's genuine delivery, replayed here: authentic, but not about this job's request.
    other_body, other_headers = fal_delivery(providers, other_request_id)
    response = deliver(local, "fal", job_id, other_body, other_headers)
    assert (response.status_code, response.json()) == (200, {"status": "ignored"})

    time.sleep(1)  # anything a forgery had queued would have run by now
    assert item(dynamodb, local, job_id) == before
    # The genuine delivery still works: the forgeries were refused for what they are, not by a broken route.
    response = deliver(local, "fal", job_id, body, headers)
    assert (response.status_code, response.json()) == (200, {"status": "recorded"})
    eventually(lambda: job_status(api, job_id) == "SUCCEEDED", timeout=30.0)
    done = item(dynamodb, local, job_id)
    assert deliver(local, "fal", job_id, body, headers).json() == {"status": "duplicate"}  # a replay in the window
    time.sleep(1)
    assert item(dynamodb, local, job_id) == done


def test_forged_mirako_callbacks_are_refused_over_http_and_change_nothing(
    local: LocalStack, api: httpx.Client, providers: FakeProviders, dynamodb: "DynamoDBClient"
) -> None:
    job_id, task_id, token = mirako_job(api, providers)
    _, _, other_token = mirako_job(api, providers)
    before = item(dynamodb, local, job_id)
    body = json.dumps({"id": task_id, "status": "COMPLETED", "file_url": "https://evil.example/x.mp4"}).encode()
    json_type = {"Content-Type": "application/json"}
    forgeries: list[tuple[str, bytes, dict[str, str], int, str]] = [
        ("no token", body, json_type, 401, "webhook_not_authentic"),
        ("a wrong token", body, {**json_type, "Authorization": "Bearer not-the-token"}, 401, "webhook_not_authentic"),
        ("another job's token", body, {**json_type, "Authorization": f"Bearer {other_token}"},
         401, "webhook_not_authentic"),
        ("over 1 MiB", b'{"pad":"' + b"x" * WEBHOOK_MAX_BYTES + b'"}',
         {**json_type, "Authorization": f"Bearer {token}"}, 413, "payload_too_large"),
        ("not JSON", body, {"Content-Type": "text/plain", "Authorization": f"Bearer {token}"},
         415, "unsupported_media_type"),
    ]  # fmt: skip
    for name, forged_body, headers, status, code in forgeries:
        response = deliver(local, "mirako", job_id, forged_body, headers)
        assert response.status_code == status, (name, response.text)
        assert response.json()["code"] == code, name
    time.sleep(1)
    assert item(dynamodb, local, job_id) == before

    # With the job's own token, a body that lies is only a hint: Mirako's status (IN_PROGRESS) is what counts.
    response = deliver(local, "mirako", job_id, body, {**json_type, "Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    time.sleep(1)
    after = item(dynamodb, local, job_id)
    assert after["status"] == {"S": "RUNNING"}
    assert "provider_result" not in after


# -- schemathesis -------------------------------------------------------------------------------------------


def excused_checks(case: schemathesis.Case[Any], response: SchemathesisResponse) -> list[CheckFunction]:
    """The checks a response is excused from: only positive_data_acceptance, only for a job refused because each
    field it names holds an s3:// URI that is not one of the caller's uploads, or was never uploaded.

    The document cannot know which objects a caller has uploaded (the bucket is the deployment's, the prefix the
    caller's), so a well-formed s3:// URI that schemathesis makes up, or one POST /uploads returned whose PUT never
    happened, is rightly a 422 (docs/decisions.md, "schemathesis with every check and the stateful phase")."""
    if case.operation.label != "POST /jobs" or response.status_code != 422 or not isinstance(case.body, dict):
        return []
    named = [error.get("pointer", "") for error in response.json().get("errors", [])]
    sent = case.body
    if named and all(str(sent.get(pointer.removeprefix("#/"), "")).startswith("s3://") for pointer in named):
        return [positive_data_acceptance]
    # A number nested inside a metadata object or array past +/-(2^53 - 1): the document bounds metadata's own values
    # only, as its JsonValue cannot refer to itself (openapi-python-client drops such a component), while the I-JSON
    # reader refuses such a number at any depth.
    if named and all(pointer.startswith("#/metadata/") and pointer.count("/") > 2 for pointer in named):
        return [positive_data_acceptance]
    return []


def upload_files(uploads: list[dict[str, Any]]) -> None:
    """What a client does with POST /uploads' answer: a PUT of each file (its type's first bytes, then zeros), so
    that the link to POST /jobs names an object that exists. Files over UPLOAD_PUT_MAX_BYTES stay unsent (their
    jobs are refused, as they should be): megabytes per step would only slow the run."""
    for upload in uploads:
        size = int(upload["headers"]["Content-Length"])
        if size <= UPLOAD_PUT_MAX_BYTES:
            head = MAGIC[upload["headers"]["Content-Type"]][0].value
            response = httpx.put(upload["url"], content=head.ljust(size, b"\0")[:size], headers=upload["headers"])
            assert response.status_code == 200, response.text


def validate(case: schemathesis.Case[Any], response: SchemathesisResponse, base_url: str, **more: Any) -> None:
    case.validate_response(
        response, excluded_checks=excused_checks(case, response), transport_kwargs={"base_url": base_url}, **more
    )


def test_known_good_requests_get_the_documented_answers(
    local: LocalStack, api: httpx.Client, providers: FakeProviders
) -> None:
    """What fuzzing rarely reaches (a valid job, a finished job, a cancel), checked against the document."""

    def check(path: str, method: str, headers: dict[str, str] | None = None, **parts: Any) -> httpx.Response:
        case = schema[path][method].Case(headers={"x-api-key": API_KEY, **(headers or {})}, **parts)
        response = case.call(base_url=local.api_url)
        validate(case, response, local.api_url)
        assert response.status_code < 300, response.text
        return httpx.Response(response.status_code, content=response.content)

    succeeded, request_id = fal_job(api, providers)
    assert deliver(local, "fal", succeeded, *fal_delivery(providers, request_id)).status_code == 200
    eventually(lambda: job_status(api, succeeded) == "SUCCEEDED", timeout=30.0)
    submitted, _ = fal_job(api, providers)
    mirako, _, _ = mirako_job(api, providers)

    body = {"provider": "mirako", "model": "talking-avatar", "image_url": FACE, "text": "Hi.", "voice_profile_id": "v"}
    created = check("/jobs", "POST", body=body, headers={"Idempotency-Key": "hostile-1"})
    assert created.json()["status"] == "ACCEPTED"
    for job_id in (succeeded, submitted, mirako):
        check("/jobs/{job_id}", "GET", path_parameters={"job_id": job_id})
    assert check("/jobs/{job_id}", "GET", path_parameters={"job_id": succeeded}).json()["video_url"]
    for status in (None, "SUCCEEDED", "SUBMITTED"):
        check("/jobs", "GET", query={"limit": 2} | ({"status": status} if status else {}))
    check("/jobs/{job_id}/cancel", "POST", path_parameters={"job_id": submitted})
    uploads = {"files": [{"name": "face.png", "content_type": "image/png", "size": 1000}]}
    check("/uploads", "POST", body=uploads)


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None)
def test_the_api_answers_what_its_document_says(case: schemathesis.Case[Any], local: LocalStack) -> None:
    """No 5xx; every status, content type, header and body as documented; valid input accepted, invalid refused."""
    validate(case, case.call(base_url=local.api_url), local.api_url)


def test_chains_of_linked_calls_get_the_documented_answers(local: LocalStack) -> None:
    """The stateful phase: sequences that follow the document's links, with every check (a job just created must
    be found, its cancel answered as documented, a next page read with the cursor given)."""

    class LinkedCalls(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case[Any]) -> dict[str, Any]:
            return {"base_url": local.api_url}

        def after_call(self, response: SchemathesisResponse, case: schemathesis.Case[Any]) -> None:
            super().after_call(response, case)
            if case.operation.label == "POST /uploads" and response.status_code == 201:
                upload_files(response.json()["uploads"])

        def validate_response(
            self,
            response: SchemathesisResponse,
            case: schemathesis.Case[Any],
            additional_checks: list[CheckFunction] | None = None,
            **kwargs: Any,
        ) -> None:
            validate(case, response, local.api_url, additional_checks=additional_checks, recorder=self.recorder)

    LinkedCalls.run(
        settings=settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=STATEFUL_STEPS,
            derandomize=True,  # the seed is derived from the test, not drawn: every run makes the same chains
            database=None,
            deadline=None,
        )
    )
