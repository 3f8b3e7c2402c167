"""The finalizer's video download: the SSRF-safe fetcher behind the domain's VideoDownloader port.

The domain decides which hosts a provider's video may come from and what a failure means for the job; this
adapter parses URLs with the parser the fetcher connects with (so both read the same host) and turns the
fetcher's errors, on opening and while the body streams, into the domain's FetchFailed.
"""

from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

import httpx

from avatarjobs.domain.ports import DownloadStream, FetchFailed, MalformedUrl
from avatarjobs.net.safe_fetch import FetchError


class StreamFetcher(Protocol):
    """SafeFetcher's streaming side (tests pass fakes that raise FetchError as it does)."""

    def open_stream(
        self, url: str, *, max_bytes: int, allowed_content_types: Collection[str]
    ) -> AbstractContextManager[DownloadStream]: ...


class FetcherVideoDownloader:
    def __init__(self, fetcher: StreamFetcher) -> None:
        self._fetcher = fetcher

    def host_and_path(self, url: str) -> tuple[str, str]:
        try:
            parsed = httpx.URL(url)
            # raw_host is the ASCII (IDNA) form, the one the fetcher resolves and connects to.
            return parsed.raw_host.decode("ascii", errors="replace"), parsed.path
        except (httpx.InvalidURL, TypeError):
            raise MalformedUrl(url) from None

    @contextmanager
    def open_stream(
        self, url: str, *, max_bytes: int, allowed_content_types: Collection[str]
    ) -> Iterator[DownloadStream]:
        try:
            with self._fetcher.open_stream(
                url, max_bytes=max_bytes, allowed_content_types=allowed_content_types
            ) as response:
                # A FetchError raised while the caller iterates the body comes back through this `with` too.
                yield response
        except FetchError as error:
            raise FetchFailed(error.reason, retryable=error.retryable) from error
