"""Creates the resources of template.yaml in any AWS endpoint (moto in tests and in the local stack).

template.yaml is the single source of names, keys, indexes, queues and wiring: the tests and the local
stack read it (devstack.cloudformation.loader) instead of repeating it, so they cannot drift from what
`sam deploy` creates.
"""

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import boto3

from devstack.cloudformation.loader import ACCOUNT_ID, FUNCTION_TYPE, REGION, Stack, load_template

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient


class _Clients:
    """The clients provisioning uses, one per service: of the given session, at the given endpoint (moto's
    server) if any."""

    def __init__(self, session: boto3.Session, endpoint_url: str | None) -> None:
        self._session = session
        self._endpoint_url = endpoint_url
        self._made: dict[str, Any] = {}

    def _client(self, service: str) -> Any:
        if service not in self._made:
            self._made[service] = self._session.client(  # type: ignore[call-overload]
                service, region_name=REGION, endpoint_url=self._endpoint_url
            )
        return self._made[service]

    def dynamodb(self) -> "DynamoDBClient":
        return cast("DynamoDBClient", self._client("dynamodb"))

    def sqs(self) -> "SQSClient":
        return cast("SQSClient", self._client("sqs"))

    def s3(self) -> "S3Client":
        return cast("S3Client", self._client("s3"))

    def sns(self) -> "SNSClient":
        return cast("SNSClient", self._client("sns"))

    def events(self) -> "EventBridgeClient":
        return cast("EventBridgeClient", self._client("events"))

    def iam(self) -> "IAMClient":
        return cast("IAMClient", self._client("iam"))


def _create_table(stack: Stack, clients: _Clients, logical_id: str, properties: dict[str, Any]) -> None:
    client = clients.dynamodb()
    name = f"{stack.stack_name}-{logical_id}"
    arguments: dict[str, Any] = {
        "TableName": name,
        "KeySchema": properties["KeySchema"],
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "BillingMode": properties.get("BillingMode", "PROVISIONED"),
    }
    if properties.get("GlobalSecondaryIndexes"):
        arguments["GlobalSecondaryIndexes"] = [
            {key: index[key] for key in ("IndexName", "KeySchema", "Projection")}
            for index in properties["GlobalSecondaryIndexes"]
        ]
    if "StreamSpecification" in properties:
        view_type = properties["StreamSpecification"]["StreamViewType"]
        arguments["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": view_type}
    description = client.create_table(**arguments)["TableDescription"]
    ttl = properties.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        client.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
        )
    stack.refs[logical_id] = name
    stack.attributes[(logical_id, "Arn")] = description["TableArn"]
    if "LatestStreamArn" in description:
        stack.attributes[(logical_id, "StreamArn")] = description["LatestStreamArn"]


_QUEUE_ATTRIBUTES = (
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "DelaySeconds",
    "ReceiveMessageWaitTimeSeconds",
    "MaximumMessageSize",
    "SqsManagedSseEnabled",
)


def _create_queue(stack: Stack, clients: _Clients, logical_id: str, properties: dict[str, Any]) -> None:
    client = clients.sqs()
    attributes: Any = {
        name: _attribute_text(stack.resolve(properties[name])) for name in _QUEUE_ATTRIBUTES if name in properties
    }
    if "RedrivePolicy" in properties:
        attributes["RedrivePolicy"] = json.dumps(stack.resolve(properties["RedrivePolicy"]))
    url = client.create_queue(QueueName=f"{stack.stack_name}-{logical_id}", Attributes=attributes)["QueueUrl"]
    arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    stack.refs[logical_id] = url
    stack.attributes[(logical_id, "Arn")] = arn
    stack.attributes[(logical_id, "QueueName")] = arn.rsplit(":", 1)[1]
    stack.attributes[(logical_id, "QueueUrl")] = url


def _attribute_text(value: Any) -> str:
    """SQS and SNS attributes are strings; YAML's booleans become the API's "true"/"false"."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _set_queue_policy(stack: Stack, clients: _Clients, _: str, properties: dict[str, Any]) -> None:
    client = clients.sqs()
    policy = json.dumps(stack.resolve(properties["PolicyDocument"]))
    for queue_url in stack.resolve(properties["Queues"]):
        client.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": policy})


def _create_bucket(stack: Stack, clients: _Clients, logical_id: str, properties: dict[str, Any]) -> None:
    client = clients.s3()
    name = f"{stack.stack_name}-{logical_id}".lower()
    client.create_bucket(Bucket=name)
    if "LifecycleConfiguration" in properties:
        rules = stack.resolve(properties["LifecycleConfiguration"])["Rules"]
        configuration: Any = {"Rules": [_lifecycle_rule(rule) for rule in rules]}
        client.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration=configuration)
    _configure_bucket(client, name, stack.resolve(properties))
    stack.refs[logical_id] = name
    stack.attributes[(logical_id, "Arn")] = f"arn:aws:s3:::{name}"


def _configure_bucket(client: "S3Client", name: str, properties: dict[str, Any]) -> None:
    """Encryption, public access, ownership and EventBridge notifications, in the S3 API's spelling."""
    encryption = properties.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration")
    if encryption:
        rules = [{"ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"]} for rule in encryption]
        configuration: Any = {"Rules": rules}
        client.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=configuration)
    if "PublicAccessBlockConfiguration" in properties:
        client.put_public_access_block(
            Bucket=name, PublicAccessBlockConfiguration=properties["PublicAccessBlockConfiguration"]
        )
    if "OwnershipControls" in properties:
        client.put_bucket_ownership_controls(Bucket=name, OwnershipControls=properties["OwnershipControls"])
    event_bridge = properties.get("NotificationConfiguration", {}).get("EventBridgeConfiguration", {})
    if event_bridge.get("EventBridgeEnabled"):
        # Every object event of the bucket goes to the account's default bus (moto delivers it to the rules).
        client.put_bucket_notification_configuration(
            Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation's lifecycle rule spelling to the S3 API's."""
    converted: dict[str, Any] = {"ID": rule.get("Id", "rule"), "Status": rule["Status"]}
    converted["Filter"] = {"Prefix": rule.get("Prefix", "")}
    if "AbortIncompleteMultipartUpload" in rule:
        converted["AbortIncompleteMultipartUpload"] = rule["AbortIncompleteMultipartUpload"]
    if "ExpirationInDays" in rule:
        converted["Expiration"] = {"Days": rule["ExpirationInDays"]}
    return converted


def _create_topic(stack: Stack, clients: _Clients, logical_id: str, properties: dict[str, Any]) -> None:
    client = clients.sns()
    name = str(stack.resolve(properties.get("TopicName", f"{stack.stack_name}-{logical_id}")))
    attributes: dict[str, str] = {
        name: _attribute_text(stack.resolve(properties[name]))
        for name in ("KmsMasterKeyId", "FifoTopic", "ContentBasedDeduplication")
        if name in properties
    }
    arn = client.create_topic(Name=name, Attributes=attributes)["TopicArn"]
    stack.refs[logical_id] = arn
    stack.attributes[(logical_id, "TopicArn")] = arn
    stack.attributes[(logical_id, "TopicName")] = name


def _create_event_bus(stack: Stack, clients: _Clients, logical_id: str, properties: dict[str, Any]) -> None:
    client = clients.events()
    name = str(stack.resolve(properties.get("Name", f"{stack.stack_name}-{logical_id}")))
    arn = client.create_event_bus(Name=name)["EventBusArn"]
    stack.refs[logical_id] = name
    stack.attributes[(logical_id, "Arn")] = arn
    stack.attributes[(logical_id, "Name")] = name


def _create_role(stack: Stack, clients: _Clients, logical_id: str, properties: dict[str, Any]) -> None:
    """A role the functions assume themselves (sts:AssumeRole needs it to exist); its policies are not enforced."""
    name = f"{stack.stack_name}-{logical_id}"
    trust = json.dumps(stack.resolve(properties["AssumeRolePolicyDocument"]))
    duration = int(stack.resolve(properties.get("MaxSessionDuration", 3600)))
    arn = clients.iam().create_role(RoleName=name, AssumeRolePolicyDocument=trust, MaxSessionDuration=duration)["Role"][
        "Arn"
    ]
    stack.refs[logical_id] = name
    stack.attributes[(logical_id, "Arn")] = arn


def _name_api(stack: Stack, _: _Clients, logical_id: str, __: dict[str, Any]) -> None:
    """REST APIs are not made in moto; their id only shapes URLs, which the local stack overrides."""
    stack.refs[logical_id] = f"{stack.stack_name}-{logical_id}".lower()


def _create_function_rules(stack: Stack, clients: _Clients, logical_id: str, _: dict[str, Any]) -> None:
    """Names the function, and makes the EventBridge rules SAM makes for its EventBridgeRule and Schedule events.

    Lambda functions are not made in moto (the local stack runs them itself); the rules are, with SAM's logical
    ids (function id + event id, which the template's own policies refer to), so moto matches events to them.
    Their targets are the local stack's business (see devstack.event_sources).
    """
    stack.refs[logical_id] = f"{stack.stack_name}-{logical_id}"
    stack.attributes[(logical_id, "Arn")] = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{stack.refs[logical_id]}"
    client = clients.events()
    events = stack.template["Resources"][logical_id]["Properties"].get("Events", {})
    for event_id, event in events.items():
        if event["Type"] not in ("EventBridgeRule", "Schedule"):
            continue
        properties = stack.resolve(event.get("Properties", {}))
        rule_id = f"{logical_id}{event_id}"
        name = f"{stack.stack_name}-{rule_id}"
        arguments: dict[str, Any] = {"Name": name, "State": properties.get("State", "ENABLED")}
        if properties.get("Enabled") is False:
            arguments["State"] = "DISABLED"
        if event["Type"] == "Schedule":
            arguments["ScheduleExpression"] = properties["Schedule"]
        else:
            arguments["EventPattern"] = json.dumps(properties["Pattern"])
            if "EventBusName" in properties:
                arguments["EventBusName"] = properties["EventBusName"]
        stack.refs[rule_id] = name
        stack.attributes[(rule_id, "Arn")] = client.put_rule(**arguments)["RuleArn"]


Creator = Callable[[Stack, _Clients, str, dict[str, Any]], None]
# Queues without a redrive policy first: they are the dead-letter queues the others point at.
_CREATION_ORDER: list[tuple[str, Creator, Callable[[dict[str, Any]], bool]]] = [
    ("AWS::Serverless::Api", _name_api, lambda _: True),
    ("AWS::DynamoDB::Table", _create_table, lambda _: True),
    ("AWS::S3::Bucket", _create_bucket, lambda _: True),
    ("AWS::SQS::Queue", _create_queue, lambda properties: "RedrivePolicy" not in properties),
    ("AWS::SQS::Queue", _create_queue, lambda properties: "RedrivePolicy" in properties),
    ("AWS::SNS::Topic", _create_topic, lambda _: True),
    ("AWS::Events::EventBus", _create_event_bus, lambda _: True),
    ("AWS::IAM::Role", _create_role, lambda _: True),
    (FUNCTION_TYPE, _create_function_rules, lambda _: True),
    ("AWS::SQS::QueuePolicy", _set_queue_policy, lambda _: True),  # may name the rules above
]


def provision(
    session: boto3.Session | None = None,
    template: dict[str, Any] | None = None,
    stack_name: str = "avatarjobs",
    endpoint_url: str | None = None,
    parameters: dict[str, str] | None = None,
) -> Stack:
    """Creates the template's tables, buckets, queues, topics, buses and rules; returns what Refs, GetAtts resolve to.

    Functions and APIs are only named: the local stack runs them (devstack.stack).
    """
    clients = _Clients(session or boto3.Session(region_name=REGION), endpoint_url)
    stack = Stack(
        template=template if template is not None else load_template(),
        stack_name=stack_name,
        parameters=dict(parameters or {}),
    )
    for resource_type, create, selected in _CREATION_ORDER:
        for logical_id, resource in stack.resources_of_type(resource_type).items():
            properties = resource.get("Properties", {})
            if selected(properties):
                create(stack, clients, logical_id, properties)
    return stack
