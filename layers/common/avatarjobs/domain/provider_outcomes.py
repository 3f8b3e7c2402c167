"""Records what a provider says of a job (from its webhook or a poll: completed, failed, running, canceled, its
request id), once, whoever says it first; and the deadline, which the reconciler reports.

Each step is one conditional transition. A duplicate (fal retries webhooks up to ten times; the reconciler
may poll the same job) finds the job already moved and changes nothing. The finalize message is sent by
the caller whose transition won, so one job gets one finalize message; if that caller dies between its
transition and its send, the reconciler sends it once the job has been FINALIZING for a while.
"""

from enum import StrEnum
from typing import Any

from avatarjobs.domain.errors import InvalidTransition, TransitionConflict
from avatarjobs.domain.job import Job, JobError, JobStatus, ProviderResult, isoformat, utc_now
from avatarjobs.domain.messages import FinalizeMessage
from avatarjobs.domain.ports import JobQueue, JobsRepository, Provider
from avatarjobs.domain.providers import (
    FailureKind,
    ProviderError,
    ProviderErrorCode,
    ProviderState,
    StatusReport,
    Submission,
)
from avatarjobs.domain.state_machine import JobEvent
from avatarjobs.observability import logger

# Polls that find a run COMPLETED with a result we cannot read (a gateway's 5xx page, an unreadable body) before
# the job fails: the result is kept an hour at most, so waiting for the deadline would only leave it stuck.
UNREADABLE_RESULT_POLLS_MAX = 3


class Progress(StrEnum):
    RECORDED = "recorded"  # this call moved the job
    DUPLICATE = "duplicate"  # the job had already moved (or the event does not apply to it any more)


class ProviderOutcomes:
    def __init__(self, jobs: JobsRepository, finalize_queue: JobQueue) -> None:
        self._jobs = jobs
        self._finalize_queue = finalize_queue

    def follow_status(self, provider: Provider, job: Job, report: StatusReport) -> Progress | None:
        """Records what a provider's status says of a job (its webhook's hint confirmed, or a poll)."""
        match report.state:
            case ProviderState.COMPLETED:
                return self._completed_per_status(provider, job, report)
            case ProviderState.FAILED | ProviderState.TIMED_OUT:
                message = report.error or f"{job.provider} reported {report.state}"
                error = JobError(code=ProviderErrorCode.GENERATION_FAILED, message=message, provider_code=report.state)
                return self.failed(job, error)
            case ProviderState.CANCELED:
                return self.canceled_by_provider(job)
            case ProviderState.IN_PROGRESS if job.status == JobStatus.SUBMITTED:
                return self.running(job)
            case _:
                return None

    def _completed_per_status(self, provider: Provider, job: Job, report: StatusReport) -> Progress | None:
        if report.video_url is not None:  # Mirako's status carries the file
            return self.completed(job, ProviderResult(video_url=report.video_url))
        # fal's COMPLETED says only that the run ended; its result says how.
        try:
            result = provider.result(submission_of(job))
        except ProviderError as error:
            if error.kind is FailureKind.FINAL:
                return self.failed(job, failure_of(error))
            return self._result_unreadable(job, report, error)
        return self.completed(
            job, ProviderResult(video_url=result.url, content_type=result.content_type, file_size=result.file_size)
        )

    def _result_unreadable(self, job: Job, report: StatusReport, error: ProviderError) -> Progress | None:
        """A finished run whose result could not be read: counted, and after a few polls the job fails with the
        provider's own words when its status gave them (fal's `error`), else with what the last read met."""
        polls = (job.unreadable_result_polls or 0) + 1
        if polls < UNREADABLE_RESULT_POLLS_MAX:
            logger.warning(
                "provider finished but its result is unreadable", extra={"job_id": job.job_id, "polls": polls}
            )
            self._jobs.update_fields(job, now=isoformat(utc_now()), changes={"unreadable_result_polls": polls})
            return None
        message = report.error or f"the result of the finished run could not be read: {error.message}"
        code = ProviderErrorCode.GENERATION_FAILED if report.error else error.code
        return self.failed(job, JobError(code=code, message=message, provider_code=report.error_type))

    def adopt_submission(self, job: Job, request_id: str) -> Job:
        """Records the provider's request id on a job whose submit answer we never read (or not yet).

        A job that has ended meanwhile (given up as SUBMISSION_UNCONFIRMED, canceled, timed out) is left as it is:
        a finished job never changes. The provider's run is logged, since it may have made a paid video.
        """
        if job.provider_request_id == request_id:
            return job
        if job.status.is_terminal:
            logger.warning(
                "the provider reported a run of a job that had already ended; not recorded",
                extra={"job_id": job.job_id, "status": job.status, "provider_request_id": request_id},
            )
            return job
        now = isoformat(utc_now())
        changes = {"provider_request_id": request_id, "submission_unconfirmed": False}
        if job.status == JobStatus.ACCEPTED:
            return self._jobs.transition(job, JobEvent.DISPATCHED, now=now, changes=changes)
        return self._jobs.update_fields(job, now=now, changes=changes)

    def completed(self, job: Job, result: ProviderResult) -> Progress:
        changes = {"provider_result": result.model_dump(exclude_none=True)}
        progress, current = self._apply(job, JobEvent.PROVIDER_COMPLETED, changes)
        if progress == Progress.RECORDED:
            self.queue_finalize(current)
        return progress

    def completed_unread(self, job_id: str, *, provider: str, request_id: str, result: ProviderResult) -> Progress:
        """The completion of a job that was not read first (fal's signed webhook names the job and the request).

        One conditional write: the job must be this provider's, for this request, and in a status a completion
        moves on. Raises TransitionConflict when it is not; its `current` (the job as it was, None when there is
        no such job) lets the caller decide as if it had read the job.
        """
        moved = self._jobs.enter_finalizing(
            job_id,
            expected={"provider": provider, "provider_request_id": request_id},
            now=isoformat(utc_now()),
            changes={"provider_result": result.model_dump(exclude_none=True)},
        )
        logger.info("job moved", extra={"job_id": job_id, "event": JobEvent.PROVIDER_COMPLETED, "status": moved.status})
        self.queue_finalize(moved)
        return Progress.RECORDED

    def queue_finalize(self, job: Job) -> None:
        """Sends the finalize message of a FINALIZING job, with what finalize needs to start without a read."""
        result = job.provider_result
        self._finalize_queue.send(
            FinalizeMessage(
                job_id=job.job_id,
                owner=job.owner,
                provider=job.provider,
                version=job.version,
                video_url=result.video_url if result is not None else None,
            )
        )

    def failed(self, job: Job, error: JobError) -> Progress:
        if job.status == JobStatus.CANCEL_REQUESTED:
            # fal has no CANCELED state: a run canceled while running ends as an error. The owner asked for
            # the cancel, so that is what happened.
            return self._apply(job, JobEvent.CANCEL_CONFIRMED, {})[0]
        return self._apply(job, JobEvent.FAILED, {"error": error.model_dump()})[0]

    def running(self, job: Job) -> Progress:
        return self._apply(job, JobEvent.PROVIDER_RUNNING, {})[0]

    def canceled_by_provider(self, job: Job) -> Progress:
        if job.status == JobStatus.CANCEL_REQUESTED:
            return self._apply(job, JobEvent.CANCEL_CONFIRMED, {})[0]
        error = JobError(code="CANCELED_BY_PROVIDER", message=f"{job.provider} canceled the job", retryable=True)
        return self.failed(job, error)

    def timed_out(self, job: Job) -> Progress:
        error = JobError(code="DEADLINE_PASSED", message=f"the job did not finish by {job.deadline_at}", retryable=True)
        return self._apply(job, JobEvent.DEADLINE_PASSED, {"error": error.model_dump()})[0]

    def _apply(self, job: Job, event: JobEvent, changes: dict[str, Any]) -> tuple[Progress, Job]:
        """The transition, or the current job when it had already moved; a lost race is re-read once."""
        for _ in range(2):
            try:
                moved = self._jobs.transition(job, event, now=isoformat(utc_now()), changes=changes)
            except InvalidTransition:
                return Progress.DUPLICATE, job
            except TransitionConflict as conflict:
                if conflict.current is None:
                    return Progress.DUPLICATE, job
                job = conflict.current  # as the refused update found it: no read needed
                continue
            logger.info("job moved", extra={"job_id": job.job_id, "event": event, "status": moved.status})
            return Progress.RECORDED, moved
        return Progress.DUPLICATE, job


def failure_of(error: ProviderError) -> JobError:
    """A provider's final word on a job, as the job's error."""
    return JobError(code=error.code, message=error.message, provider_code=error.provider_code)


def submission_of(job: Job) -> Submission:
    """What identifies the job at its provider (fal's URLs exactly as it returned them)."""
    assert job.provider_request_id is not None
    return Submission(request_id=job.provider_request_id, urls=job.provider_urls or {})
