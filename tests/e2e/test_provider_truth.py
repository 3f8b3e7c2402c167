"""What fal and Mirako may answer (docs/decisions.md, "Provider failures"), on the local stack: never paid twice,
never stuck. Each test sets one documented behaviour at the emulator, orders one job through the API and counts,
at the emulator, the orders it accepted for that job (each one would be paid for).
"""

from collections.abc import Iterator
from datetime import datetime

import pytest

from devstack.media import probe
from devstack.stack import LocalStack
from tests.support.pipeline import FACE, Pipeline, fal_body

# Locally accelerated: an overdue webhook is polled after 20 s (so a callback, not a poll, is what finishes the
# Mirako jobs below), the reconciler runs every 2 s, and a job whose submit answer was lost waits 12 s for its
# webhook before it fails (3600 s deployed).
OVERDUE_SECONDS = 20
SCHEDULE_SECONDS = 2
UNCONFIRMED_SUBMIT_SECONDS = 12


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    parameters = {
        "WebhookOverdueSeconds": str(OVERDUE_SECONDS),
        "UnconfirmedSubmitSeconds": str(UNCONFIRMED_SUBMIT_SECONDS),
    }
    logs = tmp_path_factory.mktemp("provider-truth-logs")
    with LocalStack(emulators=True, schedule_seconds=SCHEDULE_SECONDS, parameters=parameters, log_dir=logs) as local:
        pipeline = Pipeline(local)
        pipeline.emulator("fal", queue_seconds=0.2, delay_seconds=0.5)
        pipeline.emulator("mirako", queue_seconds=0.2, delay_seconds=0.5)
        yield pipeline


def mirako_text_body() -> dict[str, str]:
    text = "Hello, this is Mirako speaking."
    return {"provider": "mirako", "model": "talking-avatar", "image_url": FACE, "text": text, "voice_profile_id": "v1"}


def seconds_between(earlier: str, later: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


@pytest.mark.parametrize(
    "lost_answer",
    [{"submit_answer_drops": 1}, {"submit_gateway_errors": 1, "gateway_error_status": 502}],
    ids=["connection closed before the answer", "gateway 502 page"],
)
def test_a_fal_submit_whose_answer_was_lost_is_ordered_once_and_succeeds_through_its_webhook(
    pipeline: Pipeline, lost_answer: dict[str, int]
) -> None:
    pipeline.emulator("fal", **lost_answer)
    job_id = pipeline.order(fal_body("fal-ai/ai-avatar/single-text"))
    job = pipeline.wait(job_id)
    assert job["status"] == "SUCCEEDED", job
    [run] = pipeline.runs_of("fal", job_id)
    assert run["submit_answer"] != "answered"  # the fault really happened
    assert pipeline.record(job_id).provider_request_id == run["request_id"]  # adopted from the signed webhook
    [told] = pipeline.notifications_of(job_id)
    assert told["type"] == "job.succeeded"


def test_a_lost_submit_answer_and_a_lost_webhook_end_the_job_within_the_bound_without_a_second_order(
    pipeline: Pipeline,
) -> None:
    pipeline.emulator("fal", submit_answer_drops=1, drop_webhooks=1)
    job_id = pipeline.order(fal_body("fal-ai/ai-avatar/single-text"))
    job = pipeline.wait(job_id)
    assert job["status"] == "FAILED", job
    assert job["error"]["code"] == "SUBMISSION_UNCONFIRMED"
    assert "No second order was placed" in job["error"]["message"]
    waited = seconds_between(job["timeline"]["SUBMITTED"], job["timeline"]["FAILED"])
    assert UNCONFIRMED_SUBMIT_SECONDS <= waited <= UNCONFIRMED_SUBMIT_SECONDS + 3 * SCHEDULE_SECONDS + 5
    [run] = pipeline.runs_of("fal", job_id)
    assert (run["submit_answer"], run["webhook_dropped"]) == ("dropped", True)
    [told] = pipeline.notifications_of(job_id)
    assert told["error"]["code"] == "SUBMISSION_UNCONFIRMED"


def test_a_fal_app_error_after_completed_fails_the_job_with_fals_message_from_its_webhook(pipeline: Pipeline) -> None:
    pipeline.emulator("fal", app_error_runs=1, error_message="CUDA out of memory")
    job_id = pipeline.order(fal_body("fal-ai/ai-avatar/single-text"))
    job = pipeline.wait(job_id)
    assert job["status"] == "FAILED", job
    assert (job["error"]["code"], job["error"]["message"]) == ("GENERATION_FAILED", "CUDA out of memory")
    [run] = pipeline.runs_of("fal", job_id)
    assert run["app_error"] is True


def test_a_fal_app_error_after_completed_without_a_webhook_fails_at_the_first_poll(pipeline: Pipeline) -> None:
    pipeline.emulator("fal", app_error_runs=1, drop_webhooks=1, error_message="CUDA out of memory")
    job_id = pipeline.order(fal_body("fal-ai/ai-avatar/single-text"))
    job = pipeline.wait(job_id)
    assert job["status"] == "FAILED", job
    assert (job["error"]["code"], job["error"]["message"]) == ("GENERATION_FAILED", "CUDA out of memory")
    # Found by the reconciler once the webhook was overdue, and failed by the poll that saw it (fal does not retry
    # an app's 500): well within three polls of the first, not at the deadline.
    since = job["timeline"].get("RUNNING", job["timeline"]["SUBMITTED"])
    waited = seconds_between(since, job["timeline"]["FAILED"])
    assert waited <= OVERDUE_SECONDS + 3 * SCHEDULE_SECONDS + 5, job["timeline"]
    [run] = pipeline.runs_of("fal", job_id)
    assert (run["app_error"], run["webhook_dropped"]) == (True, True)


def test_a_mirako_callback_whose_id_is_not_the_task_id_finishes_its_job_within_seconds(pipeline: Pipeline) -> None:
    with pipeline.emulating("mirako", callback_id="request_id"):
        job_id = pipeline.order(mirako_text_body())
        job = pipeline.wait(job_id)
    assert job["status"] == "SUCCEEDED", job
    [run] = pipeline.runs_of("mirako", job_id)
    callback_at = min(delivery["at"] for delivery in run["webhook_deliveries"])
    finalizing_at = datetime.fromisoformat(job["timeline"]["FINALIZING"]).timestamp()
    assert finalizing_at - callback_at < 5  # the callback did it, long before a poll would have (20 s)
    assert pipeline.record(job_id).provider_request_id == run["task_id"]


def test_a_mirako_submit_whose_answer_was_lost_adopts_the_task_its_callback_names(pipeline: Pipeline) -> None:
    pipeline.emulator("mirako", submit_answer_drops=1)
    job_id = pipeline.order(mirako_text_body())
    job = pipeline.wait(job_id)
    assert job["status"] == "SUCCEEDED", job
    [run] = pipeline.runs_of("mirako", job_id)
    assert run["submit_answer"] == "dropped"
    assert pipeline.record(job_id).provider_request_id == run["task_id"]


def test_mirako_speech_as_raw_pcm_makes_a_playable_video(pipeline: Pipeline) -> None:
    with pipeline.emulating("mirako", speech_format="pcm"):
        job_id = pipeline.order(mirako_text_body())
        job = pipeline.wait(job_id)
    assert job["status"] == "SUCCEEDED", job
    video = probe(pipeline.download(job))
    assert (video.has_video, video.has_audio) == (True, True)
    assert video.duration_seconds > 0.5


def test_a_mirako_result_stored_in_s3_as_binary_octet_stream_is_copied(pipeline: Pipeline) -> None:
    with pipeline.emulating("mirako", result_content_type="binary/octet-stream"):
        job_id = pipeline.order(mirako_text_body())
        job = pipeline.wait(job_id)
    assert job["status"] == "SUCCEEDED", job
    assert probe(pipeline.download(job)).has_video


def test_videos_come_from_a_media_host_other_than_the_api_and_the_template_parameters_list_it(
    pipeline: Pipeline,
) -> None:
    assert pipeline.local.parameters["FalMediaHosts"] == pipeline.local.parameters["MirakoMediaHosts"] == "127.0.0.2"
    job_id = pipeline.order(fal_body("fal-ai/ai-avatar/single-text"))
    assert pipeline.wait(job_id)["status"] == "SUCCEEDED"
    [run] = pipeline.runs_of("fal", job_id)
    assert run["video_url"].startswith("http://127.0.0.2:")
    assert not pipeline.emulator_url("fal").startswith("http://127.0.0.2:")
