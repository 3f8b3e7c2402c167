"""Partial batch responses (ReportBatchItemFailures) for the SQS and DynamoDB-stream handlers.

Each record is handled on its own; the ones that raised are reported by id, so only they come back (SQS) or the
stream resumes from the first of them. This is what Powertools' BatchProcessor does for a synchronous handler;
we do not use it because importing it builds every Powertools parser model (pydantic), about 100 ms of every
cold start of four functions, for features (async, FIFO, parser models) none of them uses (docs/decisions.md).
"""

from collections.abc import Callable
from typing import Any, TypedDict

from avatarjobs.observability import logger


class ItemFailure(TypedDict):
    itemIdentifier: str


class PartialBatchResponse(TypedDict):
    batchItemFailures: list[ItemFailure]


class EveryRecordFailed(Exception):
    """Every record of the batch failed: the invocation fails, so the error alarm sees it and Lambda retries."""


def _process(
    records: list[dict[str, Any]], handle: Callable[[dict[str, Any]], None], identify: Callable[[dict[str, Any]], str]
) -> PartialBatchResponse:
    failures: list[ItemFailure] = []
    for record in records:
        try:
            handle(record)
        except Exception:  # one record's failure must not fail its neighbours
            identifier = identify(record)
            logger.exception("record failed; reported for a retry", extra={"record_id": identifier})
            failures.append({"itemIdentifier": identifier})
    return {"batchItemFailures": failures}


def process_sqs_batch(event: dict[str, Any], handle: Callable[[dict[str, Any]], None]) -> PartialBatchResponse:
    """Failed messages are reported by messageId and come back after their visibility timeout."""
    return _process(event.get("Records", []), handle, lambda record: record["messageId"])


def process_stream_batch(event: dict[str, Any], handle: Callable[[dict[str, Any]], None]) -> PartialBatchResponse:
    """Failed records are reported by sequence number; a batch whose every record failed fails the invocation."""
    records: list[dict[str, Any]] = event.get("Records", [])
    response = _process(records, handle, lambda record: record["dynamodb"]["SequenceNumber"])
    if records and len(response["batchItemFailures"]) == len(records):
        raise EveryRecordFailed(f"All records failed processing: {len(records)} of {len(records)}")
    return response
