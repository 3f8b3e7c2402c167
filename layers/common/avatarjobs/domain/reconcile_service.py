"""Once a minute: follow jobs whose webhook is overdue, end jobs past their deadline, resend lost messages.

Webhooks get lost; this makes every job end all the same. Each job is handled on its own: one job's
failure is logged and does not stop the others (the next run tries it again).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from avatarjobs.domain.errors import TransitionConflict
from avatarjobs.domain.job import Job, JobError, JobStatus, isoformat
from avatarjobs.domain.messages import JobMessage
from avatarjobs.domain.ports import JobQueue, JobsRepository, Provider
from avatarjobs.domain.provider_outcomes import ProviderOutcomes, submission_of
from avatarjobs.domain.providers import ProviderError
from avatarjobs.domain.retries import MAX_BACKOFF_SECONDS
from avatarjobs.domain.state_machine import JobEvent, sources
from avatarjobs.observability import logger

# Nobody marks a message as sent (that would be a write per job): a job whose message may never have been sent
# is found by silence, nothing written to it for longer than its message can take. It is then sent again (a
# duplicate is harmless: dispatch claims only an ACCEPTED job nobody holds, finalize closes only a FINALIZING
# one), noting `requeued_at` with a conditional write first, so the next resend waits as long again and of two
# overlapping runs one sends. See docs/decisions.md.
# ACCEPTED, never taken by a dispatcher: longer than a message waits in a busy dispatch queue.
REQUEUE_ACCEPTED_AFTER_SECONDS = 300
# FINALIZING: longer than a copy can run (finalize's timeout is at most 900 s), so none is still under way.
REQUEUE_FINALIZING_AFTER_SECONDS = 960
_FOLLOWED = (JobStatus.SUBMITTED, JobStatus.RUNNING, JobStatus.CANCEL_REQUESTED)
# The statuses a deadline ends, as the state machine says (not FINALIZING: its video is paid for and being copied).
_EXPIRABLE = tuple(sorted(sources(JobEvent.DEADLINE_PASSED)))


SUBMISSION_UNCONFIRMED = "SUBMISSION_UNCONFIRMED"


@dataclass
class ReconcileReport:
    polled: int = 0
    timed_out: int = 0
    requeued: int = 0
    unconfirmed: int = 0
    failed_to_handle: list[str] = field(default_factory=list)


class Reconciler:
    def __init__(
        self,
        jobs: JobsRepository,
        providers: Callable[[str], Provider],
        progress: ProviderOutcomes,
        *,
        dispatch_queue: JobQueue,
        overdue_seconds: int,
        unconfirmed_submit_seconds: int,
    ) -> None:
        self._jobs = jobs
        self._providers = providers
        self._progress = progress
        self._dispatch_queue = dispatch_queue
        self._overdue = timedelta(seconds=overdue_seconds)
        self._unconfirmed_bound = timedelta(seconds=unconfirmed_submit_seconds)

    def run(self, now: datetime) -> ReconcileReport:
        report = ReconcileReport()
        for status in (*_EXPIRABLE, JobStatus.FINALIZING):
            for job in self._jobs.list_in_status(status, changed_before=isoformat(now)):
                self._reconcile(job, now, report)
        counts = {
            "polled": report.polled,
            "timed_out": report.timed_out,
            "requeued": report.requeued,
            "unconfirmed": report.unconfirmed,
        }
        logger.info("reconciled", extra={**counts, "errors": len(report.failed_to_handle)})
        return report

    def _reconcile(self, job: Job, now: datetime, report: ReconcileReport) -> None:
        """One job's check: past its deadline, never queued, webhook overdue, or finalize message lost."""
        if job.status in _EXPIRABLE and job.deadline_at <= isoformat(now):
            if self._guarded(report, job, self._expire):
                report.timed_out += 1
        elif job.status in (JobStatus.ACCEPTED, JobStatus.FINALIZING):
            self._guarded(report, job, lambda job: self._requeue_if_silent(job, now, report))
        elif job.provider_request_id is None:
            # The submit's answer was lost: only the provider's webhook can settle it, within the bound.
            if job.status_since < isoformat(now - self._unconfirmed_bound) and self._guarded(
                report, job, self._give_up_unconfirmed
            ):
                report.unconfirmed += 1
        elif job.status in _FOLLOWED and job.status_since < isoformat(now - self._overdue):
            report.polled += 1
            self._guarded(report, job, self._follow)

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

    def _requeue_if_silent(self, job: Job, now: datetime, report: ReconcileReport) -> None:
        """Sends an ACCEPTED or FINALIZING job's message again when nothing has been written to it for too long."""
        lease = job.dispatch_lease_until
        if job.status == JobStatus.ACCEPTED and lease is not None and lease > isoformat(now):
            return  # a dispatcher is submitting it
        if job.updated_at > isoformat(now - _silence_allowed(job)):
            return
        try:
            # A failed enqueue the API noted is made good by this send: a retry of the request need not send again.
            forget = ("enqueue_failed_at",) if job.enqueue_failed_at is not None else ()
            noted = self._jobs.update_fields(
                job, now=isoformat(now), changes={"requeued_at": isoformat(now)}, remove=forget
            )
        except TransitionConflict:
            return  # it changed since it was listed, or another run requeued it: the next run looks again
        if noted.status == JobStatus.ACCEPTED:
            self._dispatch_queue.send(JobMessage(job_id=noted.job_id))
        else:
            self._progress.queue_finalize(noted)
        logger.info("job message sent again", extra={"job_id": job.job_id, "status": job.status})
        report.requeued += 1

    def _give_up_unconfirmed(self, job: Job) -> None:
        """A submit whose answer was lost, and no webhook since: the job ends, and nothing is ordered again."""
        seconds = int(self._unconfirmed_bound.total_seconds())
        message = (
            f"{job.provider} never confirmed the order: the answer to our submit was lost and no webhook came within "
            f"{seconds} s. No second order was placed, so the job cannot have been paid twice; submit it again "
            "to retry."
        )
        self._progress.failed(job, JobError(code=SUBMISSION_UNCONFIRMED, message=message))

    def _follow(self, job: Job) -> None:
        provider = self._providers(job.provider)
        self._progress.follow_status(provider, job, provider.status(submission_of(job)))


def _silence_allowed(job: Job) -> timedelta:
    """How long a job in this state may go without a write while its message is still on its way."""
    if job.status == JobStatus.FINALIZING:
        return timedelta(seconds=REQUEUE_FINALIZING_AFTER_SECONDS)
    # A job a dispatcher tried before may have its message waiting out a backoff (the lease was released).
    backoff = MAX_BACKOFF_SECONDS if job.attempts else 0
    return timedelta(seconds=REQUEUE_ACCEPTED_AFTER_SECONDS + backoff)
