"""What the domain needs from the outside world, every port in one place. The AWS adapters (adapters/) and the
provider plugins (providers/) implement these; tests swap them (composition.override, tests/support/fakes/)."""

from collections.abc import Collection, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from avatarjobs.domain.job import Job, JobOutput, JobStatus
from avatarjobs.domain.messages import JobMessage
from avatarjobs.domain.providers import (
    CancelOutcome,
    StatusReport,
    Submission,
    VideoResult,
    VoiceProfile,
    WebhookNotice,
)
from avatarjobs.domain.state_machine import JobEvent

if TYPE_CHECKING:
    from avatarjobs.domain.job_events import SubscriberEvent


@dataclass(frozen=True)
class IdempotencyRecord:
    owner: str
    key: str
    job_id: str
    fingerprint: str
    expiration: int


class StoredVersion(Protocol):
    """What a conditional update needs of a job: which one, its owner (for the owner's status index), and the
    status and version it expects to find. A Job read from the table is one; so is what a message carries."""

    @property
    def job_id(self) -> str: ...

    @property
    def owner(self) -> str: ...

    @property
    def status(self) -> JobStatus: ...

    @property
    def version(self) -> int: ...


@dataclass(frozen=True)
class KnownVersion:
    job_id: str
    owner: str
    status: JobStatus
    version: int


class IdempotencyKeyTaken(Exception):
    """Another request stored the same (owner, Idempotency-Key) first."""


class JobAlreadyExists(Exception):
    """A job with this id is stored already (ids are ULIDs: only a replayed create meets it)."""


class JobsRepository(Protocol):
    def create(self, job: Job, idempotency: IdempotencyRecord | None) -> None:
        """Store a new job, and its idempotency record in the same transaction: IdempotencyKeyTaken when the key
        is in use, JobAlreadyExists when the id is; nothing is written then."""

    def get(self, job_id: str) -> Job | None: ...

    def get_idempotency_record(self, owner: str, key: str) -> IdempotencyRecord | None: ...

    def transition(
        self, job: StoredVersion, event: JobEvent, *, now: str, changes: dict[str, Any] | None = None
    ) -> Job:
        """The only write of a job's status: the state machine's next status for `event` from `job`'s status
        (InvalidTransition, and nothing written, when the table has none), with `changes`, in one conditional
        update: only if the stored job still has `job`'s status and version.

        Raises TransitionConflict when it does not, with the job as it was (`current`, None if there is none).
        Returns the job as stored after the update.
        """

    def update_fields(
        self, job: StoredVersion, *, now: str, changes: dict[str, Any], remove: tuple[str, ...] = ()
    ) -> Job:
        """Change fields but never the status (ValueError if `changes` or `remove` names one of the status
        fields), under the same condition as transition (TransitionConflict)."""

    def claim_for_dispatch(self, job_id: str, *, now: str, lease_until: str, webhook_token_sha256: str) -> Job:
        """One conditional update without a read: an ACCEPTED job that no dispatcher holds gets the lease, the
        hash of this attempt's webhook token and one more attempt. TransitionConflict otherwise, with the job as
        it was (None when there is none)."""

    def enter_finalizing(self, job_id: str, *, expected: Mapping[str, str], now: str, changes: dict[str, Any]) -> Job:
        """PROVIDER_COMPLETED without a read, in one conditional update: the job moves to FINALIZING if its status
        is one the state machine moves on with that event and each field of `expected` has the given value.
        TransitionConflict otherwise, with the job as it was (None when there is none)."""

    def list_in_status(self, status: JobStatus, *, changed_before: str) -> list[Job]:
        """Jobs in `status` since before `changed_before` (the by_status index), oldest first."""

    def list_for_owner(
        self,
        owner: str,
        *,
        status: JobStatus | None,
        limit: int,
        after_job_id: str | None,
        filters: "JobFilters | None" = None,
    ) -> tuple[list[Job], str | None]:
        """Newest first; returns the page and the job id to continue after (None on the last page).

        With `filters`, a page holds up to `limit` matching jobs, but the search for them stops after
        JOB_LIST_MAX_EVALUATED jobs: a page may then be short, even empty, with a cursor that continues the search
        where it stopped."""


@dataclass(frozen=True)
class JobFilters:
    """What GET /jobs narrows a listing by, besides the status."""

    model: str | None = None
    created_from: datetime | None = None  # created at or after
    created_before: datetime | None = None  # created strictly before

    def __bool__(self) -> bool:
        return any(value is not None for value in (self.model, self.created_from, self.created_before))


# The most jobs one filtered listing reads before it answers (a short page and a cursor): a filter that matches
# few of an owner's jobs must not read all of them in one request (DynamoDB's Limit applies before the filter).
JOB_LIST_MAX_EVALUATED = 1000


class JobQueue(Protocol):
    def send(self, message: JobMessage) -> None: ...


class MediaStore(Protocol):
    inputs_bucket: str

    def put_input(self, key: str, data: bytes, content_type: str) -> None: ...

    def presign_upload(self, key: str, *, content_type: str, size: int, expires_in: int) -> str: ...

    def presign_download(self, bucket: str, key: str, *, expires_in: int) -> str: ...

    def read_input(self, key: str, *, max_bytes: int) -> tuple[bytes, str]:
        """An object of the inputs bucket and its content type; InputTooLarge over `max_bytes`."""

    def peek_input(self, key: str, *, head_bytes: int) -> "StoredInput | None":
        """An object of the inputs bucket's size and first `head_bytes` bytes; None when it does not exist or
        cannot be read."""


@dataclass(frozen=True)
class StoredInput:
    size: int
    head: bytes


class InputTooLarge(Exception):
    pass


@dataclass(frozen=True)
class SignedUrl:
    url: str
    valid_until: datetime  # when it stops working: its expiry, or its signing credentials' if sooner


class InputUrlSigner(Protocol):
    """Presigned GET URLs of the inputs bucket whose life is known (a provider fetches them later)."""

    inputs_bucket: str

    def presign_input(self, key: str, *, valid_for_seconds: int) -> SignedUrl: ...


class Fetcher(Protocol):
    """Reads a media input from an https URL (SSRF-safe); FetchFailed when it cannot."""

    def fetch(self, url: str, *, max_bytes: int, allowed_content_types: Collection[str]) -> tuple[bytes, str]: ...


class FetchFailed(Exception):
    """A URL could not be read: `retryable` when another try may work (a network failure, a 5xx)."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class MalformedUrl(Exception):
    """The URL cannot be parsed as the downloader would parse it."""


class DownloadStream(Protocol):
    def iter_raw(self) -> Iterator[bytes]:
        """The body's bytes as sent; raises FetchFailed when the download breaks off or passes its limit."""
        ...


class VideoDownloader(Protocol):
    """Streams a provider's video from its URL (SSRF-safe), its errors told as FetchFailed."""

    def host_and_path(self, url: str) -> tuple[str, str]:
        """The host (ASCII, IDNA) and path the download would reach, read by the downloader's own URL parser,
        so that the domain's host check and the connection agree. MalformedUrl when it cannot be parsed."""
        ...

    def open_stream(
        self, url: str, *, max_bytes: int, allowed_content_types: Collection[str]
    ) -> AbstractContextManager[DownloadStream]:
        """The checked response, its body not yet read. Raises FetchFailed (on opening and while streaming)."""
        ...


class Copier(Protocol):
    """Copies a provider's finished video into our outputs bucket (domain/video_copy.py's VideoCopier)."""

    def copy(self, job_id: str, provider: str, url: str) -> JobOutput: ...


class EventPublisher(Protocol):
    """Tells subscribers (SNS and EventBridge) of a job's terminal transition."""

    def publish(self, event: "SubscriberEvent") -> None: ...


class IntakeStore(Protocol):
    """The inputs bucket as intake sees it (adapters/intake_store.py)."""

    def read_manifest(self, bucket: str, key: str, version_or_etag: str, *, versioned: bool) -> bytes | None:
        """That exact version of the object (by version id, or only while its ETag still matches).

        None when it is gone or has been overwritten since (its newer version has a notification of its own);
        intake.ManifestTooLarge over intake.MANIFEST_MAX_BYTES, without reading the body.
        """

    def write_report(self, bucket: str, key: str, report: dict[str, Any]) -> None: ...

    def delete_report(self, bucket: str, key: str) -> None: ...


class RejectionPublisher(Protocol):
    def publish(self, detail: dict[str, Any]) -> None:
        """Put one "Avatar Video Request Rejected" event on the job bus; raise when it was not accepted."""


# -- providers ---------------------------------------------------------------------------------------------------


class InputDelivery(StrEnum):
    URLS = "urls"  # the provider fetches media itself: s3:// inputs become presigned URLs
    BYTES = "bytes"  # the provider takes the bytes in the request: we read them


@dataclass(frozen=True)
class ProviderCapabilities:
    """What the domain may count on a provider for, so that no use case needs to know which provider it is."""

    inputs: InputDelivery
    # BYTES: our media field -> the provider's input name, and the other fields passed on as they are.
    byte_inputs: Mapping[str, str] = field(default_factory=dict)
    passed_inputs: tuple[str, ...] = ()
    # The webhook authenticates itself (fal's signature) and its body is to be believed; otherwise it carries the
    # job's own token (whose hash the dispatch claim stores) and its body is only a hint (Mirako).
    signed_webhooks: bool = False
    # The provider can take a job back; without it a cancel only stops us waiting (the job runs to its end).
    cancels: bool = True


class Provider(Protocol):
    name: str
    capabilities: ProviderCapabilities

    def submit(
        self,
        model: str,
        inputs: dict[str, Any],
        *,
        webhook_url: str,
        webhook_token: str | None,
        start_within_seconds: int | None = None,
    ) -> Submission:
        """Start a generation; the provider calls `webhook_url` when it ends.

        `inputs` as the capabilities say: URLS, the model's input with media fields as fetchable https URLs;
        BYTES, the media read (bytes, under the names of `byte_inputs`) and the `passed_inputs` as they are.
        `start_within_seconds`: the provider is to drop the job, unbilled, if it has not started it by then
        (fal's X-Fal-Request-Timeout); a provider without such a deadline ignores it.
        """
        ...

    def status(self, submission: Submission) -> StatusReport: ...

    def result(self, submission: Submission) -> VideoResult:
        """The finished video. Raises a permanent ProviderError when the generation failed."""
        ...

    def cancel(self, submission: Submission) -> CancelOutcome: ...

    def verify_webhook(self, headers: Mapping[str, str], raw_body: bytes, *, token_sha256: str | None) -> WebhookNotice:
        """Authenticates a webhook call and reads it; InvalidWebhook when it is not genuine.

        Signed webhooks: the signature over the raw body (`token_sha256` is None). Otherwise the job's own token,
        against `token_sha256`, the hash stored with the dispatch claim.
        """
        ...


class VoiceProfileSource(Protocol):
    """A provider whose voices are its account's to list (Mirako's voice profiles), not a fixed set of names."""

    def voice_profiles(self) -> list[VoiceProfile]:
        """Every voice profile the account may speak with, premade ones first; ProviderError when it cannot say."""
        ...
