"""A submit checked against GET /models before anything is uploaded: the provider, the model and each field.

Only what the listing states for certain is checked here (names, required fields, enums, JSON types); the bounds,
patterns and the rules between fields (Mirako's text or audio_url) stay the API's to check, with its own words.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from avatarjobs_cli.errors import CliError
from avatarjobs_cli.schemas import FieldView, ModelView

# The fields that name the model: set by --provider and --model, not among a model's fields.
IDENTITY_FIELDS = ("provider", "model")
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


class InvalidSubmission(CliError):
    """The submit names a provider, a model or fields that GET /models says the API would refuse."""

    def __init__(self, message: str, problems: Sequence[str] = (), *hints: str) -> None:
        super().__init__(message, *hints)
        self.problems = list(problems)

    def lines(self) -> list[str]:
        return [self.message, *(f"  {problem}" for problem in self.problems)]


def find_model(models: Sequence[ModelView], provider: str, model: str) -> ModelView:
    providers = sorted({item["provider"] for item in models})
    if provider not in providers:
        raise InvalidSubmission(f"--provider {provider!r} is not one the API has: {', '.join(providers)}.")
    own = [item for item in models if item["provider"] == provider]
    for item in own:
        if item["id"] == model:
            return item
    elsewhere = [item["provider"] for item in models if item["id"] == model]
    hint = f"{model} is a model of {elsewhere[0]}: --provider {elsewhere[0]}." if elsewhere else None
    message = f"--model {model!r} is not a model of {provider}: {', '.join(item['id'] for item in own)}."
    raise InvalidSubmission(message, (), *([hint] if hint else []))


def check_request(model: ModelView, request: Mapping[str, Any]) -> None:
    """InvalidSubmission naming every field of `request` that the model's listing refuses, all at once."""
    fields = {field["name"]: field for field in model["fields"]}
    problems: list[str] = []
    for name, value in request.items():
        if name in IDENTITY_FIELDS:
            continue
        field = fields.get(name)
        if field is None:
            problems.append(f"{name}: {model['id']} has no such field")
            continue
        problems += [f"{name}: {problem}" for problem in _value_problems(field, value)]
    problems += [f"{name}: is required" for name, field in fields.items() if field["required"] and name not in request]
    if problems:
        known = ", ".join(f"{name}{'' if field['required'] else '?'}" for name, field in fields.items())
        raise InvalidSubmission(
            f"{model['id']} would refuse this request (nothing was uploaded or ordered):",
            problems,
            f"Its fields ('?': optional): {known}. See `avatarjobs models`.",
        )


def _value_problems(field: FieldView, value: Any) -> list[str]:
    expected = _JSON_TYPES.get(field.get("type") or "")
    # JSON has no boolean among its numbers, while Python's bool is an int.
    if expected is not None and (not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected)):
        how = "" if field["type"] == "string" else f" (give it as --field {field['name']}:=<JSON>)"
        return [f"takes a JSON {field['type']}, not {type(value).__name__} {value!r}{how}"]
    enum = field.get("enum")
    if enum and value not in enum:
        return [f"{value!r} is not one of: {', '.join(map(str, enum))}"]
    return []
