"""The local stack driven as an API client and a subscriber would: order, wait, read what the topic told.

Shared by the end-to-end modules; each starts its own LocalStack and wraps it in a Pipeline.
"""

import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from avatarjobs.adapters.jobs_table import job_from_item
from avatarjobs.domain.job import Job
from devstack.media import SAMPLE_FACE, speak
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
        self._dynamodb = session.client("dynamodb", endpoint_url=local.endpoint_url)
        self.told: list[dict[str, Any]] = []

    def emulator_url(self, provider: str) -> str:
        base = self.local.provider_urls["FAL_QUEUE_BASE_URL" if provider == "fal" else "MIRAKO_BASE_URL"]
        assert base is not None
        return base

    def emulator(self, provider: str, **settings: Any) -> None:
        httpx.post(f"{self.emulator_url(provider)}/_emulator/settings", json=settings, timeout=10).raise_for_status()

    @contextmanager
    def emulating(self, provider: str, **settings: Any) -> Iterator[None]:
        """The emulator with these settings for the block, and as it was after it."""
        url = f"{self.emulator_url(provider)}/_emulator/settings"
        before = httpx.get(url, timeout=10).json()
        self.emulator(provider, **settings)
        try:
            yield
        finally:
            self.emulator(provider, **{name: before[name] for name in settings})

    def runs_of(self, provider: str, job_id: str) -> list[dict[str, Any]]:
        """The runs the provider's emulator accepted for this job (each one a paid order): submits counted there."""
        record = httpx.get(f"{self.emulator_url(provider)}/_emulator/requests", timeout=10).json()
        return [run for run in record["requests"] if (run["webhook_url"] or "").endswith(f"/{job_id}")]

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

    def record(self, job_id: str) -> Job:
        """The job as the Jobs table holds it (what the API does not show, such as the provider's request id)."""
        item = self._dynamodb.get_item(TableName=self.local.stack.refs["JobsTable"], Key={"job_id": {"S": job_id}})
        return job_from_item(item["Item"])

    @staticmethod
    def download(job: dict[str, Any]) -> bytes:
        """The SUCCEEDED job's video, through its presigned URL."""
        return httpx.get(job["video_url"], timeout=30).content

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


@contextmanager
def quick_pipeline(log_dir: Path, provider: str) -> Iterator[Pipeline]:
    """A local stack with both emulators, `provider`'s made quick (a fraction of a second in its queue and run)."""
    with LocalStack(emulators=True, log_dir=log_dir) as local:
        pipeline = Pipeline(local)
        pipeline.emulator(provider, queue_seconds=0.2, delay_seconds=0.5)
        yield pipeline
