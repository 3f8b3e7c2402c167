"""The jobs use cases: create (idempotent), describe, list, cancel, and presigned uploads.

Every trigger (the HTTP API, S3 manifests, bus events) creates jobs through `create_job`.
"""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from avatarjobs.domain import limits
from avatarjobs.domain.errors import (
    IdempotencyConflict,
    InvalidCursor,
    InvalidInput,
    InvalidTransition,
    JobNotCancelable,
    JobNotFound,
    ServiceUnavailable,
    TransitionConflict,
)
from avatarjobs.domain.ids import is_job_id, new_job_id
from avatarjobs.domain.job import Job, JobError, JobStatus, isoformat, utc_now
from avatarjobs.domain.media import (
    CONTENT_TYPES,
    MAGIC_BYTES,
    media_field_names,
    media_fields,
    parse_data_uri,
    parse_s3_uri,
    sniff,
)
from avatarjobs.domain.messages import JobMessage
from avatarjobs.domain.ports import (
    IdempotencyKeyTaken,
    IdempotencyRecord,
    JobFilters,
    JobQueue,
    JobsRepository,
    MediaStore,
    Provider,
)
from avatarjobs.domain.provider_outcomes import submission_of
from avatarjobs.domain.providers import CancelOutcome, ProviderError
from avatarjobs.domain.requests import JobRequestModel
from avatarjobs.domain.state_machine import JobEvent
from avatarjobs.domain.views import CreateUploadsRequest, JobPage, JobView, UploadsView, UploadTarget, upload_kind
from avatarjobs.observability import logger


@dataclass(frozen=True)
class CreatedJob:
    job: Job
    replayed: bool  # True when an earlier request with the same Idempotency-Key made it


def fingerprint(request: JobRequestModel) -> str:
    """Same request, same fingerprint, whatever the key order or white space of the JSON it came in."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def uploads_prefix(owner: str) -> str:
    return f"uploads/{owner}/"


class JobsService:
    def __init__(
        self,
        jobs: JobsRepository,
        queue: JobQueue,
        media: MediaStore,
        providers: Callable[[str], Provider] | None = None,
    ) -> None:
        self._jobs = jobs
        self._queue = queue
        self._media = media
        self._providers = providers  # for canceling at the provider

    # -- create ---------------------------------------------------------------------------------------------

    def create_job(
        self,
        owner: str,
        request: JobRequestModel,
        idempotency_key: str | None = None,
        *,
        s3_input_prefix: str | None = None,
    ) -> CreatedJob:
        """`s3_input_prefix`: where in the inputs bucket this caller's s3:// inputs may be (default: its uploads)."""
        self._check_s3_inputs(s3_input_prefix or uploads_prefix(owner), request)
        request_print = fingerprint(request)
        if idempotency_key is not None:
            replay = self._replay(owner, idempotency_key, request_print)
            if replay is not None:
                return replay

        now = utc_now()
        job_id = new_job_id()
        job = Job.new(
            job_id=job_id,
            owner=owner,
            provider=request.provider,
            model=request.model,
            request=self._stage_inline_inputs(owner, job_id, request),
            metadata=request.metadata,
            idempotency_key=idempotency_key,
            deadline_seconds=request.deadline_seconds,
            now=now,
        )
        record = None
        if idempotency_key is not None:
            expiration = int((now + timedelta(seconds=limits.IDEMPOTENCY_WINDOW_SECONDS)).timestamp())
            record = IdempotencyRecord(owner, idempotency_key, job_id, request_print, expiration)
        try:
            self._jobs.create(job, record)
        except IdempotencyKeyTaken:
            # A concurrent request with the same key won the race: answer as its replay.
            assert idempotency_key is not None
            replay = self._replay(owner, idempotency_key, request_print)
            if replay is None:  # its record expired in between: vanishingly rare, let the caller retry
                raise ServiceUnavailable("the request raced another one with the same Idempotency-Key") from None
            return replay
        self._enqueue(job)
        logger.info("job accepted", extra={"job_id": job_id, "provider": job.provider, "model": job.model})
        return CreatedJob(job=job, replayed=False)

    def _replay(self, owner: str, key: str, request_print: str) -> CreatedJob | None:
        record = self._jobs.get_idempotency_record(owner, key)
        if record is None:
            return None
        if record.fingerprint != request_print:
            raise IdempotencyConflict(key)
        job = self._jobs.get(record.job_id)
        if job is None:  # the job record's TTL outlived the idempotency window: treat the key as fresh
            return None
        if job.status == JobStatus.ACCEPTED and job.enqueue_failed_at is not None:
            # The first request stored the job but could not queue it (it answered 503); this retry does.
            self._enqueue(job)
            self._quietly(job, "could not clear the failed enqueue", remove=("enqueue_failed_at",))
        return CreatedJob(job=job, replayed=True)

    def _enqueue(self, job: Job) -> None:
        """Queues the job for dispatch. Nothing is written when that works (a write per job for a rare failure):
        a failure is noted instead, for a retry with the key to find; the reconciler queues again any ACCEPTED
        job left untouched for long, whatever happened here (the function may stop before either)."""
        try:
            self._queue.send(JobMessage(job_id=job.job_id))
        except Exception as error:
            logger.exception("could not queue job", extra={"job_id": job.job_id})
            if job.idempotency_key is None:
                # Without a key the caller cannot retry this job, so it must not stay ACCEPTED and forgotten.
                self._fail_quietly(job, JobError(code="ENQUEUE_FAILED", message="the job could not be queued",
                                                 retryable=True))  # fmt: skip
            else:
                self._quietly(
                    job, "could not note the failed enqueue", changes={"enqueue_failed_at": isoformat(utc_now())}
                )
            raise ServiceUnavailable("the job could not be queued; retry with the same Idempotency-Key") from error

    def _fail_quietly(self, job: Job, error: JobError) -> None:
        try:
            self._jobs.transition(job, JobEvent.FAILED, now=isoformat(utc_now()), changes={"error": error.model_dump()})
        except Exception:
            logger.exception("could not mark unqueued job as failed", extra={"job_id": job.job_id})

    def _quietly(
        self, job: Job, failure: str, *, changes: dict[str, object] | None = None, remove: tuple[str, ...] = ()
    ) -> None:
        """A bookkeeping write whose failure only costs a later resend (the reconciler's, or a needless one)."""
        try:
            self._jobs.update_fields(job, now=isoformat(utc_now()), changes=changes or {}, remove=remove)
        except Exception:
            logger.exception(failure, extra={"job_id": job.job_id})

    def _check_s3_inputs(self, prefix: str, request: JobRequestModel) -> None:
        """Every s3:// input is the caller's, exists, and is a file of its field's kind within size: checked at
        accept, so that a provider is never paid for a job whose input it cannot use."""
        problems: list[tuple[str, str]] = []
        for name, kind in media_fields(type(request)).items():
            value = getattr(request, name)
            if not (isinstance(value, str) and value.startswith("s3://")):
                continue
            uri = parse_s3_uri(value)
            if uri.bucket != self._media.inputs_bucket or not uri.key.startswith(prefix):
                problems.append((f"/{name}", "must be an s3:// URI that POST /uploads returned to your API key"))
                continue
            stored = self._media.peek_input(uri.key, head_bytes=MAGIC_BYTES)
            limit = limits.UPLOAD_MAX_BYTES[kind]
            if stored is None:
                problems.append((f"/{name}", f"{value} does not exist (was it uploaded?) or cannot be read"))
            elif stored.size == 0:
                problems.append((f"/{name}", f"{value} is empty"))
            elif stored.size > limit:
                problems.append((f"/{name}", f"{value} is {stored.size} bytes, over the {limit}-byte {kind} limit"))
            elif sniff(stored.head, kind) is None:
                accepted = ", ".join(sorted(CONTENT_TYPES[kind]))
                problems.append((f"/{name}", f"{value} is not an {kind} of an accepted type ({accepted})"))
        if problems:
            raise InvalidInput(*problems[0], *problems[1:])

    def _stage_inline_inputs(self, owner: str, job_id: str, request: JobRequestModel) -> dict[str, object]:
        """Data URIs move to the inputs bucket: a job record must stay far below DynamoDB's 400 KB item limit."""
        provider_input = request.provider_input()
        for name in media_field_names(type(request)):
            value = provider_input.get(name)
            if isinstance(value, str) and value.startswith("data:"):
                inline = parse_data_uri(value)
                key = f"inline/{owner}/{job_id}/{name}"
                self._media.put_input(key, inline.data, inline.content_type)
                provider_input[name] = f"s3://{self._media.inputs_bucket}/{key}"
        return provider_input

    # -- read -----------------------------------------------------------------------------------------------

    def get_job(self, owner: str, job_id: str) -> Job:
        job = self._jobs.get(job_id) if is_job_id(job_id) else None
        # Someone else's job is reported exactly like a missing one, so ids cannot be probed.
        if job is None or job.owner != owner:
            raise JobNotFound(job_id)
        return job

    def describe_job(self, owner: str, job_id: str) -> JobView:
        job = self.get_job(owner, job_id)
        video_url = None
        if job.status == JobStatus.SUCCEEDED and job.output is not None:
            video_url = self._media.presign_download(
                job.output.bucket, job.output.key, expires_in=limits.DOWNLOAD_URL_EXPIRY_SECONDS
            )
        return JobView.of(job, video_url=video_url)

    def list_jobs(
        self,
        owner: str,
        *,
        status: JobStatus | None,
        limit: int,
        cursor: str | None,
        filters: JobFilters | None = None,
    ) -> JobPage:
        """A page of the owner's jobs, newest first. A filtered page may be short (even empty) before the last
        one: the search for matches reads a bounded number of jobs per request (JOB_LIST_MAX_EVALUATED).

        The cursor is the id of the job the previous page stopped at: the listing is by owner, so a cursor names no
        one else's job, and any well-formed id is a place in the order to continue from."""
        if cursor is not None and not is_job_id(cursor):
            raise InvalidCursor()
        start, end = (filters.created_from, filters.created_before) if filters else (None, None)
        if start and end and end <= start:
            # No job is created in an empty window: the answer is an empty page, as for a window in the future.
            return JobPage(items=[], next_cursor=None)
        jobs, last = self._jobs.list_for_owner(owner, status=status, limit=limit, after_job_id=cursor, filters=filters)
        return JobPage(items=[JobView.of(job) for job in jobs], next_cursor=last)

    # -- cancel ---------------------------------------------------------------------------------------------

    def cancel_job(self, owner: str, job_id: str) -> Job:
        """ACCEPTED jobs are canceled at once. Submitted ones move to CANCEL_REQUESTED and the provider is asked;
        the final state follows its answer (here, or through its webhook and the reconciler).

        Idempotent: a job already CANCELED or CANCEL_REQUESTED is answered as it is (a retried cancel whose first
        answer was lost must not look like a failure); only a job that ended otherwise is JobNotCancelable."""
        job = self.get_job(owner, job_id)
        if job.status in _CANCELING:
            return job
        try:
            job = self._jobs.transition(job, JobEvent.CANCEL, now=isoformat(utc_now()))
        except InvalidTransition:
            raise JobNotCancelable(job_id, job.status) from None
        except TransitionConflict as conflict:
            # A concurrent cancel (or the provider's answer) won the write: its outcome is this cancel's too.
            if conflict.current is not None and conflict.current.status in _CANCELING:
                return conflict.current
            raise
        if job.status == JobStatus.CANCEL_REQUESTED:
            job = self._cancel_at_provider(job)
        return job

    def _cancel_at_provider(self, job: Job) -> Job:
        if self._providers is None or job.provider_request_id is None:
            return job
        provider = self._providers(job.provider)
        if not provider.capabilities.cancels:
            return job  # it runs to its end: its webhook or the reconciler tells how
        try:
            outcome = provider.cancel(submission_of(job))
        except ProviderError:
            logger.warning("provider cancel failed; the reconciler follows the job", extra={"job_id": job.job_id})
            return job
        logger.info("provider answered the cancel", extra={"job_id": job.job_id, "outcome": outcome})
        if outcome != CancelOutcome.CANCELED:
            return job  # it may still finish: its webhook or the reconciler tells how
        try:
            return self._jobs.transition(job, JobEvent.CANCEL_CONFIRMED, now=isoformat(utc_now()))
        except TransitionConflict:
            return self.get_job(job.owner, job.job_id)

    # -- uploads --------------------------------------------------------------------------------------------

    def create_uploads(self, owner: str, request: CreateUploadsRequest) -> UploadsView:
        expires_at = isoformat(utc_now() + timedelta(seconds=limits.UPLOAD_URL_EXPIRY_SECONDS))
        targets = []
        for file in request.files:
            key = f"{uploads_prefix(owner)}{new_job_id()}/{file.name}"
            url = self._media.presign_upload(
                key, content_type=file.content_type, size=file.size, expires_in=limits.UPLOAD_URL_EXPIRY_SECONDS
            )
            logger.debug("upload url issued", extra={"key": key, "kind": upload_kind(file.content_type)})
            targets.append(
                UploadTarget(
                    name=file.name,
                    s3_uri=f"s3://{self._media.inputs_bucket}/{key}",
                    url=url,
                    headers={"Content-Type": file.content_type, "Content-Length": str(file.size)},
                    expires_at=expires_at,
                )
            )
        return UploadsView(uploads=targets)


_CANCELING = frozenset({JobStatus.CANCELED, JobStatus.CANCEL_REQUESTED})
