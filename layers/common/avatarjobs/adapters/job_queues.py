"""The job queues (dispatch, finalize): one message per step to take (domain/messages.py), and backoff for retries."""

from typing import TYPE_CHECKING, Any

from avatarjobs.domain.messages import JobMessage
from avatarjobs.domain.retries import RetryLater

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


class SqsJobQueue:
    def __init__(self, client: "SQSClient", queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def send(self, message: JobMessage) -> None:
        self._client.send_message(QueueUrl=self._queue_url, MessageBody=message.model_dump_json(exclude_none=True))


class SqsRedelivery:
    """Backoff for a message that will be retried: it stays invisible for the given time."""

    def __init__(self, client: "SQSClient", queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def postpone(self, receipt_handle: str, seconds: int) -> None:
        self._client.change_message_visibility(
            QueueUrl=self._queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
        )


def retry_later(record: dict[str, Any], retry: RetryLater, redelivery: SqsRedelivery) -> None:
    """Makes the record's message come back after the retry's backoff instead of the queue's visibility."""
    receive_count = int(record["attributes"]["ApproximateReceiveCount"])
    redelivery.postpone(record["receiptHandle"], retry.delay_seconds(receive_count))
