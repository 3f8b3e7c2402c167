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


class FieldView(TypedDict):
    """A field of a model (GET /models): its JSON type, bounds, default and whether it must be given."""

    name: str
    required: bool
    type: str | None
    enum: NotRequired[list[Any] | None]
    default: NotRequired[Any]
    description: NotRequired[str | None]
    minimum: NotRequired[float | None]
    maximum: NotRequired[float | None]
    min_length: NotRequired[int | None]
    max_length: NotRequired[int | None]


class BillingBasis(TypedDict):
    unit: str | None
    notes: str
    multipliers: list[dict[str, Any]]
    sources: list[str]


class ModelView(TypedDict):
    id: str
    provider: str
    description: str
    fields: list[FieldView]
    voices: list[str]
    billing: NotRequired[BillingBasis]


class VoiceView(TypedDict):
    id: str
    name: NotRequired[str | None]
    languages: NotRequired[list[str]]
    premade: NotRequired[bool]
    status: NotRequired[str | None]


class VoiceList(TypedDict):
    provider: str
    voices: list[VoiceView]


def model_list(value: object) -> list[ModelView]:
    models = _object_with(value, {"models"}, "models answer")["models"]
    if not isinstance(models, list):
        raise UnexpectedResponse("the models answer has no list of models")
    checked = [cast("ModelView", _object_with(item, ModelView.__required_keys__, "model")) for item in models]
    for model in checked:
        if not isinstance(model["fields"], list):
            raise UnexpectedResponse(f"the model {model['id']} has no list of fields")
        for field in model["fields"]:
            _object_with(field, FieldView.__required_keys__, f"field of {model['id']}")
    return checked


def voice_list(value: object) -> VoiceList:
    listing = _object_with(value, VoiceList.__required_keys__, "voices answer")
    voices = listing["voices"]
    if not isinstance(voices, list):
        raise UnexpectedResponse("the voices answer has no list of voices")
    return {
        "provider": listing["provider"],
        "voices": [cast("VoiceView", _object_with(voice, VoiceView.__required_keys__, "voice")) for voice in voices],
    }


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
