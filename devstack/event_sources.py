"""Lambda's event sources against moto: what invokes the template's functions besides the API.

One poller thread per event of the template (see `event_sources_of`):
- `SQS`: batches of up to BatchSize (within MaximumBatchingWindowInSeconds), records shaped as Lambda shapes
  them; successful messages deleted; with ReportBatchItemFailures the reported ones are left alone, and after
  an invocation error all are: they come back after their visibility timeout (or the backoff the function
  set), and moto moves them to the dead-letter queue after maxReceiveCount receives. One batch at a time per
  queue, so ScalingConfig.MaximumConcurrency (at least 2) always holds. FilterCriteria as for streams.
- `DynamoDB` (the Jobs table's stream): records from StartingPosition, the event's FilterCriteria applied
  before batching, failed records (batchItemFailures by SequenceNumber, or an invocation error, with
  BisectBatchOnFunctionError) retried up to MaximumRetryAttempts, then described on the on-failure
  destination queue. MaximumRecordAgeInSeconds is not applied (the local stack does not run for a day).
- `Schedule`: an EventBridge "Scheduled Event" every `schedule_seconds`.
- `EventBridgeRule`: the rule (made by provision, with the template's pattern, on its bus) gets an SQS queue
  as its target, so moto does the matching (S3 "Object Created" on the default bus included); the queue's
  events are invoked asynchronously: retried per EventInvokeConfig.MaximumRetryAttempts (the queue's
  redelivery stands for Lambda's retry delays, shortened), then sent to its OnFailure destination.
"""

import base64
import contextlib
import copy
import json
import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from devstack.cloudformation import ACCOUNT_ID, REGION, FunctionSpec, Stack
from devstack.lambda_worker import FunctionError

if TYPE_CHECKING:
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import TargetTypeDef
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import DeleteMessageBatchRequestEntryTypeDef, MessageTypeDef

log = logging.getLogger("devstack.event_sources")

Invoke = Callable[[str, dict[str, Any]], Any]

RECEIVE_WAIT_SECONDS = 1  # long polling, short enough that stopping never waits long
ERROR_BACKOFF_SECONDS = 1.0
STREAM_POLL_SECONDS = 0.25  # Lambda polls a stream's shards four times a second
STREAM_RETRY_SECONDS = 0.5
ASYNC_RETRY_SECONDS = 1  # Lambda waits a minute, then two, between retries of an asynchronous event
DEFAULT_ASYNC_RETRIES = 2
_CLIENT_CONFIG = Config(connect_timeout=3, read_timeout=RECEIVE_WAIT_SECONDS + 10, retries={"max_attempts": 2})


class UnsupportedTemplate(Exception):
    """A trigger or filter the local stack does not emulate: refused loudly rather than run differently."""


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


def _sqs_message_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """SQS API spelling to the Lambda event's (camelCase, binary values in base64)."""

    def encoded(value: bytes) -> str:
        return base64.b64encode(value).decode("ascii")

    return {
        name: {
            "stringValue": value.get("StringValue"),
            "binaryValue": encoded(value["BinaryValue"]) if "BinaryValue" in value else None,
            "stringListValues": value.get("StringListValues", []),
            "binaryListValues": [encoded(item) for item in value.get("BinaryListValues", [])],
            "dataType": value["DataType"],
        }
        for name, value in attributes.items()
    }


def sqs_record(message: "MessageTypeDef", queue_arn: str) -> dict[str, Any]:
    """One record of Lambda's SQS event (events/sqs_dispatch.json)."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": _sqs_message_attributes(message.get("MessageAttributes", {})),
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


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


class SqsEventSource(Poller):
    def __init__(self, invoke: Invoke, function: FunctionSpec, sqs: "SQSClient", properties: dict[str, Any]) -> None:
        super().__init__(f"sqs:{function.logical_id}:{properties['Queue'].rsplit(':', 1)[1]}")
        self._invoke = invoke
        self._function = function
        self._sqs = sqs
        self.queue_arn: str = properties["Queue"]
        self.queue_url = sqs.get_queue_url(QueueName=self.queue_arn.rsplit(":", 1)[1])["QueueUrl"]
        self._batch_size = int(properties.get("BatchSize", 10))
        self._window = float(properties.get("MaximumBatchingWindowInSeconds", 0))
        self._report_failures = "ReportBatchItemFailures" in properties.get("FunctionResponseTypes", [])
        self._filters = filter_patterns(properties)

    def poll(self) -> None:
        messages = self._receive_batch()
        if self._filters:
            # Lambda deletes the messages no filter matches, without an invocation.
            dropped = [message for message in messages if not self._wanted(message)]
            self._delete(dropped)
            messages = [message for message in messages if message not in dropped]
        if not messages:
            return
        records = [sqs_record(message, self.queue_arn) for message in messages]
        try:
            result = self._invoke(self._function.logical_id, {"Records": records})
        except FunctionError as error:
            log.warning(
                "%s: invocation failed; the batch comes back after its visibility timeout: %s", self.name, error
            )
            return
        identifiers = [record["messageId"] for record in records]
        failed = reported_failures(result, identifiers) if self._report_failures else set()
        if failed is None:
            log.warning("%s: invalid batchItemFailures %r: the whole batch is retried", self.name, result)
            return
        self._delete([message for message in messages if message["MessageId"] not in failed])

    def _wanted(self, message: "MessageTypeDef") -> bool:
        """Filters see the record with its body as JSON when it is JSON (Lambda's SQS filtering)."""
        record = sqs_record(message, self.queue_arn)
        with contextlib.suppress(ValueError):  # a body that is not JSON is matched as text
            record["body"] = json.loads(record["body"])
        return any(pattern_matches(pattern, record) for pattern in self._filters)

    def _receive_batch(self) -> list["MessageTypeDef"]:
        messages = self._receive(RECEIVE_WAIT_SECONDS, self._batch_size)
        deadline = time.monotonic() + self._window
        while messages and len(messages) < self._batch_size and (left := deadline - time.monotonic()) > 0:
            messages += self._receive(math.ceil(left), self._batch_size - len(messages))
        return messages

    def _receive(self, wait_seconds: int, count: int) -> list["MessageTypeDef"]:
        answer = self._sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(10, count)),
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(answer.get("Messages", []))

    def _delete(self, messages: list["MessageTypeDef"]) -> None:
        for start in range(0, len(messages), 10):
            entries: list[DeleteMessageBatchRequestEntryTypeDef] = [
                {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                for index, message in enumerate(messages[start : start + 10])
            ]
            self._sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)


# --- EventBridge pattern subset (FilterCriteria) -------------------------------------------------------------

_SCALARS = (str, int, float, bool, type(None))


def check_pattern(pattern: Any, where: str = "") -> None:
    """Refuses what `pattern_matches` does not implement: only exact values (lists of them) on nested keys."""
    if not isinstance(pattern, dict):
        raise UnsupportedTemplate(f"filter pattern at {where or '/'} is not an object")
    for key, expected in pattern.items():
        if isinstance(expected, dict):
            check_pattern(expected, f"{where}/{key}")
        elif not isinstance(expected, list) or not all(isinstance(item, _SCALARS) for item in expected):
            raise UnsupportedTemplate(
                f"filter pattern at {where}/{key}: only lists of exact values are emulated, not {expected!r}"
            )


def _same(actual: Any, expected: Any) -> bool:
    return bool(actual == expected and type(actual) is type(expected))  # "1" is not 1, True is not 1


def pattern_matches(pattern: Mapping[str, Any], value: Any) -> bool:
    """EventBridge pattern matching for exact values: every key present, its value one of the listed ones."""
    for key, expected in pattern.items():
        if not isinstance(value, dict) or key not in value:
            return False
        actual = value[key]
        if isinstance(expected, dict):
            if not pattern_matches(expected, actual):
                return False
            continue
        candidates = actual if isinstance(actual, list) else [actual]
        if not any(
            candidate == item and type(candidate) is type(item) for candidate in candidates for item in expected
        ):
            return False
    return True


def filter_patterns(properties: dict[str, Any]) -> list[dict[str, Any]]:
    patterns = [json.loads(item["Pattern"]) for item in properties.get("FilterCriteria", {}).get("Filters", [])]
    for pattern in patterns:
        check_pattern(pattern)
    return patterns


# --- DynamoDB stream -----------------------------------------------------------------------------------------


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
        self._on_failure_url = (
            sqs.get_queue_url(QueueName=destination.rsplit(":", 1)[1])["QueueUrl"] if destination else None
        )
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
            if self._filters and not any(pattern_matches(pattern, record) for pattern in self._filters):
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


# --- Schedule ------------------------------------------------------------------------------------------------


def rate_seconds(expression: str) -> float | None:
    """`rate(5 minutes)` in seconds; None for a cron expression."""
    if not expression.startswith("rate(") or not expression.endswith(")"):
        return None
    amount, unit = expression[5:-1].split()
    seconds = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}[unit]
    return int(amount) * seconds


class ScheduleSource(Poller):
    def __init__(self, invoke: Invoke, function: FunctionSpec, rule_arn: str, interval_seconds: float) -> None:
        super().__init__(f"schedule:{function.logical_id}")
        self._invoke = invoke
        self._function = function
        self._rule_arn = rule_arn
        self.interval_seconds = interval_seconds
        self._retries = int(function.event_invoke_config.get("MaximumRetryAttempts", DEFAULT_ASYNC_RETRIES))

    def poll(self) -> None:
        if self.stopping.wait(self.interval_seconds):
            return
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": ACCOUNT_ID,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION,
            "resources": [self._rule_arn],
            "detail": {},
        }
        for attempt in range(self._retries + 1):
            try:
                self._invoke(self._function.logical_id, event)
                return
            except FunctionError as error:
                log.warning("%s: tick failed (attempt %d): %s", self.name, attempt + 1, error)


# --- EventBridge rules ---------------------------------------------------------------------------------------


def as_aws_sends_it(event: dict[str, Any], message_id: str) -> dict[str, Any]:
    """Repairs where moto's S3 -> EventBridge event differs from AWS's (moto 5.2.5).

    moto spells the object's ETag `eTag` (AWS: `etag`, which the intake reads) and gives every event the same
    `id`; the id is made unique from the delivering message, stable across redeliveries like AWS's.
    """
    if event.get("source") != "aws.s3":
        return event
    repaired = copy.deepcopy(event)
    repaired["id"] = message_id
    s3_object = repaired.get("detail", {}).get("object", {})
    if "eTag" in s3_object and "etag" not in s3_object:
        s3_object["etag"] = s3_object.pop("eTag")
    return repaired


def rule_target_queue(
    stack: Stack, sqs: "SQSClient", events: "EventBridgeClient", rule_id: str, bus: str | None
) -> tuple[str, str]:
    """An SQS queue as the target of the rule `rule_id` (made by provision); its URL and ARN."""
    url = sqs.create_queue(QueueName=f"{stack.stack_name}-{rule_id}-target")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    target: TargetTypeDef = {"Id": "devstack-function", "Arn": arn}
    if bus:
        events.put_targets(Rule=stack.refs[rule_id], EventBusName=bus, Targets=[target])
    else:
        events.put_targets(Rule=stack.refs[rule_id], Targets=[target])
    return url, arn


class RuleTargetSource(Poller):
    """Events a rule delivered to its target queue, invoked as Lambda invokes asynchronously."""

    def __init__(self, invoke: Invoke, function: FunctionSpec, sqs: "SQSClient", queue_url: str, rule: str) -> None:
        super().__init__(f"rule:{rule}")
        self._invoke = invoke
        self._function = function
        self._sqs = sqs
        self.queue_url = queue_url
        config = function.event_invoke_config
        self._retries = int(config.get("MaximumRetryAttempts", DEFAULT_ASYNC_RETRIES))
        destination = config.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        self._on_failure_url = (
            sqs.get_queue_url(QueueName=destination.rsplit(":", 1)[1])["QueueUrl"]
            if destination and ":sqs:" in destination
            else None
        )

    def poll(self) -> None:
        answer = self._sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=RECEIVE_WAIT_SECONDS,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        for message in answer.get("Messages", []):
            self._handle(message)

    def _handle(self, message: "MessageTypeDef") -> None:
        event = as_aws_sends_it(json.loads(message["Body"]), message["MessageId"])
        attempt = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        try:
            self._invoke(self._function.logical_id, event)
        except FunctionError as error:
            log.warning("%s: invocation %d failed: %s", self.name, attempt, error)
            if attempt <= self._retries:
                self._sqs.change_message_visibility(
                    QueueUrl=self.queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=ASYNC_RETRY_SECONDS * attempt,
                )
                return
            self._send_to_destination(event, attempt, error)
        self._sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def _send_to_destination(self, event: dict[str, Any], attempts: int, error: FunctionError) -> None:
        """Lambda's invocation record for an asynchronous event that failed every try."""
        if self._on_failure_url is None:
            return
        record = {
            "version": "1.0",
            "timestamp": iso_now(),
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": f"{self._function.arn}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": attempts,
            },
            "requestPayload": event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": {"errorType": error.error_type, "errorMessage": error.error_message},
        }
        self._sqs.send_message(QueueUrl=self._on_failure_url, MessageBody=json.dumps(record))


# --- All of them ---------------------------------------------------------------------------------------------


def event_sources_of(
    stack: Stack,
    session: boto3.Session,
    endpoint_url: str,
    invoke: Invoke,
    schedule_seconds: float | None = None,
) -> list[Poller]:
    """A poller for every non-API event of every function of the template (not started)."""

    def sqs() -> "SQSClient":
        return session.client("sqs", region_name=REGION, endpoint_url=endpoint_url, config=_CLIENT_CONFIG)

    pollers: list[Poller] = []
    for function in stack.functions().values():
        for event_id, event in function.events.items():
            properties = event.properties
            if event.type == "Api":
                continue  # the gateway's
            if properties.get("Enabled") is False or properties.get("State") == "DISABLED":
                continue  # deployed, it would not invoke either
            if event.type == "SQS":
                pollers.append(SqsEventSource(invoke, function, sqs(), properties))
            elif event.type == "DynamoDB":
                streams = session.client(
                    "dynamodbstreams", region_name=REGION, endpoint_url=endpoint_url, config=_CLIENT_CONFIG
                )
                pollers.append(DynamoDBStreamSource(invoke, function, streams, sqs(), properties))
            elif event.type == "Schedule":
                rule_id = f"{function.logical_id}{event_id}"
                interval = schedule_seconds or rate_seconds(str(properties["Schedule"])) or 60.0
                pollers.append(ScheduleSource(invoke, function, stack.attributes[(rule_id, "Arn")], interval))
            elif event.type == "EventBridgeRule":
                unsupported = {"Input", "InputPath", "InputTransformer", "Target"} & set(properties)
                if unsupported:
                    raise UnsupportedTemplate(f"{function.logical_id}.{event_id}: {sorted(unsupported)} not emulated")
                rule_id = f"{function.logical_id}{event_id}"
                events = session.client("events", region_name=REGION, endpoint_url=endpoint_url)
                client = sqs()
                url, _ = rule_target_queue(stack, client, events, rule_id, properties.get("EventBusName"))
                pollers.append(RuleTargetSource(invoke, function, client, url, stack.refs[rule_id]))
            else:
                raise UnsupportedTemplate(f"{function.logical_id}.{event_id}: {event.type} events are not emulated")
    return pollers


def stop_all(pollers: Iterable[Poller]) -> None:
    """Asks every poller to stop, then waits for each (a poll in flight finishes first)."""
    pollers = list(pollers)
    for poller in pollers:
        poller.stop()
    for poller in pollers:
        poller.join()
