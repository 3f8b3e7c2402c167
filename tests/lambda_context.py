"""The context object Lambda passes a handler, with a real clock for get_remaining_time_in_millis."""

import time

from devstack.cloudformation import ACCOUNT_ID, REGION


class LambdaContext:
    memory_limit_in_mb = 512
    aws_request_id = "5b6e1c2a-0000-4000-8000-000000000000"

    def __init__(self, function_name: str, *, seconds_left: float = 120) -> None:
        self.function_name = function_name
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function_name}"
        self._deadline = time.monotonic() + seconds_left

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)
