"""The local stack's function environments: the template's parameters decide, as `sam deploy` would."""

import boto3
import pytest
from moto import mock_aws

from devstack.cloudformation import REGION, provision
from devstack.emulators.settings import EmulatorSettings
from devstack.stack import LocalStack


def finalize_environment(local: LocalStack, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """FinalizeFunction's environment as the stack would start its worker, on a mocked account (no moto server)."""
    with mock_aws():
        local._stack = provision(boto3.Session(region_name=REGION), parameters=local.parameters)
    monkeypatch.setattr(LocalStack, "endpoint_url", property(lambda _: "http://127.0.0.1:1"))
    return local.function_environment(local.stack.function("FinalizeFunction"), "http://127.0.0.1:2")


def test_a_given_media_hosts_parameter_reaches_the_finalizer_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    local = LocalStack(emulators=True, parameters={"FalMediaHosts": "media.example.com,fal.media"})
    environment = finalize_environment(local, monkeypatch)
    assert environment["FAL_MEDIA_HOSTS"] == "media.example.com,fal.media"


def test_the_media_hosts_default_to_where_the_emulators_serve_their_files(monkeypatch: pytest.MonkeyPatch) -> None:
    for prefix in ("FAL_EMULATOR_", "MIRAKO_EMULATOR_"):
        monkeypatch.delenv(f"{prefix}MEDIA_HOST", raising=False)
    environment = finalize_environment(LocalStack(emulators=True), monkeypatch)
    media_host = EmulatorSettings().media_host
    assert media_host == "127.0.0.2"
    assert (environment["FAL_MEDIA_HOSTS"], environment["MIRAKO_MEDIA_HOSTS"]) == (media_host, media_host)
