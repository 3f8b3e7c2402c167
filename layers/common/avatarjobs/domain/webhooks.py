"""Provider webhooks: authenticate, match to the job, record the completion once. Answer fast: no download here.

A provider with signed webhooks (its capabilities' `signed_webhooks`: fal signs ED25519 over the raw body, and
retries up to ten times) has its body trusted once the signature holds, before the job is touched, so a success
is recorded with one conditional write that names the job, the provider and the request (no read first); when
that write is refused, the job as it was tells a duplicate (a second delivery: nothing changes, 200) from a job
we do not know or another request. Otherwise (Mirako) the call carries our per-job Bearer token and an
undocumented body: the job is read for the token's hash (the caller is authenticated before we call the
provider on its behalf), and the body is only a hint that the job moved: the status of the job's OWN task id is
read from the provider before anything is recorded, whatever id the body names. Only a job whose submit answer
was lost (no task id yet) looks at the body's id, and adopts it only once the provider's status knows it.
A webhook for a job we do not know, or naming another request than the job's, is acknowledged and
logged: answering with an error would only make the provider retry for hours.
"""

from collections.abc import Callable, Mapping
from enum import StrEnum

from avatarjobs.domain.errors import TransitionConflict
from avatarjobs.domain.ids import is_job_id
from avatarjobs.domain.job import Job, JobError, JobStatus, ProviderResult
from avatarjobs.domain.ports import JobsRepository, Provider
from avatarjobs.domain.provider_outcomes import Progress, ProviderOutcomes, submission_of
from avatarjobs.domain.providers import (
    FailureKind,
    InvalidWebhook,
    ProviderError,
    ProviderErrorCode,
    StatusReport,
    Submission,
    UnknownProvider,
    WebhookNotice,
)
from avatarjobs.observability import logger


class WebhookOutcome(StrEnum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"


class WebhookReceiver:
    def __init__(self, jobs: JobsRepository, providers: Callable[[str], Provider], progress: ProviderOutcomes) -> None:
        self._jobs = jobs
        self._providers = providers
        self._progress = progress

    def receive(self, provider_name: str, job_id: str, headers: Mapping[str, str], raw_body: bytes) -> WebhookOutcome:
        """Raises InvalidWebhook (not authentic: change nothing) and UnknownProvider (from the provider registry)."""
        provider = self._providers(provider_name)
        if provider.capabilities.signed_webhooks:
            return self._receive_signed(provider, job_id, headers, raw_body)
        job = self._jobs.get(job_id) if is_job_id(job_id) else None
        if job is None:
            # Without the job there is no token to check the call against, and nothing to record.
            logger.info("webhook for an unknown job", extra={"job_id": job_id, "provider": provider_name})
            return WebhookOutcome.IGNORED
        notice = provider.verify_webhook(headers, raw_body, token_sha256=job.webhook_token_sha256)
        return self._receive_for(provider, job_id, job, notice)

    def _receive_signed(
        self, provider: Provider, job_id: str, headers: Mapping[str, str], raw_body: bytes
    ) -> WebhookOutcome:
        notice = provider.verify_webhook(headers, raw_body, token_sha256=None)
        if not is_job_id(job_id):
            job = None
        elif notice.succeeded and notice.request_id is not None:
            try:
                progress = self._progress.completed_unread(
                    job_id, provider=provider.name, request_id=notice.request_id, result=_result(notice)
                )
            except TransitionConflict as refused:
                job = refused.current  # not a job this completes: what it was decides, as if it had been read
            else:
                return self._outcome(progress)
        else:
            # A failure: where it leads depends on the job's status (a canceled fal run ends as an error).
            job = self._jobs.get(job_id)
        return self._receive_for(provider, job_id, job, notice)

    def _receive_for(self, provider: Provider, job_id: str, job: Job | None, notice: WebhookNotice) -> WebhookOutcome:
        """An authenticated webhook and the job it names as stored: match them, then record once."""
        if job is None or job.provider != provider.name:
            logger.info("webhook for an unknown job", extra={"job_id": job_id, "provider": provider.name})
            return WebhookOutcome.IGNORED
        if not notice.trusted:
            return self._receive_hint(provider, job, notice)
        if not self._names_this_job(job, notice):
            logger.warning(
                "webhook names another request than the job's",
                extra={"job_id": job_id, "request_id": notice.request_id, "job_request_id": job.provider_request_id},
            )
            return WebhookOutcome.IGNORED
        if job.provider_request_id is None and notice.request_id is not None:
            # The submit's answer was lost (or is still being written): the provider's word settles it.
            job = self._progress.adopt_submission(job, notice.request_id)
        return self._outcome(self._record(provider, job, notice))

    @staticmethod
    def _outcome(progress: Progress | None) -> WebhookOutcome:
        if progress is None:
            return WebhookOutcome.IGNORED
        return WebhookOutcome.RECORDED if progress == Progress.RECORDED else WebhookOutcome.DUPLICATE

    @staticmethod
    def _names_this_job(job: Job, notice: WebhookNotice) -> bool:
        if job.provider_request_id is None:
            return notice.request_id is not None
        return notice.request_id is None or notice.request_id == job.provider_request_id

    def _record(self, provider: Provider, job: Job, notice: WebhookNotice) -> Progress | None:
        if notice.succeeded:
            return self._progress.completed(job, _result(notice))
        error = JobError(
            code=notice.error_code or ProviderErrorCode.GENERATION_FAILED,
            message=notice.error or "the provider failed",
            provider_code=notice.provider_code,
        )
        return self._progress.failed(job, error)

    def _receive_hint(self, provider: Provider, job: Job, notice: WebhookNotice) -> WebhookOutcome:
        """Only a hint came (Mirako): what the provider's status says of the job's own task is what we record."""
        if job.provider_request_id is None:
            confirmed = self._confirmed_task(provider, job, notice.request_id)
            if confirmed is None and job.status == JobStatus.ACCEPTED:
                # Its dispatcher is still writing down the task id: a 409 has the provider call again.
                raise TransitionConflict(job.job_id, job)
            if confirmed is None:
                return WebhookOutcome.IGNORED
            task_id, report = confirmed
            job = self._progress.adopt_submission(job, task_id)
        else:
            if notice.request_id not in (None, job.provider_request_id):
                logger.info(
                    "webhook body names another id; asking about the job's own task",
                    extra={"job_id": job.job_id, "body_id": notice.request_id, "task_id": job.provider_request_id},
                )
            report = provider.status(submission_of(job))
        return self._outcome(self._progress.follow_status(provider, job, report))

    @staticmethod
    def _confirmed_task(provider: Provider, job: Job, hinted_id: str | None) -> tuple[str, StatusReport] | None:
        """For a job whose submit answer was lost: the body's id and its status, if the provider knows that id."""
        if hinted_id is None:
            logger.info("webhook for a job without a task id names none", extra={"job_id": job.job_id})
            return None
        try:
            return hinted_id, provider.status(Submission(request_id=hinted_id))
        except ProviderError as error:
            if error.kind is not FailureKind.FINAL:
                raise  # the provider did not answer: fail the call, so the webhook comes again
            logger.warning(
                "webhook names an id the provider does not know; not adopted",
                extra={"job_id": job.job_id, "body_id": hinted_id, "code": error.code},
            )
            return None


def _result(notice: WebhookNotice) -> ProviderResult:
    return ProviderResult(video_url=notice.video_url, content_type=notice.content_type, file_size=notice.file_size)


__all__ = ["InvalidWebhook", "UnknownProvider", "WebhookOutcome", "WebhookReceiver"]
