"""Copies a finished job's video into our bucket, then FINALIZING -> SUCCEEDED (or FAILED for good).

The copy goes to a key fixed by the job id, so a redelivered message after a crash overwrites the same
object; the conditional transition lets only one SUCCEEDED happen.
"""

from collections.abc import Callable
from typing import Protocol

from avatarjobs.domain.errors import TransitionConflict
from avatarjobs.domain.job import Job, JobError, JobOutput, JobStatus, isoformat, utc_now
from avatarjobs.domain.ports import JobsRepository
from avatarjobs.domain.provider_progress import submission_of
from avatarjobs.domain.retries import retry_later_or_fail
from avatarjobs.domain.video_copy import CopyFailed
from avatarjobs.observability import logger
from avatarjobs.providers.base import Provider, ProviderError


class Copier(Protocol):
    def copy(self, job_id: str, provider: str, url: str) -> JobOutput: ...


class Finalizer:
    def __init__(self, jobs: JobsRepository, providers: Callable[[str], Provider], copier: Copier) -> None:
        self._jobs = jobs
        self._providers = providers
        self._copier = copier

    def finalize(self, job_id: str) -> None:
        job = self._jobs.get(job_id)
        if job is None or job.status != JobStatus.FINALIZING:
            logger.info("nothing to finalize", extra={"job_id": job_id, "status": job.status if job else None})
            return
        try:
            output = self._copier.copy(job.job_id, job.provider, self._video_url(job))
        except CopyFailed as copy_failure:
            failed = JobError(code="COPY_FAILED", message=copy_failure.reason, retryable=copy_failure.retryable)
            retry_later_or_fail(self._jobs, job, failed, step="finalize")
            return
        except ProviderError as provider_error:
            failed = JobError(code=provider_error.code, message=provider_error.message,
                              retryable=provider_error.retryable)  # fmt: skip
            retry_later_or_fail(self._jobs, job, failed, step="finalize")
            return
        try:
            self._jobs.update_status(
                job, JobStatus.SUCCEEDED, now=isoformat(utc_now()), changes={"output": output.model_dump()}
            )
        except TransitionConflict:
            current = self._jobs.get(job_id)
            if current is None or current.status != JobStatus.SUCCEEDED:
                raise
            return  # a redelivered message finished it first
        logger.info("job succeeded", extra={"job_id": job_id, "size": output.size})

    def _video_url(self, job: Job) -> str:
        if job.provider_result is not None and job.provider_result.video_url:
            return job.provider_result.video_url
        # fal's webhook may come without its payload (payload_error): the result call still has it.
        return self._providers(job.provider).result(submission_of(job)).url
