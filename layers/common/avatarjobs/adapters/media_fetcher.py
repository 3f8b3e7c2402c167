"""Media inputs read from https URLs for the domain (domain/ports.py Fetcher), through the SSRF-safe fetcher, with
its errors told in the domain's terms (FetchFailed), so the domain knows nothing of HTTP."""

from collections.abc import Collection

from avatarjobs.domain.ports import FetchFailed
from avatarjobs.net.safe_fetch import FetchError, SafeFetcher


class SafeMediaFetcher:
    def __init__(self, fetcher: SafeFetcher) -> None:
        self._fetcher = fetcher

    def fetch(self, url: str, *, max_bytes: int, allowed_content_types: Collection[str]) -> tuple[bytes, str]:
        try:
            return self._fetcher.fetch(url, max_bytes=max_bytes, allowed_content_types=allowed_content_types)
        except FetchError as error:
            raise FetchFailed(error.reason, retryable=error.retryable) from None
