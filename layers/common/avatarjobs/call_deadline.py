"""When the outbound calls of an invocation must be over: the time it has left, less a margin, and its caller's limit.

A handler sets the deadline once (`outbound_calls_end_in_time`); every outbound HTTP call (provider calls,
fetched inputs and videos) takes its timeouts from what is left of it (net/timeouts.py), so no call outlives
the function (Lambda's timeout) or its caller (API Gateway answers 504 after 29 s whatever the function does).
Outside a handler (tests, bench) there is no deadline and calls keep their fixed timeouts. See
docs/decisions.md, "Call timeouts from the time the invocation has left".
"""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from aws_lambda_powertools.middleware_factory import lambda_handler_decorator

# What an invocation keeps for itself after its last outbound call: recording the outcome (a DynamoDB write
# with its retries), the answer, and for the API, a cold start already spent of API Gateway's time.
MARGIN_SECONDS = 5.0
# API Gateway's integration timeout for REST APIs (a quota: 29 s unless raised for the account).
API_GATEWAY_INTEGRATION_SECONDS = 29.0

_deadline: ContextVar[float | None] = ContextVar("outbound_call_deadline", default=None)


@contextmanager
def calls_end_within(seconds: float, *, clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """Outbound calls made in the block end within `seconds` from now."""
    token = _deadline.set(clock() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def seconds_left(clock: Callable[[], float] = time.monotonic) -> float | None:
    """What is left before the deadline of the current invocation; None when none is set."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - clock()


@lambda_handler_decorator
def outbound_calls_end_in_time(
    handler: Callable[[Any, Any], Any], event: Any, context: Any, caller_limit_seconds: float | None = None
) -> Any:
    """The invocation's outbound calls end MARGIN_SECONDS before its timeout, or before the caller's limit."""
    available = context.get_remaining_time_in_millis() / 1000
    if caller_limit_seconds is not None:
        available = min(available, caller_limit_seconds)
    with calls_end_within(available - MARGIN_SECONDS):
        return handler(event, context)


def api_calls_end_in_time[H: Callable[[Any, Any], Any]](handler: H) -> H:
    """outbound_calls_end_in_time for a function behind API Gateway, typed for the handler it wraps."""
    decorated: H = outbound_calls_end_in_time(handler, caller_limit_seconds=API_GATEWAY_INTEGRATION_SECONDS)
    return decorated
