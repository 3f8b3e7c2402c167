"""Waiting for what another process does: the one way the tests poll."""

import time
from collections.abc import Callable

import pytest


def eventually[T](
    check: Callable[[], T | None], *, timeout: float = 10.0, every: float = 0.2, waiting_for: str = "the check"
) -> T:
    """The first truthy result of `check`, polled until `timeout`; fails the test with the last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{waiting_for}: not within {timeout} s; last result: {result!r}")
        time.sleep(every)
