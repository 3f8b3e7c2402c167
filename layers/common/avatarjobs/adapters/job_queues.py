"""The job queues (dispatch, finalize): one message per step to take (domain/messages.py), and backoff for retries."""

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from avatarjobs.domain.messages import JobMessage
from avatarjobs.domain.retries import RetryLater
from avatarjobs.observability import logger, metrics

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


class SqsJobQueue:
    def __init__(self, client: "SQSClient", queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def send(self, message: JobMessage) -> None:
        self._client.send_message(QueueUrl=self._queue_url, MessageBody=message.model_dump_json(exclude_none=True))


# Counted wherever a queue message is dropped because its body can never be read (the alarm names it).
POISON_MESSAGES_DROPPED = "PoisonMessagesDropped"


def message_of[M: JobMessage](record: dict[str, Any], model: type[M]) -> M | None:
    """The record's body as `model`; None for a body that can never parse, which is logged and counted.

    No try can read such a body, so it is dropped (reported as processed) rather than retried through the
    queue and its dead-letter queue until retention. The log names its message id and size, never its content.
    """
    body: str = record["body"]
    try:
        return model.model_validate_json(body)
    except ValidationError:
        logger.error(
            "unreadable message dropped",
            extra={"message_id": record["messageId"], "body_bytes": len(body.encode()), "expected": model.__name__},
        )
        metrics.add_metric(name=POISON_MESSAGES_DROPPED, unit=MetricUnit.Count, value=1)
        return None


class SqsRedelivery:
    """A message's next try: after a backoff (it stays invisible), or afresh (a new message, no receive spent)."""

    def __init__(self, client: "SQSClient", queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def postpone(self, receipt_handle: str, seconds: int) -> None:
        self._client.change_message_visibility(
            QueueUrl=self._queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
        )

    def send_afresh(self, record: dict[str, Any]) -> None:
        """The record's body again as a new message, whose receive count starts over (SQS cannot lower one)."""
        self._client.send_message(QueueUrl=self._queue_url, MessageBody=record["body"])


def retry_later(record: dict[str, Any], retry: RetryLater, redelivery: SqsRedelivery) -> None:
    """Makes the record's message come back after the retry's backoff instead of the queue's visibility."""
    receive_count = int(record["attributes"]["ApproximateReceiveCount"])
    redelivery.postpone(record["receiptHandle"], retry.delay_seconds(receive_count))
