"""The one place where logger, tracer and metrics are made; every module imports them from here.

Tracing: every function runs with Lambda's active tracing (template.yaml), so X-Ray gets each invocation's
segments without any SDK in the function. The X-Ray SDK (subsegments for every boto3 and httpx call) is opt-in
(the `TraceAwsCalls` parameter, which sets POWERTOOLS_TRACE_DISABLED=false): importing it costs about as much
as importing boto3 at every cold start, because its recorder builds an X-Ray client at import
(docs/decisions.md). Without it the tracer keeps Powertools' API on a provider that records nothing, so
handlers are decorated the same way either way.
"""

import os
from collections.abc import AsyncGenerator, Generator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment


class _Unrecorded(BaseSegment):
    def close(self, end_time: int | None = None) -> None:
        pass

    def add_subsegment(self, subsegment: Any) -> None:
        pass

    def remove_subsegment(self, subsegment: Any) -> None:
        pass

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        pass


class UntracedProvider(BaseProvider):
    """Powertools' tracing provider interface, recording nothing (and importing no X-Ray SDK)."""

    @contextmanager
    def in_subsegment(self, name: str = "", **kwargs: Any) -> Generator[BaseSegment]:
        yield _Unrecorded()

    @asynccontextmanager
    async def in_subsegment_async(self, name: str = "", **kwargs: Any) -> AsyncGenerator[BaseSegment]:
        yield _Unrecorded()

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def patch(self, modules: Sequence[str]) -> None:
        pass

    def patch_all(self) -> None:
        pass


def sdk_tracing_enabled() -> bool:
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "true").strip().lower() in {"false", "0"}


logger = Logger()
metrics = Metrics()
tracer = Tracer() if sdk_tracing_enabled() else Tracer(provider=UntracedProvider(), disabled=False, auto_patch=False)
