"""What the domain needs from the outside world. The AWS adapters implement these; tests may swap them."""

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from avatarjobs.domain.job import Job, JobStatus
from avatarjobs.domain.messages import JobMessage


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


class JobsRepository(Protocol):
    def create(self, job: Job, idempotency: IdempotencyRecord | None) -> None:
        """Store a new job, and its idempotency record in the same transaction (IdempotencyKeyTaken if used)."""

    def get(self, job_id: str) -> Job | None: ...

    def get_idempotency_record(self, owner: str, key: str) -> IdempotencyRecord | None: ...

    def update_status(
        self, job: StoredVersion, new_status: JobStatus, *, now: str, changes: dict[str, Any] | None = None
    ) -> Job:
        """One conditional update: only if the stored job still has `job`'s status and version.

        Raises TransitionConflict when it does not, with the job as it was (`current`, None if there is none).
        Returns the job as stored after the update.
        """

    def update_fields(
        self, job: StoredVersion, *, now: str, changes: dict[str, Any], remove: tuple[str, ...] = ()
    ) -> Job:
        """Change fields but not the status, under the same condition as update_status (TransitionConflict)."""

    def claim_for_dispatch(self, job_id: str, *, now: str, lease_until: str, webhook_token_sha256: str) -> Job:
        """One conditional update without a read: an ACCEPTED job that no dispatcher holds gets the lease, the
        hash of this attempt's webhook token and one more attempt. TransitionConflict otherwise, with the job as
        it was (None when there is none)."""

    def enter_finalizing(
        self,
        job_id: str,
        *,
        from_statuses: Collection[JobStatus],
        expected: Mapping[str, str],
        now: str,
        changes: dict[str, Any],
    ) -> Job:
        """One conditional update without a read: the job moves to FINALIZING if its status is one of
        `from_statuses` and each field of `expected` has the given value. TransitionConflict otherwise, with the
        job as it was (None when there is none)."""

    def list_in_status(self, status: JobStatus, *, changed_before: str) -> list[Job]:
        """Jobs in `status` since before `changed_before` (the by_status index), oldest first."""

    def list_for_owner(
        self, owner: str, *, status: JobStatus | None, limit: int, after_job_id: str | None
    ) -> tuple[list[Job], str | None]:
        """Newest first; returns the page and the job id to continue after (None on the last page)."""


class JobQueue(Protocol):
    def send(self, message: JobMessage) -> None: ...


class MediaStore(Protocol):
    inputs_bucket: str

    def put_input(self, key: str, data: bytes, content_type: str) -> None: ...

    def presign_upload(self, key: str, *, content_type: str, size: int, expires_in: int) -> str: ...

    def presign_download(self, bucket: str, key: str, *, expires_in: int) -> str: ...

    def read_input(self, key: str, *, max_bytes: int) -> tuple[bytes, str]:
        """An object of the inputs bucket and its content type; InputTooLarge over `max_bytes`."""


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
