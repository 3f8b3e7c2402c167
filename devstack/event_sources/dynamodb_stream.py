"""A DynamoDB stream event source mapping: the shards read in order, batches retried, bisected, given up on."""

import base64
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from devstack.cloudformation import FunctionSpec
from devstack.event_sources import UnsupportedTemplate
from devstack.event_sources.patterns import any_matches, filter_patterns
from devstack.event_sources.poller import Invoke, Poller, iso_now, queue_url_of, reported_failures
from devstack.lambda_worker import FunctionError

if TYPE_CHECKING:
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

STREAM_POLL_SECONDS = 0.25  # Lambda polls a stream's shards four times a second
STREAM_RETRY_SECONDS = 0.5


def _stream_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return int(value.timestamp())  # Lambda's events carry epoch seconds
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"unexpected {type(value).__name__} in a stream record")


def stream_record(raw: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """One record of Lambda's DynamoDB event (events/ddb_stream_job_succeeded.json)."""
    record: dict[str, Any] = json.loads(json.dumps(raw, default=_stream_json))
    record.update(eventVersion="1.1", eventSourceARN=stream_arn)
    return record


@dataclass
class _Batch:
    records: list[dict[str, Any]]
    attempt: int = 0


class DynamoDBStreamSource(Poller):
    def __init__(
        self,
        invoke: Invoke,
        function: FunctionSpec,
        streams: "DynamoDBStreamsClient",
        sqs: "SQSClient",
        properties: dict[str, Any],
    ) -> None:
        super().__init__(f"stream:{function.logical_id}")
        self._invoke = invoke
        self._function = function
        self._streams = streams
        self._sqs = sqs
        self.stream_arn: str = properties["Stream"]
        self._starting_position = str(properties.get("StartingPosition", "LATEST"))
        if self._starting_position not in ("TRIM_HORIZON", "LATEST"):
            raise UnsupportedTemplate(f"{function.logical_id}: StartingPosition {self._starting_position}")
        self._batch_size = int(properties.get("BatchSize", 100))
        self._window = float(properties.get("MaximumBatchingWindowInSeconds", 0))
        self._max_retries = int(properties.get("MaximumRetryAttempts", -1))
        self._bisect = bool(properties.get("BisectBatchOnFunctionError", False))
        self._report_failures = "ReportBatchItemFailures" in properties.get("FunctionResponseTypes", [])
        self._filters = filter_patterns(properties)
        destination = properties.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        self._on_failure_url = queue_url_of(sqs, destination) if destination else None
        self._iterators: dict[str, str] = {}
        self._buffers: dict[str, deque[dict[str, Any]]] = {}
        self._buffered_since: dict[str, float] = {}

    def poll(self) -> None:
        if not self._iterators:
            self._open_shards()
        for shard_id in list(self._iterators):
            self._read(shard_id)
            batch = self._next_batch(shard_id)
            if batch:
                self._deliver(shard_id, batch)
        self.stopping.wait(STREAM_POLL_SECONDS)

    def _open_shards(self) -> None:
        description = self._streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        for shard in description.get("Shards", []):
            shard_id = shard["ShardId"]
            iterator = self._streams.get_shard_iterator(
                StreamArn=self.stream_arn,
                ShardId=shard_id,
                ShardIteratorType="TRIM_HORIZON" if self._starting_position == "TRIM_HORIZON" else "LATEST",
            )["ShardIterator"]
            self._iterators[shard_id] = iterator
            self._buffers[shard_id] = deque()

    def _read(self, shard_id: str) -> None:
        answer = self._streams.get_records(ShardIterator=self._iterators[shard_id], Limit=1000)
        if "NextShardIterator" in answer:
            self._iterators[shard_id] = answer["NextShardIterator"]
        buffer = self._buffers[shard_id]
        for raw in answer.get("Records", []):
            record = stream_record(raw, self.stream_arn)
            if self._filters and not any_matches(self._filters, record):
                continue  # filtered out: Lambda drops it without an invocation
            if not buffer:
                self._buffered_since[shard_id] = time.monotonic()
            buffer.append(record)

    def _next_batch(self, shard_id: str) -> list[dict[str, Any]]:
        """A full batch, or what has waited out the batching window."""
        buffer = self._buffers[shard_id]
        if not buffer:
            return []
        if len(buffer) < self._batch_size and time.monotonic() - self._buffered_since[shard_id] < self._window:
            return []
        batch = [buffer.popleft() for _ in range(min(self._batch_size, len(buffer)))]
        self._buffered_since[shard_id] = time.monotonic()
        return batch

    def _deliver(self, shard_id: str, records: list[dict[str, Any]]) -> None:
        """Invokes until every record went through or was given up on; the shard waits meanwhile (ordering)."""
        pending = deque([_Batch(records)])
        while pending and not self.stopping.is_set():
            batch = pending.popleft()
            retry = self._attempt(batch)
            if not retry:
                continue
            if 0 <= self._max_retries <= batch.attempt:
                self._give_up(shard_id, [record for part in retry for record in part.records], batch.attempt + 1)
                continue
            pending.extendleft(reversed(retry))
            self.stopping.wait(STREAM_RETRY_SECONDS)

    def _attempt(self, batch: _Batch) -> list[_Batch]:
        """Invokes once; what must be tried again (the records from the first failure on, or halves)."""
        try:
            result = self._invoke(self._function.logical_id, {"Records": batch.records})
        except FunctionError as error:
            log.warning("%s: invocation failed on %d records: %s", self.name, len(batch.records), error)
            if self._bisect and len(batch.records) > 1:
                middle = len(batch.records) // 2
                halves = (batch.records[:middle], batch.records[middle:])
                return [_Batch(half, batch.attempt + 1) for half in halves]
            return [_Batch(batch.records, batch.attempt + 1)]
        if not self._report_failures:
            return []
        sequence_numbers = [record["dynamodb"]["SequenceNumber"] for record in batch.records]
        failed = reported_failures(result, sequence_numbers)
        if failed is not None and not failed:
            return []
        # The stream resumes from the lowest failed sequence number (all of them for an invalid answer).
        first = 0 if failed is None else min(sequence_numbers.index(number) for number in failed)
        return [_Batch(batch.records[first:], batch.attempt + 1)]

    def _give_up(self, shard_id: str, records: list[dict[str, Any]], invocations: int) -> None:
        """What Lambda sends the on-failure destination: the records' place in the stream, not the records."""
        log.error("%s: gave up on %d records after %d invocations", self.name, len(records), invocations)
        if self._on_failure_url is None:
            return
        first, last = records[0]["dynamodb"], records[-1]["dynamodb"]

        def arrival(image: dict[str, Any]) -> str:
            moment = datetime.fromtimestamp(image["ApproximateCreationDateTime"], UTC)
            return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

        document = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": self._function.arn,
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": invocations,
            },
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "version": "1.0",
            "timestamp": iso_now(),
            "DDBStreamBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": first["SequenceNumber"],
                "endSequenceNumber": last["SequenceNumber"],
                "approximateArrivalOfFirstRecord": arrival(first),
                "approximateArrivalOfLastRecord": arrival(last),
                "batchSize": len(records),
                "streamArn": self.stream_arn,
            },
        }
        self._sqs.send_message(QueueUrl=self._on_failure_url, MessageBody=json.dumps(document))
