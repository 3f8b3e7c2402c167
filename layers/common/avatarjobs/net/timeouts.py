"""HTTP timeouts cut to what is left before the invocation's deadline (call_deadline.py), for every outbound call."""

import httpx

from avatarjobs.call_deadline import seconds_left

# A call with less than this left before the deadline is not made: it could not get an answer.
MIN_CALL_SECONDS = 1.0


class NoTimeLeft(Exception):
    """The invocation's deadline is too close for the call: it was not made."""

    def __init__(self, left: float) -> None:
        super().__init__(f"not sent, {max(0.0, left):.1f} s left before this invocation's deadline")


def within_deadline(fixed: httpx.Timeout) -> httpx.Timeout:
    """`fixed`, cut to what is left before the deadline; `fixed` itself when no deadline is set.

    Connecting (and waiting for a pooled connection) gets at most a quarter of what is left and reading
    (and writing) the rest, so connect + read stay within it. httpx times each read, not a whole answer: a
    server trickling bytes can still outlast it. Raises NoTimeLeft when under MIN_CALL_SECONDS are left.
    """
    left = seconds_left()
    if left is None:
        return fixed
    if left < MIN_CALL_SECONDS:
        raise NoTimeLeft(left)

    def cut(value: float | None, most: float) -> float:
        return most if value is None else min(value, most)

    connect = cut(fixed.connect, left / 4)
    read = cut(fixed.read, left - connect)
    return httpx.Timeout(
        connect=connect, read=read, write=cut(fixed.write, left - connect), pool=cut(fixed.pool, connect)
    )
