"""AWS calls per job: one successful fal job through the real handlers, every boto3 call they make counted.

The account is moto's in-process mock holding template.yaml's resources; fal (submit, JWKS, the video) is
served by respx as in tests/unit/test_completion.py. Lambda's event sources are played by the benchmark
(receiving from the queues, reading the table's stream): those calls are not the handlers' and are not counted.
Calls are seen with a botocore `before-call` hook on the default session, which every client made by
avatarjobs.adapters.aws_clients inherits; one `before-call` is one API call, whatever its retries.
"""

import os

# Before Powertools or boto3 is imported: both read these when their objects are made (as tests/conftest.py).
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_METRICS_NAMESPACE": "AvatarJobsBench",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
)

import base64
import copy
import hashlib
import inspect
import io
import json
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import respx
from botocore.model import OperationModel
from moto import mock_aws
from nacl.signing import SigningKey

from avatarjobs import composition
from avatarjobs.domain.job import JobStatus
from devstack.cloudformation import REGION, Stack, provision
from devstack.moto_atomicity import make_dynamodb_writes_atomic
from functions.api import app as api_app
from functions.dispatch import app as dispatch_app
from functions.finalize import app as finalize_app
from functions.notify import app as notify_app
from functions.webhook import app as webhook_app
from tests.api_events import OWNER, api_event, load_event
from tests.lambda_context import LambdaContext
from tests.support.subscribers import real_stream_records

TARGET_CALLS = 9  # outside the S3 part uploads
PART_UPLOAD = ("s3", "UploadPart")
FUNCTIONS = ("ApiFunction", "DispatchFunction", "WebhookFunction", "FinalizeFunction", "NotifyFunction")
FAL = "https://queue.fal.run"
FAL_MODEL = "fal-ai/ai-avatar/multi-text"
JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
REQUEST_ID = "764cabcf-b745-4b3e-ae38-1200304cf45b"
VIDEO_URL = "https://v3.fal.media/files/zebra/30b76b90c2164f9a926527497c20832b.mp4"
VIDEO = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"frame" * 4000
JOB_REQUEST = {
    "provider": "fal",
    "model": FAL_MODEL,
    "image_url": "https://example.com/face.png",
    "first_text_input": "Hi.",
    "second_text_input": "Hello!",
    "prompt": "Two people talking.",
}


@dataclass(frozen=True)
class AwsCall:
    function: str
    service: str
    operation: str
    via: str  # the domain method and the adapter method that made the call: what a plan to remove it names


def _call_site() -> str:
    """The innermost avatarjobs.domain frame and the outermost avatarjobs.adapters frame of the current stack."""
    adapter: str | None = None
    domain: str | None = None
    frame = inspect.currentframe()
    while frame is not None:
        path = Path(frame.f_code.co_filename).as_posix()
        if "/avatarjobs/adapters/" in path:
            adapter = frame.f_code.co_qualname  # keeps the outermost: the repository's public method
        elif "/avatarjobs/domain/" in path and domain is None:
            domain = frame.f_code.co_qualname
        frame = frame.f_back
    return " -> ".join(name for name in (domain, adapter) if name) or "?"


@dataclass
class CallLog:
    """The calls made while a handler runs; nothing is recorded between handlers (the benchmark's own calls)."""

    calls: list[AwsCall] = field(default_factory=list)
    _function: str | None = None

    def on_before_call(self, model: OperationModel, **_: Any) -> None:
        if self._function is not None:
            service = model.service_model.service_name
            self.calls.append(AwsCall(self._function, service, model.name, _call_site()))

    @contextmanager
    def handler(self, function: str) -> Iterator[None]:
        self._function = function
        try:
            yield
        finally:
            self._function = None


@dataclass(frozen=True)
class AwsCallsResult:
    calls: tuple[AwsCall, ...]
    job_status: str

    @property
    def total(self) -> int:
        return len(self.calls)

    @property
    def part_uploads(self) -> int:
        return sum(1 for call in self.calls if (call.service, call.operation) == PART_UPLOAD)

    @property
    def outside_part_uploads(self) -> int:
        return self.total - self.part_uploads

    @property
    def met(self) -> bool:
        return self.outside_part_uploads <= TARGET_CALLS


def _fal_routes(key: SigningKey) -> None:
    x = base64.urlsafe_b64encode(bytes(key.verify_key)).rstrip(b"=").decode()
    respx.get(JWKS_URL).mock(
        return_value=httpx.Response(200, json={"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x}]})
    )
    respx.get(VIDEO_URL).mock(
        return_value=httpx.Response(200, content=VIDEO, headers={"Content-Type": "application/octet-stream"})
    )
    urls = {
        "status_url": f"{FAL}/fal-ai/ai-avatar/requests/{REQUEST_ID}/status",
        "response_url": f"{FAL}/fal-ai/ai-avatar/requests/{REQUEST_ID}",
        "cancel_url": f"{FAL}/fal-ai/ai-avatar/requests/{REQUEST_ID}/cancel",
    }
    respx.post(f"{FAL}/{FAL_MODEL}").mock(
        return_value=httpx.Response(
            200, json={"request_id": REQUEST_ID, "status": "IN_QUEUE", "queue_position": 0, **urls}
        )
    )


def _signed_fal_webhook(key: SigningKey) -> tuple[bytes, dict[str, str]]:
    video = {"url": VIDEO_URL, "content_type": "application/octet-stream", "file_size": len(VIDEO)}
    payload = {"video": video, "seed": 81}
    body = {"request_id": REQUEST_ID, "gateway_request_id": REQUEST_ID, "status": "OK", "payload": payload}
    raw = json.dumps(body, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    message = "\n".join([REQUEST_ID, "user-9", timestamp, hashlib.sha256(raw).hexdigest()]).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Fal-Webhook-Request-Id": REQUEST_ID,
        "X-Fal-Webhook-User-Id": "user-9",
        "X-Fal-Webhook-Timestamp": timestamp,
        "X-Fal-Webhook-Signature": key.sign(message).signature.hex(),
    }
    return raw, headers


def _sqs_event(stack: Stack, queue: str, sample: str) -> dict[str, Any]:
    """The queue's one message as the SQS event source hands it to Lambda (a receive Lambda makes, not us)."""
    sqs = boto3.client("sqs", region_name=REGION)
    [message] = sqs.receive_message(
        QueueUrl=stack.refs[queue], MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
    )["Messages"]
    record: dict[str, Any] = copy.deepcopy(load_event(sample)["Records"][0])
    record.update(
        messageId=message["MessageId"],
        receiptHandle=message["ReceiptHandle"],
        body=message["Body"],
        md5OfBody=message["MD5OfBody"],
        eventSourceARN=stack.attributes[(queue, "Arn")],
    )
    return {"Records": [record]}


def _expect_no_failures(function: str, response: dict[str, Any]) -> None:
    if response["batchItemFailures"]:
        raise RuntimeError(f"{function} reported failed records: {response['batchItemFailures']}")


def _drive_one_job(stack: Stack, log: CallLog, key: SigningKey) -> str:
    """api -> dispatch -> webhook -> finalize -> notify; returns the job's final status."""
    with log.handler("api"):
        created = api_app.lambda_handler(api_event("POST", "/jobs", body=JOB_REQUEST), LambdaContext("ApiFunction"))
    if created["statusCode"] != 202:
        raise RuntimeError(f"POST /jobs answered {created['statusCode']}: {created['body']}")
    job_id = json.loads(created["body"])["job_id"]

    event = _sqs_event(stack, "DispatchQueue", "sqs_dispatch.json")
    with log.handler("dispatch"):
        _expect_no_failures("dispatch", dispatch_app.lambda_handler(event, LambdaContext("DispatchFunction")))

    raw, headers = _signed_fal_webhook(key)
    delivery = api_event("POST", f"/webhooks/fal/{job_id}", raw_body=raw.decode(), headers=headers, owner=None)
    delivery["headers"] = {name: value for name, value in delivery["headers"].items() if name != "x-api-key"}
    with log.handler("webhook"):
        acknowledged = webhook_app.lambda_handler(delivery, LambdaContext("WebhookFunction"))
    if acknowledged["statusCode"] != 200:
        raise RuntimeError(f"the webhook answered {acknowledged['statusCode']}: {acknowledged['body']}")

    event = _sqs_event(stack, "FinalizeQueue", "sqs_finalize.json")
    with log.handler("finalize"):
        context = LambdaContext("FinalizeFunction", seconds_left=900)
        _expect_no_failures("finalize", finalize_app.lambda_handler(event, context))

    records = real_stream_records(stack)
    with log.handler("notify"):
        _expect_no_failures("notify", notify_app.lambda_handler({"Records": records}, LambdaContext("NotifyFunction")))

    return composition.jobs_service().get_job(OWNER, job_id).status


def measure() -> AwsCallsResult:
    make_dynamodb_writes_atomic()
    key = SigningKey.generate()
    saved = dict(os.environ)
    try:
        # Powertools prints its metrics (EMF) to stdout and warns of empty ones: not this benchmark's output.
        with mock_aws(), respx.mock, redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No application metrics to publish")
            stack = provision(boto3.Session(region_name=REGION))
            # One process plays every function, as the unit tests do: their environments merged.
            for function in FUNCTIONS:
                os.environ.update(stack.function_environment(function))
            os.environ["FAL_KEY"] = "fal-secret-key"  # the tests' direct key: no Secrets Manager call
            log = CallLog()
            boto3.setup_default_session(region_name=REGION)
            assert boto3.DEFAULT_SESSION is not None
            boto3.DEFAULT_SESSION.events.register("before-call", log.on_before_call)
            composition.reset()  # clients made from now on inherit the hook
            _fal_routes(key)
            status = _drive_one_job(stack, log, key)
            composition.reset()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        boto3.DEFAULT_SESSION = None
    if status != JobStatus.SUCCEEDED:
        raise RuntimeError(f"the job ended {status}, not SUCCEEDED: its calls are not those of a successful job")
    return AwsCallsResult(tuple(log.calls), str(status))


if __name__ == "__main__":
    result = measure()
    for call in result.calls:
        print(f"{call.function:9} {call.service:9} {call.operation:24} {call.via}")
    print(f"total {result.total}, outside part uploads {result.outside_part_uploads} (target <= {TARGET_CALLS})")
