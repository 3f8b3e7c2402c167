"""RFC 9457 problem details for every error the HTTP API returns: the field's path, never a stack trace."""

import base64
import binascii
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.middleware_factory import lambda_handler_decorator
from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import ErrorDetails

from avatarjobs.domain import limits
from avatarjobs.domain.errors import (
    IdempotencyConflict,
    InvalidCursor,
    InvalidInput,
    InvalidQueryParameter,
    JobNotCancelable,
    JobNotFound,
    ServiceUnavailable,
    TransitionConflict,
)
from avatarjobs.domain.providers import InvalidWebhook, ProviderError, SigningKeysUnavailable, UnknownProvider
from avatarjobs.http.response_headers import RETRY_AFTER
from avatarjobs.observability import logger

PROBLEM_JSON = "application/problem+json"


# Every code a problem of ours has, then those of API Gateway's own answers (template.yaml's GatewayResponses).
type ProblemCode = Literal[
    "malformed_json", "validation_failed", "invalid_cursor", "job_not_found", "not_found", "idempotency_conflict",
    "job_not_cancelable", "concurrent_update", "payload_too_large", "unsupported_media_type", "api_key_required",
    "webhook_not_authentic", "service_unavailable", "internal_error", "method_not_allowed",
    # API Gateway's own answers (template.yaml's GatewayResponses)
    "bad_request_body", "bad_request_parameters", "invalid_api_key", "access_denied",
    "resource_not_found", "throttled", "quota_exceeded", "api_configuration_error", "integration_failure",
    "integration_timeout",
]  # fmt: skip


class FieldProblem(BaseModel):
    """One invalid field: a body field by its JSON Pointer, a parameter by its name."""

    location: Literal["body", "query", "path", "header"]
    # A None is left out of the answer (problem_body), never sent as null: SkipJsonSchema keeps null out of the
    # document (here and in Problem.errors).
    pointer: str | SkipJsonSchema[None] = Field(
        default=None, description="JSON Pointer (RFC 6901) into the body, as a URI fragment: #/image_url (body only)"
    )
    name: str | SkipJsonSchema[None] = Field(
        default=None, description="The parameter's name (query, path or header only)"
    )
    detail: str


class Problem(BaseModel):
    """RFC 9457 problem details; `code` names the problem, `errors` the invalid fields (validation_failed)."""

    type: str = Field(
        description="A URI reference of the problem type: about:blank, as the status says it all",
        json_schema_extra={"format": "uri-reference"},
    )
    title: str = Field(description="The status's phrase")
    status: int = Field(ge=400, le=599)
    detail: str = Field(description="What went wrong, for a person")
    code: ProblemCode = Field(description="A stable, machine-readable name of the problem")
    errors: list[FieldProblem] | SkipJsonSchema[None] = Field(
        default=None,
        description="The invalid fields, each by its pointer or its name (validation_failed, invalid_cursor)",
    )


class UnsupportedMediaType(Exception):
    """A body that is not JSON where JSON is required."""


class MissingCaller(Exception):
    """The request carries no API key identity (API Gateway was configured without the key requirement)."""


def problem_body(status: HTTPStatus, code: ProblemCode, detail: str, errors: list[FieldProblem] | None = None) -> str:
    problem = Problem(type="about:blank", title=status.phrase, status=status, detail=detail, code=code, errors=errors)
    return problem.model_dump_json(exclude_none=True)


def problem(
    status: HTTPStatus,
    code: ProblemCode,
    detail: str,
    errors: list[FieldProblem] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    return Response(
        status_code=status,
        content_type=PROBLEM_JSON,
        body=problem_body(status, code, detail, errors),
        headers=headers,
    )


def _field_problem(error: Any) -> FieldProblem:
    location, *path = [str(part) for part in error["loc"]] or ["body"]
    if location == "body":
        # Only a validated body needs the job-request models behind field_error: the webhook never pays for them.
        from avatarjobs.domain.validation import field_error  # noqa: PLC0415

        body_error = ErrorDetails(type=error["type"], loc=tuple(path), msg=error.get("msg", ""), input=None)
        field = field_error(body_error)
        return FieldProblem(location="body", pointer=field.pointer, detail=field.detail)
    message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
    return FieldProblem(location=location, name=path[0] if path else None, detail=message)


def _validation_problem(error: RequestValidationError) -> Response[Any]:
    errors = error.errors()
    if any(item["type"] == "json_invalid" for item in errors):
        return problem(HTTPStatus.BAD_REQUEST, "malformed_json", "the request body is not valid JSON")
    return _fields_invalid([_field_problem(item) for item in errors])


def _fields_invalid(fields: list[FieldProblem]) -> Response[Any]:
    noun = "field is" if len(fields) == 1 else "fields are"
    return problem(HTTPStatus.UNPROCESSABLE_ENTITY, "validation_failed", f"{len(fields)} {noun} invalid", errors=fields)


def _invalid_input(error: InvalidInput) -> Response[Any]:
    return _fields_invalid(
        [FieldProblem(location="body", pointer="#" + pointer, detail=message) for pointer, message in error.fields]
    )


def _invalid_query_parameter(error: InvalidQueryParameter) -> Response[Any]:
    field = FieldProblem(location="query", name=error.name, detail=error.message)
    return problem(HTTPStatus.UNPROCESSABLE_ENTITY, "validation_failed", "1 field is invalid", errors=[field])


def _invalid_cursor(error: InvalidCursor) -> Response[Any]:
    field = FieldProblem(location="query", name="cursor", detail=str(error))
    return problem(HTTPStatus.BAD_REQUEST, "invalid_cursor", str(error), errors=[field])


def _unavailable(error: ServiceUnavailable) -> Response[Any]:
    return problem(HTTPStatus.SERVICE_UNAVAILABLE, "service_unavailable", str(error), headers={"Retry-After": "2"})


def _unexpected(_: Exception) -> Response[Any]:
    logger.exception("unhandled error")
    return problem(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "an internal error occurred")


# Errors whose problem is their status, a code and their own message.
_SIMPLE_PROBLEMS: dict[type[Exception], tuple[HTTPStatus, ProblemCode, str | None]] = {
    JobNotFound: (HTTPStatus.NOT_FOUND, "job_not_found", None),
    NotFoundError: (HTTPStatus.NOT_FOUND, "not_found", "no such resource"),
    IdempotencyConflict: (HTTPStatus.CONFLICT, "idempotency_conflict", None),
    JobNotCancelable: (HTTPStatus.CONFLICT, "job_not_cancelable", None),
    TransitionConflict: (HTTPStatus.CONFLICT, "concurrent_update", None),
    RequestUnsupportedContentType: (
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "send application/json",
    ),
    MissingCaller: (HTTPStatus.FORBIDDEN, "api_key_required", "this API needs an API key (x-api-key)"),
    InvalidWebhook: (HTTPStatus.UNAUTHORIZED, "webhook_not_authentic", "the call is not an authentic webhook"),
    UnknownProvider: (HTTPStatus.NOT_FOUND, "not_found", "no such provider"),
    UnsupportedMediaType: (HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "send application/json"),
    # The provider retries its webhook on a 5xx: right when we could not check or confirm it just now.
    SigningKeysUnavailable: (HTTPStatus.SERVICE_UNAVAILABLE, "service_unavailable", "try again later"),
    ProviderError: (HTTPStatus.SERVICE_UNAVAILABLE, "service_unavailable", "the provider could not be reached"),
}


def _simple_problem(error: Exception) -> Response[Any]:
    status, code, detail = next(
        entry for error_type, entry in _SIMPLE_PROBLEMS.items() if isinstance(error, error_type)
    )
    return problem(status, code, detail or str(error))


def register_problem_handlers(app: APIGatewayRestResolver) -> None:
    """Turn every exception a route may raise into a problem response."""
    handlers: dict[type[Exception], Callable[[Any], Response[Any]]] = {
        RequestValidationError: _validation_problem,
        InvalidInput: _invalid_input,
        InvalidQueryParameter: _invalid_query_parameter,
        InvalidCursor: _invalid_cursor,
        ServiceUnavailable: _unavailable,
        **dict.fromkeys(_SIMPLE_PROBLEMS, _simple_problem),
        Exception: _unexpected,
    }
    for error_type, handler in handlers.items():
        app.exception_handler(error_type)(handler)


def _body_size(event: dict[str, Any]) -> int:
    body = event.get("body") or ""
    return len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode())


def _declared_media_type(event: dict[str, Any]) -> str | None:
    """The body's media type from the Content-Type header (any case), without parameters; None without one."""
    for name, value in (event.get("headers") or {}).items():
        if name.lower() == "content-type" and value is not None:
            return str(value).split(";")[0].strip().lower()
    return None


def _refusal(status: HTTPStatus, code: ProblemCode, detail: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": PROBLEM_JSON},
        "body": problem_body(status, code, detail),
        "isBase64Encoded": False,
    }


@lambda_handler_decorator
def refuse_oversized_body(
    handler: Any, event: dict[str, Any], context: Any, max_bytes: int = limits.REQUEST_BODY_MAX_BYTES
) -> Any:
    """413 before anything parses a body that is over the limit; 415 for a body that says it is not JSON.

    The resolver's validation would otherwise parse form and multipart bodies too (and fail with a 500 on a
    multipart type without a boundary): these APIs take JSON only. A body without a Content-Type is read as JSON.
    """
    if _body_size(event) > max_bytes:
        detail = f"the request body is over {max_bytes} bytes; upload media with POST /uploads"
        return _refusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "payload_too_large", detail)
    media_type = _declared_media_type(event)
    if event.get("body") and media_type is not None and media_type != "application/json":
        return _refusal(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "send application/json")
    if not _is_utf8(event):  # JSON is UTF-8 (RFC 8259); the resolver would fail on other bytes with a 500
        return _refusal(HTTPStatus.BAD_REQUEST, "malformed_json", "the request body is not valid JSON")
    return handler(event, context)


def _is_utf8(event: dict[str, Any]) -> bool:
    """False for a body that API Gateway passed as base64 (not UTF-8 text) and that does not decode as UTF-8."""
    if not event.get("isBase64Encoded") or not event.get("body"):
        return True
    try:
        base64.b64decode(event["body"]).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return True


_PROBLEM_DESCRIPTIONS = {
    400: "Malformed request",
    403: "No API key, or not a valid one (API Gateway)",
    404: "No such job (or not yours)",
    409: "Conflict with the job's state or an earlier request",
    413: "Body too large",
    415: "The body is not application/json",
    422: "A field is invalid: `errors` names it",
    429: "Over the key's rate limit or quota (API Gateway): retry later",
    503: "A dependency failed: retry (with the same Idempotency-Key)",
}
# What API Gateway itself answers on every route of the API (template.yaml's GatewayResponses, same shape).
GATEWAY_PROBLEMS = (403, 429)


def problem_responses(*statuses: int) -> dict[int, OpenAPIResponse]:
    """OpenAPI entries for the problems a route can answer, and those API Gateway answers on every route."""
    responses: dict[int, OpenAPIResponse] = {
        status: {"description": _PROBLEM_DESCRIPTIONS[status], "content": {PROBLEM_JSON: {"model": Problem}}}
        for status in sorted({*statuses, *GATEWAY_PROBLEMS})
    }
    # _unavailable's: the only 503 of the jobs API (ProviderError's and SigningKeysUnavailable's are the webhooks').
    if HTTPStatus.SERVICE_UNAVAILABLE in responses:
        responses[HTTPStatus.SERVICE_UNAVAILABLE]["headers"] = {"Retry-After": RETRY_AFTER}
    return responses


Handler = Callable[[dict[str, Any], Any], Any]


def refuse_bodies_over(max_bytes: int) -> Callable[[Handler], Handler]:
    """refuse_oversized_body with another limit, typed for the handlers it wraps."""
    decorator: Callable[[Handler], Handler] = refuse_oversized_body(max_bytes=max_bytes)
    return decorator
