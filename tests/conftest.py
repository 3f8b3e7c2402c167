"""Shared fixtures: a mocked AWS account with the resources of template.yaml, and API Gateway events."""

import os

# Before anything imports Powertools or boto3: both read these when their objects are made.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    POWERTOOLS_TRACE_DISABLED="1",
    POWERTOOLS_SERVICE_NAME="avatarjobs",  # as template.yaml's Globals: the `service` dimension of every metric
    POWERTOOLS_METRICS_NAMESPACE="AvatarJobsTests",
)

from collections.abc import Iterator

import pytest
from moto import mock_aws
from nacl.signing import SigningKey

from avatarjobs import composition
from devstack.cloudformation import REGION, Stack, provision
from devstack.moto_atomicity import make_dynamodb_writes_atomic
from tests.support.moto_clients import ReusedClientsSession

make_dynamodb_writes_atomic()

# One session and its clients for every test's provisioning: a new session would load each service's model from
# disk again, and making the clients costs about as much as creating the resources (tests.support.moto_clients).
_PROVISIONING_SESSION = ReusedClientsSession(region_name=REGION)

# Shared fixtures of their own modules (e.g. `channels`, what subscribers receive).
pytest_plugins = ["tests.support.subscribers"]


@pytest.fixture
def fal_key() -> SigningKey:
    """A fresh Ed25519 key standing in for fal's webhook signing key."""
    return SigningKey.generate()


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """A fresh mocked account holding template.yaml's tables, queues and buckets, and the API's environment."""
    with mock_aws():
        created = provision(_PROVISIONING_SESSION)
        for name, value in created.function_environment("ApiFunction").items():
            monkeypatch.setenv(name, value)
        composition.reset()
        yield created
        composition.reset()
