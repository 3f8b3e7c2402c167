"""The avatarjobs HTTP API (docs/openapi.json) as a small typed client over httpx. No presentation here.

Every call raises a `CliError` subclass for the failures a user can act on: `ApiProblem` for an error
answer (problem+json), `ApiUnreachable` when no answer came, `UnexpectedResponse` for an answer that is
not the API's.
"""

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from avatarjobs_cli import __version__
from avatarjobs_cli.errors import ApiProblem, ApiUnreachable, FieldProblem, UnexpectedResponse
from avatarjobs_cli.retries import RetryPolicy
from avatarjobs_cli.schemas import (
    JobPage,
    JobView,
    ModelView,
    UploadFile,
    UploadTarget,
    VoiceList,
    job_page,
    job_view,
    model_list,
    upload_targets,
    voice_list,
)
from avatarjobs_cli.settings import API_KEY_ENV, BASE_URL_ENV, STACK_NOT_RUNNING_HINT, Connection, is_loopback

USER_AGENT = f"avatarjobs-cli/{__version__}"
TIMEOUT = httpx.Timeout(30.0, connect=10.0)

# A URL without the stage (/v1) is API Gateway's 404 not_found, whose detail says so; a 403 is the key.
_KEY_HINT = f"Check the API key (--api-key or {API_KEY_ENV})."
_HINTS = {
    401: _KEY_HINT,
    403: _KEY_HINT,
    413: "Send large media as local files (they are uploaded) or https:// URLs rather than data: URIs.",
    429: "The API key's usage plan throttled the request or its quota is spent: try again later.",
}


@dataclass(frozen=True)
class CreatedJob:
    job: JobView
    replayed: bool  # an earlier request with the same Idempotency-Key and body made this job


class ApiClient:
    def __init__(
        self,
        connection: Connection,
        *,
        timeout: httpx.Timeout = TIMEOUT,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = connection.base_url
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=f"{connection.base_url}/",
            headers={"x-api-key": connection.api_key, "user-agent": USER_AGENT, "accept": "application/json"},
            timeout=timeout,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- the routes -------------------------------------------------------------------------------------------

    def create_uploads(self, files: Sequence[UploadFile]) -> list[UploadTarget]:
        # Asking again only issues other URLs (nothing exists until the PUT), so the call is safe to repeat.
        response = self._send("POST", "/uploads", idempotent=True, json={"files": list(files)})
        targets = upload_targets(self._json(response, "POST /uploads"))
        if len(targets) != len(files):
            raise UnexpectedResponse(f"POST /uploads answered {len(targets)} uploads for {len(files)} files")
        return targets

    def create_job(self, request: Mapping[str, Any], idempotency_key: str) -> CreatedJob:
        # The same Idempotency-Key and body give back the same job, so even a lost answer is safe to repeat.
        response = self._send(
            "POST", "/jobs", idempotent=True, json=dict(request), headers={"Idempotency-Key": idempotency_key}
        )
        job = job_view(self._json(response, "POST /jobs"))
        return CreatedJob(job=job, replayed=response.headers.get("idempotent-replayed", "").lower() == "true")

    def get_job(self, job_id: str) -> JobView:
        response = self._send("GET", f"/jobs/{_segment(job_id)}", idempotent=True)
        return job_view(self._json(response, "GET /jobs/{job_id}"))

    def list_jobs(self, *, status: str | None = None, limit: int | None = None, cursor: str | None = None) -> JobPage:
        query = {name: value for name, value in (("status", status), ("limit", limit), ("cursor", cursor)) if value}
        response = self._send("GET", "/jobs", idempotent=True, params=query)
        return job_page(self._json(response, "GET /jobs"))

    def cancel_job(self, job_id: str) -> JobView:
        # Repeated on 429/503 like a GET: the API answers a repeat with the job's current state (cancel is
        # idempotent), so a repeat after a lost answer cannot turn a cancel that worked into a 409.
        response = self._send("POST", f"/jobs/{_segment(job_id)}/cancel", idempotent=True)
        return job_view(self._json(response, "POST /jobs/{job_id}/cancel"))

    def list_models(self) -> list[ModelView]:
        return model_list(self._json(self._send("GET", "/models", idempotent=True), "GET /models"))

    def list_voices(self, provider: str) -> VoiceList:
        response = self._send("GET", "/voices", idempotent=True, params={"provider": provider})
        return voice_list(self._json(response, "GET /voices"))

    # -- the plumbing ---------------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        json: object = None,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        attempt = 1
        while True:
            try:
                response = self._http.request(method, path.lstrip("/"), json=json, params=params, headers=headers)
            except httpx.HTTPError as error:
                raise self._unreachable(method, path, error) from None
            delay = self._retry.delay_before_retry(response, attempt) if idempotent else None
            if delay is None:
                break
            self._sleep(delay)
            attempt += 1
        if response.is_success:
            return response
        raise _problem(response, method, path)

    def _json(self, response: httpx.Response, route: str) -> object:
        try:
            return response.json()
        except ValueError:
            raise UnexpectedResponse(
                f"{route} answered {response.status_code} with something that is not JSON "
                f"({response.headers.get('content-type', 'no content type')}).",
                f"Is {self.base_url} the API's URL ({BASE_URL_ENV}), including the stage, e.g. /v1?",
            ) from None

    def _unreachable(self, method: str, path: str, error: httpx.HTTPError) -> ApiUnreachable:
        if isinstance(error, httpx.TimeoutException):
            message = f"{method} {path}: no answer from {self.base_url} in time ({type(error).__name__})."
        elif isinstance(error, httpx.ConnectError):
            message = f"Cannot connect to {self.base_url}: {error or type(error).__name__}."
        else:
            message = f"{method} {path} to {self.base_url} failed: {error or type(error).__name__}."
        if is_loopback(httpx.URL(self.base_url)):
            return ApiUnreachable(message, STACK_NOT_RUNNING_HINT)
        return ApiUnreachable(
            message, f"Check the base URL (--base-url or {BASE_URL_ENV}): the stack's ApiUrl output, e.g. .../v1."
        )


def _segment(value: str) -> str:
    """A job id as one path segment: an id holding '/' or '..' must not reach another route."""
    return quote(value, safe="")


def _problem(response: httpx.Response, method: str, path: str) -> ApiProblem:
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    fields = [
        FieldProblem(
            location=str(item.get("location", "body")),
            detail=str(item.get("detail", "")),
            pointer=item.get("pointer"),
            name=item.get("name"),
        )
        for item in body.get("errors") or []
        if isinstance(item, dict)
    ]
    problem = ApiProblem(
        method=method,
        path=path,
        status=status,
        title=str(body.get("title") or response.reason_phrase or "Error"),
        # API Gateway's own answers (a missing key, throttling) are {"message": ...}, not problem+json.
        detail=str(body.get("detail") or body.get("message") or ""),
        code=body.get("code"),
        fields=fields,
    )
    hint = _HINTS.get(status)
    if hint is None and status >= 500:
        hint = "The API could not serve the request now; trying again later is safe."
    if hint:
        problem.hints.append(hint)
    return problem
