"""fal's queue adapter against respx: the exact requests it sends and every answer fal documents."""

import json
from collections.abc import Iterator

import httpx
import pytest
import respx

from avatarjobs.domain.ports import Provider
from avatarjobs.domain.providers import (
    CancelOutcome,
    FailureKind,
    ProviderError,
    ProviderErrorCode,
    ProviderState,
    Submission,
    VideoResult,
)
from avatarjobs.providers.fal import FalQueueProvider, InvalidWebhookBody, parse_fal_webhook

BASE = "https://queue.fal.run"
KEY = "key-id-123:key-secret-456"
MODEL = "fal-ai/ai-avatar/single-text"
REQUEST_ID = "764cabcf-b745-4b3e-ae38-1200304cf45b"
WEBHOOK_URL = "https://api.example.com/prod/webhooks/fal/01JABCDEFGHJKMNPQRSTVWXYZ0"
ENCODED_WEBHOOK = "https%3A%2F%2Fapi.example.com%2Fprod%2Fwebhooks%2Ffal%2F01JABCDEFGHJKMNPQRSTVWXYZ0"
# fal's URLs name the app (fal-ai/ai-avatar), not the endpoint (single-text): they must be used as given.
STATUS_URL = f"{BASE}/fal-ai/ai-avatar/requests/{REQUEST_ID}/status"
RESPONSE_URL = f"{BASE}/fal-ai/ai-avatar/requests/{REQUEST_ID}"
CANCEL_URL = f"{BASE}/fal-ai/ai-avatar/requests/{REQUEST_ID}/cancel"
SUBMISSION = Submission(
    request_id=REQUEST_ID, urls={"status_url": STATUS_URL, "response_url": RESPONSE_URL, "cancel_url": CANCEL_URL}
)
INPUTS = {
    "image_url": "https://inputs.example.com/face.png?X-Amz-Signature=abc",
    "text_input": "Hello there.",
    "voice": "Sarah",
    "prompt": "A person talking.",
    "resolution": "480p",
}
VIDEO_URL = "https://v3.fal.media/files/zebra/lKMkUvzCqKn-gHC0vyUPP_30b76b90c2164f9a926527497c20832b.mp4"
VIDEO = {
    "url": VIDEO_URL,
    "content_type": "application/octet-stream",
    "file_name": "30b76b90c2164f9a926527497c20832b.mp4",
    "file_size": 352679,
}


@pytest.fixture
def fal_api() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
def provider() -> Iterator[FalQueueProvider]:
    with httpx.Client() as client:
        yield FalQueueProvider(BASE, KEY, client=client)


def submit_route(router: respx.MockRouter) -> respx.Route:
    return router.route(method="POST", host="queue.fal.run", path=f"/{MODEL}")


def ticket(**overrides: object) -> dict[str, object]:
    return {
        "request_id": REQUEST_ID,
        "status": "IN_QUEUE",
        "status_url": STATUS_URL,
        "response_url": RESPONSE_URL,
        "cancel_url": CANCEL_URL,
        "queue_position": 0,
        **overrides,
    }


def submit_error(provider: FalQueueProvider) -> ProviderError:
    with pytest.raises(ProviderError) as raised:
        provider.submit(MODEL, INPUTS, webhook_url=WEBHOOK_URL, webhook_token=None)
    return raised.value


def test_the_adapter_is_a_provider(provider: FalQueueProvider) -> None:
    as_provider: Provider = provider  # mypy checks the Protocol here

    assert as_provider.name == "fal"


# -- submit ------------------------------------------------------------------------------------------------


def test_submit_sends_the_model_input_with_the_webhook_and_keeps_the_urls_as_returned(
    fal_api: respx.MockRouter, provider: FalQueueProvider
) -> None:
    route = submit_route(fal_api).respond(200, json=ticket())

    submission = provider.submit(MODEL, INPUTS, webhook_url=WEBHOOK_URL, webhook_token=None)

    request = route.calls.last.request
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/{MODEL}?fal_webhook={ENCODED_WEBHOOK}"
    assert request.headers["Authorization"] == f"Key {KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == INPUTS
    assert submission == SUBMISSION
    assert "single-text" not in submission.urls["status_url"]


def test_submit_refused_with_422_is_permanent_with_fals_message(
    fal_api: respx.MockRouter, provider: FalQueueProvider
) -> None:
    detail = [{"loc": ["body", "voice"], "msg": "value is not a valid enumeration member", "type": "type_error.enum"}]
    submit_route(fal_api).respond(422, json={"detail": detail})

    error = submit_error(provider)

    assert error.code == ProviderErrorCode.INVALID_REQUEST
    assert error.retryable is False
    assert error.message == "body.voice: value is not a valid enumeration member"


def test_submit_rate_limited_is_retryable_after_the_given_seconds(
    fal_api: respx.MockRouter, provider: FalQueueProvider
) -> None:
    submit_route(fal_api).respond(429, headers={"Retry-After": "7"}, json={"detail": "Too many requests"})

    error = submit_error(provider)

    assert (error.code, error.retryable, error.retry_after) == (ProviderErrorCode.RATE_LIMITED, True, 7.0)
    assert error.message == "Too many requests"


def test_submit_rate_limited_with_an_http_date_retry_after(
    fal_api: respx.MockRouter, provider: FalQueueProvider
) -> None:
    submit_route(fal_api).respond(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})

    error = submit_error(provider)

    assert error.retryable is True
    assert error.retry_after == 0.0  # a date in the past: retry now


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_submit_server_errors_in_fals_own_words_may_be_sent_again(
    fal_api: respx.MockRouter, provider: FalQueueProvider, status: int
) -> None:
    submit_route(fal_api).respond(status, json={"detail": "Service temporarily unavailable"})

    error = submit_error(provider)

    assert (error.code, error.kind) == (ProviderErrorCode.UNAVAILABLE, FailureKind.RETRY)
    assert error.message == "Service temporarily unavailable"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
@pytest.mark.parametrize(
    ("body", "content_type"),
    [("<html>502 Bad Gateway</html>", "text/html"), ("", "text/plain"), ('["not", "fal"]', "application/json")],
)
def test_submit_server_errors_without_fals_body_are_ambiguous(
    fal_api: respx.MockRouter, provider: FalQueueProvider, status: int, body: str, content_type: str
) -> None:
    # A gateway in front of fal answers these; fal may have queued the request behind it.
    submit_route(fal_api).respond(status, text=body, headers={"Content-Type": content_type})

    error = submit_error(provider)

    assert (error.code, error.kind) == (ProviderErrorCode.UNAVAILABLE, FailureKind.AMBIGUOUS)
    assert error.message == f"fal: HTTP {status} without the provider's own error body (from a gateway in front of it?)"


@pytest.mark.parametrize(
    ("failure", "code", "kind"),
    [
        (httpx.ConnectError("name or service not known"), ProviderErrorCode.UNREACHABLE, FailureKind.RETRY),
        (httpx.ConnectTimeout("timed out"), ProviderErrorCode.UNREACHABLE, FailureKind.RETRY),
        (httpx.PoolTimeout("no free connection"), ProviderErrorCode.UNREACHABLE, FailureKind.RETRY),
        (httpx.WriteError("broken pipe"), ProviderErrorCode.CONNECTION_LOST, FailureKind.AMBIGUOUS),
        (httpx.WriteTimeout("timed out"), ProviderErrorCode.TIMEOUT, FailureKind.AMBIGUOUS),
        (httpx.ReadError("connection reset"), ProviderErrorCode.CONNECTION_LOST, FailureKind.AMBIGUOUS),
        (httpx.ReadTimeout("timed out"), ProviderErrorCode.TIMEOUT, FailureKind.AMBIGUOUS),
        (
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            ProviderErrorCode.CONNECTION_LOST,
            FailureKind.AMBIGUOUS,
        ),
    ],
)
def test_a_transport_failure_is_retry_only_when_the_request_never_left(
    fal_api: respx.MockRouter,
    provider: FalQueueProvider,
    failure: httpx.TransportError,
    code: ProviderErrorCode,
    kind: FailureKind,
) -> None:
    submit_route(fal_api).mock(side_effect=failure)

    error = submit_error(provider)

    assert (error.code, error.kind) == (code, kind)
    assert KEY not in error.message


def test_x_fal_retryable_false_makes_a_503_permanent(fal_api: respx.MockRouter, provider: FalQueueProvider) -> None:
    submit_route(fal_api).respond(
        503, headers={"X-Fal-Retryable": "false"}, json={"detail": "Model is not available", "error_type": "x"}
    )

    error = submit_error(provider)

    assert error.retryable is False
    assert error.message == "Model is not available"


def test_x_fal_retryable_true_makes_a_400_retryable(fal_api: respx.MockRouter, provider: FalQueueProvider) -> None:
    submit_route(fal_api).respond(400, headers={"X-Fal-Retryable": "true"}, json={"detail": "busy"})

    assert submit_error(provider).retryable is True


def test_submit_unauthorized_is_permanent_and_never_echoes_the_key(
    fal_api: respx.MockRouter, provider: FalQueueProvider
) -> None:
    submit_route(fal_api).respond(401, json={"detail": f"Invalid key {KEY}"})

    error = submit_error(provider)

    assert (error.code, error.retryable) == (ProviderErrorCode.AUTH_FAILED, False)
    assert KEY not in str(error)
    assert error.message == "Invalid key [redacted]"


def test_a_connection_error_is_retryable(fal_api: respx.MockRouter, provider: FalQueueProvider) -> None:
    fal_api.get(STATUS_URL).mock(side_effect=httpx.ConnectError)

    with pytest.raises(ProviderError) as raised:
        provider.status(SUBMISSION)

    assert raised.value.retryable is True


def test_submit_answer_with_urls_on_another_host_is_refused(
    fal_api: respx.MockRouter, provider: FalQueueProvider
) -> None:
    submit_route(fal_api).respond(200, json=ticket(status_url="https://evil.example.com/steal"))

    error = submit_error(provider)

    assert error.code == ProviderErrorCode.BAD_RESPONSE
    assert error.kind is FailureKind.AMBIGUOUS  # fal may hold the job: a resubmission could pay twice


def test_submit_answer_without_request_id_is_a_bad_response(
    fal_api: respx.MockRouter, provider: FalQueueProvider
) -> None:
    submit_route(fal_api).respond(200, json={"status": "IN_QUEUE"})

    error = submit_error(provider)
    assert (error.code, error.kind) == (ProviderErrorCode.BAD_RESPONSE, FailureKind.AMBIGUOUS)


def test_submit_refuses_a_model_that_would_change_the_url_path(provider: FalQueueProvider) -> None:
    for model in ("../admin", "fal-ai/ai-avatar?x=1", "/fal-ai/ai-avatar", "ai-avatar"):
        with pytest.raises(ValueError, match="not a fal model id"):
            provider.submit(model, INPUTS, webhook_url=WEBHOOK_URL, webhook_token=None)


# -- status ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("http_status", "body", "state", "logs"),
    [
        (202, {"status": "IN_QUEUE", "queue_position": 3, "response_url": RESPONSE_URL}, ProviderState.IN_QUEUE, []),
        (
            202,
            {"status": "IN_PROGRESS", "logs": [{"message": "loading model", "level": "INFO"}, {"message": "step 1"}]},
            ProviderState.IN_PROGRESS,
            ["loading model", "step 1"],
        ),
        (200, {"status": "COMPLETED", "logs": [{"message": "done"}]}, ProviderState.COMPLETED, ["done"]),
    ],
)
def test_status_asks_with_logs_and_reads_each_state(
    fal_api: respx.MockRouter,
    provider: FalQueueProvider,
    *,
    http_status: int,
    body: dict[str, object],
    state: ProviderState,
    logs: list[str],
) -> None:
    route = fal_api.get(STATUS_URL).respond(http_status, json=body)

    report = provider.status(SUBMISSION)

    request = route.calls.last.request
    assert str(request.url) == f"{STATUS_URL}?logs=1"
    assert request.headers["Authorization"] == f"Key {KEY}"
    assert (report.state, report.logs, report.error, report.video_url) == (state, logs, None, None)


def test_status_with_an_unknown_state_is_a_retryable_bad_response(
    fal_api: respx.MockRouter, provider: FalQueueProvider
) -> None:
    fal_api.get(STATUS_URL).respond(200, json={"status": "EXPLODED"})

    with pytest.raises(ProviderError) as raised:
        provider.status(SUBMISSION)

    assert (raised.value.code, raised.value.retryable) == (ProviderErrorCode.BAD_RESPONSE, True)


# -- result ------------------------------------------------------------------------------------------------


def test_result_reads_the_video(fal_api: respx.MockRouter, provider: FalQueueProvider) -> None:
    route = fal_api.get(RESPONSE_URL).respond(200, json={"video": VIDEO, "seed": 42})

    result = provider.result(SUBMISSION)

    assert route.calls.last.request.headers["Authorization"] == f"Key {KEY}"
    assert result == VideoResult(url=VIDEO_URL, content_type="application/octet-stream", file_size=352679, seed=42)


def test_completed_with_a_validation_error_is_permanent_with_each_loc_and_msg(
    fal_api: respx.MockRouter, provider: FalQueueProvider
) -> None:
    detail = [
        {"loc": ["body", "image_url"], "msg": "Could not download the image", "type": "image_load_error"},
        {"loc": ["body", "num_frames"], "msg": "ensure this value is at most 129", "type": "value_error"},
    ]
    fal_api.get(RESPONSE_URL).respond(422, json={"detail": detail})

    with pytest.raises(ProviderError) as raised:
        provider.result(SUBMISSION)

    error = raised.value
    assert (error.code, error.retryable) == (ProviderErrorCode.INVALID_REQUEST, False)
    assert error.message == (
        "body.image_url: Could not download the image; body.num_frames: ensure this value is at most 129"
    )


@pytest.mark.parametrize("http_status", [422, 500, 504])
def test_completed_with_a_typed_error_is_permanent_with_fals_message(
    fal_api: respx.MockRouter, provider: FalQueueProvider, http_status: int
) -> None:
    fal_api.get(RESPONSE_URL).respond(
        http_status,
        headers={"X-Fal-Error-Type": "generation_timeout", "X-Fal-Retryable": "true"},
        json={"detail": "The generation took too long.", "error_type": "generation_timeout"},
    )

    with pytest.raises(ProviderError) as raised:
        provider.result(SUBMISSION)

    error = raised.value
    assert (error.code, error.retryable) == (ProviderErrorCode.GENERATION_FAILED, False)
    assert error.message == "The generation took too long."
    assert error.provider_code == "generation_timeout"


def test_result_server_error_without_an_error_type_is_retryable(
    fal_api: respx.MockRouter, provider: FalQueueProvider
) -> None:
    fal_api.get(RESPONSE_URL).respond(502, text="bad gateway")

    with pytest.raises(ProviderError) as raised:
        provider.result(SUBMISSION)

    assert raised.value.retryable is True


def test_result_without_a_video_is_a_bad_response(fal_api: respx.MockRouter, provider: FalQueueProvider) -> None:
    fal_api.get(RESPONSE_URL).respond(200, json={"seed": 1})

    with pytest.raises(ProviderError) as raised:
        provider.result(SUBMISSION)

    assert raised.value.code == ProviderErrorCode.BAD_RESPONSE


# -- cancel ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("http_status", "answer", "outcome"),
    [
        (200, "OK", CancelOutcome.CANCELED),
        (202, "CANCELLATION_REQUESTED", CancelOutcome.CANCELLATION_REQUESTED),
        (400, "ALREADY_COMPLETED", CancelOutcome.ALREADY_COMPLETED),
        (404, "NOT_FOUND", CancelOutcome.NOT_FOUND),
    ],
)
def test_cancel_reads_each_answer(
    fal_api: respx.MockRouter, provider: FalQueueProvider, http_status: int, answer: str, outcome: CancelOutcome
) -> None:
    route = fal_api.put(CANCEL_URL).respond(http_status, json={"status": answer})

    assert provider.cancel(SUBMISSION) == outcome
    request = route.calls.last.request
    assert (request.method, str(request.url)) == ("PUT", CANCEL_URL)
    assert request.headers["Authorization"] == f"Key {KEY}"


def test_cancel_server_error_is_retryable(fal_api: respx.MockRouter, provider: FalQueueProvider) -> None:
    fal_api.put(CANCEL_URL).respond(503)

    with pytest.raises(ProviderError) as raised:
        provider.cancel(SUBMISSION)

    assert raised.value.retryable is True


# -- webhook body ------------------------------------------------------------------------------------------


def test_webhook_ok_carries_the_video() -> None:
    body = {
        "request_id": REQUEST_ID,
        "gateway_request_id": REQUEST_ID,
        "status": "OK",
        "payload": {"video": VIDEO, "seed": 7},
    }

    event = parse_fal_webhook(json.dumps(body).encode())

    assert event.request_id == REQUEST_ID
    assert event.ok is True
    assert (event.video_url, event.content_type, event.file_size) == (VIDEO_URL, "application/octet-stream", 352679)
    assert event.error is None


def test_webhook_error_carries_fals_message() -> None:
    body = {
        "request_id": REQUEST_ID,
        "gateway_request_id": "other-gateway-id",
        "status": "ERROR",
        "error": "Invalid status code: 422",
        "payload": {"detail": [{"loc": ["body", "prompt"], "msg": "field required", "type": "value_error.missing"}]},
    }

    event = parse_fal_webhook(json.dumps(body).encode())

    assert (event.request_id, event.ok, event.video_url) == (REQUEST_ID, False, None)
    assert event.error == "body.prompt: field required"


def test_webhook_error_without_a_payload_uses_the_error_text() -> None:
    body = {"request_id": REQUEST_ID, "gateway_request_id": REQUEST_ID, "status": "ERROR", "error": "boom"}

    event = parse_fal_webhook(json.dumps(body).encode())

    assert (event.ok, event.error) == (False, "boom")


def test_webhook_ok_without_a_payload_says_to_fetch_the_result() -> None:
    body = {
        "request_id": REQUEST_ID,
        "gateway_request_id": REQUEST_ID,
        "status": "OK",
        "payload": None,
        "payload_error": "Response payload is too large to be included",
    }

    event = parse_fal_webhook(json.dumps(body).encode())

    assert (event.ok, event.video_url) == (True, None)
    assert event.error == "Response payload is too large to be included"


@pytest.mark.parametrize(
    "raw", [b"not json", b"[]", b'{"status": "OK"}', b'{"request_id": "x", "status": "MAYBE"}', b"\xff\xfe"]
)
def test_webhook_body_that_is_not_fals_is_refused(raw: bytes) -> None:
    with pytest.raises(InvalidWebhookBody):
        parse_fal_webhook(raw)
