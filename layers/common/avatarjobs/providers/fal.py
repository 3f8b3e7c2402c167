"""fal's queue API (queue.fal.run) for the ai-avatar models: submit with a webhook, status, result, cancel.

fal answers the submit with status_url, response_url and cancel_url. They drop the model's sub-path
(`fal-ai/ai-avatar/requests/{id}` for `fal-ai/ai-avatar/single-text`), so they are stored and used as given,
never rebuilt. There is no FAILED state: a failed run is COMPLETED and its result call answers the error.
"""

import json
import re
from collections.abc import Mapping
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field, ValidationError

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
from avatarjobs.providers.fal_webhook_signature import FalWebhookVerifier, InvalidSignature
from avatarjobs.providers.http import error_for_response, json_object, json_or_none, send, shared_client

# owner/app[/endpoint...]: the model goes into the URL path, so nothing that could change the path's meaning.
_MODEL_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)+$")
_URL_NAMES = ("status_url", "response_url", "cancel_url")
_CANCEL_OUTCOMES = {
    "OK": CancelOutcome.CANCELED,
    "CANCELLATION_REQUESTED": CancelOutcome.CANCELLATION_REQUESTED,
    "ALREADY_COMPLETED": CancelOutcome.ALREADY_COMPLETED,
    "NOT_FOUND": CancelOutcome.NOT_FOUND,
}


class _QueueTicket(BaseModel):
    request_id: str = Field(min_length=1)
    status_url: str
    response_url: str
    cancel_url: str


class _LogLine(BaseModel):
    message: str = ""


class _QueueStatus(BaseModel):
    status: Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    logs: list[_LogLine] | None = None
    error: str | None = None


class FalFile(BaseModel):
    url: str = Field(min_length=1)
    content_type: str | None = None
    file_name: str | None = None
    file_size: int | None = None


class _AvatarOutput(BaseModel):
    video: FalFile
    seed: int | None = None


class _WebhookBody(BaseModel):
    request_id: str = Field(min_length=1)
    gateway_request_id: str | None = None
    status: Literal["OK", "ERROR"]
    payload: Any = None
    error: str | None = None
    payload_error: str | None = None


class FalWebhookEvent(BaseModel):
    """What a fal webhook says, in our words. `ok` with no video_url: fetch the result (payload_error)."""

    request_id: str
    ok: bool
    video_url: str | None = None
    content_type: str | None = None
    file_size: int | None = None
    error: str | None = None


class InvalidWebhookBody(ValueError):
    """The webhook body is not the JSON fal documents."""


def detail_text(detail: Any) -> str:
    """fal's `detail` as one line: a string as is, a validation list as "loc: msg; loc: msg"."""
    if detail is None:
        return ""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        return "; ".join(_validation_item_text(item) for item in detail)
    return json.dumps(detail, separators=(",", ":"), default=str)


def _validation_item_text(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    location = item.get("loc")
    where = ".".join(str(part) for part in location) if isinstance(location, list) else str(location or "")
    message = str(item.get("msg", ""))
    return f"{where}: {message}" if where else message


def fal_error(response: httpx.Response) -> tuple[str, str | None]:
    """fal's message and error type (X-Fal-Error-Type or the body's error_type) of an error answer."""
    body = json_or_none(response)
    error_type = response.headers.get("X-Fal-Error-Type")
    message = ""
    if isinstance(body, dict):
        message = detail_text(body.get("detail"))
        if error_type is None and isinstance(body.get("error_type"), str):
            error_type = body["error_type"]
    return (message or f"fal answered HTTP {response.status_code}"), error_type


def parse_fal_webhook(raw_body: bytes) -> FalWebhookEvent:
    """Read fal's completion webhook (after its signature was verified)."""
    try:
        body = _WebhookBody.model_validate_json(raw_body)
    except ValidationError as error:
        raise InvalidWebhookBody(f"not a fal webhook body: {error.error_count()} problem(s)") from None
    if body.status == "ERROR":
        payload_detail = body.payload.get("detail") if isinstance(body.payload, dict) else None
        message = detail_text(payload_detail) or body.error or "fal reported an error without a message"
        return FalWebhookEvent(request_id=body.request_id, ok=False, error=message)
    try:
        output = _AvatarOutput.model_validate(body.payload)
    except ValidationError:
        # The run succeeded but fal could not include its output: the result call still has it.
        why = body.payload_error or "the webhook payload holds no video"
        return FalWebhookEvent(request_id=body.request_id, ok=True, error=why)
    return FalWebhookEvent(
        request_id=body.request_id,
        ok=True,
        video_url=output.video.url,
        content_type=output.video.content_type,
        file_size=output.video.file_size,
    )


class FalQueueProvider:
    name = "fal"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        client: httpx.Client | None = None,
        webhook_verifier: FalWebhookVerifier | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._client = client if client is not None else shared_client(self._base_url)
        base = httpx.URL(self._base_url)
        self._origin = (base.scheme, base.host, base.port)
        self._webhook_verifier = webhook_verifier

    def submit(
        self, model: str, inputs: dict[str, Any], *, webhook_url: str, webhook_token: str | None = None
    ) -> Submission:
        """POST {base}/{model}?fal_webhook=...; fal signs its webhooks, so `webhook_token` is not used."""
        if not _MODEL_ID.match(model) or ".." in model:
            raise ValueError(f"not a fal model id: {model!r}")
        params = {"fal_webhook": webhook_url} if webhook_url else None
        response = send(
            self._client,
            "POST",
            f"{self._base_url}/{model}",
            action="fal submit",
            params=params,
            json=inputs,
            headers=self._headers(),
        )
        if not response.is_success:
            raise self._error(response)
        body = json_object(response, "fal submit")
        try:
            ticket = _QueueTicket.model_validate(body)
        except ValidationError:
            raise ProviderError(
                ProviderErrorCode.BAD_RESPONSE, "fal submit: the answer has no request id or URLs", retryable=False
            ) from None
        urls = {name: getattr(ticket, name) for name in _URL_NAMES}
        for name, url in urls.items():
            self._check_same_origin(name, url)
        return Submission(request_id=ticket.request_id, urls=urls)

    def status(self, submission: Submission) -> StatusReport:
        """GET status_url?logs=1. fal answers 202 while queued or running and 200 when completed."""
        response = send(
            self._client,
            "GET",
            self._url(submission, "status_url"),
            action="fal status",
            params={"logs": "1"},
            headers=self._headers(),
        )
        if not response.is_success:
            raise self._error(response)
        try:
            status = _QueueStatus.model_validate(json_object(response, "fal status"))
        except ValidationError:
            raise ProviderError(
                ProviderErrorCode.BAD_RESPONSE, "fal status: unknown status in the answer", retryable=True
            ) from None
        logs = [line.message for line in status.logs or [] if line.message]
        return StatusReport(state=ProviderState(status.status), logs=logs, error=status.error)

    def result(self, submission: Submission) -> VideoResult:
        """GET response_url. A failed run answers 422 (input refused) or an error body with an error type."""
        response = send(
            self._client, "GET", self._url(submission, "response_url"), action="fal result", headers=self._headers()
        )
        if not response.is_success:
            message, error_type = fal_error(response)
            if error_type is not None:
                raise ProviderError(
                    ProviderErrorCode.GENERATION_FAILED, message, retryable=False, provider_code=error_type
                )
            if response.status_code == httpx.codes.UNPROCESSABLE_ENTITY:
                raise ProviderError(ProviderErrorCode.INVALID_REQUEST, message, retryable=False)
            raise self._error(response)
        try:
            output = _AvatarOutput.model_validate(json_object(response, "fal result"))
        except ValidationError:
            raise ProviderError(
                ProviderErrorCode.BAD_RESPONSE, "fal result: the answer holds no video", retryable=False
            ) from None
        return VideoResult(
            url=output.video.url,
            content_type=output.video.content_type,
            file_size=output.video.file_size,
            seed=output.seed,
        )

    def cancel(self, submission: Submission) -> CancelOutcome:
        """PUT cancel_url. The outcome is read from the body's status, whatever the HTTP status code."""
        response = send(
            self._client, "PUT", self._url(submission, "cancel_url"), action="fal cancel", headers=self._headers()
        )
        body = json_or_none(response)
        answered = body.get("status") if isinstance(body, dict) else None
        outcome = _CANCEL_OUTCOMES.get(answered) if isinstance(answered, str) else None
        if outcome is not None:
            return outcome
        if response.status_code == httpx.codes.NOT_FOUND:
            return CancelOutcome.NOT_FOUND
        if response.is_success:
            raise ProviderError(
                ProviderErrorCode.BAD_RESPONSE, "fal cancel: unknown status in the answer", retryable=False
            )
        raise self._error(response)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Key {self._api_key}"}

    def _error(self, response: httpx.Response) -> ProviderError:
        message, error_type = fal_error(response)
        return error_for_response(response, message, secrets=[self._api_key], provider_code=error_type)

    def _url(self, submission: Submission, name: str) -> str:
        url = submission.urls.get(name)
        if not url:
            raise ValueError(f"the fal submission {submission.request_id} has no {name}")
        self._check_same_origin(name, url)
        return url

    def _check_same_origin(self, name: str, url: str) -> None:
        # Our API key goes with every call to these URLs: never send it to a host other than the queue's.
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            parsed = None
        if parsed is None or (parsed.scheme, parsed.host, parsed.port) != self._origin:
            raise ProviderError(
                ProviderErrorCode.BAD_RESPONSE,
                f"fal's {name} is not on the queue's host {self._origin[1]}",
                retryable=False,
            )

    def verify_webhook(self, headers: Mapping[str, str], raw_body: bytes, *, token_sha256: str | None) -> WebhookNotice:
        """The signature first, over the raw bytes; then the body, which must name the signed request."""
        if self._webhook_verifier is None:
            raise InvalidWebhook("no fal webhook verifier is configured")
        try:
            verified = self._webhook_verifier.verify(headers, raw_body)
        except InvalidSignature as error:
            raise InvalidWebhook(error.reason) from None
        try:
            event = parse_fal_webhook(raw_body)
        except InvalidWebhookBody as error:
            raise InvalidWebhook(str(error)) from None
        if event.request_id != verified.request_id:
            raise InvalidWebhook("the body names another request than the signed headers")
        return WebhookNotice(
            request_id=event.request_id,
            trusted=True,
            succeeded=event.ok,
            video_url=event.video_url,
            content_type=event.content_type,
            file_size=event.file_size,
            error=event.error,
        )
