"""Our EventBridge bus: job events for subscribers, and the intake's rejections, all with source `avatarjobs`."""

from typing import TYPE_CHECKING

from avatarjobs.domain.job_events import EVENT_SOURCE

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef


class EventBusRejected(RuntimeError):
    """PutEvents answered, but did not take the event (it reports such failures per entry, not as an error).
    Retryable: the record or the invocation that published it is tried again."""


class JobEventBus:
    def __init__(self, client: "EventBridgeClient", bus_name: str) -> None:
        self._client = client
        self._bus_name = bus_name

    def put(self, detail_type: str, detail: str, *, what: str) -> None:
        """One event; `what` names it in the error when EventBridge does not take it."""
        entry: PutEventsRequestEntryTypeDef = {
            "Source": EVENT_SOURCE,
            "DetailType": detail_type,
            "Detail": detail,
            "EventBusName": self._bus_name,
        }
        response = self._client.put_events(Entries=[entry])
        failures = [item for item in response.get("Entries", []) if "ErrorCode" in item]
        if response.get("FailedEntryCount", 0) or failures:
            reasons = "; ".join(f"{item.get('ErrorCode')}: {item.get('ErrorMessage', '')}" for item in failures)
            raise EventBusRejected(f"EventBridge did not accept {what}: {reasons or 'no reason given'}")
