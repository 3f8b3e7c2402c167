"""What the provider adapters share about HTTP: one client per base URL, timeouts that fit the invocation, and
how failures become ProviderErrors.

The clients are cached at module level so warm Lambda invocations reuse their TLS connections.
"""

from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from avatarjobs.domain.providers import FailureKind, ProviderError, ProviderErrorCode
from avatarjobs.net.timeouts import NoTimeLeft, within_deadline

CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 30.0
TIMEOUT = httpx.Timeout(connect=CONNECT_TIMEOUT_SECONDS, read=READ_TIMEOUT_SECONDS, write=30.0, pool=5.0)
MESSAGE_MAX_CHARS = 1_000  # provider messages end up on the job record and in events: keep them short
USER_AGENT = "avatarjobs/0.1"
REDACTED = "[redacted]"


_clients: dict[str, httpx.Client] = {}


def shared_client(base_url: str) -> httpx.Client:
    """One client per provider base URL for the life of the process (connection reuse across invocations)."""
    client = _clients.get(base_url)
    if client is None or client.is_closed:
        # Redirects are not followed: a provider answering 3xx is an error, and our key must not travel elsewhere.
        client = httpx.Client(
            base_url=base_url, timeout=TIMEOUT, follow_redirects=False, headers={"User-Agent": USER_AGENT}
        )
        _clients[base_url] = client
    return client


def reset_clients() -> None:
    """Close and forget the cached clients (for tests that point a provider at a new server)."""
    for client in _clients.values():
        client.close()
    _clients.clear()


class NoTimeForCall(ProviderError):
    """The invocation's deadline is too close for the call: it was not made (so it may be made again)."""

    def __init__(self, action: str, reason: NoTimeLeft) -> None:
        super().__init__(ProviderErrorCode.UNREACHABLE, f"{action}: {reason}", kind=FailureKind.RETRY)


def call_timeout(action: str) -> httpx.Timeout:
    """TIMEOUT cut to what is left before the invocation's deadline (net/timeouts.py); NoTimeForCall when too
    little is left to make the call."""
    try:
        return within_deadline(TIMEOUT)
    except NoTimeLeft as reason:
        raise NoTimeForCall(action, reason) from None


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """The text with every secret replaced, cut to a length fit for a job record."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    if len(text) > MESSAGE_MAX_CHARS:
        text = text[: MESSAGE_MAX_CHARS - 1] + "…"
    return text


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds from now: delay-seconds or an HTTP-date (RFC 9110 10.2.3); None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # an HTTP-date is always GMT; parsedate gives a naive datetime for "-0000"
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


def _fal_retryable_override(response: httpx.Response) -> FailureKind | None:
    # fal says per response whether retrying can help; its word beats our guess from the status code.
    value = response.headers.get("X-Fal-Retryable", "").strip().lower()
    return {"true": FailureKind.RETRY, "false": FailureKind.FINAL}.get(value)


def error_for_response(
    response: httpx.Response,
    message: str,
    *,
    own_body: bool,
    secrets: Iterable[str | None] = (),
    provider_code: str | None = None,
) -> ProviderError:
    """The ProviderError for a non-2xx answer (docs/decisions.md, "Provider failures").

    `message`: the provider's own message, or (when `own_body` is false) what was being done.
    `own_body`: the answer is in the provider's own error format, so the provider itself answered. A 5xx in its
    own words says it did not take the request (RETRY); a 5xx without them (an HTML page from a gateway in front
    of the provider, an empty body) may come after the provider took it (AMBIGUOUS). 429 is RETRY, any other
    4xx FINAL.
    """
    status = response.status_code
    kind = FailureKind.FINAL
    if status == httpx.codes.TOO_MANY_REQUESTS:
        code, kind = ProviderErrorCode.RATE_LIMITED, FailureKind.RETRY
    elif status >= httpx.codes.INTERNAL_SERVER_ERROR or status == httpx.codes.REQUEST_TIMEOUT:
        code = ProviderErrorCode.UNAVAILABLE if status != httpx.codes.REQUEST_TIMEOUT else ProviderErrorCode.TIMEOUT
        kind = FailureKind.RETRY if own_body else FailureKind.AMBIGUOUS
    elif status in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
        code = ProviderErrorCode.AUTH_FAILED
    elif status >= httpx.codes.BAD_REQUEST:
        code = ProviderErrorCode.INVALID_REQUEST
    else:  # 1xx/3xx: not an answer any provider documents
        code = ProviderErrorCode.BAD_RESPONSE
    override = _fal_retryable_override(response) if own_body else None
    if override is not None:
        kind = override
    if not own_body:
        prefix = f"{message}: " if message else ""
        message = f"{prefix}HTTP {status} without the provider's own error body (from a gateway in front of it?)"
    return ProviderError(
        code,
        redact(message or f"HTTP {status}", secrets),
        kind=kind,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
        provider_code=provider_code,
    )


# Raised before a byte of the request reached the network: sending it again cannot duplicate anything.
_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
)


def error_for_transport(error: httpx.TransportError, action: str) -> ProviderError:
    """A failure with no answer: RETRY only when the request certainly never left, else AMBIGUOUS.

    The message names the failure, never the request's headers.
    """
    name = type(error).__name__
    if isinstance(error, _NOT_SENT):
        return ProviderError(
            ProviderErrorCode.UNREACHABLE, f"{action}: could not connect ({name})", kind=FailureKind.RETRY
        )
    if isinstance(error, httpx.TimeoutException):
        return ProviderError(
            ProviderErrorCode.TIMEOUT, f"{action}: no answer in time ({name})", kind=FailureKind.AMBIGUOUS
        )
    # ReadError, WriteError, RemoteProtocolError (closed mid-answer or before it): the request may have arrived.
    return ProviderError(
        ProviderErrorCode.CONNECTION_LOST,
        f"{action}: the connection failed after the request was sent ({name})",
        kind=FailureKind.AMBIGUOUS,
    )


def send(client: httpx.Client, method: str, url: str, *, action: str, **kwargs: Any) -> httpx.Response:
    """client.request within the invocation's deadline, with transport failures raised as ProviderErrors of their
    kind (NoTimeForCall, a RETRY, when the deadline is too close to make the call)."""
    timeout = call_timeout(action)
    try:
        return client.request(method, url, timeout=timeout, **kwargs)
    except httpx.TransportError as error:
        raise error_for_transport(error, action) from None


def json_object(response: httpx.Response, action: str) -> dict[str, Any]:
    """The body of a 2xx answer as a JSON object, or an AMBIGUOUS BAD_RESPONSE error: a success we cannot read
    may still be one (a submit it answered may be running)."""
    body = json_or_none(response)
    if not isinstance(body, dict):
        raise ProviderError(
            ProviderErrorCode.BAD_RESPONSE, f"{action}: the answer is not a JSON object", kind=FailureKind.AMBIGUOUS
        )
    return body


def json_or_none(response: httpx.Response) -> Any:
    """The body as JSON, or None when it is not JSON (error bodies are often HTML from a proxy)."""
    try:
        return response.json()
    except ValueError:
        return None
