"""The whole pipeline over HTTP on the local stack, with the provider emulators: jobs end where they should.

Every job here is ordered through the API with our sample face, runs at an emulator, comes back through a
signed webhook (or the reconciler), is copied to S3 and told to subscribers; each test checks the final
state and that the job was told exactly once.
"""

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.media import SAMPLE_FACE, probe, speak
from devstack.moto_server import local_session
from devstack.stack import LocalStack

JOB_TIMEOUT_SECONDS = 90
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELED", "TIMED_OUT"}
FACE = "data:image/png;base64," + base64.b64encode(SAMPLE_FACE.read_bytes()).decode()


class Pipeline:
    def __init__(self, local: LocalStack) -> None:
        self.local = local
        self.api = httpx.Client(base_url=local.api_url, headers={"x-api-key": local.api_key}, timeout=30)
        session = local_session()
        self._sqs = session.client("sqs", endpoint_url=local.endpoint_url)
        self._queue = self._sqs.create_queue(QueueName="e2e-topic-subscriber")["QueueUrl"]
        arn = self._sqs.get_queue_attributes(QueueUrl=self._queue, AttributeNames=["QueueArn"])["Attributes"]
        session.client("sns", endpoint_url=local.endpoint_url).subscribe(
            TopicArn=local.stack.refs["JobEventsTopic"], Protocol="sqs", Endpoint=arn["QueueArn"]
        )
        self.told: list[dict[str, Any]] = []

    def emulator(self, provider: str, **settings: Any) -> None:
        base = self.local.provider_urls["FAL_QUEUE_BASE_URL" if provider == "fal" else "MIRAKO_BASE_URL"]
        httpx.post(f"{base}/_emulator/settings", json=settings, timeout=10).raise_for_status()

    def order(self, body: dict[str, Any]) -> str:
        response = self.api.post("/jobs", json=body)
        assert response.status_code == 202, response.text
        job_id: str = response.json()["job_id"]
        return job_id

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.api.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def wait(self, job_id: str, statuses: set[str] = TERMINAL) -> dict[str, Any]:
        deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in statuses:
                return job
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} did not reach {statuses}: {self.job(job_id)}")

    def notifications_of(self, job_id: str, settle_seconds: float = 3.0) -> list[dict[str, Any]]:
        """What the topic's subscriber got about this job, after the stream has had time to deliver."""
        deadline = time.monotonic() + settle_seconds
        while time.monotonic() < deadline:
            received = self._sqs.receive_message(QueueUrl=self._queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            for message in received.get("Messages", []):
                self.told.append(json.loads(json.loads(message["Body"])["Message"]))
                self._sqs.delete_message(QueueUrl=self._queue, ReceiptHandle=message["ReceiptHandle"])
        return [event for event in self.told if event["job_id"] == job_id]


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


def speech() -> str:
    return "data:audio/wav;base64," + base64.b64encode(speak("Hello from the end to end test.", "Aria")).decode()


FAL_REQUESTS: dict[str, dict[str, Any]] = {
    "fal-ai/ai-avatar": {"audio_url": "SPEECH", "prompt": "A person talking."},
    "fal-ai/ai-avatar/single-text": {
        "text_input": "Hello there, how are you today?",
        "voice": "Aria",
        "prompt": "A person talking.",
    },
    "fal-ai/ai-avatar/multi": {"first_audio_url": "SPEECH", "second_audio_url": "SPEECH", "prompt": "Two people."},
    "fal-ai/ai-avatar/multi-text": {
        "first_text_input": "Hi, nice to meet you.",
        "second_text_input": "Hello, likewise!",
        "prompt": "Two people.",
    },
}


def fal_body(model: str, **extra: Any) -> dict[str, Any]:
    fields = {name: speech() if value == "SPEECH" else value for name, value in FAL_REQUESTS[model].items()}
    return {"provider": "fal", "model": model, "image_url": FACE, **fields, **extra}


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
