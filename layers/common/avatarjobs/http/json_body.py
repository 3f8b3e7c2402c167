"""Request bodies read as I-JSON (domain/strict_json.py), a refused value reported like any invalid field."""

from typing import Any

from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from avatarjobs.domain import strict_json


def read_json_body(body: str) -> Any:
    """The resolver's body deserializer: a JSONDecodeError goes on to its "not valid JSON" 400."""
    try:
        return strict_json.loads(body)
    except strict_json.JsonRefused as refused:
        error = {"type": "json_refused", "loc": ("body", *refused.path), "msg": refused.detail, "input": None}
        raise RequestValidationError([error]) from None
