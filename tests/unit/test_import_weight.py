"""What a function's cold import leaves out: the heavy packages it does not need at import (docs/decisions.md).

Fresh interpreters with each function's folder and the layer on sys.path, as Lambda has them; the test lists
the modules imported, it does not time anything (that is `make bench`).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = sorted(path.name for path in (ROOT / "functions").iterdir() if (path / "app.py").exists())
# Never at import: the X-Ray SDK (opt-in), Powertools' batch utility and parser models (partial_batch instead).
NEVER = ("aws_xray_sdk", "aws_lambda_powertools.utilities.batch", "aws_lambda_powertools.utilities.parser")
# Only the functions that call a provider import httpx and PyNaCl, and only on first use.
PROVIDER_CLIENTS = ("httpx", "nacl")
# Only the functions that take job requests (the API, S3/bus intake) build their models (a discriminated union of
# every provider's models): the rest import the problem handlers or the domain without them.
JOB_REQUEST_MODELS = "avatarjobs.domain.requests"
TAKE_JOB_REQUESTS = ("api", "ingest")


def _imported_by(function: str, *, trace_disabled: str = "true") -> set[str]:
    code = "import json, sys, app; print(json.dumps(sorted(sys.modules)))"
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "functions" / function), str(ROOT / "layers" / "common")]),
        "AWS_LAMBDA_FUNCTION_NAME": function,
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": trace_disabled,
    }
    completed = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True, cwd=ROOT
    )
    return set(json.loads(completed.stdout))


@pytest.mark.parametrize("function", FUNCTIONS)
def test_the_import_leaves_out_what_the_function_does_not_need_yet(function: str) -> None:
    imported = _imported_by(function)
    unwanted = [name for name in imported if name.startswith(NEVER) or name.split(".")[0] in PROVIDER_CLIENTS]
    if function not in TAKE_JOB_REQUESTS:
        unwanted += [name for name in imported if name == JOB_REQUEST_MODELS]
    assert unwanted == []


def test_aws_call_tracing_loads_the_xray_sdk_when_turned_on() -> None:
    assert "aws_xray_sdk" in _imported_by("reconcile", trace_disabled="false")
