"""The notifier's part of the composition root (to be merged into composition.py and aws_clients.py).

Only what the notify function needs: the two subscriber channels, named by the environment template.yaml
gives NotifyFunction (`JOB_EVENTS_TOPIC_ARN`, `JOB_EVENT_BUS_NAME`).
"""

import os
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from avatarjobs.adapters.subscribers import Subscribers
from avatarjobs.settings import MissingSetting

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_sns import SNSClient

# As aws_clients._CONFIG: explicit timeouts, standard retries.
_CONFIG = Config(connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": 3})


@dataclass(frozen=True)
class NotifySettings:
    job_events_topic_arn: str
    job_event_bus_name: str

    @classmethod
    def from_environment(cls) -> "NotifySettings":
        return cls(
            job_events_topic_arn=_required("JOB_EVENTS_TOPIC_ARN"), job_event_bus_name=_required("JOB_EVENT_BUS_NAME")
        )


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise MissingSetting(name)
    return value


@cache
def notify_settings() -> NotifySettings:
    return NotifySettings.from_environment()


@cache
def sns() -> "SNSClient":
    return boto3.client("sns", config=_CONFIG)


@cache
def events() -> "EventBridgeClient":
    return boto3.client("events", config=_CONFIG)


@cache
def subscribers() -> Subscribers:
    config = notify_settings()
    return Subscribers(sns(), config.job_events_topic_arn, events(), config.job_event_bus_name)


def reset() -> None:
    """Forget the cached settings, clients and channels (tests that start a fresh mocked account)."""
    for factory in (notify_settings, sns, events, subscribers):
        factory.cache_clear()
