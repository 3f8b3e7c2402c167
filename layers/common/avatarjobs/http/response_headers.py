"""The headers the API's answers send, as the OpenAPI document declares them on the responses that send them."""

from typing import Any, cast

from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponseHeader


def _always_sent(description: str, schema: dict[str, Any]) -> OpenAPIResponseHeader:
    # Powertools' TypedDict has no `required`; it copies the entry into the document as it is.
    return cast(OpenAPIResponseHeader, {"description": description, "required": True, "schema": schema})


LOCATION = _always_sent("The job's path: GET it to follow the job", {"type": "string", "format": "uri-reference"})
IDEMPOTENT_REPLAYED = _always_sent(
    "true when the Idempotency-Key was used before and this is that request's job again",
    {"type": "string", "enum": ["true", "false"]},
)
RETRY_AFTER = _always_sent("Seconds to wait before trying again", {"type": "integer", "minimum": 1})
