"""What subscribers get, observed as they would get it, and the Jobs table's stream as Lambda reads it.

An SQS queue subscribed to the topic (raw delivery off, so the message attributes are visible) and a rule
on the bus with an SQS target stand in for subscribers.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest

from avatarjobs import composition
from devstack.cloudformation import Stack
from functions.notify import app as notify_app
from tests.lambda_context import LambdaContext
from tests.support import moto_clients

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


@dataclass
class Channels:
    """Where subscribers' copies arrive: one queue behind the topic, one behind a rule on the bus."""

    sqs: "SQSClient"
    topic_arn: str
    bus_name: str
    topic_queue_url: str
    bus_queue_url: str

    def topic_messages(self) -> list[dict[str, Any]]:
        """The SNS envelopes delivered to the subscribed queue."""
        return [json.loads(body) for body in self._drain(self.topic_queue_url)]

    def bus_events(self) -> list[dict[str, Any]]:
        """The EventBridge events the rule delivered to its target queue."""
        return [json.loads(body) for body in self._drain(self.bus_queue_url)]

    def _drain(self, queue_url: str) -> list[str]:
        bodies: list[str] = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return bodies
            for message in messages:
                bodies.append(message["Body"])
                self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def channels(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Channels]:
    sns = moto_clients.sns()
    events = moto_clients.events()
    sqs = moto_clients.sqs()
    environment = stack.function_environment("NotifyFunction")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert environment["JOB_EVENTS_TOPIC_ARN"] == stack.refs["JobEventsTopic"]
    assert environment["JOB_EVENT_BUS_NAME"] == stack.refs["JobEventBus"]

    def observer_queue(name: str) -> tuple[str, str]:
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    topic_queue_url, topic_queue_arn = observer_queue("topic-subscriber")
    sns.subscribe(
        TopicArn=stack.refs["JobEventsTopic"],
        Protocol="sqs",
        Endpoint=topic_queue_arn,
        Attributes={"RawMessageDelivery": "false"},
    )
    bus_queue_url, bus_queue_arn = observer_queue("bus-subscriber")
    bus = stack.refs["JobEventBus"]
    events.put_rule(Name="job-events", EventBusName=bus, EventPattern=json.dumps({"source": ["avatarjobs"]}))
    events.put_targets(Rule="job-events", EventBusName=bus, Targets=[{"Id": "observer", "Arn": bus_queue_arn}])

    composition.reset()
    yield Channels(sqs, stack.refs["JobEventsTopic"], bus, topic_queue_url, bus_queue_url)
    composition.reset()


def real_stream_records(stack: Stack) -> list[dict[str, Any]]:
    """Every record of the Jobs table's stream, as the event source mapping hands them to Lambda."""
    # botocore sends DynamoDB Streams calls to an account-based endpoint (<account>.streams-ddb...), which
    # moto does not route; the regional endpoint reaches moto.
    streams = moto_clients.dynamodb_streams()
    stream_arn = stack.attributes[("JobsTable", "StreamArn")]
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for raw in streams.get_records(ShardIterator=iterator)["Records"]:
            record: dict[str, Any] = json.loads(json.dumps(raw, default=str))
            created: datetime = raw["dynamodb"]["ApproximateCreationDateTime"]
            # Lambda's event: epoch seconds, its own event version, and the stream's ARN on every record.
            record["dynamodb"]["ApproximateCreationDateTime"] = int(created.timestamp())
            record.update(eventVersion="1.1", eventSourceARN=stream_arn)
            records.append(record)
    return records


def notify_from_stream(stack: Stack) -> list[str]:
    """Runs the notifier on everything the table's stream holds; returns the records it reported failed."""
    records = real_stream_records(stack)
    response = notify_app.lambda_handler({"Records": records}, LambdaContext("NotifyFunction"))
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]
