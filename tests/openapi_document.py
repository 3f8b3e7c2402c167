"""Prints the jobs API's OpenAPI document (`make openapi` writes it to docs/openapi.json)."""

import json

from avatarjobs.http.openapi import render
from functions.api.app import app


def document() -> str:
    return json.dumps(json.loads(render(app)), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(document(), end="")
