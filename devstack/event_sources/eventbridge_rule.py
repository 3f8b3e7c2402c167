"""An EventBridge rule's events, delivered through an SQS target queue and invoked asynchronously."""

import copy
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

from devstack.cloudformation import FunctionSpec, Stack
from devstack.event_sources.poller import (
    DEFAULT_ASYNC_RETRIES,
    RECEIVE_WAIT_SECONDS,
    Invoke,
    Poller,
    iso_now,
    queue_url_of,
)
from devstack.lambda_worker import FunctionError

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import TargetTypeDef
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

log = logging.getLogger(__name__)

ASYNC_RETRY_SECONDS = 1  # Lambda waits a minute, then two, between retries of an asynchronous event


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
        self._on_failure_url = queue_url_of(sqs, destination) if destination and ":sqs:" in destination else None

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
