"""A step that did not happen but may on a later try: its queue message comes back after a backoff."""

import random

from avatarjobs.domain.job import Job, JobError, isoformat, utc_now
from avatarjobs.domain.ports import JobsRepository
from avatarjobs.domain.state_machine import JobEvent
from avatarjobs.observability import logger

MAX_BACKOFF_SECONDS = 900


class RetryLater(Exception):
    """The step did not happen this time but may on a later try: its message should come back after a backoff."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after

    def delay_seconds(self, receive_count: int) -> int:
        """The provider's Retry-After when given, else exponential backoff with full jitter."""
        if self.retry_after is not None:
            return min(MAX_BACKOFF_SECONDS, max(1, round(self.retry_after)))
        ceiling = min(MAX_BACKOFF_SECONDS, 10 * 2 ** max(0, receive_count - 1))
        return random.randint(max(1, ceiling // 2), ceiling)  # noqa: S311 - jitter, not security


class NoTimeToStart(RetryLater):
    """Too little of the invocation is left to start the step: nothing was tried, the job is as it was."""


def retry_later_or_fail(
    jobs: JobsRepository,
    job: Job,
    error: JobError,
    *,
    step: str,
    retry_after: float | None = None,
    release: tuple[str, ...] = (),
) -> None:
    """A step failed. If it may work later: keep the reason on the job, drop `release`d fields (a lease) and
    raise RetryLater, so the message comes back (its dead-letter queue ends the tries). Else the job FAILS."""
    now = isoformat(utc_now())
    if error.retryable:
        jobs.update_fields(job, now=now, changes={"last_error": error.model_dump()}, remove=release)
        raise RetryLater(error.message, retry_after=retry_after)
    jobs.transition(job, JobEvent.FAILED, now=now, changes={"error": error.model_dump()})
    logger.info("job failed", extra={"job_id": job.job_id, "step": step, "code": error.code})
