"""The AWS API calls the handlers make, as botocore sees them (one `before-call` is one call, whatever its retries)."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from avatarjobs.adapters import aws_clients


@contextmanager
def calls_made() -> Iterator[list[str]]:
    """Records `service.Operation` for every call the avatarjobs clients of this process make in the block."""
    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        calls.append(f"{model.service_model.service_name}.{model.name}")

    clients = [aws_clients.dynamodb(), aws_clients.sqs(), aws_clients.s3(), aws_clients.sns(), aws_clients.events()]
    for client in clients:
        client.meta.events.register("before-call", record)
    try:
        yield calls
    finally:
        for client in clients:
            client.meta.events.unregister("before-call", record)
