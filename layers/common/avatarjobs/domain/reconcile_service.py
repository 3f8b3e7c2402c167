"""Once a minute: follow jobs whose webhook is overdue, end jobs past their deadline, resend lost messages.

Webhooks get lost; this makes every job end all the same. Each job is handled on its own: one job's
failure is logged and does not stop the others (the next run tries it again).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from avatarjobs.domain.job import Job, JobStatus, isoformat
from avatarjobs.domain.ports import JobQueue, JobsRepository
from avatarjobs.domain.provider_progress import ProviderProgress, submission_of
from avatarjobs.observability import logger
from avatarjobs.providers.base import Provider, ProviderError

# A job accepted this long ago that was never queued (the API could not reach SQS) is queued now.
UNQUEUED_GRACE_SECONDS = 120
_FOLLOWED = (JobStatus.SUBMITTED, JobStatus.RUNNING, JobStatus.CANCEL_REQUESTED)
# FINALIZING is left to finalize and its dead-letter queue: the video is paid for and being copied.
_EXPIRABLE = (JobStatus.ACCEPTED, *_FOLLOWED)


@dataclass
class ReconcileReport:
    polled: int = 0
    timed_out: int = 0
    requeued: int = 0
    failed_to_handle: list[str] = field(default_factory=list)


class Reconciler:
    def __init__(
        self,
        jobs: JobsRepository,
        providers: Callable[[str], Provider],
        progress: ProviderProgress,
        dispatch_queue: JobQueue,
        overdue_seconds: int,
    ) -> None:
        self._jobs = jobs
        self._providers = providers
        self._progress = progress
        self._dispatch_queue = dispatch_queue
        self._overdue = timedelta(seconds=overdue_seconds)

    def run(self, now: datetime) -> ReconcileReport:
        report = ReconcileReport()
        for status in (*_EXPIRABLE, JobStatus.FINALIZING):
            for job in self._jobs.list_in_status(status, changed_before=isoformat(now)):
                self._reconcile(job, now, report)
        counts = {"polled": report.polled, "timed_out": report.timed_out, "requeued": report.requeued}
        logger.info("reconciled", extra={**counts, "errors": len(report.failed_to_handle)})
        return report

    def _reconcile(self, job: Job, now: datetime, report: ReconcileReport) -> None:
        """One job's check: past its deadline, never queued, webhook overdue, or finalize message lost."""
        if job.status in _EXPIRABLE and job.deadline_at <= isoformat(now):
            if self._guarded(report, job, self._expire):
                report.timed_out += 1
        elif job.status == JobStatus.ACCEPTED:
            self._guarded(report, job, lambda job: self._requeue_dispatch(job, now, report))
        elif job.status in _FOLLOWED and job.status_since < isoformat(now - self._overdue):
            report.polled += 1
            self._guarded(report, job, self._follow)
        elif job.status == JobStatus.FINALIZING:
            self._guarded(report, job, self._progress.ensure_finalize_queued)

    @staticmethod
    def _guarded(report: ReconcileReport, job: Job, action: Callable[[Job], object]) -> bool:
        try:
            action(job)
        except Exception:
            logger.exception("could not reconcile job", extra={"job_id": job.job_id})
            report.failed_to_handle.append(job.job_id)
            return False
        return True

    def _expire(self, job: Job) -> None:
        self._progress.timed_out(job)
        if job.provider_request_id is not None and job.status != JobStatus.ACCEPTED:
            try:  # stop paying for a job nobody waits for any more
                self._providers(job.provider).cancel(submission_of(job))
            except ProviderError:
                logger.warning("provider cancel of an expired job failed", extra={"job_id": job.job_id})

    def _requeue_dispatch(self, job: Job, now: datetime, report: ReconcileReport) -> None:
        waited_enough = isoformat(now - timedelta(seconds=UNQUEUED_GRACE_SECONDS)) > job.created_at
        if job.enqueued_at is None and job.dispatch_lease_until is None and waited_enough:
            self._dispatch_queue.send(job.job_id)
            self._jobs.mark_enqueued(job.job_id, now=isoformat(now))
            report.requeued += 1

    def _follow(self, job: Job) -> None:
        if job.provider_request_id is None:
            return  # the submit's answer was lost: only the provider's webhook or the deadline can settle it
        provider = self._providers(job.provider)
        self._progress.follow_status(provider, job, provider.status(submission_of(job)))
