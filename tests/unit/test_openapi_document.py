"""docs/openapi.json is what the resolver says, and says what a client needs."""

import json
import re
from pathlib import Path
from typing import get_args

import pytest

from avatarjobs.domain.providers import ProviderErrorCode
from avatarjobs.domain.requests import MODEL_CLASSES
from avatarjobs.http import problems
from tests.openapi_document import document

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


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


def _references(node: object) -> set[str]:
    if isinstance(node, dict):
        own = {node["$ref"].removeprefix("#/components/schemas/")} if "$ref" in node else set()
        return own.union(*(_references(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_references(value) for value in node))
    return set()


def test_each_route_has_the_teams_tag_and_camel_case_operation_id() -> None:
    operations = {(path, method): operation for path, item in json.loads(document())["paths"].items()
                  for method, operation in item.items()}  # fmt: skip
    expected = {
        ("/jobs", "post"): ("jobs", "createJob"),
        ("/jobs/{job_id}", "get"): ("jobs", "getJob"),
        ("/jobs", "get"): ("jobs", "listJobs"),
        ("/jobs/{job_id}/cancel", "post"): ("jobs", "cancelJob"),
        ("/uploads", "post"): ("uploads", "createUploads"),
    }
    for route, (tag, operation_id) in expected.items():
        assert (operations[route]["tags"], operations[route]["operationId"]) == ([tag], operation_id), route


def test_the_job_request_is_one_named_component_discriminated_by_model() -> None:
    spec = json.loads(document())
    body = spec["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/JobRequest"}
    job_request = spec["components"]["schemas"]["JobRequest"]
    assert job_request["discriminator"]["propertyName"] == "model"
    mapping = {name: f"#/components/schemas/{model.__name__}" for name, model in MODEL_CLASSES.items()}
    assert job_request["discriminator"]["mapping"] == mapping
    assert sorted(choice["$ref"] for choice in job_request["oneOf"]) == sorted(mapping.values())


def test_every_component_is_referenced_and_every_reference_is_a_component() -> None:
    spec = json.loads(document())
    schemas = spec["components"]["schemas"]
    referenced = _references({key: value for key, value in spec.items() if key != "components"})
    assert referenced | _references(schemas) == set(schemas)
    assert not {"HTTPValidationError", "ValidationError", "ResponseValidationError"} & set(schemas)


def test_shared_types_are_one_component_each_and_no_field_repeats_their_enum() -> None:
    spec = json.loads(document())
    schemas = spec["components"]["schemas"]
    for name in ("Voice", "Resolution", "Acceleration", "ProviderId", "ModelId", "JobErrorCode", "ProblemCode"):
        enum = schemas[name]["enum"]
        copies = [schema for schema in _schemas_in(spec) if schema.get("enum") == enum]
        assert copies == [schemas[name]], name
    assert schemas["Metadata"]["type"] == "object"
    assert "Metadata" in _references(schemas["JobView"])
    assert all("Metadata" in _references(schemas[model.__name__]) for model in MODEL_CLASSES.values())


def _schemas_in(node: object) -> list[dict[str, object]]:
    if isinstance(node, dict):
        return [node, *(schema for value in node.values() for schema in _schemas_in(value))]
    if isinstance(node, list):
        return [schema for value in node for schema in _schemas_in(value)]
    return []


def test_the_view_enums_list_the_values_the_request_models_and_the_providers_use() -> None:
    schemas = json.loads(document())["components"]["schemas"]
    assert set(schemas["ModelId"]["enum"]) == set(MODEL_CLASSES)
    providers = {get_args(model.model_fields["provider"].annotation)[0] for model in MODEL_CLASSES.values()}
    assert set(schemas["ProviderId"]["enum"]) == providers
    assert {code.value for code in ProviderErrorCode} <= set(schemas["JobErrorCode"]["enum"])


def test_problem_codes_list_ours_and_api_gateways_own() -> None:
    codes = set(json.loads(document())["components"]["schemas"]["ProblemCode"]["enum"])
    gateway = set(re.findall(r'"code":"([a-z_]+)"', TEMPLATE.read_text()))
    assert gateway, "template.yaml's GatewayResponses name no codes"
    assert gateway <= codes
    assert {code for _, code, _ in problems._SIMPLE_PROBLEMS.values()} <= codes


@pytest.mark.parametrize("name", ["JobView", "JobError", "JobOutput", "JobPage", "UploadTarget", "UploadsView"])
def test_every_field_of_an_answer_is_required_and_nullable_where_it_can_be_null(name: str) -> None:
    schema = json.loads(document())["components"]["schemas"][name]
    assert set(schema["required"]) == set(schema["properties"])


def test_times_are_date_times_and_urls_uris() -> None:
    schemas = json.loads(document())["components"]["schemas"]
    job = schemas["JobView"]["properties"]
    for name in ("created_at", "updated_at", "deadline_at"):
        assert job[name]["format"] == "date-time", name
    assert job["timeline"]["additionalProperties"]["format"] == "date-time"
    assert job["video_url"]["anyOf"] == [{"type": "string", "format": "uri"}, {"type": "null"}]
    upload = schemas["UploadTarget"]["properties"]
    assert (upload["url"]["format"], upload["s3_uri"]["format"], upload["expires_at"]["format"]) == (
        "uri",
        "uri",
        "date-time",
    )


def test_the_headers_answers_send_are_documented_on_those_answers() -> None:
    create = json.loads(document())["paths"]["/jobs"]["post"]["responses"]
    assert {name: header["required"] for name, header in create["202"]["headers"].items()} == {
        "Location": True,
        "Idempotent-Replayed": True,
    }
    assert create["503"]["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}


def test_a_problem_has_rfc_9457s_fields_our_code_and_the_invalid_fields() -> None:
    schemas = json.loads(document())["components"]["schemas"]
    problem = schemas["Problem"]
    assert set(problem["properties"]) == {"type", "title", "status", "detail", "code", "errors"}
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code"}
    assert problem["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/FieldProblem"}
    assert set(schemas["FieldProblem"]["required"]) == {"location", "detail"}


def test_the_servers_are_the_deployed_stage_and_the_local_stack() -> None:
    servers = json.loads(document())["servers"]
    assert [server["url"] for server in servers] == [
        "https://{api_id}.execute-api.{region}.amazonaws.com/v1",
        "http://127.0.0.1:{port}/v1",
    ]
    assert all(variable["default"] for server in servers for variable in server["variables"].values())
