"""EventBridge's pattern language, the subset the template's FilterCriteria use: exact values on nested keys.

Anything else is refused when the stack starts (`check_pattern`), so a filter is never matched differently
than Lambda would match it.
"""

import json
from collections.abc import Mapping
from typing import Any

from devstack.event_sources import UnsupportedTemplate

_SCALARS = (str, int, float, bool, type(None))


def check_pattern(pattern: Any, where: str = "") -> None:
    """Refuses what `pattern_matches` does not implement: only exact values (lists of them) on nested keys."""
    if not isinstance(pattern, dict):
        raise UnsupportedTemplate(f"filter pattern at {where or '/'} is not an object")
    for key, expected in pattern.items():
        if isinstance(expected, dict):
            check_pattern(expected, f"{where}/{key}")
        elif not isinstance(expected, list) or not all(isinstance(item, _SCALARS) for item in expected):
            raise UnsupportedTemplate(
                f"filter pattern at {where}/{key}: only lists of exact values are emulated, not {expected!r}"
            )


def _same(actual: Any, expected: Any) -> bool:
    return bool(actual == expected and type(actual) is type(expected))  # "1" is not 1, True is not 1


def pattern_matches(pattern: Mapping[str, Any], value: Any) -> bool:
    """EventBridge pattern matching for exact values: every key present, its value one of the listed ones."""
    for key, expected in pattern.items():
        if not isinstance(value, dict) or key not in value:
            return False
        actual = value[key]
        if isinstance(expected, dict):
            if not pattern_matches(expected, actual):
                return False
            continue
        candidates = actual if isinstance(actual, list) else [actual]
        if not any(_same(candidate, item) for candidate in candidates for item in expected):
            return False
    return True


def filter_patterns(properties: dict[str, Any]) -> list[dict[str, Any]]:
    """The patterns of an event's FilterCriteria, checked."""
    patterns = [json.loads(item["Pattern"]) for item in properties.get("FilterCriteria", {}).get("Filters", [])]
    for pattern in patterns:
        check_pattern(pattern)
    return patterns


def any_matches(patterns: list[dict[str, Any]], record: Any) -> bool:
    return any(pattern_matches(pattern, record) for pattern in patterns)
