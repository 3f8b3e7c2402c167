"""Fault injection for the local stack: which calls fail (an exact, evenly spread share), and a record of each.

The knobs, all off unless asked for:
- Provider emulators (devstack/emulators/settings.py, decided in fault_knobs.py there and in each emulator):
  `rate_limit_submit_fraction` and `server_error_submit_fraction` (the first submit of that share of jobs answers
  429 or 503, their retry goes through), `drop_webhook_fraction` (that share of runs sends no webhook),
  `webhook_copies`, `fail_runs`, `media_error_runs` (the next N runs' videos answer 503 on every download),
  `slow_media` (the next N video downloads stall half way, long enough to crash the downloader), lost answers of
  accepted submits (`submit_answer_drops`, `submit_gateway_errors` and their fractions), fal's `app_error_runs`,
  and their request record (docs/emulators.md lists every knob with its provider evidence).
- Function workers: `LocalStack(s3_upload_failures={"FinalizeFunction": 0.05})` sets
  DEVSTACK_S3_UPLOAD_FAILURE_RATE in that function's worker, which then answers the first attempt of that
  share of its S3 uploads (PutObject, UploadPart) with S3's 500 InternalError, at the botocore boundary, before
  anything is sent: the function's own client retries as it would against S3 (see install_s3_upload_faults).
- `LocalStack.kill_worker(logical_id)`: SIGKILL of a function's worker, a crash of its execution environment;
  the invocation in flight fails, and the next one starts a new environment (a cold start), as in Lambda.
- `LocalStack(visibility_timeouts={"FinalizeQueue": 8})`: a shorter visibility timeout than the template's
  (6 x the function's timeout), so a message whose invocation crashed comes back in seconds, not minutes.

Every fault injected by a function worker or the stack is appended as one JSON line to the file named by
DEVSTACK_FAULT_LOG (the stack's `log_dir/faults.jsonl`, read back with `LocalStack.injected_faults()`); the
emulators keep theirs in `GET /_emulator/requests`. A test then asserts that its faults really happened.

Which calls are hit: `EvenSelection` takes an exact share of the distinct keys in the order they come (10 % of
200 jobs is 20 jobs, never 0 or 31), the same answer every time a key comes back (so "fail the first attempt"
holds for the key, and its retry passes). The keys are what names the job or object at that boundary: the
webhook URL of a submit (it ends with our job id), the object key and part number of an upload.
"""

import hashlib
import json
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.compat import HTTPHeaders

log = logging.getLogger("devstack.faults")

FAULT_LOG_VARIABLE = "DEVSTACK_FAULT_LOG"
S3_UPLOAD_FAILURE_RATE_VARIABLE = "DEVSTACK_S3_UPLOAD_FAILURE_RATE"
S3_UPLOAD_OPERATIONS = ("PutObject", "UploadPart")


def _unit(text: str) -> float:
    """A number in [0, 1) fixed by `text`."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


class EvenSelection:
    """Selects `fraction` of the distinct keys it is asked about, evenly spread in the order they first come.

    The n-th new key (from 0) is selected when floor((n + 1) * fraction + phase) > floor(n * fraction + phase),
    so of the first N keys floor(N * fraction + phase) are: between floor(N * fraction) and its ceiling, e.g.
    exactly 20 of 200 at 0.1. A key asked about again gets its first answer. `salt` fixes the phase: the same
    salt picks the same places in the order, another salt usually others (two faults may pick the same key).
    """

    def __init__(self, fraction: float, salt: str) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"a fraction is between 0 and 1, not {fraction}")
        self.fraction = fraction
        self.salt = salt
        self._phase = _unit(salt)
        self._decided: dict[str, bool] = {}
        self._lock = threading.Lock()

    def selects(self, key: str) -> bool:
        with self._lock:
            decided = self._decided.get(key)
            if decided is None:
                n = len(self._decided)
                before = math.floor(n * self.fraction + self._phase)
                decided = self._decided[key] = math.floor((n + 1) * self.fraction + self._phase) > before
            return decided


# --- the record ----------------------------------------------------------------------------------------------


def record_fault(kind: str, *, record_to: Path | None = None, **details: Any) -> dict[str, Any]:
    """Logs an injected fault and appends it to `record_to` or DEVSTACK_FAULT_LOG (one line per write: O_APPEND)."""
    entry = {"fault": kind, "at": time.time(), "pid": os.getpid(), **details}
    line = json.dumps(entry, default=str)
    log.warning("devstack fault injected: %s", line)
    path = record_to or os.environ.get(FAULT_LOG_VARIABLE)
    if path:
        with open(path, "a", encoding="utf-8") as record:
            record.write(line + "\n")
    return entry


def read_faults(path: Path) -> list[dict[str, Any]]:
    """The faults recorded in `path` (none when it does not exist)."""
    if not path.exists():
        return []
    entries: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            entries.append(json.loads(line))
    return entries


# --- S3 uploads in a function's worker -------------------------------------------------------------------------

_INTERNAL_ERROR = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message>"
    b"<RequestId>devstack-fault</RequestId></Error>"
)


class _Body:
    """The raw body botocore reads an answer from (what urllib3's response gives it)."""

    def __init__(self, content: bytes) -> None:
        self._content = content

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._content


def upload_key(url: str) -> str:
    """What names an upload: host, path (bucket and object key) and part number (1 for PutObject).

    E.g. `127.0.0.1/avatarjobs-outputsbucket/videos/x.mp4#1` (moto, path-style) or
    `bucket.s3.amazonaws.com/videos/x.mp4#2` (virtual-hosted).
    """
    address = urlsplit(url)
    part = parse_qs(address.query).get("partNumber", ["1"])[0]
    return f"{address.hostname}{unquote(address.path)}#{part}"


def install_s3_upload_faults(fraction: float, salt: str, session: boto3.Session | None = None) -> None:
    """Fails the first attempt of `fraction` of this process's S3 uploads with 500 InternalError.

    The hook is on boto3's default session (or `session`), so every client the function makes afterwards with
    `boto3.client()` has it. It answers in botocore's `before-send` (nothing reaches moto), so the client's
    retry policy sees a real S3 error and retries (standard mode: 500 is transient) with the same body; a
    client without retries, or code that does not retry, fails. Which uploads: see `upload_key` and
    EvenSelection; a key fails once per process (a new execution environment starts over). Each one is
    recorded (record_fault "s3_upload_500").
    """
    selection = EvenSelection(fraction, salt)
    failed: set[str] = set()
    lock = threading.Lock()

    def fail_first_attempt(request: AWSPreparedRequest, event_name: str = "", **_: Any) -> AWSResponse | None:
        key = upload_key(request.url)
        with lock:
            if key in failed or not selection.selects(key):
                return None
            failed.add(key)
        operation = event_name.rsplit(".", 1)[-1]
        record_fault(
            "s3_upload_500",
            function=os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
            operation=operation,
            key=key,
        )
        headers = HTTPHeaders.from_dict(
            {"Content-Type": "application/xml", "x-amz-request-id": uuid.uuid4().hex[:16].upper()}
        )
        return AWSResponse(request.url, 500, headers, _Body(_INTERNAL_ERROR))

    if session is None:
        if boto3.DEFAULT_SESSION is None:
            boto3.setup_default_session()
        session = boto3.DEFAULT_SESSION
    assert session is not None
    for operation in S3_UPLOAD_OPERATIONS:
        # A before-send handler may answer instead of the server (the stubs type every handler as returning None).
        session.events.register(f"before-send.s3.{operation}", fail_first_attempt)  # type: ignore[arg-type]
    log.warning("devstack: the first attempt of %.1f%% of S3 uploads answers 500", fraction * 100)


def install_from_environment() -> None:
    """What the function worker calls before importing the handler: the faults its environment asks for."""
    rate = float(os.environ.get(S3_UPLOAD_FAILURE_RATE_VARIABLE) or 0)
    if rate > 0:
        install_s3_upload_faults(rate, "s3_upload")
