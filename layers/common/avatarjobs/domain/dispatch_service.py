"""Hands accepted jobs to their provider, at most once each, whatever SQS delivers twice or workers race.

One attempt: claim the job with a lease and the hash of a new webhook token (one conditional write without a
read: ACCEPTED and no lease, so of two workers one wins; a refused claim returns the job as it was, which says
why); stage its inputs; submit; record the provider's request id with the ACCEPTED -> SUBMITTED transition.
The provider's failure kind decides the rest (domain/providers.py FailureKind, docs/decisions.md):
- RETRY (the request certainly did not reach the provider: no connection, 429, the provider's own 5xx)
  releases the lease and asks for a later try with backoff.
- AMBIGUOUS (an answer lost after sending: a read error or timeout, a connection closed mid-answer, a
  gateway's 5xx page, a 200 we cannot read; or a worker that died holding the lease) may mean the provider
  accepted and will charge: the job is never submitted again. It becomes SUBMITTED with
  `submission_unconfirmed`, and waits for the provider's webhook (the token's hash is stored with the claim,
  so even Mirako's can be authenticated), which it adopts; the reconciler fails it with SUBMISSION_UNCONFIRMED
  if none comes within its bound.
- FINAL (the provider refused the input, an input is unusable) fails the job with the reason.
"""

from collections.abc import Callable
from datetime import datetime, timedelta

from avatarjobs.domain.errors import InvalidTransition, TransitionConflict
from avatarjobs.domain.ids import new_webhook_token
from avatarjobs.domain.input_staging import InputStager, InputUnavailable
from avatarjobs.domain.job import Job, JobError, JobStatus, isoformat, utc_now
from avatarjobs.domain.ports import InputDelivery, JobsRepository, Provider
from avatarjobs.domain.providers import FailureKind, ProviderError, Submission
from avatarjobs.domain.retries import NoTimeToStart, RetryLater, retry_later_or_fail
from avatarjobs.domain.state_machine import JobEvent
from avatarjobs.observability import logger

# Provider calls (connect + read timeouts, and Mirako's speech synthesis first) fit in this; an attempt
# with less time left does not start, so a Lambda timeout can never cut a submit in half.
SUBMIT_BUDGET_SECONDS = 75
LEASE_MARGIN_SECONDS = 30
# fal's inputs stay fetchable this much longer than the latest moment fal may start the job (it fetches them as
# the run starts).
INPUT_FETCH_MARGIN_SECONDS = 300


class Dispatcher:
    def __init__(
        self,
        jobs: JobsRepository,
        providers: Callable[[str], Provider],
        stager: InputStager,
        public_base_url: str,
        *,
        start_timeout_seconds: int,
    ) -> None:
        self._jobs = jobs
        self._providers = providers
        self._stager = stager
        self._public_base_url = public_base_url
        self._start_timeout_seconds = start_timeout_seconds

    def dispatch(self, job_id: str, *, seconds_left: float) -> None:
        if seconds_left < SUBMIT_BUDGET_SECONDS:
            raise NoTimeToStart("not enough time left in this invocation for a submit")
        now = utc_now()
        lease_until = now + timedelta(seconds=seconds_left + LEASE_MARGIN_SECONDS)
        # Every attempt gets a new token; its hash is stored before the provider can call back with it.
        token, token_hash = new_webhook_token()
        try:
            claimed = self._jobs.claim_for_dispatch(
                job_id, now=isoformat(now), lease_until=isoformat(lease_until), webhook_token_sha256=token_hash
            )
        except TransitionConflict as refused:
            self._not_claimed(job_id, refused.current, now)
            return
        self._submit(claimed, token, now)

    def _not_claimed(self, job_id: str, job: Job | None, now: datetime) -> None:
        """The claim was refused; the job as the claim found it says why."""
        if job is None:
            logger.warning("dispatch message for an unknown job", extra={"job_id": job_id})
            return
        if job.status != JobStatus.ACCEPTED:
            logger.info("job already dispatched or ended", extra={"job_id": job_id, "status": job.status})
            return
        if job.dispatch_lease_until is None or job.dispatch_lease_until > isoformat(now):
            raise RetryLater("another dispatcher holds this job")
        self._settle_lost_attempt(job, "a dispatcher stopped during its submit; the provider may have it")

    def _start_within(self, job: Job, now: datetime, fetchable_until: datetime | None) -> int:
        """How long the provider may keep the job queued before it must start it: never past the job's deadline,
        nor past the time its inputs can still be fetched (less a margin)."""
        bounds = [self._start_timeout_seconds, (datetime.fromisoformat(job.deadline_at) - now).total_seconds()]
        if fetchable_until is not None:
            bounds.append((fetchable_until - now).total_seconds() - INPUT_FETCH_MARGIN_SECONDS)
        return max(1, int(min(bounds)))

    def _staged(self, provider: Provider, job: Job, now: datetime) -> tuple[dict[str, object], int]:
        """The job's inputs as its provider takes them, and how long the provider may take to start it."""
        capabilities = provider.capabilities
        if capabilities.inputs is InputDelivery.BYTES:
            inputs = self._stager.as_bytes(job.model, job.request, capabilities.byte_inputs, capabilities.passed_inputs)
            return inputs, self._start_within(job, now, None)
        fetchable_for = self._start_timeout_seconds + INPUT_FETCH_MARGIN_SECONDS
        staged = self._stager.as_urls(job.model, job.request, fetchable_for_seconds=fetchable_for)
        return staged.inputs, self._start_within(job, now, staged.fetchable_until)

    def _submit(self, job: Job, token: str, now: datetime) -> None:
        try:
            provider = self._providers(job.provider)
            inputs, start_within = self._staged(provider, job, now)
            submission = provider.submit(
                job.model,
                inputs,
                webhook_url=f"{self._public_base_url}/webhooks/{job.provider}/{job.job_id}",
                webhook_token=token,
                start_within_seconds=start_within,
            )
        except InputUnavailable as error:
            self._fail_or_retry(job, JobError(code="INPUT_UNAVAILABLE", message=str(error), retryable=error.retryable))
            return
        except ProviderError as error:
            if error.kind is FailureKind.AMBIGUOUS:
                self._settle_lost_attempt(job, error.message)
                return
            failure = JobError(
                code=error.code,
                message=error.message,
                retryable=error.kind is FailureKind.RETRY,
                provider_code=error.provider_code,
            )
            self._fail_or_retry(job, failure, retry_after=error.retry_after)
            return
        except Exception:
            # An unexpected failure before or inside the call: the request may have gone out.
            logger.exception("submit failed unexpectedly", extra={"job_id": job.job_id})
            self._settle_lost_attempt(job, "the submit failed unexpectedly; the provider may have it")
            return
        self._record_submission(job, submission)

    def _record_submission(self, job: Job, submission: Submission) -> None:
        changes: dict[str, object] = {
            "provider_request_id": submission.request_id,
            "provider_urls": submission.urls,
        }
        try:
            self._jobs.transition(job, JobEvent.DISPATCHED, now=isoformat(utc_now()), changes=changes)
        except TransitionConflict as refused:
            self._changed_during_submit(job, submission, refused.current)
            return
        logger.info("job submitted", extra={"job_id": job.job_id, "provider_request_id": submission.request_id})

    def _changed_during_submit(self, job: Job, submission: Submission, current: Job | None) -> None:
        if current is not None and current.provider_request_id == submission.request_id:
            # The provider's webhook came first and recorded this very request: nothing is left to do.
            logger.info("submission already recorded by its webhook", extra={"job_id": job.job_id})
            return
        # The owner canceled while we submitted: take it back from the provider, best effort.
        logger.warning("job changed during its submit; canceling at the provider", extra={"job_id": job.job_id})
        try:
            self._providers(job.provider).cancel(submission)
        except ProviderError:
            logger.exception("provider cancel failed", extra={"job_id": job.job_id})

    def _fail_or_retry(self, job: Job, error: JobError, *, retry_after: float | None = None) -> None:
        retry_later_or_fail(
            self._jobs, job, error, step="submit", retry_after=retry_after, release=("dispatch_lease_until",)
        )

    def _settle_lost_attempt(self, job: Job, reason: str) -> None:
        logger.warning("submit outcome unknown; waiting for the provider", extra={"job_id": job.job_id, "why": reason})
        try:
            self._jobs.transition(
                job, JobEvent.DISPATCHED, now=isoformat(utc_now()), changes={"submission_unconfirmed": True}
            )
        except (TransitionConflict, InvalidTransition):
            logger.info("job changed meanwhile", extra={"job_id": job.job_id})
