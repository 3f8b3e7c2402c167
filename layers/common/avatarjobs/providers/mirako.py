"""Mirako's talking-avatar API (specs/mirako-openapi.yaml): optional text-to-speech, async generation, status.

Mirako takes the face and the speech as base64 in the request body (no URLs), answers errors as
application/problem+json, calls our webhook with `Authorization: Bearer <the token we gave it>`, and has no
cancel operation.
"""

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from avatarjobs.providers.base import (
    CancelOutcome,
    InvalidWebhook,
    ProviderError,
    ProviderErrorCode,
    ProviderState,
    StatusReport,
    Submission,
    VideoResult,
    WebhookNotice,
)
from avatarjobs.providers.http import error_for_response, json_object, json_or_none, redact, send, shared_client

MODEL = "talking-avatar"
NO_TASK_ID_MESSAGE = "Failed to get valid task_id from server."
VIDEO_CONTENT_TYPE = "video/mp4"  # the spec: "The URL of the output MP4 video"
_FINAL_FAILURES = {ProviderState.FAILED, ProviderState.CANCELED, ProviderState.TIMED_OUT}
_AUTH_SCHEME = "bearer"


class _ProblemDetail(BaseModel):
    location: str | None = None
    message: str | None = None


class _Problem(BaseModel):
    title: str | None = None
    status: int | None = None
    detail: str | None = None
    errors: list[_ProblemDetail] | None = None


class _TaskStatus(BaseModel):
    task_id: str | None = None
    status: ProviderState
    file_url: str | None = None
    output_duration: float | None = None
    error: str | None = None


class _TaskAnswer(BaseModel):
    data: _TaskStatus | None = None


class _SpeechOutput(BaseModel):
    b64_audio_str: str | None = None


class _SpeechAnswer(BaseModel):
    data: _SpeechOutput | None = None


def problem_message(response: httpx.Response) -> tuple[str, str | None]:
    """One line from a problem+json body ("title: detail (location: message; ...)") and the problem's title."""
    body = json_or_none(response)
    try:
        problem = _Problem.model_validate(body) if isinstance(body, dict) else _Problem()
    except ValidationError:
        problem = _Problem()
    parts = [part for part in (problem.title, problem.detail) if part]
    message = ": ".join(parts) if parts else f"Mirako answered HTTP {response.status_code}"
    details = [
        f"{item.location}: {item.message}" if item.location else (item.message or "")
        for item in problem.errors or []
        if item.location or item.message
    ]
    if details:
        message = f"{message} ({'; '.join(details)})"
    return message, problem.title


def new_webhook_token() -> tuple[str, str]:
    """A random token for one job's webhook, and its SHA-256 (hex): only the hash is stored."""
    token = secrets.token_urlsafe(32)
    return token, hashlib.sha256(token.encode()).hexdigest()


def verify_webhook_token(presented_authorization_header: str | None, stored_sha256_hex: str) -> bool:
    """True when the header is `Bearer <token>` and the token's SHA-256 is the stored one (constant time)."""
    if not presented_authorization_header:
        return False
    scheme, _, token = presented_authorization_header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != _AUTH_SCHEME or not token:
        return False
    presented = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest().encode()
    return hmac.compare_digest(presented, stored_sha256_hex.strip().lower().encode("utf-8", "surrogatepass"))


def _b64(value: Any, name: str) -> str:
    if not isinstance(value, bytes | bytearray) or not value:
        raise ValueError(f"Mirako input {name!r} must be non-empty bytes")
    return base64.b64encode(value).decode("ascii")


def _is_base64(text: str) -> bool:
    try:
        return bool(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        return False


class MirakoProvider:
    name = "mirako"

    def __init__(self, base_url: str, api_key: str, client: httpx.Client | None = None) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._client = client if client is not None else shared_client(self._base_url)

    def submit(self, model: str, inputs: dict[str, Any], *, webhook_url: str, webhook_token: str | None) -> Submission:
        """Generate a talking avatar from `image` + `audio` bytes, or `image` + `text` spoken by `voice_profile_id`.

        The request body holds exactly image, audio and webhook: the spec forbids other fields.
        """
        if model != MODEL:
            raise ValueError(f"Mirako offers only the {MODEL!r} model, not {model!r}")
        image = _b64(inputs.get("image"), "image")
        if inputs.get("audio") is not None:
            audio = _b64(inputs["audio"], "audio")
        elif inputs.get("text") and inputs.get("voice_profile_id"):
            audio = self._speech(str(inputs["text"]), str(inputs["voice_profile_id"]), webhook_token)
        else:
            raise ValueError("Mirako inputs need 'audio' bytes, or 'text' and 'voice_profile_id'")
        body: dict[str, Any] = {"image": image, "audio": audio}
        if webhook_url:
            webhook = {"url": webhook_url}
            if webhook_token:  # optional in the spec, and a null would break its string type
                webhook["auth_token"] = webhook_token
            body["webhook"] = webhook
        response = self._call("POST", "/v1/video/async_generate_talking_avatar", "Mirako submit", webhook_token, body)
        answer = json_or_none(response)
        data = answer.get("data") if isinstance(answer, dict) else None
        task_id = data.get("task_id") if isinstance(data, dict) else None
        if not isinstance(task_id, str) or not task_id:
            # The n8n node's words for this case; the task may or may not exist, and we cannot follow it.
            raise ProviderError(ProviderErrorCode.BAD_RESPONSE, NO_TASK_ID_MESSAGE, retryable=False)
        return Submission(request_id=task_id)

    def status(self, submission: Submission) -> StatusReport:
        task = self._status(submission)
        return StatusReport(
            state=task.status,
            error=task.error or None,
            video_url=task.file_url if task.status == ProviderState.COMPLETED else None,
        )

    def result(self, submission: Submission) -> VideoResult:
        """The video of a COMPLETED task; a permanent ProviderError for FAILED, CANCELED or TIMED_OUT."""
        task = self._status(submission)
        if task.status in _FINAL_FAILURES:
            message = task.error or f"Mirako reports the task {task.status}"
            raise ProviderError(
                ProviderErrorCode.GENERATION_FAILED,
                redact(message, [self._api_key]),
                retryable=False,
                provider_code=task.status,
            )
        if task.status != ProviderState.COMPLETED:
            raise ProviderError(ProviderErrorCode.NOT_READY, f"Mirako reports the task {task.status}", retryable=True)
        if not task.file_url:
            raise ProviderError(
                ProviderErrorCode.BAD_RESPONSE, "Mirako reports the task COMPLETED without a file_url", retryable=False
            )
        return VideoResult(url=task.file_url, content_type=VIDEO_CONTENT_TYPE, duration_seconds=task.output_duration)

    def cancel(self, submission: Submission) -> CancelOutcome:
        """Mirako's API has no cancel operation, so nothing is sent and the task runs to its end.

        The caller keeps the job in CANCEL_REQUESTED and follows the task's final state (the video of a task
        that completes anyway is paid for, so it is kept).
        """
        return CancelOutcome.UNSUPPORTED

    # -- calls ----------------------------------------------------------------------------------------------

    def _speech(self, text: str, voice_profile_id: str, webhook_token: str | None) -> str:
        body = {"text": text, "voice_profile_id": voice_profile_id, "return_type": "b64_audio_str"}
        response = self._call("POST", "/v1/speech/tts", "Mirako text-to-speech", webhook_token, body)
        try:
            speech = _SpeechAnswer.model_validate(json_object(response, "Mirako text-to-speech"))
        except ValidationError:
            speech = _SpeechAnswer()
        audio = speech.data.b64_audio_str if speech.data else None
        if not audio or not _is_base64(audio):
            raise ProviderError(
                ProviderErrorCode.BAD_RESPONSE, "Mirako text-to-speech returned no usable audio", retryable=False
            )
        return audio

    def _status(self, submission: Submission) -> _TaskStatus:
        path = f"/v1/video/async_generate_talking_avatar/{quote(submission.request_id, safe='')}/status"
        response = self._call("GET", path, "Mirako status", None, None)
        try:
            answer = _TaskAnswer.model_validate(json_object(response, "Mirako status"))
        except ValidationError:
            answer = _TaskAnswer()
        if answer.data is None:
            # Retryable: the reconciler asks again on its next round, until the job's deadline.
            raise ProviderError(
                ProviderErrorCode.BAD_RESPONSE, "Mirako status: the answer has no known status", retryable=True
            )
        return answer.data

    def _call(
        self, method: str, path: str, action: str, webhook_token: str | None, body: dict[str, Any] | None
    ) -> httpx.Response:
        response = send(
            self._client,
            method,
            f"{self._base_url}{path}",
            action=action,
            json=body,
            headers={"Authorization": f"Bearer {self._api_key}"},
        )
        if not response.is_success:
            message, title = problem_message(response)
            raise error_for_response(
                response, f"{action}: {message}", secrets=[self._api_key, webhook_token], provider_code=title
            )
        return response

    def verify_webhook(self, headers: Mapping[str, str], raw_body: bytes, *, token_sha256: str | None) -> WebhookNotice:
        """The job's Bearer token, in constant time. The body is undocumented: its task id is only a hint."""
        authorization = next((value for name, value in headers.items() if name.lower() == "authorization"), None)
        if not token_sha256 or not verify_webhook_token(authorization, token_sha256):
            raise InvalidWebhook("missing or wrong Bearer token")
        try:
            body = json.loads(raw_body)
        except ValueError:
            body = None
        task_id = body.get("id") if isinstance(body, dict) else None
        return WebhookNotice(request_id=task_id if isinstance(task_id, str) else None, trusted=False)
