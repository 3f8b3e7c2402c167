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
import struct
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from avatarjobs.domain.ports import InputDelivery, ProviderCapabilities
from avatarjobs.domain.providers import (
    CancelOutcome,
    FailureKind,
    InvalidWebhook,
    ProviderError,
    ProviderErrorCode,
    ProviderState,
    StatusReport,
    Submission,
    VideoResult,
    VoiceProfile,
    WebhookNotice,
)
from avatarjobs.providers import ApiKey, KeySource, key_reader
from avatarjobs.providers.http import error_for_response, json_object, json_or_none, redact, send, shared_client
from avatarjobs.settings import ProviderSettings

MODEL = "talking-avatar"
PREMADE_VOICES_PATH = "/v1/voice/premade_profiles"  # GetPremadeVoiceProfiles
CUSTOM_VOICES_PATH = "/v1/voice/profiles"  # GetUserVoiceProfiles: the account's cloned voices
NO_TASK_ID_MESSAGE = "Failed to get valid task_id from server."
VIDEO_CONTENT_TYPE = "video/mp4"  # the spec: "The URL of the output MP4 video"
_FINAL_FAILURES = {ProviderState.FAILED, ProviderState.CANCELED, ProviderState.TIMED_OUT}
_AUTH_SCHEME = "bearer"
_PROBLEM_JSON = "application/problem+json"
# The spec calls `b64_audio_str` "PCM s16 audio data"; its example decodes to a WAV header of 16 kHz, mono, 16-bit.
SPEECH_SAMPLE_RATE = 16_000
SPEECH_CHANNELS = 1
_SAMPLE_BYTES = 2
# Audio files talking-avatar can take as they are, by their first bytes (raw PCM has no header at all).
_AUDIO_FILE_MAGIC = (b"RIFF", b"ID3", b"OggS", b"fLaC", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b"\xff\xf1", b"\xff\xf9")
SPEECH_UNCONFIRMED_MESSAGE = (
    "Mirako text-to-speech: the answer was lost after the request was sent; it is not asked again, so that the "
    "speech is not paid twice, and no video was ordered"
)


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


class _VoiceProfile(BaseModel):
    """PresignedVoiceProfile: only `id` is required by the spec."""

    id: str
    name: str | None = None
    description: str | None = None
    languages: list[str] | None = None
    status: str | None = None
    sample_clip: str | None = None


class _VoiceProfiles(BaseModel):
    data: list[_VoiceProfile | None] | None  # "nullable: true": a Go nil slice, i.e. none, comes as null


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


def speech_as_audio_file(audio: bytes) -> bytes:
    """Mirako's speech as an audio file talking-avatar takes: an audio file as it is, raw PCM s16 in a WAV."""
    if audio.startswith(_AUDIO_FILE_MAGIC):
        return audio
    if len(audio) % (_SAMPLE_BYTES * SPEECH_CHANNELS):
        raise ProviderError(
            ProviderErrorCode.BAD_RESPONSE,
            "Mirako text-to-speech returned neither an audio file nor whole 16-bit PCM samples",
            kind=FailureKind.FINAL,
        )
    byte_rate = SPEECH_SAMPLE_RATE * SPEECH_CHANNELS * _SAMPLE_BYTES
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(audio),
        b"WAVE",
        b"fmt ",
        16,  # the fmt chunk's size for PCM
        1,  # PCM
        SPEECH_CHANNELS,
        SPEECH_SAMPLE_RATE,
        byte_rate,
        SPEECH_CHANNELS * _SAMPLE_BYTES,
        8 * _SAMPLE_BYTES,
        b"data",
        len(audio),
    )
    return header + audio


def _b64(value: Any, name: str) -> str:
    if not isinstance(value, bytes | bytearray) or not value:
        raise ValueError(f"Mirako input {name!r} must be non-empty bytes")
    return base64.b64encode(value).decode("ascii")


def _decoded(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _is_problem(response: httpx.Response) -> bool:
    """Mirako's own error answer (the spec's ErrorModel, served as application/problem+json)."""
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    body = json_or_none(response)
    return content_type == _PROBLEM_JSON or (isinstance(body, dict) and ("title" in body or "status" in body))


class MirakoProvider:
    name = "mirako"
    # talking-avatar takes the image and the audio as base64 in the request (`image`, `audio`), or speech from
    # `text` with a `voice_profile_id`; it authenticates its webhook by our per-job token only; it has no cancel.
    capabilities = ProviderCapabilities(
        inputs=InputDelivery.BYTES,
        byte_inputs={"image_url": "image", "audio_url": "audio"},
        passed_inputs=("text", "voice_profile_id"),
        signed_webhooks=False,
        cancels=False,
    )

    def __init__(self, base_url: str, api_key: ApiKey, client: httpx.Client | None = None) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = key_reader(api_key)
        self._client = client if client is not None else shared_client(self._base_url)

    def submit(
        self,
        model: str,
        inputs: dict[str, Any],
        *,
        webhook_url: str,
        webhook_token: str | None,
        start_within_seconds: int | None = None,
    ) -> Submission:
        """Generate a talking avatar from `image` + `audio` bytes, or `image` + `text` spoken by `voice_profile_id`.

        The request body holds exactly image, audio and webhook: the spec forbids other fields (so Mirako gets no
        start deadline). A 200 without a task id is AMBIGUOUS: the task may exist, and is never ordered again.
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
            # The n8n node's words for this case; the task may or may not exist: its webhook may still tell.
            raise ProviderError(ProviderErrorCode.BAD_RESPONSE, NO_TASK_ID_MESSAGE, kind=FailureKind.AMBIGUOUS)
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
                redact(message, [self._api_key()]),
                kind=FailureKind.FINAL,
                provider_code=task.status,
            )
        if task.status != ProviderState.COMPLETED:
            raise ProviderError(
                ProviderErrorCode.NOT_READY, f"Mirako reports the task {task.status}", kind=FailureKind.RETRY
            )
        if not task.file_url:
            raise ProviderError(
                ProviderErrorCode.BAD_RESPONSE,
                "Mirako reports the task COMPLETED without a file_url",
                kind=FailureKind.AMBIGUOUS,
            )
        return VideoResult(url=task.file_url, content_type=VIDEO_CONTENT_TYPE, duration_seconds=task.output_duration)

    def cancel(self, submission: Submission) -> CancelOutcome:
        """Mirako's API has no cancel operation, so nothing is sent and the task runs to its end.

        The caller keeps the job in CANCEL_REQUESTED and follows the task's final state (the video of a task
        that completes anyway is paid for, so it is kept).
        """
        return CancelOutcome.UNSUPPORTED

    def voice_profiles(self) -> list[VoiceProfile]:
        """The premade voice profiles, then the account's custom (cloned) ones: what `voice_profile_id` may name."""
        return [
            *self._voice_profiles(PREMADE_VOICES_PATH, "Mirako premade voice profiles", premade=True),
            *self._voice_profiles(CUSTOM_VOICES_PATH, "Mirako voice profiles", premade=False),
        ]

    # -- calls ----------------------------------------------------------------------------------------------

    def _voice_profiles(self, path: str, action: str, *, premade: bool) -> list[VoiceProfile]:
        response = self._call("GET", path, action, None, None)
        try:
            answer = _VoiceProfiles.model_validate(json_object(response, action))
        except ValidationError:
            message = f"{action}: the answer is not a list of profiles"
            raise ProviderError(ProviderErrorCode.BAD_RESPONSE, message, kind=FailureKind.RETRY) from None
        return [
            VoiceProfile(
                id=profile.id,
                name=profile.name,
                description=profile.description,
                languages=tuple(profile.languages or ()),
                premade=premade,  # the list it came from says; is_premade is optional in the spec
                status=profile.status,
                sample_clip_url=profile.sample_clip,
            )
            for profile in answer.data or []
            if profile is not None
        ]

    def _speech(self, text: str, voice_profile_id: str, webhook_token: str | None) -> str:
        """The speech as base64 of an audio file. A speech request that may have been received is not sent again:
        the job fails (FINAL) with SPEECH_UNCONFIRMED_MESSAGE rather than risk paying twice."""
        body = {"text": text, "voice_profile_id": voice_profile_id, "return_type": "b64_audio_str"}
        try:
            response = self._call("POST", "/v1/speech/tts", "Mirako text-to-speech", webhook_token, body)
            answer = json_object(response, "Mirako text-to-speech")
        except ProviderError as error:
            if error.kind is FailureKind.AMBIGUOUS:
                raise ProviderError(error.code, SPEECH_UNCONFIRMED_MESSAGE, kind=FailureKind.FINAL) from None
            raise
        try:
            speech = _SpeechAnswer.model_validate(answer)
        except ValidationError:
            speech = _SpeechAnswer()
        audio = _decoded(speech.data.b64_audio_str or "") if speech.data else b""
        if not audio:
            raise ProviderError(
                ProviderErrorCode.BAD_RESPONSE, "Mirako text-to-speech returned no usable audio", kind=FailureKind.FINAL
            )
        return base64.b64encode(speech_as_audio_file(audio)).decode("ascii")

    def _status(self, submission: Submission) -> _TaskStatus:
        path = f"/v1/video/async_generate_talking_avatar/{quote(submission.request_id, safe='')}/status"
        response = self._call("GET", path, "Mirako status", None, None)
        try:
            answer = _TaskAnswer.model_validate(json_object(response, "Mirako status"))
        except ValidationError:
            answer = _TaskAnswer()
        if answer.data is None:
            # The reconciler asks again on its next round, until the job's deadline.
            raise ProviderError(
                ProviderErrorCode.BAD_RESPONSE,
                "Mirako status: the answer has no known status",
                kind=FailureKind.AMBIGUOUS,
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
            headers={"Authorization": f"Bearer {self._api_key()}"},
        )
        if not response.is_success:
            own_body = _is_problem(response)
            message, title = problem_message(response) if own_body else ("", None)
            raise error_for_response(
                response,
                f"{action}: {message}" if own_body else action,
                own_body=own_body,
                secrets=[self._api_key(), webhook_token],
                provider_code=title,
            )
        return response

    def verify_webhook(self, headers: Mapping[str, str], raw_body: bytes, *, token_sha256: str | None) -> WebhookNotice:
        """The job's Bearer token, in constant time. The spec calls the body's `id` only "the id of the request":
        it is passed on as a hint (`request_id`, untrusted), never as the task id."""
        authorization = next((value for name, value in headers.items() if name.lower() == "authorization"), None)
        if not token_sha256 or not verify_webhook_token(authorization, token_sha256):
            raise InvalidWebhook("missing or wrong Bearer token")
        try:
            body = json.loads(raw_body)
        except ValueError:
            body = None
        task_id = body.get("id") if isinstance(body, dict) else None
        return WebhookNotice(request_id=task_id if isinstance(task_id, str) else None, trusted=False)


def plugin(config: ProviderSettings, keys: KeySource) -> MirakoProvider:
    """Mirako as configured (the registry's entry, providers/__init__.py)."""
    return MirakoProvider(config.mirako_base_url, keys("MIRAKO_API_KEY", config.mirako_key_secret_arn))
