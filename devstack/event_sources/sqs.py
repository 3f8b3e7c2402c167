"""An SQS event source mapping: batches received, invoked, and deleted unless they failed."""

import base64
import contextlib
import json
import logging
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from devstack.cloudformation import REGION, FunctionSpec
from devstack.event_sources.patterns import any_matches, filter_patterns
from devstack.event_sources.poller import RECEIVE_WAIT_SECONDS, Invoke, Poller, queue_url_of, reported_failures
from devstack.lambda_worker import FunctionError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import DeleteMessageBatchRequestEntryTypeDef, MessageTypeDef

log = logging.getLogger(__name__)


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


class SqsEventSource(Poller):
    def __init__(self, invoke: Invoke, function: FunctionSpec, sqs: "SQSClient", properties: dict[str, Any]) -> None:
        super().__init__(f"sqs:{function.logical_id}:{properties['Queue'].rsplit(':', 1)[1]}")
        self._invoke = invoke
        self._function = function
        self._sqs = sqs
        self.queue_arn: str = properties["Queue"]
        self.queue_url = queue_url_of(sqs, self.queue_arn)
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
        return any_matches(self._filters, record)

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
