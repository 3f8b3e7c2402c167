"""Webhook acknowledgement: the warm webhook handler's time per genuine fal delivery, against an AWS floor.

moto runs in server mode (devstack.moto_server, a child process on loopback) with template.yaml's resources, and
every boto3 client of this process reaches it through AWS_ENDPOINT_URL, as the local stack's functions do. The
jobs are ordered and dispatched through the real API and dispatch handlers (fal's submit under respx, a new
request id per job), so each of them is SUBMITTED as a real one would be. Then the webhook handler, warmed by one
delivery that is not counted, gets one validly signed completion per job (fal's JWKS served by respx), each timed
with perf_counter around `lambda_handler(event, context)` alone: the handler is driven only through its event.

The floor, in the same run against the same server and with the handler's own boto3 clients
(avatarjobs.adapters.aws_clients): one conditional DynamoDB UpdateItem of a job-sized item plus one SQS
SendMessage of a finalize-sized message, the least a delivery has to do (record the result, queue the copy).
Deliveries and floor samples alternate, so a noisy moment of the machine touches both alike.
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
import io
import json
import statistics
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import respx
from botocore.model import OperationModel
from nacl.signing import SigningKey

from avatarjobs import composition
from avatarjobs.adapters import aws_clients
from bench.aws_calls import FAL, FAL_MODEL, JOB_REQUEST, JWKS_URL, VIDEO_URL
from bench.stats import percentile
from devstack.cloudformation import REGION, Stack, provision
from devstack.moto_server import FAKE_CREDENTIALS, local_session
from devstack.processes import launch
from functions.api import app as api_app
from functions.dispatch import app as dispatch_app
from functions.webhook import app as webhook_app
from tests.api_events import api_event, load_event
from tests.lambda_context import LambdaContext

DELIVERIES = 1_000
TARGET_RATIO = 1.5  # p50 of the handler over p50 of the floor
FUNCTIONS = ("ApiFunction", "DispatchFunction", "WebhookFunction")


@dataclass(frozen=True)
class WebhookAckResult:
    handler_ms: tuple[float, ...]  # one per counted delivery, in order
    floor_ms: tuple[float, ...]  # one per floor sample (UpdateItem + SendMessage)
    outcomes: dict[str, int]  # the handler's answers: "200 recorded" and anything else
    calls: tuple[str, ...]  # the AWS operations the last counted delivery made, in order

    @property
    def deliveries(self) -> int:
        return len(self.handler_ms)

    @property
    def recorded(self) -> int:
        return self.outcomes.get("200 recorded", 0)

    @property
    def handler_p50(self) -> float:
        return statistics.median(self.handler_ms)

    @property
    def handler_p99(self) -> float:
        return percentile(self.handler_ms, 99)

    @property
    def floor_p50(self) -> float:
        return statistics.median(self.floor_ms)

    @property
    def floor_p99(self) -> float:
        return percentile(self.floor_ms, 99)

    @property
    def ratio_p50(self) -> float:
        return self.handler_p50 / self.floor_p50

    @property
    def ratio_p99(self) -> float:
        return self.handler_p99 / self.floor_p99

    @property
    def met(self) -> bool:
        return self.recorded == self.deliveries and self.ratio_p50 <= TARGET_RATIO


@contextmanager
def _moto_server() -> Iterator[str]:
    log = Path(tempfile.mkdtemp(prefix="bench-webhook-ack-")) / "moto.log"
    child = launch("devstack.moto_server", log=log)
    try:
        yield child.wait_until_serving()
    finally:
        child.stop()


@contextmanager
def _environment(stack: Stack, endpoint_url: str) -> Iterator[None]:
    """The functions' environments from the template (merged: one process plays them all), pointed at moto."""
    saved = dict(os.environ)
    try:
        for function in FUNCTIONS:
            os.environ.update(stack.function_environment(function))
        os.environ.update(
            {
                **FAKE_CREDENTIALS,
                "AWS_ENDPOINT_URL": endpoint_url,
                "AWS_REGION": REGION,
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "FAL_KEY": "fal-secret-key",  # the direct key, as in the tests: no Secrets Manager call
            }
        )
        boto3.setup_default_session(region_name=REGION)
        composition.reset()  # clients made from now on reach the moto server, from the default session
        yield
    finally:
        composition.reset()
        os.environ.clear()
        os.environ.update(saved)
        boto3.DEFAULT_SESSION = None


class _Fal:
    """fal under respx: the JWKS of our key, and a submit that answers a new request id per job."""

    def __init__(self) -> None:
        self.key = SigningKey.generate()
        self.request_ids: dict[str, str] = {}  # job id -> fal request id

    def install(self) -> None:
        x = base64.urlsafe_b64encode(bytes(self.key.verify_key)).rstrip(b"=").decode()
        respx.get(JWKS_URL).mock(
            return_value=httpx.Response(200, json={"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x}]})
        )
        respx.post(f"{FAL}/{FAL_MODEL}").mock(side_effect=self._submit)

    def _submit(self, request: httpx.Request) -> httpx.Response:
        webhook = parse_qs(urlsplit(str(request.url)).query)["fal_webhook"][0]
        request_id = str(uuid.uuid4())
        self.request_ids[webhook.rsplit("/", 1)[1]] = request_id
        base = f"{FAL}/fal-ai/ai-avatar/requests/{request_id}"
        urls = {"status_url": f"{base}/status", "response_url": base, "cancel_url": f"{base}/cancel"}
        return httpx.Response(200, json={"request_id": request_id, "status": "IN_QUEUE", "queue_position": 0, **urls})

    def delivery(self, job_id: str) -> dict[str, Any]:
        """A genuine completion webhook for the job, signed now, as API Gateway hands it to the function."""
        request_id = self.request_ids[job_id]
        video = {"url": VIDEO_URL, "content_type": "video/mp4", "file_size": 20_000}
        document = {"request_id": request_id, "gateway_request_id": request_id, "status": "OK",
                    "payload": {"video": video, "seed": 81}}  # fmt: skip
        raw = json.dumps(document, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        message = "\n".join([request_id, "user-9", timestamp, hashlib.sha256(raw).hexdigest()]).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Fal-Webhook-Request-Id": request_id,
            "X-Fal-Webhook-User-Id": "user-9",
            "X-Fal-Webhook-Timestamp": timestamp,
            "X-Fal-Webhook-Signature": self.key.sign(message).signature.hex(),
        }
        event = api_event("POST", f"/webhooks/fal/{job_id}", raw_body=raw.decode(), headers=headers, owner=None)
        event["headers"] = {name: value for name, value in event["headers"].items() if name != "x-api-key"}
        return event


def _order_jobs(count: int) -> list[str]:
    job_ids = []
    for _ in range(count):
        response = api_app.lambda_handler(api_event("POST", "/jobs", body=JOB_REQUEST), LambdaContext("ApiFunction"))
        if response["statusCode"] != 202:
            raise RuntimeError(f"POST /jobs answered {response['statusCode']}: {response['body']}")
        job_ids.append(json.loads(response["body"])["job_id"])
    return job_ids


def _dispatch_all(stack: Stack, count: int) -> None:
    """The dispatch queue's messages, ten a batch as the SQS event source hands them to the function."""
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = stack.refs["DispatchQueue"]
    template = load_event("sqs_dispatch.json")["Records"][0]
    dispatched = 0
    while dispatched < count:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        )
        if not messages:
            raise RuntimeError(f"the dispatch queue ran dry after {dispatched} of {count} messages")
        records = []
        for message in messages:
            record: dict[str, Any] = copy.deepcopy(template)
            record.update(
                messageId=message["MessageId"],
                receiptHandle=message["ReceiptHandle"],
                body=message["Body"],
                eventSourceARN=stack.attributes[("DispatchQueue", "Arn")],
            )
            records.append(record)
        response = dispatch_app.lambda_handler({"Records": records}, LambdaContext("DispatchFunction"))
        if response["batchItemFailures"]:
            raise RuntimeError(f"dispatch reported failed records: {response['batchItemFailures']}")
        for message in messages:  # what the event source does after a batch without failures
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        dispatched += len(messages)


class _Floor:
    """One UpdateItem (conditional, on a copy of a submitted job's item) plus one SendMessage, timed together."""

    def __init__(self, stack: Stack, job_ids: list[str]) -> None:
        self._dynamodb = aws_clients.dynamodb()
        self._sqs = aws_clients.sqs()
        self._table = stack.refs["JobsTable"]
        self._queue_url = stack.refs["FinalizeQueue"]
        self._keys: list[str] = []
        for job_id in job_ids:  # floor items: the same size and shape as the jobs the handler updates
            item = self._dynamodb.get_item(TableName=self._table, Key={"job_id": {"S": job_id}})["Item"]
            floor_id = f"floor-{job_id}"
            self._dynamodb.put_item(TableName=self._table, Item={**item, "job_id": {"S": floor_id}})
            self._keys.append(floor_id)

    def sample(self, index: int) -> float:
        job_id = self._keys[index]
        started = time.perf_counter()
        self._dynamodb.update_item(
            TableName=self._table,
            Key={"job_id": {"S": job_id}},
            UpdateExpression="SET #status = :next, version = version + :one",
            ConditionExpression="#status = :expected",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":next": {"S": "FINALIZING"}, ":expected": {"S": "SUBMITTED"},
                                       ":one": {"N": "1"}},
        )  # fmt: skip
        self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=json.dumps({"job_id": job_id}))
        return (time.perf_counter() - started) * 1000


class _CallLog:
    """The AWS operations made while `recording` (a botocore `before-call` hook on the default session)."""

    def __init__(self) -> None:
        self.recording = False
        self.operations: list[str] = []

    def on_before_call(self, model: OperationModel, **_: Any) -> None:
        if self.recording:
            self.operations.append(model.name)


def measure(deliveries: int = DELIVERIES) -> WebhookAckResult:
    fal = _Fal()
    with (
        _moto_server() as endpoint_url,
        respx.mock,
        redirect_stdout(io.StringIO()),  # Powertools prints its metrics (EMF) there: not this benchmark's output
        warnings.catch_warnings(),
    ):
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        stack = provision(local_session(), endpoint_url=endpoint_url)
        with _environment(stack, endpoint_url):
            log = _CallLog()
            assert boto3.DEFAULT_SESSION is not None
            boto3.DEFAULT_SESSION.events.register("before-call", log.on_before_call)
            fal.install()
            job_ids = _order_jobs(deliveries + 1)
            _dispatch_all(stack, deliveries + 1)
            floor = _Floor(stack, job_ids)  # copies of the jobs while they are SUBMITTED
            warm_up, *counted = job_ids
            webhook_app.lambda_handler(fal.delivery(warm_up), LambdaContext("WebhookFunction"))  # JWKS, clients
            floor.sample(0)  # the floor's first call is not counted either
            handler_ms: list[float] = []
            floor_ms: list[float] = []
            outcomes: dict[str, int] = {}
            for index, job_id in enumerate(counted):
                event = fal.delivery(job_id)
                context = LambdaContext("WebhookFunction")
                log.operations.clear()
                log.recording = True
                started = time.perf_counter()
                response = webhook_app.lambda_handler(event, context)
                handler_ms.append((time.perf_counter() - started) * 1000)
                log.recording = False
                outcome = f"{response['statusCode']} {json.loads(response['body']).get('status', '')}".strip()
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                floor_ms.append(floor.sample(index + 1))
    return WebhookAckResult(tuple(handler_ms), tuple(floor_ms), outcomes, tuple(log.operations))


if __name__ == "__main__":
    result = measure()
    print(
        f"webhook handler p50 {result.handler_p50:.2f} ms, p99 {result.handler_p99:.2f} ms over "
        f"{result.deliveries} deliveries ({result.outcomes}); AWS calls each: {', '.join(result.calls)}"
    )
    print(f"floor (UpdateItem + SendMessage) p50 {result.floor_p50:.2f} ms, p99 {result.floor_p99:.2f} ms")
    print(
        f"ratio p50 {result.ratio_p50:.2f}x, p99 {result.ratio_p99:.2f}x (target p50 <= {TARGET_RATIO}x): "
        f"{'met' if result.met else 'not met'}"
    )
