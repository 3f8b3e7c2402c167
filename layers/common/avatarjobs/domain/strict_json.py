"""JSON read as I-JSON (RFC 7493): what every JSON parser reads the same way, or a refusal naming where it is not.

Python's json module reads `NaN` and `Infinity` (not JSON), turns `1e400` into infinity (which it would write back
as the non-JSON `Infinity`, or our stores as null), keeps the last of repeated member names, reads integers no
double can hold (JavaScript clients would round them), and fails with other errors than JSONDecodeError on
integers of over 4,300 digits and on deep nesting. Each of those is refused here, with the JSON Pointer of the
value, so that what we store and echo is exactly what the caller sent.
"""

import json
import math
from typing import Any

INTEGER_MAX = 2**53 - 1  # RFC 7493 section 2.2: the integers an IEEE 754 double holds exactly
_DIGITS_MAX = 20  # longer integer literals are out of range anyway; int() refuses over 4,300 digits


class JsonRefused(ValueError):
    """Well-formed JSON holding a value I-JSON excludes; `path` leads to it from the document's root."""

    def __init__(self, path: tuple[str, ...], detail: str) -> None:
        super().__init__(detail)
        self.path = path
        self.detail = detail


class _Refusal:
    """Stands where a refused value was parsed, so the walk after parsing can tell where it is."""

    __slots__ = ("detail",)

    def __init__(self, detail: str) -> None:
        self.detail = detail


def _number(text: str) -> float | _Refusal:
    value = float(text)
    if math.isinf(value):
        return _Refusal(f"the number {_short(text)} is beyond what a double holds (about 1.8e308)")
    if abs(value) > INTEGER_MAX:
        # Every double this large is an integer (JSON Schema's too): 1e20 is refused as 100000000000000000000 is.
        return _Refusal(f"the number {_short(text)} is beyond +/-(2^53 - 1), the range JSON parsers agree on")
    return value


def _integer(text: str) -> int | _Refusal:
    if len(text.lstrip("-")) > _DIGITS_MAX or abs(value := int(text)) > INTEGER_MAX:
        return _Refusal(f"the integer {_short(text)} is beyond +/-(2^53 - 1), the range JSON parsers agree on")
    return value


def _constant(name: str) -> _Refusal:
    return _Refusal(f"{name} is not a JSON number")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        result[name] = _Refusal("this member name appears more than once in its object") if name in result else value
    return result


def _short(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:20]}..."


def loads(document: str | bytes) -> Any:
    """The JSON document as Python values; json.JSONDecodeError when it is not JSON, JsonRefused (the first
    refused value) when it is JSON that I-JSON excludes."""
    try:
        value = json.loads(
            document, parse_float=_number, parse_int=_integer, parse_constant=_constant, object_pairs_hook=_object
        )
    except RecursionError:
        text = document if isinstance(document, str) else document.decode("utf-8", "replace")
        raise json.JSONDecodeError("the document is nested too deeply", text, 0) from None
    _raise_first_refusal(value)
    return value


def _raise_first_refusal(value: Any) -> None:
    """Iterative, as the document may be as deep as json.loads allows."""
    pending: list[tuple[tuple[str, ...], Any]] = [((), value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, _Refusal):
            raise JsonRefused(path, item.detail)
        if isinstance(item, dict):
            pending.extend(((*path, name), member) for name, member in reversed(item.items()))
        elif isinstance(item, list):
            pending.extend(((*path, str(index)), member) for index, member in reversed(list(enumerate(item))))
