"""The whole pipeline over HTTP on the local stack, with the provider emulators: jobs end where they should.

Every job here is ordered through the API with our sample face, runs at an emulator, comes back through a
signed webhook (or the reconciler), is copied to S3 and told to subscribers; each test checks the final
state and that the job was told exactly once.
"""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.media import probe
from devstack.stack import LocalStack
from tests.support.pipeline import FACE, FAL_REQUESTS, Pipeline, fal_body


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    logs = tmp_path_factory.mktemp("pipeline-logs")
    # Polls overdue jobs after 3 s instead of 10 minutes, every 2 s, so a lost webhook is found quickly.
    with LocalStack(
        emulators=True, schedule_seconds=2, parameters={"WebhookOverdueSeconds": "3"}, log_dir=logs
    ) as local:
        pipeline = Pipeline(local)
        pipeline.emulator("fal", queue_seconds=0.2, delay_seconds=0.5)
        pipeline.emulator("mirako", queue_seconds=0.2, delay_seconds=0.5)
        yield pipeline


def test_one_job_per_fal_model_and_a_mirako_job_succeed(pipeline: Pipeline, tmp_path: Path) -> None:
    jobs = {model: pipeline.order(fal_body(model)) for model in FAL_REQUESTS}
    jobs["talking-avatar"] = pipeline.order(
        {
            "provider": "mirako",
            "model": "talking-avatar",
            "image_url": FACE,
            "text": "Hello, this is Mirako speaking.",
            "voice_profile_id": "v1",
        }
    )
    for model, job_id in jobs.items():
        job = pipeline.wait(job_id)
        assert job["status"] == "SUCCEEDED", (model, job)
        assert job["output"]["key"] == f"videos/{job_id}.mp4"
        video = httpx.get(job["video_url"], timeout=30).content
        assert len(video) == job["output"]["size"]
        found = probe(video)
        assert found.has_video, model
        assert found.has_audio, model
        assert found.duration_seconds > 0.5, model
    for job_id in jobs.values():
        [told] = pipeline.notifications_of(job_id)
        assert told["type"] == "job.succeeded"


def test_duplicate_webhooks_end_in_one_success_told_once(pipeline: Pipeline) -> None:
    pipeline.emulator("fal", webhook_copies=3)
    try:
        job_id = pipeline.order(fal_body("fal-ai/ai-avatar/single-text"))
        assert pipeline.wait(job_id)["status"] == "SUCCEEDED"
    finally:
        pipeline.emulator("fal", webhook_copies=1)
    [told] = pipeline.notifications_of(job_id)
    assert told["event_id"] == f"{job_id}:SUCCEEDED"


def test_a_lost_webhook_is_made_good_by_the_reconciler(pipeline: Pipeline) -> None:
    pipeline.emulator("fal", drop_webhooks=1)
    job_id = pipeline.order(fal_body("fal-ai/ai-avatar/multi-text"))
    job = pipeline.wait(job_id)
    assert job["status"] == "SUCCEEDED"
    [told] = pipeline.notifications_of(job_id)
    assert told["type"] == "job.succeeded"


def test_a_provider_failure_fails_the_job_with_its_message(pipeline: Pipeline) -> None:
    pipeline.emulator("fal", fail_runs=1)
    job_id = pipeline.order(fal_body("fal-ai/ai-avatar/single-text"))
    job = pipeline.wait(job_id)
    assert job["status"] == "FAILED"
    assert "Could not detect a face" in job["error"]["message"]
    [told] = pipeline.notifications_of(job_id)
    assert told["type"] == "job.failed"
    assert told["error"]["message"] == job["error"]["message"]


def test_a_cancel_of_a_queued_job_ends_canceled(pipeline: Pipeline) -> None:
    pipeline.emulator("fal", queue_seconds=30)
    try:
        job_id = pipeline.order(fal_body("fal-ai/ai-avatar/single-text"))
        pipeline.wait(job_id, {"SUBMITTED", "RUNNING"})
        response = pipeline.api.post(f"/jobs/{job_id}/cancel")
        assert response.status_code in (200, 202), response.text
        assert pipeline.wait(job_id)["status"] == "CANCELED"
    finally:
        pipeline.emulator("fal", queue_seconds=0.2)
    [told] = pipeline.notifications_of(job_id)
    assert told["type"] == "job.canceled"
