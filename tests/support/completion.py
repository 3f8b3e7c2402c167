"""The completion path's shared ground (tests/unit/test_completion.py, test_webhook_forgeries.py): provider
constants, jobs in the states a webhook finds them in, fal's delivery bodies and the queues' messages."""

import json
from typing import Any

from avatarjobs import composition
from avatarjobs.domain.ids import new_webhook_token
from avatarjobs.domain.job import Job, JobStatus, isoformat, utc_now
from avatarjobs.domain.requests import FalMultiTextRequest, MirakoTalkingAvatarRequest
from devstack.cloudformation import Stack
from tests.api_events import OWNER
from tests.support import moto_clients
from tests.support.job_states import move

FAL = "https://queue.fal.run"
MIRAKO = "https://mirako.co"
JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
REQUEST_ID = "764cabcf-b745-4b3e-ae38-1200304cf45b"
VIDEO_URL = "https://v3.fal.media/files/zebra/30b76b90c2164f9a926527497c20832b.mp4"
VIDEO = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"frame" * 4000
FAL_URLS = {
    "status_url": f"{FAL}/fal-ai/ai-avatar/requests/{REQUEST_ID}/status",
    "response_url": f"{FAL}/fal-ai/ai-avatar/requests/{REQUEST_ID}",
    "cancel_url": f"{FAL}/fal-ai/ai-avatar/requests/{REQUEST_ID}/cancel",
}
FUNCTIONS = ("WebhookFunction", "FinalizeFunction", "ReconcileFunction", "ApiFunction")


def new_fal_job() -> Job:
    request = FalMultiTextRequest(
        provider="fal",
        model="fal-ai/ai-avatar/multi-text",
        image_url="https://example.com/a.png",
        first_text_input="Hi.",
        second_text_input="Hello!",
        prompt="Two people.",
    )
    return composition.jobs_service().create_job(OWNER, request).job


def submitted_fal_job(**changes: Any) -> Job:
    job = new_fal_job()
    return move(
        composition.jobs_repository(),
        job,
        JobStatus.SUBMITTED,
        now=isoformat(utc_now()),
        changes={"provider_request_id": REQUEST_ID, "provider_urls": FAL_URLS, **changes},
    )


def new_mirako_job() -> Job:
    request = MirakoTalkingAvatarRequest(
        provider="mirako",
        model="talking-avatar",
        image_url="https://example.com/a.png",
        audio_url="https://example.com/a.wav",
    )
    return composition.jobs_service().create_job(OWNER, request).job


def submitted_mirako_job() -> tuple[Job, str]:
    job = new_mirako_job()
    token, token_hash = new_webhook_token()
    job = move(
        composition.jobs_repository(),
        job,
        JobStatus.SUBMITTED,
        now=isoformat(utc_now()),
        changes={"provider_request_id": "xdac2o3c", "webhook_token_sha256": token_hash},
    )
    return job, token


def fal_body(status: str = "OK", request_id: str = REQUEST_ID) -> bytes:
    payload: dict[str, Any] = (
        {"video": {"url": VIDEO_URL, "content_type": "application/octet-stream", "file_size": len(VIDEO)}, "seed": 81}
        if status == "OK"
        else {"detail": [{"loc": ["body", "image_url"], "msg": "no face found", "type": "value_error"}]}
    )
    body = {"request_id": request_id, "gateway_request_id": request_id, "status": status, "payload": payload}
    return json.dumps(body, separators=(",", ":")).encode()


def queued(stack: Stack, queue: str) -> list[dict[str, Any]]:
    sqs = moto_clients.sqs()
    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=stack.refs[queue], MaxNumberOfMessages=10).get("Messages", []):
        messages.extend(dict(message) for message in batch)
    return messages
