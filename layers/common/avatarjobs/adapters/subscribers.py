"""The subscribers' channels: the job events topic (SNS) and the job event bus (EventBridge).

Every event goes to both. A failure on either raises, so the stream record is retried and both channels are
told again: a retry may publish a second time to the channel that already succeeded (SNS is told first, so
after an EventBridge failure SNS subscribers see the event twice). That is the at-least-once delivery of
DESIGN.md; subscribers drop duplicates by `event_id`, which is the same on every attempt.
"""

from typing import TYPE_CHECKING

from avatarjobs.domain.job_events import EVENT_SOURCE, SubscriberEvent

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import PutEventsResponseTypeDef
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sns.type_defs import MessageAttributeValueTypeDef


class EventBusRejected(RuntimeError):
    """PutEvents answered, but did not take the event (it reports such failures per entry, not as an error)."""

    def __init__(self, event_id: str, response: "PutEventsResponseTypeDef") -> None:
        failures = [entry for entry in response.get("Entries", []) if "ErrorCode" in entry]
        reasons = "; ".join(f"{entry.get('ErrorCode')}: {entry.get('ErrorMessage', '')}" for entry in failures)
        super().__init__(f"EventBridge did not accept event {event_id}: {reasons or 'no reason given'}")


class Subscribers:
    def __init__(
        self, sns_client: "SNSClient", topic_arn: str, events_client: "EventBridgeClient", bus_name: str
    ) -> None:
        self._sns = sns_client
        self._topic_arn = topic_arn
        self._events = events_client
        self._bus_name = bus_name

    def publish(self, event: SubscriberEvent) -> None:
        body = event.body()
        self._sns.publish(
            TopicArn=self._topic_arn,
            Message=body,
            Subject=event.detail_type,
            MessageAttributes=self._message_attributes(event),
        )
        response = self._events.put_events(
            Entries=[
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": event.detail_type,
                    "Detail": body,
                    "EventBusName": self._bus_name,
                }
            ]
        )
        entries = response.get("Entries", [])
        if response.get("FailedEntryCount", 0) or any("ErrorCode" in entry for entry in entries):
            raise EventBusRejected(event.event_id, response)

    @staticmethod
    def _message_attributes(event: SubscriberEvent) -> dict[str, "MessageAttributeValueTypeDef"]:
        """For subscription filter policies."""
        values = {"status": event.status.value, "provider": event.provider, "type": event.type}
        return {name: {"DataType": "String", "StringValue": value} for name, value in values.items()}
