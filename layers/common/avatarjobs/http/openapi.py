"""The OpenAPI document of the jobs API, rendered from the resolver (docs/openapi.json is this, checked by a test)."""

import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, Server, ServerVariable

from avatarjobs.domain.strict_json import INTEGER_MAX

API_VERSION = "1.0.0"
_COMPONENT = "#/components/schemas/"

# pydantic's JsonValue is any JSON ({}); request bodies are read as I-JSON (domain/strict_json.py), whose numbers
# stay within +/-(2^53 - 1). Said here, in the component every metadata value refers to, so the document allows
# what the reader takes. Not recursive: openapi-python-client cannot parse a component that refers to itself
# (it drops it with a warning), so values nested in an object or array are any JSON here.
_JSON_VALUE = {
    "description": "Any JSON value; its numbers within +/-(2^53 - 1), the range JSON parsers agree on (I-JSON).",
    "anyOf": [
        {"type": "object", "additionalProperties": True},
        {"type": "array", "items": {}},
        {"type": "number", "minimum": -INTEGER_MAX, "maximum": INTEGER_MAX},
        {"type": "string"},
        {"type": "boolean"},
        {"type": "null"},
    ],
}


def render(app: APIGatewayRestResolver) -> str:
    document = app.get_openapi_schema(
        title="avatarjobs",
        version=API_VERSION,
        summary="Talking-avatar videos from a face image and text or speech",
        description="Order a video (POST /jobs), follow it (GET /jobs/{job_id}), download it when it SUCCEEDED. "
        "Errors are application/problem+json (RFC 9457) and name the offending field.",
        servers=[
            Server(
                url="https://{api_id}.execute-api.{region}.amazonaws.com/v1",
                # OpenAPI requires a default for every variable of a server URL.
                variables={
                    "api_id": ServerVariable(default="api-id", description="The REST API's id (stack output)"),
                    "region": ServerVariable(default="us-east-1", description="The stack's AWS region"),
                },
            ),
            Server(
                url="http://127.0.0.1:{port}/v1",
                description="The local stack (`make up` prints its URL)",
                variables={"port": ServerVariable(default="3000", description="The port `make up` prints")},
            ),
        ],
        security_schemes={"apiKey": APIKey(name="x-api-key", in_=APIKeyIn.header)},
        security=[{"apiKey": []}],
    ).model_dump(mode="json", by_alias=True, exclude_none=True)
    document["components"]["schemas"]["JsonValue"] = _JSON_VALUE
    return json.dumps(_without_unused_schemas(_without_default_validation_answers(document)))


def _without_default_validation_answers(document: dict[str, Any]) -> dict[str, Any]:
    """The operations without the 422 the resolver adds to a route that documents none (GET /models): its body,
    HTTPValidationError, is never sent (our handlers answer a Problem) and such a route has nothing to validate."""
    default = {"$ref": f"{_COMPONENT}HTTPValidationError"}
    for operations in document["paths"].values():
        for operation in operations.values():
            answer = operation.get("responses", {}).get("422", {})
            if answer.get("content", {}).get("application/json", {}).get("schema") == default:
                del operation["responses"]["422"]
    return document


def _without_unused_schemas(document: dict[str, Any]) -> dict[str, Any]:
    """The document without the schemas nothing refers to: the resolver adds its validation-error models
    (HTTPValidationError, ValidationError, ResponseValidationError) to every document, and our problem
    handlers answer a Problem instead."""
    schemas: dict[str, Any] = document["components"]["schemas"]
    used: set[str] = set()
    pending = [{key: value for key, value in document.items() if key != "components"}]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            reference = node.get("$ref")
            if isinstance(reference, str) and reference.startswith(_COMPONENT):
                name = reference.removeprefix(_COMPONENT)
                if name not in used:
                    used.add(name)
                    pending.append(schemas[name])
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    document["components"]["schemas"] = {name: schema for name, schema in schemas.items() if name in used}
    return document
