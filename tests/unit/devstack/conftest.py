"""Fixtures of the emulator tests (test_emulators.py, test_emulator_knobs.py)."""

from collections.abc import Iterator

import pytest

from devstack import media
from tests.support.emulator_loopback import SENTENCE, Loopback


@pytest.fixture(scope="session")
def face() -> bytes:
    return media.SAMPLE_FACE.read_bytes()


@pytest.fixture(scope="session")
def speech() -> bytes:
    """The sentence spoken by espeak-ng, as a WAV."""
    return media.speak(SENTENCE, "Aria")


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    with Loopback() as server:
        yield server
