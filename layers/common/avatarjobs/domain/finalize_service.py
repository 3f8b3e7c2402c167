"""Copies a finished job's video into our bucket, then FINALIZING -> SUCCEEDED (or FAILED for good).

The finalize message carries what the copy needs (the provider's video URL, the provider) and what closing
the job needs (its owner and the version it got on entering FINALIZING), so finalize starts without reading
the job. A message with only the job id (sent before the message carried more, or for a job whose result
names no URL: fal's result call has it) makes finalize read the job first, as it always did.

The copy goes to a key fixed by the job id, so a redelivered or duplicate message overwrites the same
object; the conditional transition lets only one SUCCEEDED happen. A duplicate message for a job that is
already done copies once more before that transition refuses it: the price of not reading the job first.
"""

from collections.abc import Callable

from avatarjobs.domain.errors import TransitionConflict
from avatarjobs.domain.job import Job, JobError, JobOutput, JobStatus, isoformat, utc_now
from avatarjobs.domain.messages import FinalizeMessage
from avatarjobs.domain.ports import Copier, JobsRepository, KnownVersion, Provider, StoredVersion
from avatarjobs.domain.provider_outcomes import submission_of
from avatarjobs.domain.providers import ProviderError
from avatarjobs.domain.retries import RetryLater, retry_later_or_fail
from avatarjobs.domain.state_machine import JobEvent
from avatarjobs.domain.video_copy import CopyFailed
from avatarjobs.observability import logger


class Finalizer:
    def __init__(self, jobs: JobsRepository, providers: Callable[[str], Provider], copier: Copier) -> None:
        self._jobs = jobs
        self._providers = providers
        self._copier = copier

    def finalize(self, message: FinalizeMessage) -> None:
        if message.video_url and message.provider and message.owner and message.version is not None:
            version = KnownVersion(message.job_id, message.owner, JobStatus.FINALIZING, message.version)
            self._copy(version, message.provider, message.video_url, read=None)
            return
        job = self._jobs.get(message.job_id)
        if job is None or job.status != JobStatus.FINALIZING:
            logger.info("nothing to finalize", extra={"job_id": message.job_id, "status": job.status if job else None})
            return
        try:
            url = self._video_url(job)
        except ProviderError as provider_error:
            failed = JobError(code=provider_error.code, message=provider_error.message,
                              retryable=provider_error.retryable)  # fmt: skip
            retry_later_or_fail(self._jobs, job, failed, step="finalize")
            return
        self._copy(job, job.provider, url, read=job)

    def _copy(self, version: StoredVersion, provider: str, url: str, *, read: Job | None) -> None:
        try:
            output = self._copier.copy(version.job_id, provider, url)
        except CopyFailed as copy_failure:
            failed = JobError(code="COPY_FAILED", message=copy_failure.reason, retryable=copy_failure.retryable)
            job = read if read is not None else self._jobs.get(version.job_id)
            if job is None or job.status != JobStatus.FINALIZING:
                logger.info("copy failed for a job that moved on", extra={"job_id": version.job_id})
                return
            retry_later_or_fail(self._jobs, job, failed, step="finalize")
            return
        self._succeed(version, output)

    def _succeed(self, version: StoredVersion, output: JobOutput) -> None:
        changes = {"output": output.model_dump()}
        for _ in range(2):
            try:
                self._jobs.transition(version, JobEvent.COPIED, now=isoformat(utc_now()), changes=changes)
            except TransitionConflict as conflict:
                current = conflict.current
                if current is not None and current.status == JobStatus.FINALIZING:
                    # Changed while FINALIZING (a retry noted its reason, the reconciler requeued it): the copy is
                    # still this job's video, so it closes against the version it has now.
                    version = current
                    continue
                # Done by a redelivered or duplicate message, or ended otherwise (a dead-lettered message failed
                # it): a terminal status never changes, so there is nothing left to do with this copy.
                status = current.status if current is not None else None
                logger.info("job already ended; copy not recorded", extra={"job_id": version.job_id, "status": status})
                return
            logger.info("job succeeded", extra={"job_id": version.job_id, "size": output.size})
            return
        raise RetryLater("the job kept changing while its video was recorded")

    def _video_url(self, job: Job) -> str:
        if job.provider_result is not None and job.provider_result.video_url:
            return job.provider_result.video_url
        # fal's webhook may come without its payload (payload_error): the result call still has it.
        return self._providers(job.provider).result(submission_of(job)).url
