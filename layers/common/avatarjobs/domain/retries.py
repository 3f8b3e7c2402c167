"""A step that did not happen but may on a later try: its queue message comes back after a backoff."""

import random

MAX_BACKOFF_SECONDS = 900


class RetryLater(Exception):
    """The attempt did not reach the provider; the message should come back after `delay_seconds`."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after

    def delay_seconds(self, receive_count: int) -> int:
        """The provider's Retry-After when given, else exponential backoff with full jitter."""
        if self.retry_after is not None:
            return min(MAX_BACKOFF_SECONDS, max(1, round(self.retry_after)))
        ceiling = min(MAX_BACKOFF_SECONDS, 10 * 2 ** max(0, receive_count - 1))
        return random.randint(max(1, ceiling // 2), ceiling)  # noqa: S311 - jitter, not security
