"""The job record: what the Jobs table keeps for one job, whatever its trigger."""

import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue

from avatarjobs.domain import limits


class JobStatus(StrEnum):
    ACCEPTED = "ACCEPTED"
    SUBMITTED = "SUBMITTED"
    RUNNING = "RUNNING"
    FINALIZING = "FINALIZING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCEL_REQUESTED = "CANCEL_REQUESTED"
    CANCELED = "CANCELED"
    TIMED_OUT = "TIMED_OUT"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.TIMED_OUT})


# The values of the request models' `provider` and `model` (requests.py), named here for the job view without
# importing the request models (the functions that take no requests never load them).
type ProviderId = Literal["fal", "mirako"]
type ModelId = Annotated[
    Literal[
        "fal-ai/ai-avatar", "fal-ai/ai-avatar/single-text", "fal-ai/ai-avatar/multi", "fal-ai/ai-avatar/multi-text",
        "talking-avatar",
    ],
    # The names a generated client gives the values (openapi-python-client would make FAL_AIAI_AVATAR of the first).
    Field(json_schema_extra={"x-enum-varnames": [
        "FAL_AI_AVATAR", "FAL_AI_AVATAR_SINGLE_TEXT", "FAL_AI_AVATAR_MULTI", "FAL_AI_AVATAR_MULTI_TEXT",
        "MIRAKO_TALKING_AVATAR",
    ]}),
]  # fmt: skip


def _metadata_fits(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > limits.METADATA_MAX_BYTES:
        raise ValueError(f"is {size} bytes as JSON; at most {limits.METADATA_MAX_BYTES} bytes are kept")
    return value


type Metadata = Annotated[
    dict[str, JsonValue],
    AfterValidator(_metadata_fits),
    Field(description=f"Your own data, returned with the job and its events (at most {limits.METADATA_MAX_BYTES} "
          "bytes as compact JSON)."),
]  # fmt: skip


# Why a job failed: the provider's failures (providers.ProviderErrorCode, the same values) and the pipeline's own.
type JobErrorCode = Literal[
    "PROVIDER_RATE_LIMITED", "PROVIDER_UNAVAILABLE", "PROVIDER_TIMEOUT", "PROVIDER_UNREACHABLE",
    "PROVIDER_CONNECTION_LOST", "PROVIDER_AUTH_FAILED", "PROVIDER_INVALID_REQUEST", "GENERATION_FAILED",
    "PROVIDER_BAD_RESPONSE", "PROVIDER_NOT_READY",
    "ENQUEUE_FAILED", "INPUT_UNAVAILABLE", "DISPATCH_FAILED", "SUBMISSION_UNCONFIRMED", "CANCELED_BY_PROVIDER",
    "DEADLINE_PASSED", "COPY_FAILED", "FINALIZE_FAILED",
]  # fmt: skip


class JobError(BaseModel):
    # The job view shows every field (null or not): the document says each is always there.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    code: JobErrorCode
    message: str
    retryable: bool = False
    # The provider's own name for the failure (fal's error type or model error type, Mirako's status), if given.
    provider_code: str | None = None


class JobOutput(BaseModel):
    bucket: str
    key: str
    size: int
    sha256: str
    content_type: str


def utc_now() -> datetime:
    return datetime.now(UTC)


def isoformat(moment: datetime) -> str:
    """ISO-8601 in UTC with milliseconds and a Z: sorts as text, which the by_status index relies on."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class ProviderResult(BaseModel):
    """Where the provider says the video is (from its webhook or status); finalize copies it from there."""

    video_url: str | None = None
    content_type: str | None = None
    file_size: int | None = None


class Job(BaseModel):
    job_id: str
    owner: str
    status: JobStatus
    version: int = Field(ge=1, description="Raised by one on every transition; the optimistic-lock counter.")
    provider: str
    model: str
    request: dict[str, Any] = Field(description="The model's validated input, as sent to the provider.")
    metadata: dict[str, Any] | None = None
    idempotency_key: str | None = None
    provider_request_id: str | None = None
    provider_urls: dict[str, str] | None = None
    attempts: int = 0
    timeline: dict[str, str] = Field(description="When the job entered each status it has been in.")
    created_at: str
    updated_at: str
    status_since: str
    deadline_at: str
    expires_at: int = Field(description="Epoch seconds after which DynamoDB's TTL may delete the record.")
    error: JobError | None = None
    output: JobOutput | None = None
    # When queueing the job for dispatch failed (the API answered 503): a retry with the same key queues it.
    enqueue_failed_at: str | None = None
    # Dispatch bookkeeping: the lease a dispatcher holds while it submits, the last retryable failure,
    # whether the provider's acceptance is unconfirmed (a submit whose answer was lost), and the hash of
    # the per-job webhook token (Mirako); the token itself is never stored.
    dispatch_lease_until: str | None = None
    last_error: JobError | None = None
    submission_unconfirmed: bool = False
    webhook_token_sha256: str | None = None
    provider_result: ProviderResult | None = None
    # Polls that found the provider's run COMPLETED but could not read its result (a gateway's 5xx page): after
    # a few, the job fails (provider_outcomes.py) rather than waiting for its deadline.
    unreadable_result_polls: int | None = None
    # When the reconciler last sent the job's message again (its own was lost, or is taking too long).
    requeued_at: str | None = None

    @classmethod
    def new(
        cls,
        *,
        job_id: str,
        owner: str,
        provider: str,
        model: str,
        request: dict[str, Any],
        metadata: dict[str, Any] | None,
        idempotency_key: str | None,
        deadline_seconds: int | None,
        now: datetime,
    ) -> "Job":
        created = isoformat(now)
        deadline = now + timedelta(seconds=deadline_seconds or limits.DEADLINE_SECONDS_DEFAULT)
        return cls(
            job_id=job_id,
            owner=owner,
            status=JobStatus.ACCEPTED,
            version=1,
            provider=provider,
            model=model,
            request=request,
            metadata=metadata,
            idempotency_key=idempotency_key,
            timeline={JobStatus.ACCEPTED: created},
            created_at=created,
            updated_at=created,
            status_since=created,
            deadline_at=isoformat(deadline),
            expires_at=int((now + timedelta(days=limits.JOB_RECORD_RETENTION_DAYS)).timestamp()),
        )
