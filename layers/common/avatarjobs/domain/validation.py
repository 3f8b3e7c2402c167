"""Validation errors in the caller's terms: a JSON Pointer into what they sent, and what is wrong there.

One mapping for every way a job request arrives (the HTTP API's problems, S3 manifests, bus events).
"""

from collections.abc import Iterable

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from avatarjobs.domain.requests import MODEL_NAMES


class FieldError(BaseModel):
    """One thing wrong with a request: where (a JSON pointer into it, as in the API's problems) and what."""

    pointer: str
    detail: str


def json_pointer(path: Iterable[str | int]) -> str:
    """The URI fragment form of a JSON Pointer (RFC 6901): `#/a/0/b`, with `~` and `/` in names escaped."""
    return "#" + "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def field_error(error: ErrorDetails) -> FieldError:
    """A pydantic error of a JobRequest validation as a pointer into the caller's JSON and a message."""
    path = [str(part) for part in error["loc"]]
    message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        path, message = ["model"], f"must be one of: {', '.join(sorted(MODEL_NAMES))}"
    elif path and path[0] in MODEL_NAMES:
        # The discriminated union puts the model's name first; the caller's JSON has no such level.
        path = path[1:]
    return FieldError(pointer=json_pointer(path), detail=message)


def field_errors(error: ValidationError) -> list[FieldError]:
    return [field_error(item) for item in error.errors(include_url=False)]
