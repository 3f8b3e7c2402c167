"""What the domain needs from the outside world. The AWS adapters implement these; tests may swap them."""

from dataclasses import dataclass
from typing import Any, Protocol

from avatarjobs.domain.job import Job, JobStatus


@dataclass(frozen=True)
class IdempotencyRecord:
    owner: str
    key: str
    job_id: str
    fingerprint: str
    expiration: int


class IdempotencyKeyTaken(Exception):
    """Another request stored the same (owner, Idempotency-Key) first."""


class JobsRepository(Protocol):
    def create(self, job: Job, idempotency: IdempotencyRecord | None) -> None:
        """Store a new job, and its idempotency record in the same transaction (IdempotencyKeyTaken if used)."""

    def get(self, job_id: str) -> Job | None: ...

    def get_idempotency_record(self, owner: str, key: str) -> IdempotencyRecord | None: ...

    def update_status(self, job: Job, new_status: JobStatus, *, now: str, changes: dict[str, Any] | None = None) -> Job:
        """One conditional update: only if the stored job still has `job`'s status and version.

        Raises TransitionConflict when it does not. Returns the job as stored after the update.
        """

    def update_fields(self, job: Job, *, now: str, changes: dict[str, Any], remove: tuple[str, ...] = ()) -> Job:
        """Change fields but not the status, under the same condition as update_status (TransitionConflict)."""

    def mark_enqueued(self, job_id: str, *, now: str, field: str = "enqueued_at") -> None:
        """Note that a job's message was queued (`enqueued_at` for dispatch, `finalize_enqueued_at`)."""

    def list_in_status(self, status: JobStatus, *, changed_before: str) -> list[Job]:
        """Jobs in `status` since before `changed_before` (the by_status index), oldest first."""

    def list_for_owner(
        self, owner: str, *, status: JobStatus | None, limit: int, after_job_id: str | None
    ) -> tuple[list[Job], str | None]:
        """Newest first; returns the page and the job id to continue after (None on the last page)."""


class JobQueue(Protocol):
    def send(self, job_id: str) -> None: ...


class MediaStore(Protocol):
    inputs_bucket: str

    def put_input(self, key: str, data: bytes, content_type: str) -> None: ...

    def presign_upload(self, key: str, *, content_type: str, size: int, expires_in: int) -> str: ...

    def presign_download(self, bucket: str, key: str, *, expires_in: int) -> str: ...

    def read_input(self, key: str, *, max_bytes: int) -> tuple[bytes, str]:
        """An object of the inputs bucket and its content type; InputTooLarge over `max_bytes`."""


class InputTooLarge(Exception):
    pass
