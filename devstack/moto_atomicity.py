"""Gives moto's DynamoDB the per-item atomicity of the real service.

DynamoDB applies a conditional write atomically: of two writers that both expect version 3, one wins and
the other gets ConditionalCheckFailed. moto evaluates the condition and writes without a lock, so
concurrent requests can all pass the check. Serializing moto's write operations restores the
guarantee our transitions rely on; the conditions themselves still decide who wins.
"""

import functools
import threading
from collections.abc import Callable
from typing import Any

from moto.dynamodb.models import DynamoDBBackend

_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")
_lock = threading.RLock()


def _serialized(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def write(*args: Any, **kwargs: Any) -> Any:
        with _lock:
            return method(*args, **kwargs)

    write.__serialized__ = True  # type: ignore[attr-defined]
    return write


def make_dynamodb_writes_atomic() -> None:
    for name in _WRITES:
        method = getattr(DynamoDBBackend, name)
        if not getattr(method, "__serialized__", False):
            setattr(DynamoDBBackend, name, _serialized(method))
