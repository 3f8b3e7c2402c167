"""boto3 clients with explicit timeouts and retries, made once per process so warm invocations reuse them."""

from functools import cache
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sts import STSClient

_CONFIG = Config(connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": 3})


@cache
def dynamodb() -> "DynamoDBClient":
    return boto3.client("dynamodb", config=_CONFIG)


@cache
def sqs() -> "SQSClient":
    return boto3.client("sqs", config=_CONFIG)


@cache
def s3() -> "S3Client":
    # Virtual-hosted addressing with SigV4 gives presigned URLs that work in every region.
    presign_config = Config(signature_version="s3v4", s3={"addressing_style": "virtual"})
    return boto3.client("s3", config=_CONFIG.merge(presign_config))


@cache
def sns() -> "SNSClient":
    return boto3.client("sns", config=_CONFIG)


@cache
def events() -> "EventBridgeClient":
    return boto3.client("events", config=_CONFIG)


@cache
def sts() -> "STSClient":
    return boto3.client("sts", config=_CONFIG)


def reset() -> None:
    """Forget the clients (tests that start a new mock or point at a new endpoint call this)."""
    for factory in (dynamodb, sqs, s3, sns, events, sts):
        factory.cache_clear()
