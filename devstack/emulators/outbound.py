"""An emulated provider's calls out: reading a job's input files, and delivering its webhooks."""

import base64
import binascii
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import httpx

from devstack.emulators.runs import Run

logger = logging.getLogger("devstack.emulators")

INPUT_MAX_BYTES = 32 * 1024 * 1024
INPUT_FETCH_TIMEOUT = httpx.Timeout(10.0)
WEBHOOK_TIMEOUT = httpx.Timeout(10.0)
WEBHOOK_FIRST_BACKOFF_SECONDS = 0.25
WEBHOOK_MAX_BACKOFF_SECONDS = 2.0
_JSON = "application/json"


class InputUnavailable(Exception):
    """An input file (URL or data URI) could not be read; `reason` is the message the provider would give."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def fetch_input(url: str, *, max_bytes: int = INPUT_MAX_BYTES) -> bytes:
    """The bytes of an input the way a provider gets them: a data URI, or a GET of an http(s) URL.

    In the local stack the URLs are moto's presigned S3 URLs on 127.0.0.1.
    """
    if url.startswith("data:"):
        return _data_uri_bytes(url, max_bytes)
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise InputUnavailable("the URL is neither http(s) nor a data URI")
    try:
        with (
            httpx.Client(timeout=INPUT_FETCH_TIMEOUT, follow_redirects=True) as client,
            client.stream("GET", url) as response,
        ):
            if not response.is_success:
                raise InputUnavailable(f"the file's server answered HTTP {response.status_code}")
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise InputUnavailable(f"the file is larger than {max_bytes} bytes")
                chunks.append(chunk)
    except httpx.HTTPError as error:
        raise InputUnavailable(f"the file could not be downloaded ({type(error).__name__})") from None
    if not size:
        raise InputUnavailable("the file is empty")
    return b"".join(chunks)


def _data_uri_bytes(uri: str, max_bytes: int) -> bytes:
    header, comma, data = uri.partition(",")
    if not comma:
        raise InputUnavailable("the data URI has no data")
    if header.endswith(";base64"):
        try:
            content = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise InputUnavailable("the data URI is not valid base64") from None
    else:
        content = urllib.parse.unquote_to_bytes(data)
    if not content:
        raise InputUnavailable("the data URI is empty")
    if len(content) > max_bytes:
        raise InputUnavailable(f"the file is larger than {max_bytes} bytes")
    return content


def deliver_webhook(
    provider: str,
    run: Run,
    body: bytes,
    headers: Callable[[], dict[str, str]],
    *,
    copies: int,
    attempts: int,
    stopping: threading.Event,
) -> None:
    """POSTs the webhook `copies` times; each copy is retried until a 2xx, `attempts` times at most.

    `headers` is called for every delivery: a signature carries the time of its own delivery. The backoff
    between attempts ends early when `stopping` is set.
    """
    if not run.webhook_url:
        return
    if run.drop_webhook:
        run.log("webhook not sent (emulated loss)")
        return
    with httpx.Client(timeout=WEBHOOK_TIMEOUT) as client:
        for copy in range(copies):
            _deliver_one(provider, client, run, body, headers, copy=copy, attempts=attempts, stopping=stopping)


def _deliver_one(
    provider: str,
    client: httpx.Client,
    run: Run,
    body: bytes,
    headers: Callable[[], dict[str, str]],
    *,
    copy: int,
    attempts: int,
    stopping: threading.Event,
) -> None:
    assert run.webhook_url is not None
    backoff = WEBHOOK_FIRST_BACKOFF_SECONDS
    for attempt in range(1, attempts + 1):
        outcome: dict[str, Any] = {"copy": copy, "attempt": attempt, "at": time.time()}
        try:
            answer = client.post(run.webhook_url, content=body, headers={"Content-Type": _JSON, **headers()})
            outcome["status"] = answer.status_code
            delivered = answer.is_success
        except httpx.HTTPError as error:
            outcome["error"] = type(error).__name__
            delivered = False
        run.webhook_deliveries.append(outcome)
        logger.info("%s webhook for %s: %s", provider, run.request_id, outcome)
        if delivered or attempt == attempts or stopping.wait(backoff):
            return
        backoff = min(backoff * 2, WEBHOOK_MAX_BACKOFF_SECONDS)
