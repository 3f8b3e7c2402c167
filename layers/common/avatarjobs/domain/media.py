"""Media inputs: every image or audio field takes an https URL, a base64 data URI or an s3:// URI.

The checks here are the ones that need no context. Whether an s3:// URI points into the caller's own
uploads is checked by the jobs service, which knows the caller and the bucket.
"""

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Annotated, Literal, get_args
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, Field

from avatarjobs.domain import limits

MediaKind = Literal["image", "audio"]

_CONTENT_TYPES: dict[MediaKind, frozenset[str]] = {
    "image": limits.IMAGE_CONTENT_TYPES,
    "audio": limits.AUDIO_CONTENT_TYPES,
}
_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)(?:;[\w.+-]+=[\w.+-]+)*;base64,(?P<data>.*)$", re.DOTALL)
_SCHEMES_HINT = "an https:// URL, a data: URI (base64) or an s3:// URI from POST /uploads"


@dataclass(frozen=True)
class MediaField:
    """Marks a request field as a media input, so staging can find such fields by type, not by value."""

    kind: MediaKind


@dataclass(frozen=True)
class DataUri:
    content_type: str
    data: bytes


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_data_uri(value: str) -> DataUri:
    match = _DATA_URI.match(value)
    if match is None:
        raise ValueError("is not a base64 data URI (expected data:<type>;base64,<data>)")
    too_large = f"data URI is larger than {limits.DATA_URI_MAX_BYTES} bytes; upload it with POST /uploads"
    encoded = match["data"]
    # The encoded length bounds the decoded size, so a huge value is refused before it is decoded.
    if len(encoded) > 4 * -(-limits.DATA_URI_MAX_BYTES // 3):
        raise ValueError(too_large)
    try:
        data = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise ValueError("data URI is not valid base64") from None
    if not data:
        raise ValueError("data URI is empty")
    if len(data) > limits.DATA_URI_MAX_BYTES:
        raise ValueError(too_large)
    return DataUri(content_type=match["mime"].lower(), data=data)


def parse_s3_uri(value: str) -> S3Uri:
    bucket, _, key = value.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise ValueError("is not an s3:// URI of the form s3://<bucket>/<key>")
    return S3Uri(bucket=bucket, key=key)


def _check_https_url(value: str) -> None:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ValueError("is not a well-formed URL") from None
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise ValueError("is not a well-formed https URL (a host is required, credentials are not allowed)")
    if any(ch.isspace() for ch in value):
        raise ValueError("is not a well-formed URL (it contains white space)")


def _media_validator(kind: MediaKind) -> AfterValidator:
    def validate(value: str) -> str:
        scheme = value.split(":", 1)[0].lower() if ":" in value else ""
        if scheme == "https":
            _check_https_url(value)
        elif scheme == "data":
            content_type = parse_data_uri(value).content_type
            if content_type not in _CONTENT_TYPES[kind]:
                allowed = ", ".join(sorted(_CONTENT_TYPES[kind]))
                raise ValueError(f"data URI type {content_type} is not an accepted {kind} type ({allowed})")
        elif scheme == "s3":
            parse_s3_uri(value)
        elif scheme == "http":
            raise ValueError("must use https:// (plain http is not accepted)")
        else:
            raise ValueError(f"must be {_SCHEMES_HINT}")
        return value

    return AfterValidator(validate)


_URL_DOC = f"{_SCHEMES_HINT}. Data URIs are limited to {limits.DATA_URI_MAX_BYTES} bytes."
ImageInput = Annotated[
    str, Field(min_length=1, description=f"The face image: {_URL_DOC}"), _media_validator("image"), MediaField("image")
]
AudioInput = Annotated[
    str, Field(min_length=1, description=f"Speech audio: {_URL_DOC}"), _media_validator("audio"), MediaField("audio")
]


def media_fields(model: type[BaseModel]) -> dict[str, MediaKind]:
    """A request model's media fields (optional ones included) and the kind of media each takes."""

    def marker(annotation: object) -> MediaField | None:
        for item in getattr(annotation, "__metadata__", ()):
            if isinstance(item, MediaField):
                return item
        return next((found for arg in get_args(annotation) if (found := marker(arg)) is not None), None)

    fields: dict[str, MediaKind] = {}
    for name, field in model.model_fields.items():
        found = next((item for item in field.metadata if isinstance(item, MediaField)), None) or marker(
            field.annotation
        )
        if found is not None:
            fields[name] = found.kind
    return fields


def media_field_names(model: type[BaseModel]) -> list[str]:
    """The names of a request model's media fields (optional ones included)."""
    return list(media_fields(model))
