"""What every event source shares: a poll loop in its own thread, and Lambda's reading of a function's answer."""

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

Invoke = Callable[[str, dict[str, Any]], Any]

RECEIVE_WAIT_SECONDS = 1  # long polling, short enough that stopping never waits long
ERROR_BACKOFF_SECONDS = 1.0
DEFAULT_ASYNC_RETRIES = 2  # Lambda's for an asynchronous invocation without EventInvokeConfig
CLIENT_CONFIG = Config(connect_timeout=3, read_timeout=RECEIVE_WAIT_SECONDS + 10, retries={"max_attempts": 2})


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def queue_url_of(sqs: "SQSClient", queue_arn: str) -> str:
    return sqs.get_queue_url(QueueName=queue_arn.rsplit(":", 1)[1])["QueueUrl"]


class Poller:
    """A loop of `poll()` in its own thread until stopped; a failing poll is logged and tried again."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def join(self) -> None:
        if self.thread.ident is not None:
            self.thread.join()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.poll()
            except Exception:
                log.exception("%s: poll failed; trying again", self.name)
                self.stopping.wait(ERROR_BACKOFF_SECONDS)

    def poll(self) -> None:
        raise NotImplementedError


def stop_all(pollers: Iterable[Poller]) -> None:
    """Asks every poller to stop, then waits for each (a poll in flight finishes first)."""
    pollers = list(pollers)
    for poller in pollers:
        poller.stop()
    for poller in pollers:
        poller.join()


def reported_failures(result: Any, identifiers: list[str]) -> set[str] | None:
    """The identifiers a ReportBatchItemFailures answer names; None when the answer is invalid (all failed).

    As Lambda reads it: no answer or an empty list is full success; an identifier that is empty or not in the
    batch makes the whole answer invalid.
    """
    if not isinstance(result, dict) or not result.get("batchItemFailures"):
        return set()
    failures = result["batchItemFailures"]
    if not isinstance(failures, list):
        return None
    named = {item.get("itemIdentifier") if isinstance(item, dict) else None for item in failures}
    if not named <= set(identifiers):
        return None
    return {str(identifier) for identifier in named}
