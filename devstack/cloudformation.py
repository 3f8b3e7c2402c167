"""Creates the resources of template.yaml in any AWS endpoint (moto in tests and in the local stack).

template.yaml is the single source of names, keys, indexes, queues and wiring: the tests and the local
stack read it here instead of repeating it, so they cannot drift from what `sam deploy` creates.
"""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import yaml

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "template.yaml"
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account


class _CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms (!Ref, !GetAtt, !Sub, ...) read as their long forms."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open() as stream:
        document: dict[str, Any] = yaml.load(stream, Loader=_CloudFormationLoader)  # noqa: S506 - SafeLoader subclass
    return document


@dataclass
class Stack:
    """The physical resources made from a template: what Ref and GetAtt resolve to."""

    template: dict[str, Any]
    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)
    stack_name: str = "avatarjobs"

    def resolve(self, value: Any) -> Any:
        """Evaluates the intrinsic functions of a template value against this stack."""
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {key: self.resolve(item) for key, item in value.items()}
        ((name, argument),) = value.items()
        intrinsics: dict[str, Callable[[Any], Any]] = {
            "Ref": self._ref,
            "Fn::GetAtt": lambda argument: self.attributes[(argument[0], argument[1])],
            "Fn::Sub": self._sub,
            "Fn::Join": self._join,
            "Fn::FindInMap": self._find_in_map,
        }
        intrinsic = intrinsics.get(name)
        return intrinsic(argument) if intrinsic else {name: self.resolve(argument)}

    def _join(self, argument: list[Any]) -> str:
        separator, items = argument
        return str(separator).join(str(self.resolve(item)) for item in items)

    def _find_in_map(self, argument: list[Any]) -> Any:
        mapping, top, second = (str(self.resolve(item)) for item in argument)
        table = {str(key): value for key, value in self.template["Mappings"][mapping].items()}
        return table[top][second]

    def _ref(self, logical_id: str) -> str:
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        if logical_id in pseudo:
            return pseudo[logical_id]
        if logical_id in self.refs:
            return self.refs[logical_id]
        parameter = self.template.get("Parameters", {}).get(logical_id)
        if parameter is not None and "Default" in parameter:
            return str(parameter["Default"])
        raise KeyError(f"!Ref {logical_id}: no such resource or parameter with a default")

    def _sub(self, argument: str | list[Any]) -> str:
        text, raw_variables = (argument, {}) if isinstance(argument, str) else argument
        variables = {key: self.resolve(item) for key, item in raw_variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match[1]
            if name in variables:
                return str(variables[name])
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return self.attributes[(logical_id, attribute)]
            return self._ref(name)

        return re.sub(r"\$\{([^}!]+)\}", replace, text)

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """The environment a function gets: Globals merged with its own variables, every Ref resolved."""
        globals_ = self.template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
        own = self.template["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {})
        return {name: str(self.resolve(value)) for name, value in {**globals_, **own}.items()}

    def resources_of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.template["Resources"].items()
            if resource["Type"] == resource_type
        }


def _create_table(stack: Stack, session: boto3.Session, logical_id: str, properties: dict[str, Any]) -> None:
    client = session.client("dynamodb", region_name=REGION)
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


_QUEUE_ATTRIBUTES = ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "ReceiveMessageWaitTimeSeconds")


def _create_queue(stack: Stack, session: boto3.Session, logical_id: str, properties: dict[str, Any]) -> None:
    client = session.client("sqs", region_name=REGION)
    attributes: Any = {name: str(stack.resolve(properties[name])) for name in _QUEUE_ATTRIBUTES if name in properties}
    if "RedrivePolicy" in properties:
        attributes["RedrivePolicy"] = json.dumps(stack.resolve(properties["RedrivePolicy"]))
    url = client.create_queue(QueueName=f"{stack.stack_name}-{logical_id}", Attributes=attributes)["QueueUrl"]
    arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    stack.refs[logical_id] = url
    stack.attributes[(logical_id, "Arn")] = arn
    stack.attributes[(logical_id, "QueueName")] = arn.rsplit(":", 1)[1]
    stack.attributes[(logical_id, "QueueUrl")] = url


def _create_bucket(stack: Stack, session: boto3.Session, logical_id: str, properties: dict[str, Any]) -> None:
    client = session.client("s3", region_name=REGION)
    name = f"{stack.stack_name}-{logical_id}".lower()
    client.create_bucket(Bucket=name)
    if "LifecycleConfiguration" in properties:
        rules = stack.resolve(properties["LifecycleConfiguration"])["Rules"]
        configuration: Any = {"Rules": [_lifecycle_rule(rule) for rule in rules]}
        client.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration=configuration)
    stack.refs[logical_id] = name
    stack.attributes[(logical_id, "Arn")] = f"arn:aws:s3:::{name}"


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation's lifecycle rule spelling to the S3 API's."""
    converted: dict[str, Any] = {"ID": rule.get("Id", "rule"), "Status": rule["Status"]}
    converted["Filter"] = {"Prefix": rule.get("Prefix", "")}
    if "AbortIncompleteMultipartUpload" in rule:
        converted["AbortIncompleteMultipartUpload"] = rule["AbortIncompleteMultipartUpload"]
    if "ExpirationInDays" in rule:
        converted["Expiration"] = {"Days": rule["ExpirationInDays"]}
    return converted


def _create_topic(stack: Stack, session: boto3.Session, logical_id: str, properties: dict[str, Any]) -> None:
    client = session.client("sns", region_name=REGION)
    name = str(stack.resolve(properties.get("TopicName", f"{stack.stack_name}-{logical_id}")))
    arn = client.create_topic(Name=name)["TopicArn"]
    stack.refs[logical_id] = arn
    stack.attributes[(logical_id, "TopicArn")] = arn
    stack.attributes[(logical_id, "TopicName")] = name


def _create_event_bus(stack: Stack, session: boto3.Session, logical_id: str, properties: dict[str, Any]) -> None:
    client = session.client("events", region_name=REGION)
    name = str(stack.resolve(properties.get("Name", f"{stack.stack_name}-{logical_id}")))
    arn = client.create_event_bus(Name=name)["EventBusArn"]
    stack.refs[logical_id] = name
    stack.attributes[(logical_id, "Arn")] = arn
    stack.attributes[(logical_id, "Name")] = name


def _name_api(stack: Stack, _: boto3.Session, logical_id: str, __: dict[str, Any]) -> None:
    """REST APIs are not made in moto; their id only shapes URLs, which the local stack overrides."""
    stack.refs[logical_id] = f"{stack.stack_name}-{logical_id}".lower()


Creator = Callable[[Stack, boto3.Session, str, dict[str, Any]], None]
# Queues without a redrive policy first: they are the dead-letter queues the others point at.
_CREATION_ORDER: list[tuple[str, Creator, Callable[[dict[str, Any]], bool]]] = [
    ("AWS::Serverless::Api", _name_api, lambda _: True),
    ("AWS::DynamoDB::Table", _create_table, lambda _: True),
    ("AWS::S3::Bucket", _create_bucket, lambda _: True),
    ("AWS::SQS::Queue", _create_queue, lambda properties: "RedrivePolicy" not in properties),
    ("AWS::SQS::Queue", _create_queue, lambda properties: "RedrivePolicy" in properties),
    ("AWS::SNS::Topic", _create_topic, lambda _: True),
    ("AWS::Events::EventBus", _create_event_bus, lambda _: True),
]


def provision(
    session: boto3.Session | None = None, template: dict[str, Any] | None = None, stack_name: str = "avatarjobs"
) -> Stack:
    """Creates the template's tables, buckets, queues, topics and buses; returns what Refs and GetAtts resolve to."""
    session = session or boto3.Session(region_name=REGION)
    stack = Stack(template=template if template is not None else load_template(), stack_name=stack_name)
    for resource_type, create, selected in _CREATION_ORDER:
        for logical_id, resource in stack.resources_of_type(resource_type).items():
            properties = resource.get("Properties", {})
            if selected(properties):
                create(stack, session, logical_id, properties)
    return stack
