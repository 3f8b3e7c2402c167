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
    WebhookNotice,
)
from avatarjobs.providers import ApiKey, KeySource, key_reader
from avatarjobs.providers.fal_webhook_signature import FalWebhookVerifier, InvalidSignature, http_jwks_fetcher
from avatarjobs.providers.http import error_for_response, json_object, json_or_none, send, shared_client
from avatarjobs.settings import ProviderSettings

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
    # fal's queue docs ("Check Status"): present only when a COMPLETED request failed.
    error: str | None = None
    error_type: str | None = None


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
    """What a fal webhook says, in our words. `ok` with no video_url: fetch the result (payload_error).
    A failure carries the same code and provider code as the result call gives for it (`fal_failure`)."""

    request_id: str
    ok: bool
    video_url: str | None = None
    content_type: str | None = None
    file_size: int | None = None
    error: str | None = None
    error_code: str | None = None
    provider_code: str | None = None


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


def is_fal_error_body(body: Any) -> bool:
    """fal's own error answer: a JSON object with `detail` (a model's typed list, or a request error's text)."""
    return isinstance(body, dict) and "detail" in body


def fal_error(response: httpx.Response) -> tuple[str, str | None]:
    """fal's message and error type (X-Fal-Error-Type or the body's error_type) of an error answer."""
    body = json_or_none(response)
    message, error_type = "", response.headers.get("X-Fal-Error-Type")
    if isinstance(body, dict):
        message = detail_text(body.get("detail"))
        if error_type is None and isinstance(body.get("error_type"), str):
            error_type = body["error_type"]
    return (message or f"fal answered HTTP {response.status_code}"), error_type


def fal_failure(http_status: int | None, body: Any, *, error_type_header: str | None = None) -> ProviderError:
    """The FINAL error of a request fal finished with an error, from its own error body (docs/decisions.md).

    Model errors are a 422 whose `detail` lists typed items: the first item's `type` is the provider code.
    Request errors carry `error_type` (and X-Fal-Error-Type). An app's own failure (its 500) carries neither; fal
    does not retry it, so the answer is final all the same. The result call and the ERROR webhook both come here,
    so one failure gets one code however it was learnt.
    """
    detail = body.get("detail") if isinstance(body, dict) else None
    message = detail_text(detail) or (f"fal answered HTTP {http_status}" if http_status else "fal reported an error")
    provider_code = error_type_header
    if provider_code is None and isinstance(body, dict) and isinstance(body.get("error_type"), str):
        provider_code = body["error_type"]
    if provider_code is None and isinstance(detail, list):
        typed = [item["type"] for item in detail if isinstance(item, dict) and isinstance(item.get("type"), str)]
        provider_code = typed[0] if typed else None
    request_error = isinstance(detail, str) and provider_code is not None
    refused_input = http_status == 422 and not request_error
    code = ProviderErrorCode.INVALID_REQUEST if refused_input else ProviderErrorCode.GENERATION_FAILED
    return ProviderError(code, message, kind=FailureKind.FINAL, provider_code=provider_code)


_STATUS_IN_ERROR = re.compile(r"\b([1-5][0-9]{2})\b")


def _webhook_failure(body: "_WebhookBody") -> ProviderError:
    # The ERROR webhook's `error` is fal's "Invalid status code: 422"; its payload is the result call's body.
    found = _STATUS_IN_ERROR.search(body.error or "")
    http_status = int(found[1]) if found else None
    if is_fal_error_body(body.payload):
        return fal_failure(http_status, body.payload)
    message = body.error or "fal reported an error without a message"
    return ProviderError(ProviderErrorCode.GENERATION_FAILED, message, kind=FailureKind.FINAL)


def parse_fal_webhook(raw_body: bytes) -> FalWebhookEvent:
    """Read fal's completion webhook (after its signature was verified)."""
    try:
        body = _WebhookBody.model_validate_json(raw_body)
    except ValidationError as error:
        raise InvalidWebhookBody(f"not a fal webhook body: {error.error_count()} problem(s)") from None
    if body.status == "ERROR":
        failure = _webhook_failure(body)
        return FalWebhookEvent(
            request_id=body.request_id,
            ok=False,
            error=failure.message,
            error_code=failure.code,
            provider_code=failure.provider_code,
        )
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
    # fal fetches its inputs from URLs, signs its webhooks, and cancels queued and running requests.
    capabilities = ProviderCapabilities(inputs=InputDelivery.URLS, signed_webhooks=True, cancels=True)

    def __init__(
        self,
        base_url: str,
        api_key: ApiKey,
        client: httpx.Client | None = None,
        webhook_verifier: FalWebhookVerifier | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = key_reader(api_key)
        self._client = client if client is not None else shared_client(self._base_url)
        base = httpx.URL(self._base_url)
        self._origin = (base.scheme, base.host, base.port)
        self._webhook_verifier = webhook_verifier

    def submit(
        self,
        model: str,
        inputs: dict[str, Any],
        *,
        webhook_url: str,
        webhook_token: str | None = None,
        start_within_seconds: int | None = None,
    ) -> Submission:
        """POST {base}/{model}?fal_webhook=...; fal signs its webhooks, so `webhook_token` is not used.

        `start_within_seconds` is fal's deadline to START the run: past it, fal ends the request unstarted (a 504,
        not billed) instead of keeping it queued. It goes under both of fal's names for it: X-Fal-Request-Timeout
        (the platform headers page) and X-Fal-Request-Start-Timeout (the newer API reference, which prefers it).
        A 2xx we cannot read is AMBIGUOUS: fal may hold the job (it is never submitted again).
        """
        if not _MODEL_ID.match(model) or ".." in model:
            raise ValueError(f"not a fal model id: {model!r}")
        params = {"fal_webhook": webhook_url} if webhook_url else None
        headers = self._headers()
        if start_within_seconds is not None:
            deadline = str(max(1, start_within_seconds))
            headers |= {"X-Fal-Request-Timeout": deadline, "X-Fal-Request-Start-Timeout": deadline}
        response = send(
            self._client,
            "POST",
            f"{self._base_url}/{model}",
            action="fal submit",
            params=params,
            json=inputs,
            headers=headers,
        )
        if not response.is_success:
            raise self._error(response)
        body = json_object(response, "fal submit")
        try:
            ticket = _QueueTicket.model_validate(body)
        except ValidationError:
            raise ProviderError(
                ProviderErrorCode.BAD_RESPONSE,
                "fal submit: the answer has no request id or URLs",
                kind=FailureKind.AMBIGUOUS,
            ) from None
        urls = {name: getattr(ticket, name) for name in _URL_NAMES}
        for name, url in urls.items():
            self._check_same_origin(name, url, kind=FailureKind.AMBIGUOUS)
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
                ProviderErrorCode.BAD_RESPONSE, "fal status: unknown status in the answer", kind=FailureKind.AMBIGUOUS
            ) from None
        logs = [line.message for line in status.logs or [] if line.message]
        return StatusReport(
            state=ProviderState(status.status), logs=logs, error=status.error, error_type=status.error_type
        )

    def result(self, submission: Submission) -> VideoResult:
        """GET response_url. A failed run answers its error in fal's own body: that is FINAL (`fal_failure`).
        An error without fal's body (a gateway's 502 page) or a success we cannot read is AMBIGUOUS: ask again."""
        response = send(
            self._client, "GET", self._url(submission, "response_url"), action="fal result", headers=self._headers()
        )
        if not response.is_success:
            body = json_or_none(response)
            if is_fal_error_body(body):
                raise fal_failure(
                    response.status_code, body, error_type_header=response.headers.get("X-Fal-Error-Type")
                )
            raise self._error(response)
        try:
            output = _AvatarOutput.model_validate(json_object(response, "fal result"))
        except ValidationError:
            raise ProviderError(
                ProviderErrorCode.BAD_RESPONSE, "fal result: the answer holds no video", kind=FailureKind.AMBIGUOUS
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
                ProviderErrorCode.BAD_RESPONSE, "fal cancel: unknown status in the answer", kind=FailureKind.FINAL
            )
        raise self._error(response)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Key {self._api_key()}"}

    def _error(self, response: httpx.Response) -> ProviderError:
        own_body = is_fal_error_body(json_or_none(response))
        message, error_type = fal_error(response) if own_body else ("fal", None)
        return error_for_response(
            response, message, own_body=own_body, secrets=[self._api_key()], provider_code=error_type
        )

    def _url(self, submission: Submission, name: str) -> str:
        url = submission.urls.get(name)
        if not url:
            raise ValueError(f"the fal submission {submission.request_id} has no {name}")
        self._check_same_origin(name, url)
        return url

    def _check_same_origin(self, name: str, url: str, *, kind: FailureKind = FailureKind.FINAL) -> None:
        # Our API key goes with every call to these URLs: never send it to a host other than the queue's.
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            parsed = None
        if parsed is None or (parsed.scheme, parsed.host, parsed.port) != self._origin:
            raise ProviderError(
                ProviderErrorCode.BAD_RESPONSE, f"fal's {name} is not on the queue's host {self._origin[1]}", kind=kind
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
            error_code=event.error_code,
            provider_code=event.provider_code,
        )


def plugin(config: ProviderSettings, keys: KeySource) -> FalQueueProvider:
    """fal as configured (the registry's entry, providers/__init__.py). Built once per process, so the JWKS its
    webhook verifier caches serves every warm invocation."""
    return FalQueueProvider(
        config.fal_queue_base_url,
        keys("FAL_KEY", config.fal_key_secret_arn),
        webhook_verifier=FalWebhookVerifier(http_jwks_fetcher(config.fal_jwks_url)),
    )
