"""boto3 clients for the tests' own calls to the mocked account: one per service for the whole run.

Making a client costs more than most of the calls a test makes with it. moto answers a client's calls whenever a
mock is active, whichever mock was active when the client was made, so one client serves every test's fresh
account. A test that registers event handlers on a client makes a client of its own.
"""

from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from devstack.cloudformation import REGION

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient


@cache
def dynamodb() -> "DynamoDBClient":
    return boto3.client("dynamodb", region_name=REGION)


@cache
def dynamodb_streams() -> "DynamoDBStreamsClient":
    # botocore sends DynamoDB Streams calls to an account-based endpoint (<account>.streams-ddb...), which
    # moto does not route; the regional endpoint reaches moto.
    return boto3.client("dynamodbstreams", region_name=REGION, config=Config(account_id_endpoint_mode="disabled"))


@cache
def sqs() -> "SQSClient":
    return boto3.client("sqs", region_name=REGION)


@cache
def s3() -> "S3Client":
    return boto3.client("s3", region_name=REGION)


@cache
def sns() -> "SNSClient":
    return boto3.client("sns", region_name=REGION)


@cache
def events() -> "EventBridgeClient":
    return boto3.client("events", region_name=REGION)


class ReusedClientsSession(boto3.Session):
    """A session that makes each client once (devstack.cloudformation.provision asks it for its clients on
    every test's provisioning; nothing registers handlers on them)."""

    def __init__(self, region_name: str) -> None:
        super().__init__(region_name=region_name)
        self._made: dict[tuple[str, str], Any] = {}

    def client(self, service_name: str, **options: Any) -> Any:  # type: ignore[override]
        key = (service_name, repr(sorted(options.items())))
        if key not in self._made:
            self._made[key] = super().client(service_name, **options)  # type: ignore[call-overload]
        return self._made[key]
