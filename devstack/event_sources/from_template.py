"""The template's events to pollers: which event source emulates each event, with its own clients."""

from typing import TYPE_CHECKING

import boto3

from devstack.cloudformation import REGION, Stack
from devstack.event_sources import UnsupportedTemplate
from devstack.event_sources.dynamodb_stream import DynamoDBStreamSource
from devstack.event_sources.eventbridge_rule import RuleTargetSource, rule_target_queue
from devstack.event_sources.poller import CLIENT_CONFIG, Invoke, Poller
from devstack.event_sources.schedule import ScheduleSource, rate_seconds
from devstack.event_sources.sqs import SqsEventSource

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


def event_sources_of(
    stack: Stack,
    session: boto3.Session,
    endpoint_url: str,
    invoke: Invoke,
    schedule_seconds: float | None = None,
) -> list[Poller]:
    """A poller for every non-API event of every function of the template (not started)."""

    def sqs() -> "SQSClient":
        return session.client("sqs", region_name=REGION, endpoint_url=endpoint_url, config=CLIENT_CONFIG)

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
                    "dynamodbstreams", region_name=REGION, endpoint_url=endpoint_url, config=CLIENT_CONFIG
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
