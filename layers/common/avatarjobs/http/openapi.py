"""The OpenAPI document of the jobs API, rendered from the resolver (docs/openapi.json is this, checked by a test)."""

import json

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, Server, ServerVariable

from avatarjobs.domain.strict_json import INTEGER_MAX

API_VERSION = "1.0.0"

# pydantic's JsonValue is any JSON ({}); request bodies are read as I-JSON (domain/strict_json.py), whose numbers
# stay within +/-(2^53 - 1). Said here, in the component every metadata value refers to, so the document allows
# exactly what the reader takes.
_JSON_VALUE = {
    "description": "Any JSON value; its numbers within +/-(2^53 - 1), the range JSON parsers agree on (I-JSON).",
    "anyOf": [
        {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/JsonValue"}},
        {"type": "array", "items": {"$ref": "#/components/schemas/JsonValue"}},
        {"type": "number", "minimum": -INTEGER_MAX, "maximum": INTEGER_MAX},
        {"type": ["string", "boolean", "null"]},
    ],
}


def render(app: APIGatewayRestResolver) -> str:
    rendered = app.get_openapi_json_schema(
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
            )
        ],
        security_schemes={"apiKey": APIKey(name="x-api-key", in_=APIKeyIn.header)},
        security=[{"apiKey": []}],
    )
    document = json.loads(rendered)
    document["components"]["schemas"]["JsonValue"] = _JSON_VALUE
    return json.dumps(document)
