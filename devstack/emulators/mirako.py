"""Mirako's talking-avatar and speech API on loopback (specs/mirako-openapi.yaml, seeds/talking-avatar-n8n-node.txt).

- `POST /v1/video/async_generate_talking_avatar` (Bearer key): exactly `image`, `audio` (base64) and an optional
  `webhook` {url, auth_token}; the spec forbids other fields. -> `{"data":{"task_id","status":"IN_QUEUE"}}`.
- `GET /v1/video/async_generate_talking_avatar/{task_id}/status` -> `{"data":{"task_id","status",...}}`.
- `POST /v1/speech/tts` {text, voice_profile_id, return_type} -> `{"data":{"id","b64_audio_str",...}}` (espeak-ng).
- `GET /v1/voice/premade_profiles` and `GET /v1/voice/profiles` (Bearer key) -> `{"data": [PresignedVoiceProfile]}`;
  `data` is "nullable": the account's custom (cloned) profiles are none here, answered as null.
- Errors: application/problem+json (ErrorModel: title, status, detail, errors[{location, message}]).
- The callback: POST to the webhook url with `Authorization: Bearer <auth_token>` and a body shaped like the spec's
  GenerateTalkingAvatarWebhookRequestBody. Mirako has no cancel operation.
- `audio` is "the base64 encoded audio file": bytes that are no audio file (raw PCM samples) are refused (422).
- TTSOutput.b64_audio_str is "PCM s16 audio data": a WAV file by default, raw 16 kHz samples with speech_format=pcm.
"""

import base64
import binascii
import json
import secrets
import string
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from devstack import media
from devstack.emulators.fault_knobs import answer_of_submit
from devstack.emulators.http_serving import Request, Response, json_response
from devstack.emulators.runs import Run
from devstack.emulators.server import Emulator, run_from_command_line
from devstack.emulators.settings import EmulatorSettings

GENERATE_PATH = "/v1/video/async_generate_talking_avatar"
TTS_PATH = "/v1/speech/tts"
PREMADE_VOICES_PATH = "/v1/voice/premade_profiles"
CUSTOM_VOICES_PATH = "/v1/voice/profiles"
# PresignedVoiceProfile entries, shaped as the spec's example (its TTS here speaks any id: media.espeak_voice).
PREMADE_VOICE_PROFILES: tuple[dict[str, Any], ...] = (
    {
        "id": "a1b2c3d4-e5f6-7890-1234-567890abcdef",
        "name": "Mira Korner",
        "description": "A friendly and professional voice for customer support.",
        "languages": ["en", "yue"],
        "is_premade": True,
        "status": "READY",
        "created_at": "2023-10-01T12:00:00Z",
    },
    {
        "id": "b2c3d4e5-f6a7-8901-2345-67890abcdef1",
        "name": "Leo Calm",
        "description": "A calm, low narrator voice.",
        "languages": ["en"],
        "is_premade": True,
        "status": "READY",
        "created_at": "2023-10-01T12:00:00Z",
    },
)
PROBLEM = "application/problem+json"
VALIDATION_STATUS = 400  # a huma-style server may answer 422 for schema errors: the adapter treats both alike
TEXT_MAX_CHARS = 10_000  # TTSApiRequestBody.text maxLength
_TASK_ID_ALPHABET = string.ascii_lowercase + string.digits  # like the spec's example "xdac2o3c"
_GENERATE_FIELDS = frozenset({"image", "audio", "webhook"})
_WEBHOOK_FIELDS = frozenset({"url", "auth_token"})
_TTS_FIELDS = frozenset({"text", "voice_profile_id", "return_type", "chinese_language", "opts"})
_TTS_RETURN_TYPES = ("b64_audio_str", "file_url")
_FINAL = frozenset({"COMPLETED", "FAILED", "CANCELED", "TIMED_OUT"})
# The spec's b64_audio_str example is a WAV header of 16 kHz mono 16-bit: the rate of its raw PCM.
PCM_SAMPLE_RATE = 16_000
PCM_SAMPLE_BYTES = 2


def _webhook_url_of(body: bytes) -> str:
    """The submit's webhook URL (it names the caller's job), or "" when the body has none."""
    try:
        document = json.loads(body)
    except ValueError:
        return ""
    webhook = document.get("webhook") if isinstance(document, dict) else None
    url = webhook.get("url") if isinstance(webhook, dict) else None
    return url if isinstance(url, str) else ""


def problem(status: int, title: str, detail: str, errors: list[dict[str, Any]] | None = None) -> Response:
    document: dict[str, Any] = {"title": title, "status": status, "detail": detail}
    if errors:
        document["errors"] = errors
    return json_response(status, document, content_type=PROBLEM)


def _field_error(location: str, message: str, value: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"location": location, "message": message}
    if isinstance(value, str | int | float | bool):
        error["value"] = value if not isinstance(value, str) or len(value) <= 80 else f"{value[:80]}..."
    return error


def _decoded_base64(value: Any, location: str, errors: list[dict[str, Any]]) -> bytes:
    if not isinstance(value, str):
        errors.append(_field_error(location, "expected string", value))
        return b""
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        errors.append(_field_error(location, "expected a base64 encoded string", value))
        return b""
    if not decoded:
        errors.append(_field_error(location, "expected a non-empty base64 encoded file"))
    return decoded


def _undecodable_audio() -> Response:
    """`audio` is "the base64 encoded audio file": raw samples without a container (no WAV header) are not one."""
    message = "expected a base64 encoded audio file (WAV, MP3, ...): these bytes are no audio file"
    return problem(422, "Unprocessable Entity", "the audio cannot be decoded", [_field_error("body.audio", message)])


@dataclass
class MirakoRun(Run):
    image: bytes = b""
    audio: bytes = b""
    auth_token: str | None = None
    final_status: str | None = None
    file_url: str | None = None
    output_duration: float | None = None
    error: str | None = None
    callback_id: str | None = None  # the `id` its callback carried (None: no callback yet, or no id in it)


class MirakoEmulator(Emulator):
    name: ClassVar[str] = "mirako"
    environment_prefix: ClassVar[str] = "MIRAKO_EMULATOR_"

    def result_content_type(self) -> str:
        return self.settings.current().result_content_type

    def route(self, request: Request) -> Response:
        if not self._authorized(request):
            return self.reject(problem(401, "Unauthorized", "missing or invalid API token"), path=request.path)
        status_prefix = f"{GENERATE_PATH}/"
        if request.path == GENERATE_PATH:
            return self._submit(request) if request.method == "POST" else self._not_allowed()
        if request.path.startswith(status_prefix) and request.path.endswith("/status"):
            task_id = request.path.removeprefix(status_prefix).removesuffix("/status")
            return self._status(task_id) if request.method == "GET" else self._not_allowed()
        if request.path == TTS_PATH:
            return self._speech(request) if request.method == "POST" else self._not_allowed()
        if request.path in (PREMADE_VOICES_PATH, CUSTOM_VOICES_PATH):
            return self._voice_profiles(request.path) if request.method == "GET" else self._not_allowed()
        return problem(404, "Not Found", f"no route for {request.method} {request.path}")

    @staticmethod
    def _not_allowed() -> Response:
        return problem(405, "Method Not Allowed", "this route does not take that method")

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        return self.api_key is None or secrets.compare_digest(token.strip(), self.api_key)

    @staticmethod
    def _json_object(request: Request) -> dict[str, Any] | Response:
        try:
            body = json.loads(request.body)
        except ValueError:
            return problem(400, "Bad Request", "the request body is not valid JSON")
        if not isinstance(body, dict):
            return problem(
                VALIDATION_STATUS, "Bad Request", "validation failed", [_field_error("body", "expected object")]
            )
        return body

    # -- generation ---------------------------------------------------------------------------------------------

    def _submit(self, request: Request) -> Response:
        settings = self.settings.current()
        caller = _webhook_url_of(request.body)
        refusal = self.faults.submit_refusal(caller)
        if refusal == "server_error":
            response = problem(503, "Service Unavailable", "the service is busy, please retry")
            return self.reject(response, webhook_url=caller, fault=refusal)
        if refusal == "rate_limit":
            response = problem(429, "Too Many Requests", "rate limit exceeded")
            response.headers["Retry-After"] = str(settings.retry_after_seconds)
            return self.reject(response, webhook_url=caller, fault=refusal)
        body = self._json_object(request)
        if isinstance(body, Response):
            return self.reject(body)
        errors: list[dict[str, Any]] = []
        errors += [_field_error(f"body.{name}", "unexpected property") for name in sorted(set(body) - _GENERATE_FIELDS)]
        for name in ("image", "audio"):
            if name not in body:
                errors.append(_field_error("body", f"expected required property {name} to be present"))
        image = _decoded_base64(body["image"], "body.image", errors) if "image" in body else b""
        audio = _decoded_base64(body["audio"], "body.audio", errors) if "audio" in body else b""
        webhook_url, auth_token = self._webhook(body.get("webhook"), errors)
        if errors:
            return self.reject(problem(VALIDATION_STATUS, "Bad Request", "validation failed", errors))
        if media.audio_file_format(audio) is None:
            return self.reject(_undecodable_audio(), webhook_url=webhook_url)
        task_id = self._new_task_id()
        failing = self.settings.take("fail_runs")
        run = MirakoRun(
            request_id=task_id,
            webhook_url=webhook_url,
            image=image,
            audio=audio,
            auth_token=auth_token,
            inject_failure=failing,
            drop_webhook=self.faults.drops_webhook(webhook_url or task_id),
            media_errors=not failing and self.settings.take("media_error_runs"),
            submit_answer=self.faults.submit_answer_fault(webhook_url or task_id),
        )
        self.runs.add(run, lambda: self._generate(run))
        answer = json_response(200, {"data": {"task_id": run.request_id, "status": "IN_QUEUE"}})
        return answer_of_submit(run, answer)

    @staticmethod
    def _webhook(value: Any, errors: list[dict[str, Any]]) -> tuple[str | None, str | None]:
        if value is None:
            return None, None
        if not isinstance(value, dict):
            errors.append(_field_error("body.webhook", "expected object"))
            return None, None
        errors += [
            _field_error(f"body.webhook.{name}", "unexpected property") for name in sorted(set(value) - _WEBHOOK_FIELDS)
        ]
        url, token = value.get("url"), value.get("auth_token")
        if not isinstance(url, str):
            errors.append(_field_error("body.webhook.url", "expected required property url to be a string"))
        if token is not None and not isinstance(token, str):
            errors.append(_field_error("body.webhook.auth_token", "expected string", token))
        return (url if isinstance(url, str) else None), (token if isinstance(token, str) else None)

    def _new_task_id(self) -> str:
        return "".join(secrets.choice(_TASK_ID_ALPHABET) for _ in range(12))

    def _status(self, task_id: str) -> Response:
        run = self.runs.get(task_id)
        if not isinstance(run, MirakoRun):
            return problem(404, "Not Found", f"task {task_id} not found")
        data: dict[str, Any] = {"task_id": run.request_id, "status": run.status}
        if run.file_url is not None:
            data["file_url"] = run.file_url
        if run.output_duration is not None:
            data["output_duration"] = run.output_duration
        if run.error is not None:
            data["error"] = run.error
        return json_response(200, {"data": data})

    def _generate(self, run: MirakoRun) -> None:
        settings = self.settings.current()
        if not settings.instant and not self.runs.wait(run, settings.queue_seconds):
            return  # the emulator stops (Mirako has no cancel)
        with self.runs.worker_slot(run) as started:
            if not started:
                return
            run.status, run.started_at = "IN_PROGRESS", time.time()
            if not settings.instant and not self.runs.wait(run, settings.delay_seconds):
                return
            self._produce(run, settings)
            run.image = run.audio = b""  # not needed any more: do not hold them for the emulator's life
        run.status, run.finished_at = run.final_status or "FAILED", time.time()
        if not self.stopping.is_set():
            self.deliver_webhook(run, self.webhook_body(run), lambda: self._webhook_headers(run))

    def _produce(self, run: MirakoRun, settings: EmulatorSettings) -> None:
        if run.inject_failure:
            run.final_status, run.error = settings.failure_status, settings.error_message
            return
        try:
            video = self.sample_video() if settings.instant else media.make_video(run.image, [run.audio])
            duration = media.probe(video).duration_seconds
        except media.MediaError as error:
            run.final_status, run.error = "FAILED", f"could not generate the video: {error}"
            return
        run.file_url = self.store_media(f"{run.request_id}.mp4", video)
        run.final_status, run.output_duration = "COMPLETED", duration

    def webhook_body(self, run: MirakoRun) -> bytes:
        """Shaped like GenerateTalkingAvatarWebhookRequestBody: times in milliseconds, the output's metadata."""
        started = run.started_at or run.submitted_at
        finished = run.finished_at or time.time()
        infer_time = round(finished - started, 3)
        output: dict[str, Any] = {"id": run.request_id, "infer_time": infer_time}
        run.callback_id = self._callback_id(run)
        document: dict[str, Any] = {} if run.callback_id is None else {"id": run.callback_id}
        document |= {
            "status": run.status,
            "delayTime": int((started - run.submitted_at) * 1000),
            "executionTime": int(infer_time * 1000),
            "output": output,
        }
        if run.output_duration is not None:
            output["output_duration"] = run.output_duration
        if run.error is not None:
            document["error"] = output["error"] = run.error
        return json.dumps(document, separators=(",", ":")).encode()

    def _callback_id(self, run: MirakoRun) -> str | None:
        """The callback body's `id`: the spec calls it only "the id of the request" (see callback_id)."""
        choice = self.settings.current().callback_id
        if choice == "absent":
            return None
        return run.request_id if choice == "task_id" else self._new_task_id()

    @staticmethod
    def _webhook_headers(run: MirakoRun) -> dict[str, str]:
        return {"Authorization": f"Bearer {run.auth_token}"} if run.auth_token else {}

    # -- voice profiles -----------------------------------------------------------------------------------------

    def _voice_profiles(self, path: str) -> Response:
        if self.settings.take("server_error_voice_listings"):
            response = problem(503, "Service Unavailable", "the service is busy, please retry")
            return self.reject(response, path=path, fault="server_error")
        profiles = [dict(profile) for profile in PREMADE_VOICE_PROFILES] if path == PREMADE_VOICES_PATH else None
        return json_response(200, {"data": profiles})

    # -- speech -------------------------------------------------------------------------------------------------

    def _speech(self, request: Request) -> Response:
        body = self._json_object(request)
        if isinstance(body, Response):
            return body
        errors = [_field_error(f"body.{name}", "unexpected property") for name in sorted(set(body) - _TTS_FIELDS)]
        text, voice, return_type = body.get("text"), body.get("voice_profile_id"), body.get("return_type")
        if not isinstance(text, str) or not 1 <= len(text) <= TEXT_MAX_CHARS:
            errors.append(_field_error("body.text", f"expected a string of 1 to {TEXT_MAX_CHARS} characters"))
        if not isinstance(voice, str) or not voice:
            errors.append(_field_error("body.voice_profile_id", "expected required property voice_profile_id"))
        if return_type not in _TTS_RETURN_TYPES:
            errors.append(_field_error("body.return_type", "expected 'b64_audio_str' or 'file_url'", return_type))
        if errors:
            return problem(VALIDATION_STATUS, "Bad Request", "validation failed", errors)
        assert isinstance(text, str)
        assert isinstance(voice, str)
        try:
            wav = media.speak(text, voice)
        except media.MediaError as error:
            return problem(422, "Unprocessable Entity", str(error))
        speech_id = self._new_task_id()
        data: dict[str, Any] = {
            "id": speech_id,
            "voice_profile_id": voice,
            "output_duration": round(media.wav_duration(wav), 3),
        }
        if return_type == "file_url":
            data["file_url"] = self.store_media(f"{speech_id}.wav", wav)
        else:
            data["b64_audio_str"] = base64.b64encode(self._speech_samples(wav)).decode("ascii")
        return json_response(200, {"data": data})

    def _speech_samples(self, wav: bytes) -> bytes:
        """What b64_audio_str carries: the WAV file, or (speech_format=pcm) its raw 16 kHz mono s16le samples."""
        if self.settings.current().speech_format == "pcm":
            return media.pcm_s16le(wav, PCM_SAMPLE_RATE)
        return wav

    def describe(self, run: Run) -> dict[str, Any]:
        assert isinstance(run, MirakoRun)
        return {
            "task_id": run.request_id,
            "webhook_url": run.webhook_url,
            "has_auth_token": run.auth_token is not None,
            "status": run.status,
            "final": run.status in _FINAL,
            "file_url": run.file_url,
            "error": run.error,
            "submitted_at": run.submitted_at,
            **run.fault_record(),
            "callback_id": run.callback_id,
            "webhook_deliveries": list(run.webhook_deliveries),
        }


if __name__ == "__main__":
    run_from_command_line(MirakoEmulator, ("MIRAKO_EMULATOR_API_KEY", "MIRAKO_API_KEY"))
