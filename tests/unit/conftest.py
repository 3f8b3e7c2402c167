"""Fixtures the unit tests of more than one module share."""

import base64
from collections.abc import Iterator

import httpx
import pytest
import respx
from nacl.signing import SigningKey

from avatarjobs import composition
from devstack.cloudformation import Stack
from tests.support.completion import FUNCTIONS, JWKS_URL, VIDEO, VIDEO_URL


@pytest.fixture
def env(stack: Stack, monkeypatch: pytest.MonkeyPatch, fal_key: SigningKey) -> Iterator[Stack]:
    """The completion path (webhook, finalize, reconcile and the API): the stack with those functions' environment,
    the providers' keys, and fal's JWKS (serving `fal_key`) and its video mocked."""
    for function in FUNCTIONS:
        for name, value in stack.function_environment(function).items():
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("FAL_KEY", "fal-secret-key")
    monkeypatch.setenv("MIRAKO_API_KEY", "mirako-secret-key")
    composition.reset()
    x = base64.urlsafe_b64encode(bytes(fal_key.verify_key)).rstrip(b"=").decode()
    with respx.mock:
        respx.get(JWKS_URL).mock(
            return_value=httpx.Response(200, json={"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x}]})
        )
        respx.get(VIDEO_URL).mock(
            return_value=httpx.Response(200, content=VIDEO, headers={"Content-Type": "application/octet-stream"})
        )
        yield stack
