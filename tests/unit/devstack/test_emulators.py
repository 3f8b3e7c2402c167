"""The fal and Mirako emulators, driven by OUR adapters: what the pipeline sends, they must understand, and the
other way round. Each test runs an emulator in-process on a free port, with a tiny loopback server that serves
the inputs (like moto's presigned URLs) and records the webhooks it receives.
"""

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from avatarjobs.domain.ids import new_webhook_token
from avatarjobs.domain.providers import CancelOutcome, ProviderError, ProviderErrorCode, ProviderState, Submission
from avatarjobs.providers.fal import FalQueueProvider
from avatarjobs.providers.fal_webhook_signature import FalWebhookVerifier, InvalidSignature, http_jwks_fetcher
from avatarjobs.providers.mirako import MirakoProvider, problem_message
from devstack import media
from devstack.emulators.fal import FalEmulator
from devstack.emulators.mirako import MirakoEmulator
from devstack.emulators.settings import EmulatorSettings, SettingsStore, settings_from_environment
from devstack.processes import server_process
from tests.support.emulator_loopback import SENTENCE, WAIT_SECONDS, Delivery, Loopback, download, text_inputs
from tests.support.polling import eventually

FAL_KEY = "local-fal-key:secret"
MIRAKO_KEY = "mi-local-secret"
FAST = EmulatorSettings(queue_seconds=0.2, delay_seconds=0.3, webhook_attempts=3)
SLOW = EmulatorSettings(queue_seconds=1.0, delay_seconds=3.0)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


# -- fal ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def fal_emulator() -> Iterator[FalEmulator]:
    with FalEmulator(FAST, api_key=FAL_KEY) as emulator:
        yield emulator


@pytest.fixture
def fal(fal_emulator: FalEmulator, http: httpx.Client) -> FalQueueProvider:
    verifier = FalWebhookVerifier(http_jwks_fetcher(fal_emulator.jwks_url, client=http))
    return FalQueueProvider(fal_emulator.base_url, FAL_KEY, client=http, webhook_verifier=verifier)


def fal_submit(fal: FalQueueProvider, loopback: Loopback, model: str, inputs: dict[str, Any]) -> Submission:
    return fal.submit(model, inputs, webhook_url=f"{loopback.base_url}/webhooks/fal/job-1")


def test_fal_single_text_job_from_submit_to_a_signed_webhook_and_a_playable_video(
    fal: FalQueueProvider, fal_emulator: FalEmulator, loopback: Loopback, face: bytes
) -> None:
    submission = fal_submit(fal, loopback, "fal-ai/ai-avatar/single-text", text_inputs(face))

    # fal's quirk: the URLs name the app, not the endpoint; the adapter checked they are on the queue's host.
    root = f"{fal_emulator.base_url}/fal-ai/ai-avatar/requests/{submission.request_id}"
    assert submission.urls == {"status_url": f"{root}/status", "response_url": root, "cancel_url": f"{root}/cancel"}

    delivery = loopback.next_delivery()
    assert delivery.path == "/webhooks/fal/job-1"
    notice = fal.verify_webhook(delivery.headers, delivery.body, token_sha256=None)
    assert (notice.request_id, notice.trusted, notice.succeeded) == (submission.request_id, True, True)
    assert notice.video_url == f"{fal_emulator.media_base_url}/media/{submission.request_id}.mp4"
    assert notice.content_type == "application/octet-stream"

    assert fal.status(submission).state == ProviderState.COMPLETED
    result = fal.result(submission)
    assert (result.url, result.file_size) == (notice.video_url, notice.file_size)
    video = download(result.url)
    assert video.headers["content-type"] == "application/octet-stream"  # like fal.media
    assert len(video.content) == result.file_size
    found = media.probe(video.content)
    assert (found.has_video, found.has_audio) == (True, True)
    assert found.duration_seconds > 0.5


def test_fal_multi_text_speaks_both_lines_one_after_the_other(
    fal: FalQueueProvider, loopback: Loopback, face: bytes
) -> None:
    first, second = "Do you know what we are eating?", "I think it is something called milky pie."
    inputs = {
        "image_url": loopback.serve("/inputs/face.png?X-Amz-Signature=abc", face),
        "first_text_input": first,
        "second_text_input": second,
        "prompt": "Two kids talking at lunch.",
    }
    submission = fal_submit(fal, loopback, "fal-ai/ai-avatar/multi-text", inputs)

    notice = fal.verify_webhook(*_parts(loopback.next_delivery()), token_sha256=None)
    assert notice.succeeded
    assert notice.video_url is not None
    expected = media.wav_duration(media.speak(first, "Sarah")) + media.wav_duration(media.speak(second, "Roger"))
    found = media.probe(download(fal.result(submission).url).content)
    assert found.duration_seconds == pytest.approx(expected, abs=0.5)


def test_fal_audio_models_fetch_their_inputs_from_the_given_urls(
    fal: FalQueueProvider, loopback: Loopback, face: bytes, speech: bytes
) -> None:
    image_url = loopback.serve("/inputs/face.png", face)
    audio_url = loopback.serve("/inputs/speech.wav", speech)
    single = fal_submit(
        fal, loopback, "fal-ai/ai-avatar", {"image_url": image_url, "audio_url": audio_url, "prompt": "p"}
    )
    multi_inputs = {"image_url": image_url, "first_audio_url": audio_url, "second_audio_url": audio_url, "prompt": "p"}
    multi = fal_submit(fal, loopback, "fal-ai/ai-avatar/multi", multi_inputs)

    for _ in range(2):
        assert fal.verify_webhook(*_parts(loopback.next_delivery()), token_sha256=None).succeeded
    one = media.wav_duration(speech)
    assert media.probe(download(fal.result(single).url).content).duration_seconds == pytest.approx(one, abs=0.5)
    assert media.probe(download(fal.result(multi).url).content).duration_seconds == pytest.approx(2 * one, abs=0.5)


def test_fal_status_answers_202_until_completed_then_200(
    fal: FalQueueProvider, fal_emulator: FalEmulator, loopback: Loopback, face: bytes, http: httpx.Client
) -> None:
    fal_emulator.update_settings(queue_seconds=1.0, delay_seconds=1.0)
    submission = fal_submit(fal, loopback, "fal-ai/ai-avatar/single-text", text_inputs(face))
    headers = {"Authorization": f"Key {FAL_KEY}"}

    queued = http.get(submission.urls["status_url"], headers=headers)
    assert queued.status_code == 202
    assert queued.json()["status"] == "IN_QUEUE"
    assert queued.json()["queue_position"] == 0
    assert fal.status(submission).state == ProviderState.IN_QUEUE

    eventually(
        lambda: fal.status(submission).state == ProviderState.IN_PROGRESS,
        waiting_for="IN_PROGRESS",
        timeout=WAIT_SECONDS,
        every=0.05,
    )
    running = http.get(submission.urls["status_url"], params={"logs": "1"}, headers=headers)
    assert (running.status_code, running.json()["status"]) == (202, "IN_PROGRESS")
    assert running.json()["logs"][0]["message"].startswith("Generating")
    early = http.get(submission.urls["response_url"], headers=headers)
    assert early.status_code == 400

    loopback.next_delivery()
    done = http.get(submission.urls["status_url"], headers=headers)
    assert (done.status_code, done.json()["status"]) == (200, "COMPLETED")
    assert fal.status(submission).logs  # the adapter asks with logs=1


def test_fal_failed_run_is_completed_and_its_result_is_the_error(
    fal: FalQueueProvider, fal_emulator: FalEmulator, loopback: Loopback, face: bytes
) -> None:
    fal_emulator.update_settings(fail_runs=1)
    submission = fal_submit(fal, loopback, "fal-ai/ai-avatar/single-text", text_inputs(face))

    notice = fal.verify_webhook(*_parts(loopback.next_delivery()), token_sha256=None)
    assert notice.succeeded is False
    assert notice.error == "body.image_url: Could not detect a face in the image."
    report = fal.status(submission)
    assert report.state == ProviderState.COMPLETED  # fal has no FAILED state
    assert report.error == "Could not detect a face in the image."
    with pytest.raises(ProviderError) as raised:
        fal.result(submission)
    # fal's documented model error: its type is inside detail[] (test_emulator_knobs checks the wire shape).
    error = raised.value
    assert error.message == "body.image_url: Could not detect a face in the image."
    assert (error.code, error.provider_code, error.retryable) == (
        ProviderErrorCode.INVALID_REQUEST,
        "face_detection_error",
        False,
    )
    assert (notice.error_code, notice.provider_code) == (error.code, error.provider_code)  # alike by webhook

    # the count is used up: the next run succeeds
    fal_submit(fal, loopback, "fal-ai/ai-avatar/single-text", text_inputs(face))
    assert fal.verify_webhook(*_parts(loopback.next_delivery()), token_sha256=None).succeeded


def test_fal_input_it_cannot_download_fails_the_run_as_an_invalid_request(
    fal: FalQueueProvider, loopback: Loopback
) -> None:
    inputs = text_inputs(b"", image_url=f"{loopback.base_url}/inputs/expired.png")
    submission = fal_submit(fal, loopback, "fal-ai/ai-avatar/single-text", inputs)

    body = loopback.next_delivery().json()
    assert body["status"] == "ERROR"
    assert body["payload"]["detail"][0]["loc"] == ["body", "image_url"]
    assert body["payload"]["detail"][0]["type"] == "file_download_error"
    with pytest.raises(ProviderError) as raised:
        fal.result(submission)
    assert raised.value.code == ProviderErrorCode.INVALID_REQUEST
    assert "body.image_url: Failed to download the file" in raised.value.message


def test_fal_refuses_bad_input_with_fastapis_422(
    fal: FalQueueProvider, fal_emulator: FalEmulator, loopback: Loopback, http: httpx.Client
) -> None:
    inputs = {"image_url": "https://example.com/face.png", "voice": "Nobody", "prompt": "p", "num_frames": 500}
    with pytest.raises(ProviderError) as raised:
        fal_submit(fal, loopback, "fal-ai/ai-avatar/single-text", inputs)
    assert raised.value.code == ProviderErrorCode.INVALID_REQUEST
    assert not raised.value.retryable
    assert "body.text_input: Field required" in raised.value.message
    assert "body.voice: Input should be 'Aria'" in raised.value.message
    assert "body.num_frames: Input should be less than or equal to 129" in raised.value.message

    response = http.post(
        f"{fal_emulator.base_url}/fal-ai/ai-avatar/multi",
        headers={"Authorization": f"Key {FAL_KEY}"},
        json={"image_url": "https://example.com/face.png", "prompt": "p"},
    )
    assert response.status_code == 422
    assert response.json() == {
        "detail": [{"loc": ["body", "first_audio_url"], "msg": "Field required", "type": "missing"}]
    }


def test_fal_wants_its_key(fal_emulator: FalEmulator, loopback: Loopback, face: bytes, http: httpx.Client) -> None:
    wrong = FalQueueProvider(fal_emulator.base_url, "not-the-key", client=http)
    with pytest.raises(ProviderError) as raised:
        fal_submit(wrong, loopback, "fal-ai/ai-avatar/single-text", text_inputs(face))
    assert raised.value.code == ProviderErrorCode.AUTH_FAILED
    assert http.post(f"{fal_emulator.base_url}/fal-ai/ai-avatar", json={}).status_code == 401


def test_fal_rate_limit_and_server_errors_are_retryable(
    fal: FalQueueProvider, fal_emulator: FalEmulator, loopback: Loopback, face: bytes
) -> None:
    fal_emulator.update_settings(rate_limit_submits=1, retry_after_seconds=7, server_error_submits=1)

    with pytest.raises(ProviderError) as unavailable:
        fal_submit(fal, loopback, "fal-ai/ai-avatar/single-text", text_inputs(face))
    assert (unavailable.value.code, unavailable.value.retryable) == (ProviderErrorCode.UNAVAILABLE, True)
    with pytest.raises(ProviderError) as limited:
        fal_submit(fal, loopback, "fal-ai/ai-avatar/single-text", text_inputs(face))
    assert (limited.value.code, limited.value.retryable) == (ProviderErrorCode.RATE_LIMITED, True)
    assert limited.value.retry_after == 7

    fal_submit(fal, loopback, "fal-ai/ai-avatar/single-text", text_inputs(face))
    record = fal_emulator.requests_record()
    assert [rejected["status"] for rejected in record["rejected"]] == [503, 429]
    assert len(record["requests"]) == 1


def test_fal_cancel_of_a_queued_request_removes_it_without_a_webhook(
    fal: FalQueueProvider, fal_emulator: FalEmulator, loopback: Loopback, face: bytes
) -> None:
    fal_emulator.update_settings(queue_seconds=SLOW.queue_seconds, delay_seconds=SLOW.delay_seconds)
    submission = fal_submit(fal, loopback, "fal-ai/ai-avatar/single-text", text_inputs(face))

    assert fal.cancel(submission) == CancelOutcome.CANCELED  # fal answers OK: it will never run
    loopback.assert_quiet()
    assert fal.status(submission).state == ProviderState.COMPLETED
    assert fal.cancel(submission) == CancelOutcome.ALREADY_COMPLETED
    unknown = Submission(
        request_id="nope",
        urls={name: url.replace(submission.request_id, "nope") for name, url in submission.urls.items()},
    )
    assert fal.cancel(unknown) == CancelOutcome.NOT_FOUND


def test_fal_cancel_of_a_running_request_never_sends_a_success_webhook(
    fal: FalQueueProvider, fal_emulator: FalEmulator, loopback: Loopback, face: bytes
) -> None:
    fal_emulator.update_settings(queue_seconds=0.0, delay_seconds=SLOW.delay_seconds)
    submission = fal_submit(fal, loopback, "fal-ai/ai-avatar/single-text", text_inputs(face))
    eventually(
        lambda: fal.status(submission).state == ProviderState.IN_PROGRESS,
        waiting_for="IN_PROGRESS",
        timeout=WAIT_SECONDS,
        every=0.05,
    )

    assert fal.cancel(submission) == CancelOutcome.CANCELLATION_REQUESTED
    notice = fal.verify_webhook(*_parts(loopback.next_delivery()), token_sha256=None)
    assert notice.succeeded is False
    assert notice.error == "Request was cancelled"
    with pytest.raises(ProviderError):
        fal.result(submission)


def test_fal_lost_webhook_leaves_polling_to_find_the_result(
    fal: FalQueueProvider, fal_emulator: FalEmulator, loopback: Loopback, face: bytes
) -> None:
    fal_emulator.update_settings(drop_webhooks=1)
    submission = fal_submit(fal, loopback, "fal-ai/ai-avatar/single-text", text_inputs(face))

    eventually(
        lambda: fal.status(submission).state == ProviderState.COMPLETED,
        waiting_for="COMPLETED",
        timeout=WAIT_SECONDS,
        every=0.05,
    )
    assert download(fal.result(submission).url).content[4:8] == b"ftyp"
    loopback.assert_quiet(0.5)


def test_fal_duplicate_webhooks_are_each_signed(
    fal: FalQueueProvider, fal_emulator: FalEmulator, loopback: Loopback, face: bytes
) -> None:
    fal_emulator.update_settings(webhook_copies=3)
    submission = fal_submit(fal, loopback, "fal-ai/ai-avatar/single-text", text_inputs(face))

    notices = [fal.verify_webhook(*_parts(loopback.next_delivery()), token_sha256=None) for _ in range(3)]
    assert {notice.request_id for notice in notices} == {submission.request_id}
    loopback.assert_quiet(0.5)


def test_fal_retries_a_webhook_until_the_receiver_answers_2xx(
    fal: FalQueueProvider, fal_emulator: FalEmulator, loopback: Loopback, face: bytes
) -> None:
    loopback.answers = [503]
    submission = fal_submit(fal, loopback, "fal-ai/ai-avatar/single-text", text_inputs(face))

    first, second = loopback.next_delivery(), loopback.next_delivery()
    assert first.body == second.body
    for delivery in (first, second):
        assert fal.verify_webhook(delivery.headers, delivery.body, token_sha256=None).succeeded
    eventually(
        lambda: len(fal_emulator.requests_record()["requests"][0]["webhook_deliveries"]) == 2,
        waiting_for="record",
        timeout=WAIT_SECONDS,
        every=0.05,
    )
    record = fal_emulator.requests_record()["requests"][0]
    assert record["request_id"] == submission.request_id
    assert [delivery["status"] for delivery in record["webhook_deliveries"]] == [503, 200]


def test_fal_signature_covers_the_raw_body(
    fal: FalQueueProvider, fal_emulator: FalEmulator, loopback: Loopback, face: bytes, http: httpx.Client
) -> None:
    fal_submit(fal, loopback, "fal-ai/ai-avatar/single-text", text_inputs(face))
    delivery = loopback.next_delivery()
    verifier = FalWebhookVerifier(http_jwks_fetcher(fal_emulator.jwks_url, client=http))

    assert verifier.verify(delivery.headers, delivery.body).user_id
    reserialized = json.dumps(json.loads(delivery.body), indent=2).encode()
    with pytest.raises(InvalidSignature):
        verifier.verify(delivery.headers, reserialized)
    jwks = http.get(fal_emulator.jwks_url).json()
    assert [(key["kty"], key["crv"], "=" in key["x"]) for key in jwks["keys"]] == [("OKP", "Ed25519", False)]


def test_fal_webhook_without_payload_sends_the_pipeline_to_the_result(
    fal: FalQueueProvider, fal_emulator: FalEmulator, loopback: Loopback, face: bytes
) -> None:
    fal_emulator.update_settings(webhook_payload_errors=1)
    submission = fal_submit(fal, loopback, "fal-ai/ai-avatar/single-text", text_inputs(face))

    notice = fal.verify_webhook(*_parts(loopback.next_delivery()), token_sha256=None)
    assert (notice.succeeded, notice.video_url) == (True, None)
    assert fal.result(submission).url.endswith(f"/media/{submission.request_id}.mp4")


def test_fal_instant_mode_and_the_control_routes(
    fal: FalQueueProvider, fal_emulator: FalEmulator, loopback: Loopback, face: bytes, http: httpx.Client
) -> None:
    control = f"{fal_emulator.base_url}/_emulator/settings"
    assert http.post(control, json={"instant": True, "workers": 2}).json()["instant"] is True
    assert http.post(control, json={"no_such_setting": 1}).status_code == 400
    assert http.post(control, json={"delay_seconds": -1}).status_code == 400

    started = time.monotonic()
    submissions = [fal_submit(fal, loopback, "fal-ai/ai-avatar/single-text", text_inputs(face)) for _ in range(5)]
    for _ in submissions:
        loopback.next_delivery()
    print(f"instant mode: 5 jobs submitted and completed in {time.monotonic() - started:.2f} s")

    record = http.get(f"{fal_emulator.base_url}/_emulator/requests").json()
    assert {entry["request_id"] for entry in record["requests"]} == {item.request_id for item in submissions}
    assert {entry["outcome"] for entry in record["requests"]} == {"OK"}
    assert record["requests"][0]["input"]["image_url"].endswith("chars)")  # data URIs are cut in the record


def test_fal_results_expire(
    fal: FalQueueProvider, fal_emulator: FalEmulator, loopback: Loopback, face: bytes, http: httpx.Client
) -> None:
    fal_submit(fal, loopback, "fal-ai/ai-avatar/single-text", text_inputs(face))
    url = fal.verify_webhook(*_parts(loopback.next_delivery()), token_sha256=None).video_url
    assert url is not None
    assert http.head(url).status_code == 200

    fal_emulator.update_settings(media_ttl_seconds=0)
    assert http.get(url).status_code == 404


def _parts(delivery: Delivery) -> tuple[dict[str, str], bytes]:
    return delivery.headers, delivery.body


# -- Mirako ------------------------------------------------------------------------------------------------------


@pytest.fixture
def mirako_emulator() -> Iterator[MirakoEmulator]:
    with MirakoEmulator(FAST, api_key=MIRAKO_KEY) as emulator:
        yield emulator


@pytest.fixture
def mirako(mirako_emulator: MirakoEmulator, http: httpx.Client) -> MirakoProvider:
    return MirakoProvider(mirako_emulator.base_url, MIRAKO_KEY, client=http)


def test_mirako_text_job_speaks_calls_back_with_the_token_and_serves_an_mp4(
    mirako: MirakoProvider, mirako_emulator: MirakoEmulator, loopback: Loopback, face: bytes
) -> None:
    token, token_sha256 = new_webhook_token()
    inputs = {"image": face, "text": SENTENCE, "voice_profile_id": "a1b2c3d4-e5f6-7890-1234-567890abcdef"}
    submission = mirako.submit(
        "talking-avatar", inputs, webhook_url=f"{loopback.base_url}/webhooks/mirako/job-2", webhook_token=token
    )

    delivery = loopback.next_delivery()
    assert delivery.headers["authorization"] == f"Bearer {token}"
    notice = mirako.verify_webhook(delivery.headers, delivery.body, token_sha256=token_sha256)
    assert (notice.request_id, notice.trusted) == (submission.request_id, False)
    body = delivery.json()
    assert body["status"] == "COMPLETED"
    assert {"id", "delayTime", "executionTime", "output"} <= set(body)
    assert {"id", "infer_time", "output_duration"} <= set(body["output"])

    report = mirako.status(submission)
    assert report.state == ProviderState.COMPLETED
    result = mirako.result(submission)
    assert result.url == report.video_url == f"{mirako_emulator.media_base_url}/media/{submission.request_id}.mp4"
    video = download(result.url)
    assert video.headers["content-type"] == "video/mp4"
    found = media.probe(video.content)
    assert (found.has_video, found.has_audio) == (True, True)
    assert result.duration_seconds == pytest.approx(found.duration_seconds, abs=0.1)


def test_mirako_audio_job_lasts_as_long_as_its_audio(
    mirako: MirakoProvider, loopback: Loopback, face: bytes, speech: bytes
) -> None:
    submission = mirako.submit("talking-avatar", {"image": face, "audio": speech}, webhook_url="", webhook_token=None)

    eventually(
        lambda: mirako.status(submission).state == ProviderState.COMPLETED,
        waiting_for="COMPLETED",
        timeout=WAIT_SECONDS,
        every=0.05,
    )
    result = mirako.result(submission)
    assert result.duration_seconds == pytest.approx(media.wav_duration(speech), abs=0.5)
    loopback.assert_quiet(0.2)  # no webhook was asked for


def test_mirako_status_goes_through_the_queue(
    mirako: MirakoProvider, mirako_emulator: MirakoEmulator, face: bytes, speech: bytes
) -> None:
    mirako_emulator.update_settings(queue_seconds=1.0, delay_seconds=1.0)
    submission = mirako.submit("talking-avatar", {"image": face, "audio": speech}, webhook_url="", webhook_token=None)

    assert mirako.status(submission).state == ProviderState.IN_QUEUE
    eventually(
        lambda: mirako.status(submission).state == ProviderState.IN_PROGRESS,
        waiting_for="IN_PROGRESS",
        timeout=WAIT_SECONDS,
        every=0.05,
    )
    with pytest.raises(ProviderError) as raised:
        mirako.result(submission)
    assert (raised.value.code, raised.value.retryable) == (ProviderErrorCode.NOT_READY, True)


def test_mirako_refuses_unknown_fields_and_bad_base64_with_problem_json(
    mirako_emulator: MirakoEmulator, http: httpx.Client, face: bytes
) -> None:
    url = f"{mirako_emulator.base_url}/v1/video/async_generate_talking_avatar"
    headers = {"Authorization": f"Bearer {MIRAKO_KEY}"}
    body = {
        "image": base64.b64encode(face).decode(),
        "audio": "this is not base64!",
        "prompt": "not in the spec",
        "webhook": {"url": "http://127.0.0.1:9/hook", "secret": "x"},
    }

    response = http.post(url, headers=headers, json=body)

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["title"], problem["status"]) == ("Bad Request", 400)
    assert {error["location"] for error in problem["errors"]} == {"body.prompt", "body.webhook.secret", "body.audio"}
    message, title = problem_message(response)  # what our adapter makes of it
    assert title == "Bad Request"
    assert "body.prompt: unexpected property" in message
    assert "body.audio: expected a base64 encoded string" in message
    assert mirako_emulator.requests_record()["requests"] == []


def test_mirako_injected_failures_end_in_the_chosen_status(
    mirako: MirakoProvider, mirako_emulator: MirakoEmulator, loopback: Loopback, face: bytes, speech: bytes
) -> None:
    mirako_emulator.update_settings(fail_runs=1, failure_status="TIMED_OUT", error_message="the GPU took too long")
    token, token_sha256 = new_webhook_token()
    submission = mirako.submit(
        "talking-avatar", {"image": face, "audio": speech}, webhook_url=f"{loopback.base_url}/hook", webhook_token=token
    )

    delivery = loopback.next_delivery()
    assert mirako.verify_webhook(delivery.headers, delivery.body, token_sha256=token_sha256).request_id
    assert (delivery.json()["status"], delivery.json()["error"]) == ("TIMED_OUT", "the GPU took too long")
    report = mirako.status(submission)
    assert (report.state, report.error) == (ProviderState.TIMED_OUT, "the GPU took too long")
    with pytest.raises(ProviderError) as raised:
        mirako.result(submission)
    assert (raised.value.code, raised.value.provider_code) == (ProviderErrorCode.GENERATION_FAILED, "TIMED_OUT")


def test_mirako_image_it_cannot_read_fails_the_task(mirako: MirakoProvider, speech: bytes) -> None:
    submission = mirako.submit(
        "talking-avatar", {"image": b"not an image", "audio": speech}, webhook_url="", webhook_token=None
    )

    eventually(
        lambda: mirako.status(submission).state == ProviderState.FAILED,
        waiting_for="FAILED",
        timeout=WAIT_SECONDS,
        every=0.05,
    )
    assert "not a PNG" in (mirako.status(submission).error or "")


def test_mirako_rate_limit_auth_and_unknown_task(
    mirako: MirakoProvider, mirako_emulator: MirakoEmulator, face: bytes, speech: bytes, http: httpx.Client
) -> None:
    mirako_emulator.update_settings(rate_limit_submits=1, retry_after_seconds=4)
    inputs = {"image": face, "audio": speech}

    with pytest.raises(ProviderError) as limited:
        mirako.submit("talking-avatar", inputs, webhook_url="", webhook_token=None)
    assert (limited.value.code, limited.value.retry_after) == (ProviderErrorCode.RATE_LIMITED, 4)

    wrong = MirakoProvider(mirako_emulator.base_url, "wrong", client=http)
    with pytest.raises(ProviderError) as refused:
        wrong.submit("talking-avatar", inputs, webhook_url="", webhook_token=None)
    assert refused.value.code == ProviderErrorCode.AUTH_FAILED
    assert refused.value.provider_code == "Unauthorized"

    with pytest.raises(ProviderError) as missing:
        mirako.status(Submission(request_id="no-such-task"))
    assert (missing.value.code, missing.value.provider_code) == (ProviderErrorCode.INVALID_REQUEST, "Not Found")


def test_mirako_text_to_speech(mirako_emulator: MirakoEmulator, http: httpx.Client) -> None:
    url = f"{mirako_emulator.base_url}/v1/speech/tts"
    headers = {"Authorization": f"Bearer {MIRAKO_KEY}"}

    answer = http.post(
        url, headers=headers, json={"text": SENTENCE, "voice_profile_id": "v1", "return_type": "b64_audio_str"}
    )
    data = answer.json()["data"]
    wav = base64.b64decode(data["b64_audio_str"])
    assert wav[:4] == b"RIFF"
    assert data["output_duration"] == pytest.approx(media.wav_duration(wav), abs=0.01)
    assert data["voice_profile_id"] == "v1"

    refused = http.post(url, headers=headers, json={"text": "", "voice_profile_id": "v1", "return_type": "mp3"})
    assert refused.status_code == 400
    assert {error["location"] for error in refused.json()["errors"]} == {"body.text", "body.return_type"}


# PresignedVoiceProfile's properties (specs/mirako-openapi.yaml; additionalProperties: false, only `id` required).
VOICE_PROFILE_PROPERTIES = {"created_at", "description", "id", "is_premade", "languages", "name", "sample_clip",
                            "status", "user_id"}  # fmt: skip


def test_mirako_lists_premade_and_custom_voice_profiles_as_its_spec_shapes_them(
    mirako_emulator: MirakoEmulator, http: httpx.Client
) -> None:
    headers = {"Authorization": f"Bearer {MIRAKO_KEY}"}
    premade = http.get(f"{mirako_emulator.base_url}/v1/voice/premade_profiles", headers=headers)
    assert premade.status_code == 200
    assert set(premade.json()) == {"data"}
    profiles = premade.json()["data"]
    assert profiles
    for profile in profiles:
        assert isinstance(profile["id"], str)
        assert set(profile) <= VOICE_PROFILE_PROPERTIES
        assert profile["is_premade"] is True
    custom = http.get(f"{mirako_emulator.base_url}/v1/voice/profiles", headers=headers)
    assert (custom.status_code, custom.json()) == (200, {"data": None})  # "nullable": no cloned voices
    unauthorized = http.get(f"{mirako_emulator.base_url}/v1/voice/profiles")
    assert unauthorized.status_code == 401


def test_mirako_voice_listing_server_errors_are_503_problems_that_pass(
    mirako: MirakoProvider, mirako_emulator: MirakoEmulator, http: httpx.Client
) -> None:
    mirako_emulator.update_settings(server_error_voice_listings=1)
    with pytest.raises(ProviderError) as failed:
        mirako.voice_profiles()
    assert (failed.value.code, failed.value.provider_code) == (ProviderErrorCode.UNAVAILABLE, "Service Unavailable")
    assert [rejected["fault"] for rejected in mirako_emulator.requests_record()["rejected"]] == ["server_error"]
    listed = mirako.voice_profiles()
    assert [profile.premade for profile in listed] == [True, True]
    # A listed id is one its text-to-speech speaks with.
    body = {"text": SENTENCE, "voice_profile_id": listed[0].id, "return_type": "b64_audio_str"}
    spoken = http.post(f"{mirako_emulator.base_url}/v1/speech/tts", headers={"Authorization": f"Bearer {MIRAKO_KEY}"},
                       json=body)  # fmt: skip
    assert spoken.status_code == 200


# -- settings and the child processes ------------------------------------------------------------------------------


def test_settings_come_from_the_environment_and_counters_are_used_up() -> None:
    settings = settings_from_environment(
        "FAL_EMULATOR_",
        {"FAL_EMULATOR_DELAY_SECONDS": "5", "FAL_EMULATOR_INSTANT": "yes", "FAL_EMULATOR_DROP_WEBHOOKS": "-1"},
    )
    assert (settings.delay_seconds, settings.instant, settings.drop_webhooks) == (5.0, True, -1)
    with pytest.raises(ValueError, match="workers"):
        settings_from_environment("X_", {"X_WORKERS": "many"})

    store = SettingsStore(EmulatorSettings(fail_runs=2, drop_webhooks=-1))
    assert [store.take("fail_runs") for _ in range(3)] == [True, True, False]
    assert all(store.take("drop_webhooks") for _ in range(5))


@pytest.mark.parametrize(
    ("module", "probe_path"),
    [("devstack.emulators.fal", "/.well-known/jwks.json"), ("devstack.emulators.mirako", "/_emulator/settings")],
)
def test_emulators_run_as_child_processes(module: str, probe_path: str, tmp_path: Path) -> None:
    with server_process(module, log=tmp_path / "emulator.log") as url:
        assert httpx.get(f"{url}{probe_path}", timeout=10).status_code == 200


def test_a_child_emulator_serves_its_files_from_the_media_host(tmp_path: Path) -> None:
    with server_process("devstack.emulators.mirako", log=tmp_path / "emulator.log") as url:
        body = {"text": SENTENCE, "voice_profile_id": "v1", "return_type": "file_url"}
        speech = httpx.post(f"{url}/v1/speech/tts", headers={"Authorization": "Bearer k"}, json=body, timeout=10)
        file_url = speech.json()["data"]["file_url"]
        assert file_url.startswith("http://127.0.0.2:")
        assert httpx.get(file_url, timeout=10).content[:4] == b"RIFF"
