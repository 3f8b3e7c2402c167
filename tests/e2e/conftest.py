"""The local stack once per module, a stand-in for fal's queue, and clients of moto and the API.

The provider here is a tiny fake of fal's submit (not devstack's emulators): these tests are about the
stack's plumbing (gateway, pollers, stream, rules), and a prompt tells the fake how to answer.
"""

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from devstack.cloudformation import REGION
from devstack.moto_server import local_session
from devstack.stack import LocalStack
from tests.support.loopback_server import serving

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

SCHEDULE_SECONDS = 2.0
# The one origin whose pages may call the module's stack (CorsAllowedOrigins): gateway responses name it too.
BROWSER_ORIGIN = "https://app.example.com"
# "[busy:N]" in a prompt: the fake answers 429 with Retry-After N (the dispatcher backs off N seconds).
_BUSY = re.compile(r"\[busy:(\d+)\]")


@dataclass
class Submit:
    model: str
    webhook_url: str
    body: dict[str, Any]


@dataclass
class FakeFal:
    """fal's queue submit on loopback: `POST /{model}?fal_webhook=...` answers IN_QUEUE (or 429, see _BUSY)."""

    url: str = ""
    submits: list[Submit] = field(default_factory=list)

    def submits_for(self, job_id: str) -> list[Submit]:
        return [submit for submit in self.submits if submit.webhook_url.endswith(f"/{job_id}")]


def _fal_handler(fake: FakeFal) -> type[BaseHTTPRequestHandler]:
    class FalHandler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            address = urlsplit(self.path)
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            webhook = parse_qs(address.query).get("fal_webhook", [""])[0]
            fake.submits.append(Submit(address.path.strip("/"), webhook, body))
            busy = _BUSY.search(str(body.get("prompt", "")))
            if busy:
                self._answer(429, {"detail": "busy"}, {"Retry-After": busy[1]})
                return
            request_id = str(uuid.uuid4())
            base = f"{fake.url}/fal-ai/ai-avatar/requests/{request_id}"  # fal drops the model's sub-path
            ticket = {
                "request_id": request_id,
                "status": "IN_QUEUE",
                "status_url": f"{base}/status",
                "response_url": base,
                "cancel_url": f"{base}/cancel",
                "queue_position": 0,
            }
            self._answer(200, ticket, {})

        def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return FalHandler


@pytest.fixture(scope="module")
def fake_fal() -> Iterator[FakeFal]:
    fake = FakeFal()
    with serving(_fal_handler(fake)) as url:
        fake.url = url
        yield fake


@pytest.fixture(scope="module")
def local(fake_fal: FakeFal, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    log_dir = tmp_path_factory.mktemp("devstack-logs")
    parameters = {"CorsAllowedOrigins": BROWSER_ORIGIN}
    with LocalStack(
        fal_base_url=fake_fal.url, schedule_seconds=SCHEDULE_SECONDS, log_dir=log_dir, parameters=parameters
    ) as stack:
        yield stack


@dataclass
class Moto:
    """Clients of the local stack's moto."""

    sqs: "SQSClient"
    dynamodb: "DynamoDBClient"
    s3: "S3Client"
    sns: "SNSClient"
    events: "EventBridgeClient"


def moto_clients(endpoint_url: str) -> Moto:
    session = local_session()
    return Moto(
        sqs=session.client("sqs", region_name=REGION, endpoint_url=endpoint_url),
        dynamodb=session.client("dynamodb", region_name=REGION, endpoint_url=endpoint_url),
        s3=session.client("s3", region_name=REGION, endpoint_url=endpoint_url),
        sns=session.client("sns", region_name=REGION, endpoint_url=endpoint_url),
        events=session.client("events", region_name=REGION, endpoint_url=endpoint_url),
    )


@pytest.fixture(scope="module")
def moto(local: LocalStack) -> Moto:
    return moto_clients(local.endpoint_url)


@pytest.fixture(scope="module")
def api(local: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=local.api_url, headers={"x-api-key": local.api_key}, timeout=30) as client:
        yield client
