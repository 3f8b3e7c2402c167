"""The job statuses the CLI knows are the domain's and the published API's: the same names, the same final ones.

The client package does not import the layer (it is installed on its own), so it keeps its own copy; this test is
what keeps the copy true.
"""

import json
from pathlib import Path
from typing import Any

from avatarjobs.domain.job import TERMINAL_STATUSES, JobStatus
from avatarjobs_cli import schemas as client

OPENAPI = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"


def status_enums(node: Any) -> list[set[str]]:
    """Every enum of docs/openapi.json that lists job statuses (the schema, and any inline copy of it)."""
    if isinstance(node, dict):
        own = [set(node["enum"])] if JobStatus.SUCCEEDED.value in node.get("enum", []) else []
        return own + [enum for value in node.values() for enum in status_enums(value)]
    if isinstance(node, list):
        return [enum for value in node for enum in status_enums(value)]
    return []


def test_the_client_knows_exactly_the_domains_statuses() -> None:
    assert {status.value for status in client.JobStatus} == {status.value for status in JobStatus}


def test_the_client_takes_the_same_statuses_for_final() -> None:
    assert {status.value for status in client.TERMINAL_STATUSES} == {status.value for status in TERMINAL_STATUSES}


def test_the_published_api_lists_the_domains_statuses_wherever_it_lists_them() -> None:
    spec = json.loads(OPENAPI.read_text())
    enums = status_enums(spec)
    assert enums, "docs/openapi.json lists no job statuses"
    assert all(enum == {status.value for status in JobStatus} for enum in enums)
    job_view = spec["components"]["schemas"]["JobView"]
    assert job_view["properties"]["status"] == {"$ref": "#/components/schemas/JobStatus"}
