"""Builds API Gateway REST proxy events from the real-shaped samples in events/, as API Gateway would send them."""

import copy
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).resolve().parent.parent / "events"
OWNER = "a1b2c3d4e5"  # the apiKeyId in the sample events
ROUTES = ["/jobs/{job_id}/cancel", "/jobs/{job_id}", "/jobs", "/uploads"]  # most specific first


@cache
def _sample(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def load_event(name: str) -> dict[str, Any]:
    return copy.deepcopy(_sample(name))


def _resource_for(path: str) -> tuple[str, dict[str, str] | None]:
    for resource in ROUTES:
        pattern = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", resource) + "$"
        match = re.match(pattern, path)
        if match:
            return resource, (match.groupdict() or None)
    return path, None


def api_event(
    method: str,
    path: str,
    *,
    body: Any = None,
    raw_body: str | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    owner: str | None = OWNER,
) -> dict[str, Any]:
    """An event for any route, built on the sample GET event so every field API Gateway sends is there."""
    event = load_event("api_get_job.json")
    resource, path_parameters = _resource_for(path)
    all_headers = {**event["headers"], **(headers or {})}
    if body is not None or raw_body is not None:
        all_headers.setdefault("Content-Type", "application/json")
    event.update(
        resource=resource,
        path=path,
        httpMethod=method,
        headers=all_headers,
        multiValueHeaders={name: [value] for name, value in all_headers.items()},
        queryStringParameters=query,
        multiValueQueryStringParameters={name: [value] for name, value in query.items()} if query else None,
        pathParameters=path_parameters,
        body=raw_body if raw_body is not None else (json.dumps(body) if body is not None else None),
    )
    context = event["requestContext"]
    context.update(resourcePath=resource, httpMethod=method, path=f"/{context['stage']}{path}")
    context["identity"]["apiKeyId"] = owner
    return event
