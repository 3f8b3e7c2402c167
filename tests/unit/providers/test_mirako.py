"""Mirako's talking-avatar adapter against respx: exact requests, problem+json errors, every task status."""

import base64
import hashlib
import io
import json
import struct
import wave
from collections.abc import Iterator

import httpx
import pytest
import respx

from avatarjobs.domain.ids import new_webhook_token
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
from avatarjobs.providers.mirako import (
    NO_TASK_ID_MESSAGE,
    SPEECH_UNCONFIRMED_MESSAGE,
    MirakoProvider,
    speech_as_audio_file,
    verify_webhook_token,
)

BASE = "https://mirako.co"
KEY = "mi-AbCdE-secret-api-token"
SUBMIT_URL = f"{BASE}/v1/video/async_generate_talking_avatar"
TTS_URL = f"{BASE}/v1/speech/tts"
TASK_ID = "xdac2o3c"
STATUS_URL = f"{BASE}/v1/video/async_generate_talking_avatar/{TASK_ID}/status"
WEBHOOK_URL = "https://api.example.com/prod/webhooks/mirako/01JABCDEFGHJKMNPQRSTVWXYZ0"
WEBHOOK_TOKEN = "per-job-webhook-token"
IMAGE = b"\x89PNG\r\n\x1a\n fake image bytes"
AUDIO = b"RIFF$\x00\x00\x00WAVEfmt fake audio bytes"
TTS_AUDIO_B64 = base64.b64encode(b"RIFF speech made by Mirako").decode()
VIDEO_URL = "https://cdn.mirako.co/outputs/xdac2o3c.mp4"
PROBLEM = "application/problem+json"


@pytest.fixture
def mirako_api() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
def provider() -> Iterator[MirakoProvider]:
    with httpx.Client() as client:
        yield MirakoProvider(BASE, KEY, client=client)


def accepted(task_id: str = TASK_ID) -> httpx.Response:
    return httpx.Response(200, json={"data": {"task_id": task_id, "status": "IN_QUEUE"}})


def problem(status: int, **fields: object) -> httpx.Response:
    """An application/problem+json answer, as Mirako's ErrorModel (its status field repeats the HTTP status)."""
    body = {"status": status, **fields}
    return httpx.Response(status, headers={"Content-Type": PROBLEM}, content=json.dumps(body).encode())


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def submit_error(provider: MirakoProvider) -> ProviderError:
    with pytest.raises(ProviderError) as raised:
        provider.submit(
            "talking-avatar", {"image": IMAGE, "audio": AUDIO}, webhook_url=WEBHOOK_URL, webhook_token=WEBHOOK_TOKEN
        )
    return raised.value


def test_the_adapter_is_a_provider(provider: MirakoProvider) -> None:
    as_provider: Provider = provider  # mypy checks the Protocol here

    assert as_provider.name == "mirako"


# -- submit ------------------------------------------------------------------------------------------------


def test_submit_sends_exactly_image_audio_and_webhook(mirako_api: respx.MockRouter, provider: MirakoProvider) -> None:
    route = mirako_api.post(SUBMIT_URL).mock(return_value=accepted())

    submission = provider.submit(
        "talking-avatar", {"image": IMAGE, "audio": AUDIO}, webhook_url=WEBHOOK_URL, webhook_token=WEBHOOK_TOKEN
    )

    request = route.calls.last.request
    assert (request.method, str(request.url)) == ("POST", SUBMIT_URL)
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {
        "image": b64(IMAGE),
        "audio": b64(AUDIO),
        "webhook": {"url": WEBHOOK_URL, "auth_token": WEBHOOK_TOKEN},
    }
    assert submission == Submission(request_id=TASK_ID, urls={})


def test_submit_without_a_webhook_url_sends_no_webhook(mirako_api: respx.MockRouter, provider: MirakoProvider) -> None:
    route = mirako_api.post(SUBMIT_URL).mock(return_value=accepted())

    provider.submit("talking-avatar", {"image": IMAGE, "audio": AUDIO}, webhook_url="", webhook_token=None)

    assert json.loads(route.calls.last.request.content) == {"image": b64(IMAGE), "audio": b64(AUDIO)}


def test_a_text_job_asks_for_speech_first_and_sends_mirakos_audio(
    mirako_api: respx.MockRouter, provider: MirakoProvider
) -> None:
    tts = mirako_api.post(TTS_URL).respond(
        200, json={"data": {"id": "tts-1", "voice_profile_id": "voice-7", "b64_audio_str": TTS_AUDIO_B64}}
    )
    submit = mirako_api.post(SUBMIT_URL).mock(return_value=accepted())
    inputs = {"image": IMAGE, "text": "Simplicity is the ultimate sophistication.", "voice_profile_id": "voice-7"}

    submission = provider.submit("talking-avatar", inputs, webhook_url=WEBHOOK_URL, webhook_token=WEBHOOK_TOKEN)

    assert [call.request.url.path for call in mirako_api.calls] == [
        "/v1/speech/tts",
        "/v1/video/async_generate_talking_avatar",
    ]
    tts_request = tts.calls.last.request
    assert tts_request.headers["Authorization"] == f"Bearer {KEY}"
    assert json.loads(tts_request.content) == {
        "text": "Simplicity is the ultimate sophistication.",
        "voice_profile_id": "voice-7",
        "return_type": "b64_audio_str",
    }
    assert json.loads(submit.calls.last.request.content) == {
        "image": b64(IMAGE),
        "audio": TTS_AUDIO_B64,
        "webhook": {"url": WEBHOOK_URL, "auth_token": WEBHOOK_TOKEN},
    }
    assert submission.request_id == TASK_ID


@pytest.mark.parametrize(
    "tts_body", [{"data": {"id": "t", "voice_profile_id": "v"}}, {"data": {"b64_audio_str": "%%"}}]
)
def test_speech_without_usable_audio_fails_before_any_video_is_asked_for(
    mirako_api: respx.MockRouter, provider: MirakoProvider, tts_body: dict[str, object]
) -> None:
    mirako_api.post(TTS_URL).respond(200, json=tts_body)
    submit = mirako_api.post(SUBMIT_URL).mock(return_value=accepted())

    with pytest.raises(ProviderError) as raised:
        provider.submit(
            "talking-avatar",
            {"image": IMAGE, "text": "hi", "voice_profile_id": "v"},
            webhook_url="",
            webhook_token=None,
        )

    assert (raised.value.code, raised.value.retryable) == (ProviderErrorCode.BAD_RESPONSE, False)
    assert submit.call_count == 0


def wav_format(audio: bytes) -> tuple[int, int, int]:
    with wave.open(io.BytesIO(audio)) as wav:
        return wav.getframerate(), wav.getnchannels(), wav.getsampwidth()


def test_raw_pcm_speech_is_wrapped_in_a_wav_at_the_specs_sample_rate(
    mirako_api: respx.MockRouter, provider: MirakoProvider
) -> None:
    # The spec: "The PCM s16 audio data"; its example header says 16 kHz, mono, 16-bit.
    pcm = struct.pack("<8h", 0, 1000, 2000, 1000, 0, -1000, -2000, -1000)
    b64_pcm = base64.b64encode(pcm).decode()
    mirako_api.post(TTS_URL).respond(200, json={"data": {"id": "t", "voice_profile_id": "v", "b64_audio_str": b64_pcm}})
    submit = mirako_api.post(SUBMIT_URL).respond(200, json={"data": {"task_id": "xdac2o3c", "status": "IN_QUEUE"}})

    provider.submit("talking-avatar", {"image": b"img", "text": "Hi", "voice_profile_id": "v"}, webhook_url="",
                    webhook_token=None)  # fmt: skip

    audio = base64.b64decode(json.loads(submit.calls.last.request.content)["audio"])
    assert audio.startswith(b"RIFF")
    assert wav_format(audio) == (16_000, 1, 2)
    with wave.open(io.BytesIO(audio)) as wav:
        assert wav.readframes(wav.getnframes()) == pcm


@pytest.mark.parametrize(
    "audio_file", [b"RIFF\x24\x00\x00\x00WAVEfmt ", b"ID3\x04\x00mp3", b"\xff\xfb\x90\x00mp3", b"OggS\x00opus"]
)
def test_speech_that_is_already_an_audio_file_is_sent_as_it_is(audio_file: bytes) -> None:
    assert speech_as_audio_file(audio_file) == audio_file


def test_speech_of_half_a_sample_is_refused() -> None:
    with pytest.raises(ProviderError) as raised:
        speech_as_audio_file(b"\x01\x02\x03")
    assert raised.value.kind is FailureKind.FINAL


@pytest.mark.parametrize(
    "lost", [httpx.ReadTimeout("no answer"), httpx.RemoteProtocolError("closed"), httpx.Response(502, text="<html>")]
)
def test_a_speech_answer_lost_after_sending_fails_the_job_without_asking_twice(
    mirako_api: respx.MockRouter, provider: MirakoProvider, lost: httpx.Response | Exception
) -> None:
    tts = mirako_api.post(TTS_URL)
    if isinstance(lost, httpx.Response):
        tts.mock(return_value=lost)
    else:
        tts.mock(side_effect=lost)
    submit = mirako_api.post(SUBMIT_URL)

    with pytest.raises(ProviderError) as raised:
        provider.submit("talking-avatar", {"image": b"img", "text": "Hi", "voice_profile_id": "v"}, webhook_url="",
                        webhook_token=None)  # fmt: skip

    assert raised.value.kind is FailureKind.FINAL
    assert raised.value.message == SPEECH_UNCONFIRMED_MESSAGE
    assert (tts.call_count, submit.call_count) == (1, 0)


def test_a_speech_error_is_reported_like_any_problem(mirako_api: respx.MockRouter, provider: MirakoProvider) -> None:
    mirako_api.post(TTS_URL).mock(return_value=problem(404, title="Not Found", detail="no such voice"))

    with pytest.raises(ProviderError) as raised:
        provider.submit(
            "talking-avatar",
            {"image": IMAGE, "text": "hi", "voice_profile_id": "v"},
            webhook_url="",
            webhook_token=None,
        )

    assert raised.value.retryable is False
    assert "no such voice" in raised.value.message


@pytest.mark.parametrize(
    "body",
    [
        {"data": {"status": "IN_QUEUE"}},
        {"data": {"task_id": "", "status": "IN_QUEUE"}},
        {"data": {"task_id": 42}},
        {"data": None},
        {},
        [],
    ],
)
def test_a_200_without_a_task_id_is_ambiguous(
    mirako_api: respx.MockRouter, provider: MirakoProvider, body: object
) -> None:
    # The task may exist and be paid for: it is never ordered again, its webhook may still tell.
    mirako_api.post(SUBMIT_URL).respond(200, json=body)

    error = submit_error(provider)

    assert (error.message, error.kind) == (NO_TASK_ID_MESSAGE, FailureKind.AMBIGUOUS)


def test_a_400_problem_is_permanent_with_its_title_detail_and_errors(
    mirako_api: respx.MockRouter, provider: MirakoProvider
) -> None:
    mirako_api.post(SUBMIT_URL).mock(
        return_value=problem(
            400,
            title="Bad Request",
            detail="validation failed",
            errors=[{"location": "body.image", "message": "expected base64", "value": "..."}],
        )
    )

    error = submit_error(provider)

    assert (error.code, error.retryable, error.provider_code) == (
        ProviderErrorCode.INVALID_REQUEST,
        False,
        "Bad Request",
    )
    assert error.message == "Mirako submit: Bad Request: validation failed (body.image: expected base64)"


def test_a_401_problem_is_permanent_with_its_detail(mirako_api: respx.MockRouter, provider: MirakoProvider) -> None:
    mirako_api.post(SUBMIT_URL).mock(return_value=problem(401, title="Unauthorized", detail="invalid API token"))

    error = submit_error(provider)

    assert (error.code, error.retryable) == (ProviderErrorCode.AUTH_FAILED, False)
    assert "invalid API token" in error.message


def test_error_messages_never_carry_the_api_key_or_the_webhook_token(
    mirako_api: respx.MockRouter, provider: MirakoProvider
) -> None:
    mirako_api.post(SUBMIT_URL).mock(
        return_value=problem(400, title="Bad Request", detail=f"token {KEY} and auth_token {WEBHOOK_TOKEN} rejected")
    )

    error = submit_error(provider)

    assert KEY not in str(error)
    assert WEBHOOK_TOKEN not in str(error)
    assert "token [redacted] and auth_token [redacted] rejected" in error.message


def test_a_429_is_retryable_after_the_given_seconds(mirako_api: respx.MockRouter, provider: MirakoProvider) -> None:
    mirako_api.post(SUBMIT_URL).respond(
        429, headers={"Content-Type": PROBLEM, "Retry-After": "30"}, json={"title": "Too Many Requests"}
    )

    error = submit_error(provider)

    assert (error.code, error.retryable, error.retry_after) == (ProviderErrorCode.RATE_LIMITED, True, 30.0)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_in_mirakos_problem_format_may_be_sent_again(
    mirako_api: respx.MockRouter, provider: MirakoProvider, status: int
) -> None:
    problem = {"title": "Service Unavailable", "status": status, "detail": "busy"}
    mirako_api.post(SUBMIT_URL).respond(status, json=problem, headers={"Content-Type": PROBLEM})

    error = submit_error(provider)

    assert (error.code, error.kind) == (ProviderErrorCode.UNAVAILABLE, FailureKind.RETRY)
    assert error.message == "Mirako submit: Service Unavailable: busy"


@pytest.mark.parametrize("status", [500, 502, 504])
def test_server_errors_without_mirakos_problem_body_are_ambiguous(
    mirako_api: respx.MockRouter, provider: MirakoProvider, status: int
) -> None:
    mirako_api.post(SUBMIT_URL).respond(status, text="<html>Bad Gateway</html>", headers={"Content-Type": "text/html"})

    error = submit_error(provider)

    assert (error.code, error.kind) == (ProviderErrorCode.UNAVAILABLE, FailureKind.AMBIGUOUS)
    assert error.message.startswith(f"Mirako submit: HTTP {status} without the provider's own error body")


def test_a_timeout_is_retryable(mirako_api: respx.MockRouter, provider: MirakoProvider) -> None:
    mirako_api.post(SUBMIT_URL).mock(side_effect=httpx.ReadTimeout)

    assert submit_error(provider).retryable is True


@pytest.mark.parametrize(
    "inputs",
    [
        {"image": IMAGE},
        {"audio": AUDIO},
        {"image": "not bytes", "audio": AUDIO},
        {"image": IMAGE, "audio": b""},
        {"image": IMAGE, "text": "hi"},
    ],
)
def test_inputs_the_dispatcher_should_never_pass_are_refused_before_any_call(
    mirako_api: respx.MockRouter, provider: MirakoProvider, inputs: dict[str, object]
) -> None:
    with pytest.raises(ValueError, match="Mirako"):
        provider.submit("talking-avatar", inputs, webhook_url=WEBHOOK_URL, webhook_token=WEBHOOK_TOKEN)
    assert not mirako_api.calls


# -- status and result -------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", list(ProviderState))
def test_status_reads_each_task_state(
    mirako_api: respx.MockRouter, provider: MirakoProvider, state: ProviderState
) -> None:
    completed = state == ProviderState.COMPLETED
    data = {"task_id": TASK_ID, "status": state.value, "file_url": VIDEO_URL if completed else None}
    if state == ProviderState.FAILED:
        data["error"] = "face not detected"
    route = mirako_api.get(STATUS_URL).respond(200, json={"data": data})

    report = provider.status(Submission(request_id=TASK_ID))

    request = route.calls.last.request
    assert (request.method, str(request.url)) == ("GET", STATUS_URL)
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert report.state == state
    assert report.video_url == (VIDEO_URL if completed else None)
    assert report.error == ("face not detected" if state == ProviderState.FAILED else None)


def test_status_with_an_unknown_state_is_a_retryable_bad_response(
    mirako_api: respx.MockRouter, provider: MirakoProvider
) -> None:
    mirako_api.get(STATUS_URL).respond(200, json={"data": {"task_id": TASK_ID, "status": "DREAMING"}})

    with pytest.raises(ProviderError) as raised:
        provider.status(Submission(request_id=TASK_ID))

    assert (raised.value.code, raised.value.retryable) == (ProviderErrorCode.BAD_RESPONSE, True)


def test_the_task_id_cannot_change_the_status_path(mirako_api: respx.MockRouter, provider: MirakoProvider) -> None:
    route = mirako_api.route(method="GET").respond(200, json={"data": {"task_id": "x", "status": "IN_QUEUE"}})

    provider.status(Submission(request_id="../../v1/voice/profiles"))

    assert route.calls.last.request.url.raw_path == (
        b"/v1/video/async_generate_talking_avatar/..%2F..%2Fv1%2Fvoice%2Fprofiles/status"
    )


def test_result_of_a_completed_task_is_its_mp4(mirako_api: respx.MockRouter, provider: MirakoProvider) -> None:
    mirako_api.get(STATUS_URL).respond(
        200, json={"data": {"task_id": TASK_ID, "status": "COMPLETED", "file_url": VIDEO_URL, "output_duration": 5.5}}
    )

    result = provider.result(Submission(request_id=TASK_ID))

    assert result == VideoResult(url=VIDEO_URL, content_type="video/mp4", duration_seconds=5.5)


@pytest.mark.parametrize("state", ["FAILED", "CANCELED", "TIMED_OUT"])
def test_result_of_a_failed_task_is_permanent_with_mirakos_error(
    mirako_api: respx.MockRouter, provider: MirakoProvider, state: str
) -> None:
    mirako_api.get(STATUS_URL).respond(
        200, json={"data": {"task_id": TASK_ID, "status": state, "error": "no face found in the image"}}
    )

    with pytest.raises(ProviderError) as raised:
        provider.result(Submission(request_id=TASK_ID))

    error = raised.value
    assert (error.code, error.retryable, error.provider_code) == (ProviderErrorCode.GENERATION_FAILED, False, state)
    assert error.message == "no face found in the image"


def test_result_of_a_task_that_is_still_running_is_retryable(
    mirako_api: respx.MockRouter, provider: MirakoProvider
) -> None:
    mirako_api.get(STATUS_URL).respond(200, json={"data": {"task_id": TASK_ID, "status": "IN_PROGRESS"}})

    with pytest.raises(ProviderError) as raised:
        provider.result(Submission(request_id=TASK_ID))

    assert (raised.value.code, raised.value.retryable) == (ProviderErrorCode.NOT_READY, True)


def test_result_of_a_completed_task_without_a_file_url_is_a_bad_response(
    mirako_api: respx.MockRouter, provider: MirakoProvider
) -> None:
    mirako_api.get(STATUS_URL).respond(200, json={"data": {"task_id": TASK_ID, "status": "COMPLETED"}})

    with pytest.raises(ProviderError) as raised:
        provider.result(Submission(request_id=TASK_ID))

    assert raised.value.code == ProviderErrorCode.BAD_RESPONSE


def test_cancel_is_unsupported_and_sends_nothing(mirako_api: respx.MockRouter, provider: MirakoProvider) -> None:
    assert provider.cancel(Submission(request_id=TASK_ID)) == CancelOutcome.UNSUPPORTED
    assert not mirako_api.calls


# -- webhook token -----------------------------------------------------------------------------------------


def test_a_new_webhook_token_comes_with_its_sha256() -> None:
    token, digest = new_webhook_token()
    other, _ = new_webhook_token()

    assert len(token) >= 43
    assert token != other
    assert digest == hashlib.sha256(token.encode()).hexdigest()


def test_the_right_token_is_accepted() -> None:
    token, digest = new_webhook_token()

    assert verify_webhook_token(f"Bearer {token}", digest) is True
    assert verify_webhook_token(f"bearer {token}", digest) is True  # the auth scheme is case-insensitive


@pytest.mark.parametrize(
    "header",
    [
        "Bearer wrong-token",
        "TOKEN",  # the right token without "Bearer "
        "Basic TOKEN",
        "Bearer",
        "Bearer ",
        "",
        None,
        "Bearer TOKENX",
        "Bearer \ud800",
        "Bearer é",
    ],
)
def test_anything_else_is_refused(header: str | None) -> None:
    token, digest = new_webhook_token()

    assert verify_webhook_token(header.replace("TOKEN", token) if header else header, digest) is False
