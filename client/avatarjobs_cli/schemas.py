"""The JSON the API sends, as docs/openapi.json defines it, with the few checks the CLI relies on.

These are typed views over parsed JSON, not a validating model: the CLI checks that the keys it reads are
there (a wrong --base-url answers with some other JSON) and otherwise trusts the API.
"""

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, Literal, NotRequired, TypedDict, cast

from avatarjobs_cli.errors import UnexpectedResponse


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


# A job in one of these never changes again.
TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.TIMED_OUT})


class JobError(TypedDict):
    code: str
    message: str
    retryable: NotRequired[bool]


class JobOutput(TypedDict):
    bucket: str
    key: str
    size: int
    sha256: str
    content_type: str


class JobView(TypedDict):
    job_id: str
    status: str
    provider: str
    model: str
    provider_request_id: NotRequired[str | None]  # the provider's id of the job, once submitted
    created_at: str
    updated_at: str
    deadline_at: str
    timeline: dict[str, str]  # status -> when the job entered it
    metadata: NotRequired[dict[str, Any] | None]
    error: NotRequired[JobError | None]
    output: NotRequired[JobOutput | None]
    video_url: NotRequired[str | None]  # presigned, only when SUCCEEDED


class JobPage(TypedDict):
    items: list[JobView]
    next_cursor: str | None


class UploadFile(TypedDict):
    name: str
    content_type: str
    size: int


class UploadTarget(TypedDict):
    name: str
    s3_uri: str
    method: NotRequired[Literal["PUT"]]
    url: str
    headers: dict[str, str]  # the PUT must send exactly these: they are part of the presigned signature
    expires_at: str


def job_view(value: object, what: str = "job") -> JobView:
    job = _object_with(value, JobView.__required_keys__, what)
    output = job.get("output")
    if output is not None:
        _object_with(output, JobOutput.__required_keys__, f"{what}.output")
    return cast("JobView", job)


def job_page(value: object) -> JobPage:
    page = _object_with(value, JobPage.__required_keys__, "page of jobs")
    items = page["items"]
    if not isinstance(items, list):
        raise UnexpectedResponse("the page of jobs has no list of items")
    return {"items": [job_view(item, "job in the page") for item in items], "next_cursor": page["next_cursor"]}


def upload_targets(value: object) -> list[UploadTarget]:
    uploads = _object_with(value, {"uploads"}, "uploads answer")["uploads"]
    if not isinstance(uploads, list):
        raise UnexpectedResponse("the uploads answer has no list of uploads")
    return [cast("UploadTarget", _object_with(item, UploadTarget.__required_keys__, "upload")) for item in uploads]


def _object_with(value: object, keys: Iterable[str], what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise UnexpectedResponse(f"expected a JSON object for the {what}, got {type(value).__name__}")
    missing = sorted(set(keys) - value.keys())
    if missing:
        raise UnexpectedResponse(f"the {what} lacks {', '.join(missing)}")
    return cast("Mapping[str, Any]", value)
