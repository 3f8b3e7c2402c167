"""The subscribers' channels: the job events topic (SNS) and the job event bus (EventBridge).

Every event goes to both. A failure on either raises, so the stream record is retried and both channels are
told again: a retry may publish a second time to the channel that already succeeded (SNS is told first, so
after an EventBridge failure SNS subscribers see the event twice). That is the at-least-once delivery of
DESIGN.md; subscribers drop duplicates by `event_id`, which is the same on every attempt.
"""

from typing import TYPE_CHECKING

from avatarjobs.adapters.event_bus import JobEventBus
from avatarjobs.domain.job_events import SubscriberEvent

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sns.type_defs import MessageAttributeValueTypeDef


class Subscribers:
    def __init__(self, sns_client: "SNSClient", topic_arn: str, bus: JobEventBus) -> None:
        self._sns = sns_client
        self._topic_arn = topic_arn
        self._bus = bus

    def publish(self, event: SubscriberEvent) -> None:
        body = event.body()
        self._sns.publish(
            TopicArn=self._topic_arn,
            Message=body,
            Subject=event.detail_type,
            MessageAttributes=self._message_attributes(event),
        )
        self._bus.put(event.detail_type, body, what=f"event {event.event_id}")

    @staticmethod
    def _message_attributes(event: SubscriberEvent) -> dict[str, "MessageAttributeValueTypeDef"]:
        """For subscription filter policies."""
        values = {"status": event.status.value, "provider": event.provider, "type": event.type}
        return {name: {"DataType": "String", "StringValue": value} for name, value in values.items()}
