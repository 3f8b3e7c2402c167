"""`name=value` options: strings by default, `name:=<JSON>` for numbers, booleans, lists and objects."""

import json
from collections.abc import Iterable
from typing import Any

from avatarjobs_cli.errors import CliError


def parse_assignments(assignments: Iterable[str], option: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for assignment in assignments:
        name, separator, text = assignment.partition("=")
        if not separator or not name.rstrip(":"):
            raise CliError(f"{option} {assignment!r}: expected NAME=VALUE, or NAME:=JSON for a number or boolean.")
        value: Any = text
        if name.endswith(":"):
            name = name[:-1]
            try:
                value = json.loads(text)
            except json.JSONDecodeError as error:
                raise CliError(f"{option} {name}: {text!r} is not JSON ({error.msg}).") from None
        if name in values:
            raise CliError(f"{option} {name} is given twice.")
        values[name] = value
    return values
