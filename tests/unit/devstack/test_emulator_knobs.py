"""The emulators' fault knobs (docs/emulators.md), driven over real HTTP with httpx, as a client sees them.

Each test starts an emulator in-process with short delays, and asserts both the wire behaviour and that the
fault is in the emulator's record (`GET /_emulator/requests`).
"""

import base64
import time
from typing import Any

import httpx
import pytest

from devstack import media
from devstack.emulators.fal import FalEmulator
from devstack.emulators.mirako import PCM_SAMPLE_RATE, MirakoEmulator
from devstack.emulators.settings import EmulatorSettings
from tests.support.emulator_loopback import SENTENCE, WAIT_SECONDS, Loopback, text_inputs
from tests.support.polling import eventually

FAL_KEY = {"Authorization": "Key k"}
MIRAKO_KEY = {"Authorization": "Bearer k"}
QUICK = EmulatorSettings(instant=True, webhook_attempts=1)
GATEWAY_PAGE_502 = (
    b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>"
)


def fal_submit(
    fal: FalEmulator, loopback: Loopback, face: bytes, job: str = "job-1", headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.post(
        f"{fal.base_url}/fal-ai/ai-avatar/single-text",
        params={"fal_webhook": f"{loopback.base_url}/webhooks/fal/{job}"},
        headers={**FAL_KEY, **(headers or {})},
        json=text_inputs(face),
        timeout=10,
    )


def mirako_submit(mirako: MirakoEmulator, loopback: Loopback, face: bytes, audio: bytes) -> httpx.Response:
    body = {
        "image": base64.b64encode(face).decode(),
        "audio": base64.b64encode(audio).decode(),
        "webhook": {"url": f"{loopback.base_url}/webhooks/mirako/job-1", "auth_token": "t"},
    }
    return httpx.post(
        f"{mirako.base_url}/v1/video/async_generate_talking_avatar", headers=MIRAKO_KEY, json=body, timeout=10
    )


def runs(emulator: FalEmulator | MirakoEmulator) -> list[dict[str, Any]]:
    record: list[dict[str, Any]] = httpx.get(f"{emulator.base_url}/_emulator/requests", timeout=10).json()["requests"]
    return record


def result_of(fal: FalEmulator, request_id: str) -> httpx.Response:
    return httpx.get(f"{fal.base_url}/fal-ai/ai-avatar/requests/{request_id}", headers=FAL_KEY, timeout=10)


def status_of(fal: FalEmulator, request_id: str) -> httpx.Response:
    return httpx.get(f"{fal.base_url}/fal-ai/ai-avatar/requests/{request_id}/status", headers=FAL_KEY, timeout=10)


# -- lost submit answers (both emulators) --------------------------------------------------------------------


def test_a_dropped_submit_answer_is_a_closed_connection_but_the_run_exists_and_calls_back(
    loopback: Loopback, face: bytes
) -> None:
    with FalEmulator(QUICK) as fal:
        fal.update_settings(submit_answer_drops=1)
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            fal_submit(fal, loopback, face)

        [run] = runs(fal)
        assert run["submit_answer"] == "dropped"
        webhook = loopback.next_delivery().json()
        assert (webhook["request_id"], webhook["status"]) == (run["request_id"], "OK")


@pytest.mark.parametrize("status", [502, 504])
def test_a_gateway_error_answer_is_the_load_balancers_html_page_and_the_run_exists(
    status: int, loopback: Loopback, face: bytes, speech: bytes
) -> None:
    with MirakoEmulator(QUICK) as mirako:
        mirako.update_settings(submit_gateway_errors=1, gateway_error_status=status)
        answer = mirako_submit(mirako, loopback, face, speech)

        assert answer.status_code == status
        assert answer.headers["content-type"] == "text/html"
        title = f"{status} {httpx.codes.get_reason_phrase(status)}"
        assert (
            answer.text
            == f"<html><head><title>{title}</title></head><body><center><h1>{title}</h1></center></body></html>"
        )
        [run] = runs(mirako)
        assert run["submit_answer"] == f"gateway_{status}"
        assert loopback.next_delivery().json()["status"] == "COMPLETED"  # it ran as usual


def test_the_gateway_page_is_the_one_a_load_balancer_sends(loopback: Loopback, face: bytes) -> None:
    with FalEmulator(QUICK) as fal:
        fal.update_settings(submit_gateway_errors=1)
        answer = fal_submit(fal, loopback, face)
    assert (answer.status_code, answer.content) == (502, GATEWAY_PAGE_502)
    assert not any(name.lower().startswith("x-fal") for name in answer.headers)


def test_a_lost_answer_fraction_hits_only_the_first_submit_of_a_job_so_a_resubmit_is_a_second_run(
    loopback: Loopback, face: bytes
) -> None:
    with FalEmulator(QUICK) as fal:
        fal.update_settings(submit_answer_drop_fraction=1.0)
        with pytest.raises(httpx.RemoteProtocolError):
            fal_submit(fal, loopback, face, job="job-7")
        again = fal_submit(fal, loopback, face, job="job-7")

        assert again.status_code == 200
        record = runs(fal)
        assert [run["submit_answer"] for run in record] == ["dropped", "answered"]
        assert {run["webhook_url"] for run in record} == {f"{loopback.base_url}/webhooks/fal/job-7"}  # charged twice


def test_a_refused_submit_is_still_no_run(loopback: Loopback, face: bytes) -> None:
    with FalEmulator(QUICK) as fal:
        fal.update_settings(server_error_submits=1, submit_answer_drops=1)
        assert fal_submit(fal, loopback, face).status_code == 503
        assert runs(fal) == []


# -- result files on another host --------------------------------------------------------------------------


def test_results_are_served_from_the_media_host_only(loopback: Loopback, face: bytes) -> None:
    with FalEmulator(QUICK) as fal:
        fal_submit(fal, loopback, face)
        url = loopback.next_delivery().json()["payload"]["video"]["url"]

        assert url.startswith("http://127.0.0.2:")
        assert httpx.get(url, timeout=10).content[4:8] == b"ftyp"
        api_address = url.replace(fal.media_base_url, fal.base_url)
        assert api_address.startswith("http://127.0.0.1:")
        assert httpx.get(api_address, timeout=10).status_code == 404
        assert httpx.get(f"{fal.media_base_url}/_emulator/requests", timeout=10).status_code == 404


# -- fal: the model app's own 500 --------------------------------------------------------------------------


def test_fal_app_error_completes_and_its_result_is_the_apps_500_without_an_error_type(
    loopback: Loopback, face: bytes
) -> None:
    with FalEmulator(QUICK) as fal:
        fal.update_settings(app_error_runs=1, error_message="")
        request_id = fal_submit(fal, loopback, face).json()["request_id"]

        webhook = loopback.next_delivery().json()
        assert (webhook["status"], webhook["error"]) == ("ERROR", "Invalid status code: 500")
        assert webhook["payload"] == {"detail": "Internal Server Error"}
        status = status_of(fal, request_id)
        assert (status.status_code, status.json()["status"]) == (200, "COMPLETED")
        assert status.json()["error"] == "Internal Server Error"
        assert "error_type" not in status.json()  # the app's body names no type
        result = result_of(fal, request_id)
        assert (result.status_code, result.json()) == (500, {"detail": "Internal Server Error"})
        assert "x-fal-error-type" not in result.headers
        assert runs(fal)[0]["app_error"] is True


def test_fal_app_error_with_a_lost_webhook_is_found_only_by_polling(loopback: Loopback, face: bytes) -> None:
    with FalEmulator(QUICK) as fal:
        fal.update_settings(app_error_fraction=1.0, drop_webhooks=1, error_message="CUDA out of memory")
        request_id = fal_submit(fal, loopback, face).json()["request_id"]

        eventually(
            lambda: status_of(fal, request_id).status_code == 200,
            waiting_for="COMPLETED",
            timeout=WAIT_SECONDS,
            every=0.05,
        )
        assert result_of(fal, request_id).json() == {"detail": "CUDA out of memory"}
        loopback.assert_quiet(0.5)
        [run] = runs(fal)
        assert (run["app_error"], run["webhook_dropped"]) == (True, True)


# -- fal: model errors as its Model Errors page has them -----------------------------------------------------


def test_fal_model_error_is_a_422_with_its_type_inside_the_detail(loopback: Loopback, face: bytes) -> None:
    with FalEmulator(QUICK) as fal:
        fal.update_settings(fail_runs=1)
        request_id = fal_submit(fal, loopback, face).json()["request_id"]

        webhook = loopback.next_delivery().json()
        result = result_of(fal, request_id)
        assert result.status_code == 422
        assert result.headers["x-fal-retryable"] == "false"
        assert "x-fal-error-type" not in result.headers
        [error] = result.json()["detail"]
        assert set(result.json()) == {"detail"}
        assert error["loc"] == ["body", "image_url"]
        assert (error["msg"], error["type"]) == ("Could not detect a face in the image.", "face_detection_error")
        assert error["url"] == "https://docs.fal.ai/errors#face_detection_error"
        assert error["input"].startswith("data:image/png;base64,")
        assert (webhook["status"], webhook["payload"]) == ("ERROR", result.json())
        assert webhook["error"] == "Invalid status code: 422"
        status = status_of(fal, request_id).json()
        assert (status["error"], status["error_type"]) == (
            "Could not detect a face in the image.",
            "face_detection_error",
        )


# -- fal: X-Fal-Request-Timeout (start_timeout) ---------------------------------------------------------------


def test_fal_start_timeout_ends_a_run_still_queued_at_its_deadline_as_a_request_timeout(
    loopback: Loopback, face: bytes
) -> None:
    settings = EmulatorSettings(workers=1, queue_seconds=0.0, delay_seconds=1.0, webhook_attempts=1)
    with FalEmulator(settings) as fal:
        running = fal_submit(fal, loopback, face, job="busy", headers={"X-Fal-Request-Timeout": "0.3"})
        waiting = fal_submit(fal, loopback, face, job="late", headers={"X-Fal-Request-Timeout": "0.3"})
        started = time.monotonic()

        webhook = loopback.next_delivery().json()  # the queued one ends first, at its deadline
        assert time.monotonic() - started < 0.9
        assert (webhook["request_id"], webhook["status"]) == (waiting.json()["request_id"], "ERROR")
        assert webhook["error"] == "Invalid status code: 504"
        result = result_of(fal, waiting.json()["request_id"])
        assert (result.status_code, result.json()) == (
            504,
            {"detail": "Request timed out", "error_type": "request_timeout"},
        )
        assert result.headers["x-fal-error-type"] == "request_timeout"
        assert result.headers["x-fal-request-timeout-type"] == "user"
        status = status_of(fal, waiting.json()["request_id"]).json()
        assert (status["status"], status["error_type"]) == ("COMPLETED", "request_timeout")

        # The running one had started before its deadline: it runs as long as it needs.
        assert loopback.next_delivery().json()["request_id"] == running.json()["request_id"]
        assert result_of(fal, running.json()["request_id"]).status_code == 200
        record = {run["request_id"]: run for run in runs(fal)}
        assert record[waiting.json()["request_id"]]["start_timeout_expired"] is True
        assert record[running.json()["request_id"]]["start_timeout_expired"] is False
        assert record[running.json()["request_id"]]["start_timeout_seconds"] == 0.3


@pytest.mark.parametrize(
    "headers",
    [{"X-Fal-Request-Timeout": "0.1"}, {"X-Fal-Request-Timeout": "soon"}, {"X-Fal-Request-Start-Timeout": "0"}],
)
def test_fal_refuses_a_start_timeout_it_cannot_use(headers: dict[str, str], loopback: Loopback, face: bytes) -> None:
    with FalEmulator(QUICK) as fal:
        answer = fal_submit(fal, loopback, face, headers=headers)
        assert (answer.status_code, answer.json()["error_type"]) == (400, "bad_request")
        assert answer.headers["x-fal-error-type"] == "bad_request"
        assert runs(fal) == []


# -- Mirako ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("choice", ["task_id", "request_id", "absent"])
def test_mirako_callback_id_is_the_task_id_a_fresh_id_or_absent(
    choice: str, loopback: Loopback, face: bytes, speech: bytes
) -> None:
    with MirakoEmulator(QUICK) as mirako:
        mirako.update_settings(callback_id=choice)
        task_id = mirako_submit(mirako, loopback, face, speech).json()["data"]["task_id"]

        body = loopback.next_delivery().json()
        [run] = runs(mirako)
        assert run["callback_id"] == body.get("id")
        match choice:
            case "task_id":
                assert body["id"] == task_id
            case "request_id":
                assert body["id"] not in ("", task_id)
            case "absent":
                assert "id" not in body
        assert body["status"] == "COMPLETED"


def test_mirako_pcm_speech_is_raw_16_khz_samples_which_talking_avatar_refuses_unless_wrapped_in_a_wav(
    loopback: Loopback, face: bytes
) -> None:
    with MirakoEmulator(QUICK) as mirako:
        mirako.update_settings(speech_format="pcm")
        speech = httpx.post(
            f"{mirako.base_url}/v1/speech/tts",
            headers=MIRAKO_KEY,
            json={"text": SENTENCE, "voice_profile_id": "v1", "return_type": "b64_audio_str"},
            timeout=10,
        ).json()["data"]
        pcm = base64.b64decode(speech["b64_audio_str"])
        assert pcm[:4] != b"RIFF"
        assert len(pcm) % 2 == 0
        assert len(pcm) / 2 / PCM_SAMPLE_RATE == pytest.approx(speech["output_duration"], abs=0.1)

        refused = mirako_submit(mirako, loopback, face, pcm)
        assert refused.status_code == 422
        assert refused.headers["content-type"] == "application/problem+json"
        assert [error["location"] for error in refused.json()["errors"]] == ["body.audio"]
        assert runs(mirako) == []

        wrapped = mirako_submit(mirako, loopback, face, media.wav_bytes(pcm, PCM_SAMPLE_RATE))
        assert wrapped.status_code == 200
        assert loopback.next_delivery().json()["status"] == "COMPLETED"


def test_mirako_serves_its_result_with_the_chosen_content_type(loopback: Loopback, face: bytes, speech: bytes) -> None:
    with MirakoEmulator(QUICK) as mirako:
        mirako.update_settings(result_content_type="binary/octet-stream")
        task_id = mirako_submit(mirako, loopback, face, speech).json()["data"]["task_id"]
        loopback.next_delivery()
        status = httpx.get(
            f"{mirako.base_url}/v1/video/async_generate_talking_avatar/{task_id}/status", headers=MIRAKO_KEY, timeout=10
        ).json()["data"]

        assert status["file_url"].startswith("http://127.0.0.2:")
        video = httpx.get(status["file_url"], timeout=10)
        assert video.headers["content-type"] == "binary/octet-stream"
        assert video.content[4:8] == b"ftyp"


def test_knob_values_outside_their_choices_are_refused() -> None:
    with FalEmulator(QUICK) as fal:
        control = f"{fal.base_url}/_emulator/settings"
        for bad in ({"gateway_error_status": 500}, {"callback_id": "job"}, {"speech_format": "mp3"}):
            assert httpx.post(control, json=bad, timeout=10).status_code == 400
        assert httpx.post(control, json={"submit_answer_drops": -1}, timeout=10).json()["submit_answer_drops"] == -1
