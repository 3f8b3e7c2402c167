"""The provider registry: every plugin builds the provider its name says, with capabilities; nothing else is one."""

import pytest

from avatarjobs import composition
from avatarjobs.domain.ports import InputDelivery, ProviderCapabilities
from avatarjobs.domain.providers import UnknownProvider
from avatarjobs.providers import PLUGINS
from devstack.cloudformation import Stack


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_each_registered_plugin_builds_the_provider_of_its_name_once_per_process(stack: Stack, name: str) -> None:
    provider = composition.provider(name)
    assert provider.name == name
    assert isinstance(provider.capabilities, ProviderCapabilities)
    assert composition.provider(name) is provider


@pytest.mark.parametrize("name", ["replicate", "FAL", "", "fal/../mirako"])
def test_a_name_the_registry_does_not_have_is_an_unknown_provider(stack: Stack, name: str) -> None:
    with pytest.raises(UnknownProvider):
        composition.provider(name)


def test_a_provider_that_takes_bytes_names_each_input_it_reads(stack: Stack) -> None:
    for name in PLUGINS:
        capabilities = composition.provider(name).capabilities
        if capabilities.inputs is InputDelivery.BYTES:
            assert capabilities.byte_inputs, name
        else:
            assert not capabilities.byte_inputs, name
