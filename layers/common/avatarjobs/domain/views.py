"""What callers see: the JSON shapes of the jobs API, independent of how they are transported."""

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from avatarjobs.domain import limits
from avatarjobs.domain.ids import JOB_ID_PATTERN
from avatarjobs.domain.job import Job, JobError, JobOutput, JobStatus, Metadata, ModelId, ProviderId
from avatarjobs.domain.media import CONTENT_TYPES
from avatarjobs.domain.requests import Integer

# Times stay the text the job record holds (job.isoformat: UTC, milliseconds, Z); the document says what it is.
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
Url = Annotated[str, WithJsonSchema({"type": "string", "format": "uri"})]
# Answers show every field, null or not: in the document each one is required (nullable where it can be null).
_ANSWER = ConfigDict(json_schema_serialization_defaults_required=True)


class JobView(BaseModel):
    model_config = _ANSWER

    job_id: str
    status: JobStatus
    provider: ProviderId
    model: ModelId
    provider_request_id: str | None = Field(
        default=None,
        description="The provider's id of the job (fal's request_id, Mirako's task id); null until it is submitted.",
    )
    created_at: Timestamp
    updated_at: Timestamp
    deadline_at: Timestamp
    timeline: dict[str, Timestamp] = Field(description="When the job entered each status it has been in.")
    metadata: Metadata | None = None
    error: JobError | None = None
    output: JobOutput | None = None
    video_url: Url | None = Field(
        default=None, description="A presigned download URL of the video, when the job SUCCEEDED (GET /jobs/{id})."
    )

    @classmethod
    def of(cls, job: Job, *, video_url: str | None = None) -> "JobView":
        return cls(
            job_id=job.job_id,
            status=job.status,
            provider=job.provider,
            model=job.model,
            provider_request_id=job.provider_request_id,
            created_at=job.created_at,
            updated_at=job.updated_at,
            deadline_at=job.deadline_at,
            timeline=job.timeline,
            metadata=job.metadata,
            error=job.error,
            output=job.output,
            video_url=video_url,
        )


def _iso_8601_only(value: Any) -> Any:
    # The datetime type also reads "1700000000" as a Unix time: query parameters say ISO 8601, and only that.
    if isinstance(value, str) and not _ISO_8601_DATE_TIME.match(value):
        raise ValueError("must be an ISO 8601 date-time with a time zone, e.g. 2025-06-01T10:00:00Z")
    return value


_ISO_8601_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")
# A date-time with its offset (Z or +hh:mm), as query parameters take it.
IsoDateTime = Annotated[AwareDatetime, BeforeValidator(_iso_8601_only)]


class JobPage(BaseModel):
    model_config = _ANSWER

    items: list[JobView]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page.",
        json_schema_extra={"pattern": JOB_ID_PATTERN},
    )


_SAFE_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_UPLOAD_CONTENT_TYPES = sorted(limits.IMAGE_CONTENT_TYPES | limits.AUDIO_CONTENT_TYPES)


class UploadFile(BaseModel):
    # strict: `"size": true` is no size. The allOf is _within_kind_limit in the document: each kind its maximum, as
    # if/then (not anyOf, which a generated client turns into one partial class per kind).
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "allOf": [
                {
                    "if": {"properties": {"content_type": {"enum": list[JsonValue](sorted(content_types))}}},
                    "then": {"properties": {"size": {"maximum": limits.UPLOAD_MAX_BYTES[kind]}}},
                }
                for kind, content_types in CONTENT_TYPES.items()
            ]
        },
    )

    # The pattern is in the document; the validator says it in words.
    name: Annotated[
        str,
        Field(
            min_length=1,
            max_length=limits.UPLOAD_FILENAME_MAX_CHARS,
            json_schema_extra={"pattern": _SAFE_FILENAME.pattern},
        ),
    ]
    content_type: str = Field(json_schema_extra={"enum": list[JsonValue](_UPLOAD_CONTENT_TYPES)})
    size: Integer = Field(
        gt=0,
        le=max(limits.UPLOAD_MAX_BYTES.values()),
        description="Exact size in bytes; the upload must send this Content-Length. "
        + "; ".join(f"{kind}s at most {size} bytes" for kind, size in limits.UPLOAD_MAX_BYTES.items())
        + ".",
    )

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        if not _SAFE_FILENAME.fullmatch(name):  # fullmatch: Python's $ also matches before a final newline
            raise ValueError("may hold only letters, digits, '.', '_' and '-', and must start with a letter or digit")
        return name

    @field_validator("content_type")
    @classmethod
    def _accepted_type(cls, content_type: str) -> str:
        if content_type not in _UPLOAD_CONTENT_TYPES:
            raise ValueError(f"must be one of: {', '.join(_UPLOAD_CONTENT_TYPES)}")
        return content_type

    @field_validator("size")
    @classmethod
    def _within_kind_limit(cls, size: int, info: ValidationInfo) -> int:
        content_type = info.data.get("content_type")
        if content_type is not None:
            limit = limits.UPLOAD_MAX_BYTES[upload_kind(content_type)]
            if size > limit:
                raise ValueError(f"is over the {limit}-byte limit for {content_type}")
        return size


def upload_kind(content_type: str) -> Literal["image", "audio"]:
    return "image" if content_type in limits.IMAGE_CONTENT_TYPES else "audio"


class CreateUploadsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    files: list[UploadFile] = Field(min_length=1, max_length=limits.UPLOAD_MAX_FILES)


class UploadTarget(BaseModel):
    model_config = _ANSWER

    name: str
    s3_uri: Url = Field(description="Use this as the media field's value in POST /jobs once uploaded.")
    method: Literal["PUT"] = "PUT"
    url: Url
    headers: dict[str, str] = Field(description="Headers the PUT must send exactly as given.")
    expires_at: Timestamp


class UploadsView(BaseModel):
    model_config = _ANSWER

    uploads: list[UploadTarget]
