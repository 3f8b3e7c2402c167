"""Throughput: 200 jobs ordered at once on the local stack, with the provider emulators set to instant.

The local stack (devstack.stack.LocalStack) runs every function in its own worker process, one invocation at a
time as one warm Lambda execution environment, behind the API Gateway emulation, the SQS pollers and the table's
stream; the fal emulator answers at once and returns one shared sample video (its `instant` setting). Each job
is a `fal-ai/ai-avatar` order (the sample face and a short WAV as data URIs, so dispatch stages them to S3 and
the emulator fetches them back) sent over HTTP from its own thread, all threads released together. A subscriber
queue on the job-events topic, as a subscriber would have, is drained by one thread that notes when each job's
notification arrived. Latency is per job: from just before its POST to the receipt of its notification.
"""

import base64
import io
import json
import statistics
import tempfile
import threading
import time
import wave
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from bench.stats import percentile
from devstack.media import SAMPLE_FACE
from devstack.moto_server import local_session
from devstack.stack import LocalStack

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

JOBS = 200
DEADLINE_SECONDS = 600.0  # from the first POST: a run that has not heard of every job by then is reported as such
EMULATOR_WORKERS = 16  # runs at the same time in the emulator: the pipeline, not the emulator, should be the limit


def _wav() -> str:
    out = io.BytesIO()
    with wave.open(out, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(16_000)
        audio.writeframes(b"\x00\x00" * 8_000)  # half a second of silence
    return "data:audio/wav;base64," + base64.b64encode(out.getvalue()).decode()


def job_request(number: int) -> dict[str, Any]:
    return {
        "provider": "fal",
        "model": "fal-ai/ai-avatar",
        "image_url": "data:image/png;base64," + base64.b64encode(SAMPLE_FACE.read_bytes()).decode(),
        "audio_url": _wav(),
        "prompt": "A person talking.",
        "metadata": {"bench": "throughput", "number": number},
    }


@dataclass
class ThroughputResult:
    jobs: int
    submitted_at: dict[str, float] = field(default_factory=dict)  # job id -> monotonic time before its POST
    told_at: dict[str, float] = field(default_factory=dict)  # job id -> monotonic time its notification arrived
    told_type: dict[str, str] = field(default_factory=dict)  # job id -> event type (job.succeeded, ...)
    errors: dict[str, str] = field(default_factory=dict)  # job id -> error message of a failed job
    refused: list[str] = field(default_factory=list)  # POSTs that did not answer 202
    started: float = 0.0
    reason: str | None = None  # why the run is not met, when it is not

    @property
    def succeeded(self) -> int:
        return sum(1 for kind in self.told_type.values() if kind == "job.succeeded")

    @property
    def outcomes(self) -> dict[str, int]:
        counts = Counter(self.told_type.values())
        if self.refused:
            counts["refused at submit"] = len(self.refused)
        missing = self.jobs - len(self.refused) - len(self.told_type)
        if missing:
            counts["not told"] = missing
        return dict(counts)

    @property
    def latencies_ms(self) -> list[float]:
        return [(self.told_at[job] - self.submitted_at[job]) * 1000 for job in self.told_at if job in self.submitted_at]

    @property
    def wall_seconds(self) -> float:
        return max(self.told_at.values(), default=self.started) - self.started

    @property
    def jobs_per_second(self) -> float:
        return self.succeeded / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99) if self.latencies_ms else float("nan")

    @property
    def met(self) -> bool:
        return self.reason is None and self.succeeded == self.jobs


class _Subscriber:
    """An SQS queue subscribed to the job-events topic, drained by one thread that stamps each arrival."""

    def __init__(self, local: LocalStack, result: ThroughputResult) -> None:
        session = local_session()
        self._sqs: SQSClient = session.client("sqs", endpoint_url=local.endpoint_url)
        self._queue = self._sqs.create_queue(QueueName="bench-throughput-subscriber")["QueueUrl"]
        arn = self._sqs.get_queue_attributes(QueueUrl=self._queue, AttributeNames=["QueueArn"])["Attributes"]
        session.client("sns", endpoint_url=local.endpoint_url).subscribe(
            TopicArn=local.stack.refs["JobEventsTopic"], Protocol="sqs", Endpoint=arn["QueueArn"]
        )
        self._result = result
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._drain, name="bench-subscriber")

    def _drain(self) -> None:
        while not self._stop.is_set():
            received = self._sqs.receive_message(QueueUrl=self._queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            arrived = time.monotonic()
            for message in received.get("Messages", []):
                event = json.loads(json.loads(message["Body"])["Message"])
                with self._lock:
                    job_id = event["job_id"]
                    if job_id not in self._result.told_at:  # delivery is at least once: the first one counts
                        self._result.told_at[job_id] = arrived
                        self._result.told_type[job_id] = event["type"]
                        if event.get("error"):
                            self._result.errors[job_id] = event["error"].get("message", "")
                self._sqs.delete_message(QueueUrl=self._queue, ReceiptHandle=message["ReceiptHandle"])

    def told(self) -> int:
        with self._lock:
            return len(self._result.told_at)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join()


def _submit_all(local: LocalStack, result: ThroughputResult) -> None:
    """Every POST from its own thread, released together; returns when all have answered."""
    bodies = [json.dumps(job_request(number)).encode() for number in range(result.jobs)]
    go = threading.Barrier(result.jobs + 1)
    lock = threading.Lock()
    limits = httpx.Limits(max_connections=result.jobs, max_keepalive_connections=0)
    headers = {"x-api-key": local.api_key, "Content-Type": "application/json"}
    with httpx.Client(base_url=local.api_url, headers=headers, timeout=300, limits=limits) as client:

        def submit(body: bytes) -> None:
            go.wait()
            before = time.monotonic()
            try:
                response = client.post("/jobs", content=body)
            except httpx.HTTPError as error:
                with lock:
                    result.refused.append(f"{type(error).__name__}: {error}")
                return
            with lock:
                if response.status_code == 202:
                    result.submitted_at[response.json()["job_id"]] = before
                else:
                    result.refused.append(f"{response.status_code}: {response.text[:200]}")

        with ThreadPoolExecutor(max_workers=result.jobs) as pool:
            futures = [pool.submit(submit, body) for body in bodies]
            go.wait()
            result.started = time.monotonic()
            for future in futures:
                future.result()


def measure(jobs: int = JOBS) -> ThroughputResult:
    result = ThroughputResult(jobs)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    with LocalStack(emulators=True, log_dir=log_dir) as local:
        fal = local.provider_urls["FAL_QUEUE_BASE_URL"]
        settings = {"instant": True, "workers": EMULATOR_WORKERS}
        httpx.post(f"{fal}/_emulator/settings", json=settings, timeout=10).raise_for_status()
        subscriber = _Subscriber(local, result)
        subscriber.thread.start()
        try:
            _submit_all(local, result)
            deadline = result.started + DEADLINE_SECONDS
            while subscriber.told() < len(result.submitted_at) and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            subscriber.stop()
    if result.refused:
        result.reason = f"{len(result.refused)} POST /jobs not accepted, the first: {result.refused[0]}"
    elif len(result.told_at) < jobs:
        result.reason = f"{jobs - len(result.told_at)} jobs not told within {DEADLINE_SECONDS:.0f} s (logs: {log_dir})"
    elif result.succeeded < jobs:
        first = next(iter(result.errors.values()), "no error message")
        result.reason = f"{jobs - result.succeeded} jobs did not succeed ({result.outcomes}); the first error: {first}"
    return result


if __name__ == "__main__":
    outcome = measure()
    print(
        f"{outcome.succeeded}/{outcome.jobs} succeeded in {outcome.wall_seconds:.1f} s: "
        f"{outcome.jobs_per_second:.2f} jobs/s; submit to notification p50 {outcome.p50_ms / 1000:.2f} s, "
        f"p99 {outcome.p99_ms / 1000:.2f} s; {outcome.outcomes}"
    )
    if outcome.reason:
        print(f"not met: {outcome.reason}")
