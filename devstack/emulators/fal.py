"""fal's queue API for the four ai-avatar models on loopback (DESIGN.md "Providers", seeds/fal-ai-avatar-multitalk.txt).

Wire format and quirks as fal has them:
- `POST /{model}?fal_webhook=<url>` with `Authorization: Key <key>`: 401 without a good key, 422 with FastAPI's
  `{"detail":[{"loc":["body",field],"msg","type"}]}` for a bad input, else the queue ticket. Its status,
  response and cancel URLs drop the model's sub-path: `/fal-ai/ai-avatar/requests/{id}[/status|/cancel]`.
- status: 202 while IN_QUEUE or IN_PROGRESS, 200 once COMPLETED, which a failed run is too: only the result
  call has the error itself (the status document has `error` and `error_type`). Errors come in fal's two shapes:
  a model error is 422 with `{"detail":[{loc,msg,type,url,input}]}` and X-Fal-Retryable; a request
  (infrastructure) error is `{"detail": str, "error_type"}` with X-Fal-Error-Type; an app's own 500 is its body.
- `X-Fal-Request-Timeout: <seconds>` on a submit: a run not started by then ends with a request_timeout (504).
- cancel: OK (removed from the queue), CANCELLATION_REQUESTED (running: stopped), ALREADY_COMPLETED, NOT_FOUND.
- webhook: the result (or the error), signed with ED25519 like fal's; the public key at /.well-known/jwks.json.
The result is a real MP4 of the input face speaking the input audio, or espeak-ng's speech of the text.
"""

import base64
import hashlib
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from nacl.signing import SigningKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from devstack import media
from devstack.emulators.fault_knobs import answer_of_submit
from devstack.emulators.http_serving import Request, Response, json_response
from devstack.emulators.outbound import InputUnavailable, fetch_input
from devstack.emulators.runs import Run
from devstack.emulators.server import Emulator, run_from_command_line, truncated
from devstack.emulators.settings import EmulatorSettings

APP = "fal-ai/ai-avatar"  # the queue app: every model's status, result and cancel URLs live under it
USER_ID = "local-emulator-user"
# The seed's text says 81 to 129 frames (its defaults say otherwise: see DESIGN.md).
NUM_FRAMES_MIN, NUM_FRAMES_MAX = 81, 129
RESOLUTION_HEIGHTS = {"480p": 480, "720p": 720}
DOWNLOAD_ERROR = "Failed to download the file. Please check if the URL is accessible and try again."
ERRORS_URL = "https://docs.fal.ai/errors"  # a model error's `url` is its type's anchor on this page
# fal's time-to-start deadline; its newest reference renames it and prefers the new name when both are sent.
START_TIMEOUT_HEADERS = ("x-fal-request-start-timeout", "x-fal-request-timeout")
START_TIMEOUT_MIN_SECONDS = 0.1  # fal's minimum: the value must be greater
APP_ERROR_DETAIL = "Internal Server Error"

Voice = Literal[
    "Aria", "Roger", "Sarah", "Laura", "Charlie", "George", "Callum", "River", "Liam", "Charlotte",
    "Alice", "Matilda", "Will", "Jessica", "Eric", "Chris", "Brian", "Daniel", "Lily", "Bill",
]  # fmt: skip


class _AvatarInput(BaseModel):
    # fal's endpoints are FastAPI + pydantic: unknown fields are ignored, and the errors have its shape.
    model_config = ConfigDict(extra="ignore")

    image_url: str
    num_frames: int | None = Field(default=None, ge=NUM_FRAMES_MIN, le=NUM_FRAMES_MAX)
    resolution: Literal["480p", "720p"] = "480p"
    seed: int | None = None
    acceleration: Literal["none", "regular", "high"] = "regular"


class SingleAudioInput(_AvatarInput):
    audio_url: str
    prompt: str


class SingleTextInput(_AvatarInput):
    text_input: str
    voice: Voice
    prompt: str


class MultiAudioInput(_AvatarInput):
    first_audio_url: str
    second_audio_url: str | None = None
    use_only_first_audio: bool = False
    prompt: str


class MultiTextInput(_AvatarInput):
    first_text_input: str
    second_text_input: str
    voice1: Voice = "Sarah"
    voice2: Voice = "Roger"
    prompt: str


MODELS: dict[str, type[_AvatarInput]] = {
    "fal-ai/ai-avatar": SingleAudioInput,
    "fal-ai/ai-avatar/single-text": SingleTextInput,
    "fal-ai/ai-avatar/multi": MultiAudioInput,
    "fal-ai/ai-avatar/multi-text": MultiTextInput,
}


@dataclass(frozen=True)
class Failure:
    """How a failed run answers its result call, and what its ERROR webhook says."""

    http_status: int
    detail: Any
    error_type: str | None = None  # a request (infrastructure) error's type: in the body and X-Fal-Error-Type
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        document: dict[str, Any] = {"detail": self.detail}
        if self.error_type:
            document["error_type"] = self.error_type
        return document

    def machine_type(self) -> str | None:
        """The failure's machine-readable type: a request error's error_type, or a model error's detail type.

        None for an app's own error body (its 500 says only `detail`).
        """
        if self.error_type:
            return self.error_type
        if isinstance(self.detail, list) and self.detail and isinstance(self.detail[0], dict):
            return str(self.detail[0].get("type")) if self.detail[0].get("type") else None
        return None

    def response_headers(self) -> dict[str, str]:
        return {**self.headers, **({"X-Fal-Error-Type": self.error_type} if self.error_type else {})}

    def message(self) -> str:
        if isinstance(self.detail, list) and self.detail and isinstance(self.detail[0], dict):
            return str(self.detail[0].get("msg", ""))
        return str(self.detail)


@dataclass
class FalRun(Run):
    model: str = ""
    inputs: _AvatarInput | None = None
    urls: dict[str, str] = field(default_factory=dict)
    output: dict[str, Any] | None = None
    failure: Failure | None = None
    payload_error: bool = False
    app_error: bool = False  # the model app answers 500 (fal does not retry it)
    start_timeout_seconds: float | None = None
    start_timeout_expired: bool = False


class FalEmulator(Emulator):
    name: ClassVar[str] = "fal"
    environment_prefix: ClassVar[str] = "FAL_EMULATOR_"

    def __init__(self, settings: EmulatorSettings | None = None, *, api_key: str | None = None, port: int = 0) -> None:
        super().__init__(settings, api_key=api_key, port=port)
        # A new key per emulator, like a rotation: the pipeline must fetch the JWKS, never pin a key.
        self._signing_key = SigningKey.generate()

    def result_content_type(self) -> str:
        return "application/octet-stream"  # what fal.media answers for MP4s

    # -- routes -----------------------------------------------------------------------------------------------

    def route(self, request: Request) -> Response:
        path = request.path.strip("/")
        if request.method == "GET" and path == ".well-known/jwks.json":
            return json_response(200, self.jwks())
        if not self._authorized(request):
            return self.reject(json_response(401, {"detail": "Invalid or missing API key"}), path=request.path)
        prefix = f"{APP}/requests/"
        if path.startswith(prefix):
            request_id, _, action = path.removeprefix(prefix).partition("/")
            return self._request_route(request, request_id, action)
        if request.method == "POST" and path in MODELS:
            return self._submit(request, path)
        if request.method == "POST" and path.startswith(f"{APP}/requests"):
            return json_response(405, {"detail": "Method Not Allowed"})
        return json_response(404, {"detail": f"Application '{path}' not found"})

    def _authorized(self, request: Request) -> bool:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "key" or not key.strip():
            return False
        return self.api_key is None or secrets.compare_digest(key.strip(), self.api_key)

    def _request_route(self, request: Request, request_id: str, action: str) -> Response:
        run = self.runs.get(request_id)
        handlers = {("GET", "status"): self._status, ("GET", ""): self._result, ("PUT", "cancel"): self._cancel}
        handler = handlers.get((request.method, action))
        if handler is None:
            return json_response(405 if action in ("status", "", "cancel") else 404, {"detail": "Not Found"})
        if not isinstance(run, FalRun):
            if action == "cancel":
                return json_response(404, {"status": "NOT_FOUND"})
            return json_response(404, {"detail": f"Request {request_id} not found"})
        return handler(request, run)

    # -- submit -----------------------------------------------------------------------------------------------

    def _submit(self, request: Request, model: str) -> Response:
        settings = self.settings.current()
        webhook_url = request.query_value("fal_webhook") or ""
        refusal = self.faults.submit_refusal(webhook_url)
        if refusal == "server_error":
            body = {"detail": "Service temporarily unavailable, please retry."}
            response = json_response(503, body, headers={"X-Fal-Retryable": "true"})
            return self.reject(response, model=model, webhook_url=webhook_url, fault=refusal)
        if refusal == "rate_limit":
            headers = {"Retry-After": str(settings.retry_after_seconds)}
            response = json_response(429, {"detail": "Rate limit exceeded"}, headers=headers)
            return self.reject(response, model=model, webhook_url=webhook_url, fault=refusal)
        start_timeout = _start_timeout(request)
        if isinstance(start_timeout, Response):
            return self.reject(start_timeout, model=model, webhook_url=webhook_url)
        try:
            inputs = MODELS[model].model_validate_json(request.body or b"null")
        except ValidationError as error:
            return self.reject(json_response(422, {"detail": validation_detail(error)}), model=model)
        request_id = str(uuid.uuid4())
        root = f"{self.base_url}/{APP}/requests/{request_id}"
        caller = webhook_url or request_id
        failing = self.settings.take("fail_runs")
        app_error = not failing and (
            self.settings.take("app_error_runs") or self.faults.selects("app_error_fraction", caller)
        )
        run = FalRun(
            request_id=request_id,
            webhook_url=webhook_url or None,
            model=model,
            inputs=inputs,
            urls={"status_url": f"{root}/status", "response_url": root, "cancel_url": f"{root}/cancel"},
            inject_failure=failing,
            drop_webhook=self.faults.drops_webhook(caller),
            media_errors=not failing and not app_error and self.settings.take("media_error_runs"),
            payload_error=self.settings.take("webhook_payload_errors"),
            app_error=app_error,
            submit_answer=self.faults.submit_answer_fault(caller),
            start_timeout_seconds=start_timeout,
            start_deadline=None if start_timeout is None else time.monotonic() + start_timeout,
        )
        self.runs.add(run, lambda: self._generate(run))
        ticket = {
            "request_id": request_id,
            "status": "IN_QUEUE",
            **run.urls,
            "queue_position": self.runs.queue_position(run),
        }
        return answer_of_submit(run, json_response(200, ticket))

    # -- status, result, cancel ---------------------------------------------------------------------------------

    def _status(self, request: Request, run: FalRun) -> Response:
        with_logs = (request.query_value("logs") or "").lower() in ("1", "true")
        document: dict[str, Any] = {"status": run.status, "request_id": run.request_id, **run.urls}
        document["logs"] = list(run.logs) if with_logs else None
        if run.status == "IN_QUEUE":
            document["queue_position"] = self.runs.queue_position(run)
            return json_response(202, document)
        if run.status == "IN_PROGRESS":
            return json_response(202, document)
        if run.started_at is not None and run.finished_at is not None:
            document["metrics"] = {"inference_time": round(run.finished_at - run.started_at, 3)}
        if run.failure is not None:  # fal's queue page: both "present only if the request failed"
            document["error"] = run.failure.message()
            if (error_type := run.failure.machine_type()) is not None:
                document["error_type"] = error_type
        return json_response(200, document)

    def _result(self, request: Request, run: FalRun) -> Response:
        if run.status != "COMPLETED":
            return json_response(400, {"detail": "Request is still in progress"})
        if run.failure is not None:
            return json_response(run.failure.http_status, run.failure.body(), headers=run.failure.response_headers())
        return json_response(200, run.output, headers={"X-Fal-Request-Id": run.request_id})

    def _cancel(self, request: Request, run: FalRun) -> Response:
        if run.status == "COMPLETED":
            return json_response(400, {"status": "ALREADY_COMPLETED"})
        queued = run.status == "IN_QUEUE"
        run.cancel_requested.set()
        run.log("cancellation requested")
        # Queued: fal removes it, it never runs. Running: the model app gets the signal; ours stops.
        return (
            json_response(200, {"status": "OK"}) if queued else json_response(202, {"status": "CANCELLATION_REQUESTED"})
        )

    # -- the run ----------------------------------------------------------------------------------------------

    def _generate(self, run: FalRun) -> None:
        settings = self.settings.current()
        if not settings.instant and not self.runs.wait(run, settings.queue_seconds):
            self._end_unstarted(run)
            return
        with self.runs.worker_slot(run) as started:
            if not started:
                self._end_unstarted(run)
                return
            run.status, run.started_at = "IN_PROGRESS", time.time()
            run.log(f"Generating with {run.model}")
            if not settings.instant and not self.runs.wait(run, settings.delay_seconds):
                self._end_canceled(run, was_running=True)
                return
            self._produce(run, settings)
        if run.cancel_requested.is_set():  # canceled while the video was being made: it is thrown away
            self._end_canceled(run, was_running=True)
            return
        run.status, run.finished_at = "COMPLETED", time.time()
        run.log("Generation finished" if run.failure is None else f"Generation failed: {run.failure.message()}")
        self._send_webhook(run)

    def _produce(self, run: FalRun, settings: EmulatorSettings) -> None:
        """Sets the run's output or its failure."""
        assert run.inputs is not None
        if run.inject_failure:
            run.failure = model_error("image_url", settings.error_message, settings.error_type, run.inputs.image_url)
            return
        if run.app_error:
            run.failure = Failure(500, settings.error_message or APP_ERROR_DETAIL)
            return
        try:
            image = self._fetch(run.inputs, "image_url")
            audio = self._audio_tracks(run.inputs)
            if settings.instant:
                video = self.sample_video()
            else:
                height = RESOLUTION_HEIGHTS[run.inputs.resolution]
                video = media.make_video(image, audio, height=height)
        except _InputProblem as problem:
            run.failure = Failure(422, [problem.detail()])
            return
        except media.MediaError as error:
            # The files were fetched but are not an image or audio the model can use.
            run.failure = model_error(None, str(error), "invalid_media")
            return
        file_name = f"{run.request_id}.mp4"
        run.output = {
            "video": {
                "url": self.store_media(file_name, video),
                "content_type": self.result_content_type(),
                "file_name": file_name,
                "file_size": len(video),
            },
            "seed": run.inputs.seed if run.inputs.seed is not None else secrets.randbelow(2**31),
        }

    def _fetch(self, inputs: _AvatarInput, name: str) -> bytes:
        url = getattr(inputs, name)
        try:
            return fetch_input(url)
        except InputUnavailable as error:
            raise _InputProblem(name, url, error.reason) from None

    def _audio_tracks(self, inputs: _AvatarInput) -> list[bytes]:
        match inputs:
            case SingleAudioInput():
                return [self._fetch(inputs, "audio_url")]
            case MultiAudioInput():
                tracks = [self._fetch(inputs, "first_audio_url")]
                if inputs.second_audio_url and not inputs.use_only_first_audio:
                    tracks.append(self._fetch(inputs, "second_audio_url"))
                return tracks
            case SingleTextInput():
                return [media.speak(inputs.text_input, inputs.voice)]
            case MultiTextInput():
                return [
                    media.speak(inputs.first_text_input, inputs.voice1),
                    media.speak(inputs.second_text_input, inputs.voice2),
                ]
            case _:
                raise AssertionError(f"no audio for {type(inputs).__name__}")

    def _end_unstarted(self, run: FalRun) -> None:
        """A run that never left the queue: canceled, or its start deadline passed (or the emulator stops)."""
        if run.start_overdue():
            self._end_start_timeout(run)
        else:
            self._end_canceled(run, was_running=False)

    def _end_start_timeout(self, run: FalRun) -> None:
        # fal's start_timeout: no runner began before the deadline, so the request ends with a request error.
        headers = {"X-Fal-Request-Timeout-Type": "user"}
        run.failure = Failure(504, "Request timed out", error_type="request_timeout", headers=headers)
        run.start_timeout_expired = True
        run.status, run.finished_at = "COMPLETED", time.time()
        run.log(f"Request timed out: not started within {run.start_timeout_seconds} s")
        self._send_webhook(run)

    def _end_canceled(self, run: FalRun, *, was_running: bool) -> None:
        run.output, run.failure = None, Failure(400, "Request was cancelled")
        run.status, run.finished_at = "COMPLETED", time.time()
        run.log("cancelled")
        # Removed from the queue: it never ran and fal says nothing more. Stopped while running: it ended
        # with an error, and the webhook says so. A canceled request never sends a success webhook.
        if was_running:
            self._send_webhook(run)

    # -- webhooks ---------------------------------------------------------------------------------------------

    def _send_webhook(self, run: FalRun) -> None:
        if self.stopping.is_set():
            return
        body = self.webhook_body(run)
        self.deliver_webhook(run, body, lambda: self.signature_headers(run, body))

    def webhook_body(self, run: FalRun) -> bytes:
        document: dict[str, Any] = {"request_id": run.request_id, "gateway_request_id": run.request_id}
        if run.failure is not None:
            document |= {
                "status": "ERROR",
                "payload": run.failure.body(),
                "error": f"Invalid status code: {run.failure.http_status}",
            }
        elif run.payload_error:
            # fal's answer when the output cannot travel in the webhook: the result call still has it.
            document |= {"status": "OK", "payload": None, "error": None, "payload_error": "Payload too large"}
        else:
            document |= {"status": "OK", "payload": run.output, "error": None}
        return json.dumps(document, separators=(",", ":")).encode()

    def signature_headers(self, run: FalRun, body: bytes) -> dict[str, str]:
        """fal's webhook signature: hex ED25519 over request id, user id, timestamp and the body's SHA-256."""
        timestamp = str(int(time.time()))
        message = "\n".join([run.request_id, USER_ID, timestamp, hashlib.sha256(body).hexdigest()]).encode()
        return {
            "X-Fal-Webhook-Request-Id": run.request_id,
            "X-Fal-Webhook-User-Id": USER_ID,
            "X-Fal-Webhook-Timestamp": timestamp,
            "X-Fal-Webhook-Signature": self._signing_key.sign(message).signature.hex(),
        }

    def jwks(self) -> dict[str, Any]:
        x = base64.urlsafe_b64encode(bytes(self._signing_key.verify_key)).rstrip(b"=").decode()
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "local-emulator", "use": "sig"}]}

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/.well-known/jwks.json"

    def describe(self, run: Run) -> dict[str, Any]:
        assert isinstance(run, FalRun)
        inputs = run.inputs.model_dump(exclude_unset=True) if run.inputs is not None else {}
        return {
            "request_id": run.request_id,
            "model": run.model,
            "input": {name: truncated(value) for name, value in inputs.items()},
            "webhook_url": run.webhook_url,
            "status": run.status,
            "outcome": None if run.status != "COMPLETED" else ("OK" if run.failure is None else "ERROR"),
            "error": run.failure.message() if run.failure is not None else None,
            "video_url": run.output["video"]["url"] if run.output else None,
            "submitted_at": run.submitted_at,
            **run.fault_record(),
            "app_error": run.app_error,
            "start_timeout_seconds": run.start_timeout_seconds,
            "start_timeout_expired": run.start_timeout_expired,
            "webhook_deliveries": list(run.webhook_deliveries),
        }


class _InputProblem(Exception):
    def __init__(self, field_name: str, url: str, reason: str) -> None:
        super().__init__(reason)
        self.field_name, self.url, self.reason = field_name, url, reason

    def detail(self) -> dict[str, Any]:
        return model_error_detail(self.field_name, f"{DOWNLOAD_ERROR} ({self.reason})", "file_download_error", self.url)


def model_error_detail(field_name: str | None, message: str, error_type: str, value: Any = None) -> dict[str, Any]:
    """One of a model error's `detail` objects, as fal's Model Errors page lists them (loc, msg, type, url, input)."""
    item: dict[str, Any] = {
        "loc": ["body", field_name] if field_name else ["body"],
        "msg": message,
        "type": error_type,
        "url": f"{ERRORS_URL}#{error_type}",
    }
    if value is not None:
        item["input"] = truncated(value)
    return item


def model_error(field_name: str | None, message: str, error_type: str, value: Any = None) -> Failure:
    """A model's refusal of its input: 422, the type inside `detail[]`, and retrying the same input will not help."""
    detail = [model_error_detail(field_name, message, error_type, value)]
    return Failure(422, detail, headers={"X-Fal-Retryable": "false"})


def _start_timeout(request: Request) -> float | Response | None:
    """The submit's X-Fal-Request-Timeout in seconds (None without one), or fal's 400 for a bad value."""
    value = next((request.headers[name] for name in START_TIMEOUT_HEADERS if name in request.headers), None)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if seconds > START_TIMEOUT_MIN_SECONDS:
        return seconds
    body = {"detail": f"X-Fal-Request-Timeout must be a number of seconds above {START_TIMEOUT_MIN_SECONDS}"}
    body["error_type"] = "bad_request"
    return json_response(400, body, headers={"X-Fal-Error-Type": "bad_request"})


def validation_detail(error: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors the way FastAPI answers them: loc starts with "body"."""
    return [
        {"loc": ["body", *item["loc"]], "msg": item["msg"], "type": item["type"]}
        for item in error.errors(include_url=False, include_context=False, include_input=False)
    ]


if __name__ == "__main__":
    run_from_command_line(FalEmulator, ("FAL_EMULATOR_API_KEY", "FAL_KEY"))
