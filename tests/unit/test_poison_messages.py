"""Messages whose body can never parse are dropped, logged by id and size, and counted, in every queue consumer."""

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from avatarjobs import composition
from avatarjobs.adapters.job_queues import POISON_MESSAGES_DROPPED
from devstack.cloudformation import Stack
from functions.dead_letter import app as dead_letter_app
from functions.dispatch import app as dispatch_app
from functions.finalize import app as finalize_app
from tests.api_events import load_event
from tests.lambda_context import LambdaContext

CONSUMERS: dict[str, tuple[Callable[[dict[str, Any], Any], Any], str]] = {
    "DispatchFunction": (dispatch_app.lambda_handler, "sqs_dispatch.json"),
    "FinalizeFunction": (finalize_app.lambda_handler, "sqs_finalize.json"),
    "DeadLetterFunction": (dead_letter_app.lambda_handler, "sqs_dead_letter.json"),
}
UNREADABLE = pytest.mark.parametrize(
    "body",
    ['{"job_id": "01JD0000000000000000000001", "truncated', '{"job": "no job_id here, a secret-looking token"}', ""],
    ids=["truncated-json", "no-job-id", "empty"],
)


def emitted(output: str) -> list[dict[str, Any]]:
    """The JSON documents the handler printed (Powertools logs and EMF metric blobs)."""
    documents = []
    for line in output.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict):
            documents.append(document)
    return documents


def metric_values(documents: list[dict[str, Any]], name: str) -> list[tuple[float, dict[str, str]]]:
    """Each value of the metric with the dimensions CloudWatch files it under."""
    values = []
    for document in documents:
        for directive in document.get("_aws", {}).get("CloudWatchMetrics", []):
            if any(metric["Name"] == name for metric in directive["Metrics"]):
                dimensions = {key: document[key] for group in directive["Dimensions"] for key in group}
                value = document[name]
                values += [(float(item), dimensions) for item in (value if isinstance(value, list) else [value])]
    return values


@pytest.fixture(params=CONSUMERS)
def consumer(request: pytest.FixtureRequest, stack: Stack, monkeypatch: pytest.MonkeyPatch) -> str:
    """A queue consumer's name, with the environment template.yaml gives it."""
    function: str = request.param
    for name, value in stack.function_environment(function).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FAL_KEY", "fal-secret-key")
    composition.reset()
    return function


@UNREADABLE
def test_a_message_that_can_never_parse_is_dropped_logged_by_id_and_size_and_counted(
    consumer: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, body: str
) -> None:
    handler, sample = CONSUMERS[consumer]
    event = load_event(sample)
    record: dict[str, Any] = copy.deepcopy(event["Records"][0])
    record.update(messageId="poison-0001", body=body)
    capsys.readouterr()

    response = handler({"Records": [record]}, LambdaContext(consumer))

    assert response == {"batchItemFailures": []}  # processed: not retried, not dead-lettered
    [logged] = [entry for entry in caplog.records if entry.getMessage() == "unreadable message dropped"]
    assert (logged.__dict__["message_id"], logged.__dict__["body_bytes"]) == ("poison-0001", len(body.encode()))
    if body:
        assert all(body not in str(entry.__dict__) for entry in caplog.records)
    printed = capsys.readouterr().out
    assert metric_values(emitted(printed), POISON_MESSAGES_DROPPED) == [(1.0, {"service": "avatarjobs"})]
