"""What provider calls answer and raise, as the domain sees them: no HTTP here, so the domain can decide on
them and tests can fake a provider in a few lines. The port itself (Provider, its capabilities) is in ports.py.
"""

from dataclasses import dataclass, field
from enum import StrEnum


class ProviderErrorCode(StrEnum):
    RATE_LIMITED = "PROVIDER_RATE_LIMITED"  # 429
    UNAVAILABLE = "PROVIDER_UNAVAILABLE"  # 5xx
    TIMEOUT = "PROVIDER_TIMEOUT"  # no answer in time; on a submit the provider may have accepted it
    UNREACHABLE = "PROVIDER_UNREACHABLE"  # no connection: nothing was sent
    CONNECTION_LOST = "PROVIDER_CONNECTION_LOST"  # the connection broke after the request (or part of it) left
    AUTH_FAILED = "PROVIDER_AUTH_FAILED"  # 401/403: our API key is wrong or lacks the right
    INVALID_REQUEST = "PROVIDER_INVALID_REQUEST"  # other 4xx: the provider refused the input
    GENERATION_FAILED = "GENERATION_FAILED"  # the provider ran the job and it failed
    BAD_RESPONSE = "PROVIDER_BAD_RESPONSE"  # an answer we cannot understand
    NOT_READY = "PROVIDER_NOT_READY"  # a result was asked for before the provider finished


class FailureKind(StrEnum):
    """What a failed provider call means for making it again (docs/decisions.md, "Provider failures").

    Reads (status, result) and cancels may be made again after RETRY and AMBIGUOUS alike; a submit only after
    RETRY: an AMBIGUOUS submit may have been accepted, and sending it again may pay for a second video.
    """

    RETRY = "retry"  # the request certainly never reached the provider, or the provider said it did not take it
    AMBIGUOUS = "ambiguous"  # it may have been received and acted on, and the answer does not say
    FINAL = "final"  # the provider's own answer: another try gets the same


class ProviderError(Exception):
    """A provider call failed; `kind` says whether the same call may be made again.

    `message` is safe to store on the job and show to its owner: it never holds API keys or webhook tokens.
    `retry_after` is the provider's own hint in seconds (Retry-After), when it gave one.
    `provider_code` is the provider's own name for the error (fal's error_type, Mirako's title), when given.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        kind: FailureKind,
        retry_after: float | None = None,
        provider_code: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.kind = kind
        self.retry_after = retry_after
        self.provider_code = provider_code

    @property
    def retryable(self) -> bool:
        """Whether a read or a cancel may be made again (a submit: only when `kind` is RETRY)."""
        return self.kind is not FailureKind.FINAL


@dataclass(frozen=True)
class Submission:
    """What identifies a submitted job at the provider; the job record keeps it.

    fal: `urls` holds status_url, response_url and cancel_url exactly as fal returned them (they are not
    derivable from the model name). Mirako: `urls` is empty; the task id is enough.
    """

    request_id: str
    urls: dict[str, str] = field(default_factory=dict)


class ProviderState(StrEnum):
    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"  # on fal also a failed run: the result call tells which
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    TIMED_OUT = "TIMED_OUT"


@dataclass(frozen=True)
class StatusReport:
    state: ProviderState
    logs: list[str] = field(default_factory=list)
    error: str | None = None  # fal: the failed request's message, on a COMPLETED status
    error_type: str | None = None  # fal: its machine-readable category
    video_url: str | None = None  # Mirako gives it with the status; fal only through the result call


@dataclass(frozen=True)
class VideoResult:
    url: str
    content_type: str | None = None
    file_size: int | None = None
    seed: int | None = None
    duration_seconds: float | None = None


class CancelOutcome(StrEnum):
    CANCELED = "CANCELED"  # removed before it ran: it will not finish
    CANCELLATION_REQUESTED = "CANCELLATION_REQUESTED"  # running: it may still finish, watch its final state
    ALREADY_COMPLETED = "ALREADY_COMPLETED"
    NOT_FOUND = "NOT_FOUND"
    UNSUPPORTED = "UNSUPPORTED"  # the provider has no cancel operation: the job runs to its end


@dataclass(frozen=True)
class WebhookNotice:
    """What an authenticated webhook says.

    `trusted`: the body itself can be believed (fal signs it). Otherwise it is only a hint that the job
    moved, to be confirmed through the status call (Mirako's webhook body is not documented).
    """

    request_id: str | None
    trusted: bool
    succeeded: bool | None = None
    video_url: str | None = None
    content_type: str | None = None
    file_size: int | None = None
    error: str | None = None
    error_code: str | None = None  # a failure's code, the one the result call gives for it
    provider_code: str | None = None


class UnknownProvider(Exception):
    """A webhook named a provider we do not use (answer 404)."""


class SigningKeysUnavailable(Exception):
    """The provider's signing keys could not be fetched: a webhook can be neither accepted nor refused (answer
    5xx, so the provider retries)."""


class InvalidWebhook(Exception):
    """The call is not an authentic webhook from this provider (answer 401, change nothing)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class VoiceProfile:
    """A voice a provider's text-to-speech can speak with (Mirako's PresignedVoiceProfile), as the domain keeps it.

    `premade`: one of the provider's own voices (else cloned for our account). `sample_clip_url` may be presigned:
    it stops working some time after it was listed.
    """

    id: str
    name: str | None = None
    description: str | None = None
    languages: tuple[str, ...] = ()
    premade: bool = True
    status: str | None = None
    sample_clip_url: str | None = None
