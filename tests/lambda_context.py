"""The context object Lambda passes a handler; get_remaining_time_in_millis follows a real or simulated clock."""

import time
from collections.abc import Callable

from devstack.cloudformation import ACCOUNT_ID, REGION


class LambdaContext:
    memory_limit_in_mb = 512
    aws_request_id = "5b6e1c2a-0000-4000-8000-000000000000"

    def __init__(
        self, function_name: str, *, seconds_left: float = 120, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.function_name = function_name
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function_name}"
        self._clock = clock
        self._deadline = clock() + seconds_left

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - self._clock()) * 1000)


class SimulatedClock:
    """A monotonic clock that moves only when told: slow calls are simulated, not waited for."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
