"""The jobs API's resources and browsers: every method of a resource answered (405 with Allow, OPTIONS), and CORS
for the origins CORS_ALLOWED_ORIGINS lists. The real handler under moto, with API Gateway events."""

import json
from typing import Any

import pytest

from devstack.cloudformation import Stack
from functions.api.app import lambda_handler
from tests.api_events import api_event
from tests.lambda_context import LambdaContext

APP_ORIGIN = "https://app.example.com"
OTHER_APP_ORIGIN = "http://localhost:5173"
JOB = "/jobs/01HZZZZZZZZZZZZZZZZZZZZZZZ"
Answer = tuple[int, dict[str, str], Any]


def answer(event: dict[str, Any]) -> Answer:
    response = lambda_handler(event, LambdaContext("ApiFunction"))
    headers = {name: ", ".join(values) for name, values in (response.get("multiValueHeaders") or {}).items()}
    headers.update(response.get("headers") or {})
    body = response["body"]
    return response["statusCode"], headers, json.loads(body) if body else None


def cors_headers(headers: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower().startswith("access-control-")}


def preflight(path: str, origin: str, method: str = "POST") -> dict[str, Any]:
    """A browser's preflight: no API key, so API Gateway gives the event no key identity."""
    headers = {"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": "x-api-key"}
    return api_event("OPTIONS", path, headers=headers, owner=None)


@pytest.fixture
def allowed_origins(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", f"{APP_ORIGIN},{OTHER_APP_ORIGIN}")


# -- methods ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", JOB, "GET, OPTIONS"),
        ("PUT", "/jobs", "GET, OPTIONS, POST"),
        ("GET", f"{JOB}/cancel", "OPTIONS, POST"),
        ("PATCH", "/uploads", "OPTIONS, POST"),
        ("HEAD", "/uploads", "OPTIONS, POST"),
    ],
)
def test_a_method_a_resource_does_not_take_is_a_405_problem_whose_allow_names_those_it_takes(
    stack: Stack, method: str, path: str, allow: str
) -> None:
    status, headers, problem = answer(api_event(method, path))

    assert status == 405
    assert headers["Content-Type"] == "application/problem+json"
    assert headers["Allow"] == allow
    assert problem["status"] == 405
    assert problem["code"] == "method_not_allowed"
    assert method in problem["detail"]


def test_options_needs_no_api_key_and_answers_the_methods_of_the_resource(stack: Stack) -> None:
    status, headers, body = answer(api_event("OPTIONS", "/jobs", owner=None))

    assert (status, body) == (204, None)
    assert headers["Allow"] == "GET, OPTIONS, POST"


def test_a_path_with_a_trailing_slash_is_no_resource_though_api_gateway_passes_it_on(stack: Stack) -> None:
    event = api_event("GET", "/jobs/")
    event["resource"] = "/jobs"  # API Gateway routes /jobs/ to the /jobs resource

    status, headers, problem = answer(event)

    assert (status, problem["code"]) == (404, "not_found")
    assert headers["Content-Type"] == "application/problem+json"


def test_a_resource_the_function_has_no_route_for_is_a_404_problem_whatever_the_method(stack: Stack) -> None:
    for method in ("GET", "DELETE", "OPTIONS"):
        status, _, problem = answer(api_event(method, "/elsewhere"))

        assert (status, problem["code"]) == (404, "not_found")


# -- CORS ---------------------------------------------------------------------------------------------------


def test_without_allowed_origins_no_answer_carries_cors_headers(stack: Stack) -> None:
    for event in (preflight("/jobs", APP_ORIGIN), api_event("GET", "/jobs", headers={"Origin": APP_ORIGIN})):
        status, headers, _ = answer(event)

        assert status in (200, 204)
        assert cors_headers(headers) == {}
        assert "Vary" not in headers


@pytest.mark.parametrize("origin", [APP_ORIGIN, OTHER_APP_ORIGIN])
def test_a_preflight_from_an_allowed_origin_allows_the_resources_methods_and_the_headers_the_api_reads(
    allowed_origins: None, origin: str
) -> None:
    status, headers, _ = answer(preflight(JOB, origin, method="GET"))

    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == origin
    assert headers["Access-Control-Allow-Methods"] == "GET, OPTIONS"
    allowed_headers = {name.strip().lower() for name in headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed_headers >= {"x-api-key", "content-type", "idempotency-key", "prefer"}
    assert int(headers["Access-Control-Max-Age"]) > 0
    assert headers["Vary"] == "Origin"


def test_a_preflight_from_another_origin_gets_no_cors_headers(allowed_origins: None) -> None:
    for origin in ("https://evil.example", "null", f"{APP_ORIGIN}.evil.example"):
        status, headers, _ = answer(preflight("/jobs", origin))

        assert status == 204
        assert cors_headers(headers) == {}
        assert headers["Vary"] == "Origin"  # a cache must not give this answer to the allowed origin


@pytest.mark.parametrize(
    ("method", "path", "extra", "status"),
    [
        ("GET", "/jobs", {}, 200),
        ("POST", "/jobs", {"body": {"model": "nope"}}, 422),
        ("POST", "/uploads", {"raw_body": "files", "headers": {"Content-Type": "text/plain"}}, 415),  # before routing
        ("DELETE", JOB, {}, 405),
        ("GET", JOB, {}, 404),
    ],
)
def test_success_and_problem_answers_name_the_allowed_origin_to_it_and_to_no_other(
    allowed_origins: None, method: str, path: str, extra: dict[str, Any], status: int
) -> None:
    fields = {name: value for name, value in extra.items() if name != "headers"}
    allowed = answer(api_event(method, path, headers={**extra.get("headers", {}), "Origin": APP_ORIGIN}, **fields))
    other_headers = {**extra.get("headers", {}), "Origin": "https://evil.example"}
    other = answer(api_event(method, path, headers=other_headers, **fields))

    assert allowed[0] == other[0] == status, allowed[2]
    assert allowed[1]["Access-Control-Allow-Origin"] == APP_ORIGIN
    exposed = {name.strip() for name in allowed[1]["Access-Control-Expose-Headers"].split(",")}
    assert exposed >= {"Location", "Idempotent-Replayed", "Retry-After", "Allow"}
    assert allowed[1]["Vary"] == other[1]["Vary"] == "Origin"
    assert cors_headers(other[1]) == {}
