"""Cross-origin access for web pages of the origins CORS_ALLOWED_ORIGINS lists (template.yaml's CorsAllowedOrigins).

Every answer of the function carries it, problems and refusals before the resolver included; a preflight is an
OPTIONS request, which the resolver answers with the resource's Allow (avatarjobs.http.resources).
"""

from typing import Any

from aws_lambda_powertools.middleware_factory import lambda_handler_decorator

from avatarjobs.settings import cors_allowed_origins

# What a page may send beyond the CORS-safelisted headers, and read beyond the safelisted response headers.
ALLOWED_HEADERS = ("Content-Type", "Idempotency-Key", "Prefer", "x-api-key")
EXPOSED_HEADERS = ("Allow", "Idempotent-Replayed", "Location", "Retry-After")
# Chromium's cap (Firefox allows a day): one preflight per resource and method every two hours.
PREFLIGHT_MAX_AGE_SECONDS = 7200


def _request_header(event: dict[str, Any], name: str) -> str | None:
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name:
            return str(value)
    return None


def cors_headers(event: dict[str, Any], response: dict[str, Any], origins: frozenset[str]) -> dict[str, str]:
    """The headers a response to this request gets: none without allowed origins, else at least Vary: Origin."""
    if not origins:
        return {}
    headers = {"Vary": "Origin"}  # the answer depends on Origin, for every cache between the page and the API
    origin = _request_header(event, "origin")
    if origin not in origins:
        return headers
    headers["Access-Control-Allow-Origin"] = origin
    preflight = event.get("httpMethod") == "OPTIONS" and _request_header(event, "access-control-request-method")
    allow = _response_header(response, "Allow")
    if preflight and allow and 200 <= int(response.get("statusCode", 0)) < 300:
        headers["Access-Control-Allow-Methods"] = allow
        headers["Access-Control-Allow-Headers"] = ", ".join(ALLOWED_HEADERS)
        headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_SECONDS)
    else:
        headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSED_HEADERS)
    return headers


def _response_header(response: dict[str, Any], name: str) -> str | None:
    for key, values in (response.get("multiValueHeaders") or {}).items():
        if key.lower() == name.lower() and values:
            return ", ".join(str(value) for value in values)
    for key, value in (response.get("headers") or {}).items():
        if key.lower() == name.lower():
            return str(value)
    return None


def _with_headers(response: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """The proxy response with these headers added, in the map it already uses (API Gateway merges both)."""
    if "multiValueHeaders" in response:
        multi = response["multiValueHeaders"]
        for name, value in headers.items():
            multi[name] = [*multi.get(name, []), value]
    else:
        response["headers"] = {**(response.get("headers") or {}), **headers}
    return response


@lambda_handler_decorator
def cross_origin(handler: Any, event: dict[str, Any], context: Any) -> Any:
    response = handler(event, context)
    headers = cors_headers(event, response, cors_allowed_origins())
    return _with_headers(response, headers) if headers else response
