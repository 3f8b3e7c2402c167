"""docs/openapi.json is what the resolver says, and says what a client needs."""

import json
from pathlib import Path

from tests.openapi_document import document

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_docs_openapi_json_matches_the_resolver() -> None:
    assert DOCUMENT.read_text() == document(), "docs/openapi.json is stale: run `make openapi`"


def test_the_document_describes_every_route_and_the_api_key() -> None:
    spec = json.loads(document())
    assert {(path, method) for path, item in spec["paths"].items() for method in item} == {
        ("/jobs", "post"),
        ("/jobs", "get"),
        ("/jobs/{job_id}", "get"),
        ("/jobs/{job_id}/cancel", "post"),
        ("/uploads", "post"),
        ("/models", "get"),
        ("/voices", "get"),
    }
    assert spec["components"]["securitySchemes"]["apiKey"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}
    create = spec["paths"]["/jobs"]["post"]
    assert "application/problem+json" in create["responses"]["422"]["content"]
    assert any(parameter["name"].lower() == "idempotency-key" for parameter in create["parameters"])
    schemas = spec["components"]["schemas"]
    assert schemas["FalMultiTextRequest"]["properties"]["num_frames"]["anyOf"][0] == {
        "type": "integer",
        "minimum": 81,
        "maximum": 129,
    }
