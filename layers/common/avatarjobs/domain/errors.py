"""Domain errors. They say what went wrong in the domain's words; the HTTP layer maps them to problems."""

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from avatarjobs.domain.job import Job


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""


class JobNotFound(DomainError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} does not exist")
        self.job_id = job_id


class InvalidTransition(DomainError):
    """The event does not apply to the job's status (a duplicate, a late event, or a lost race)."""

    def __init__(self, current: StrEnum, event: StrEnum) -> None:
        super().__init__(f"{event} does not apply to a job in {current}")
        self.current = current
        self.event = event


class TransitionConflict(DomainError):
    """The job changed since it was read (another writer won the conditional update), or it is not in a state
    the update applies to. `current` is the job as the refused update found it, None when there is no such job.
    """

    def __init__(self, job_id: str, current: "Job | None" = None) -> None:
        super().__init__(f"job {job_id} was changed by another request")
        self.job_id = job_id
        self.current = current


class JobNotCancelable(DomainError):
    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job {job_id} is {status} and can no longer be canceled")
        self.job_id = job_id
        self.status = status


class IdempotencyConflict(DomainError):
    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was already used with a different request body")
        self.key = key


class InvalidInput(DomainError):
    """Input that passed the schema but not a check that needs context (the caller, a bucket).

    `fields`: (JSON Pointer without its `#`, message) for each field found wrong, the first one's named alone."""

    def __init__(self, pointer: str, message: str, *more: tuple[str, str]) -> None:
        super().__init__(message)
        self.pointer = pointer
        self.message = message
        self.fields = [(pointer, message), *more]


class InvalidQueryParameter(DomainError):
    """A query parameter that passed its own schema but not a check against another one."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name} {message}")
        self.name = name
        self.message = message


class InvalidCursor(DomainError):
    def __init__(self) -> None:
        super().__init__("the cursor is not one this API returned")


class ServiceUnavailable(DomainError):
    """A dependency failed; the request may be retried (with the same Idempotency-Key)."""
