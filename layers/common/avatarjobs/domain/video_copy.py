"""Copies a provider's finished video into our outputs bucket, streaming, before the provider drops it.

The URL comes from the provider's answer, so it is fetched only from that provider's media hosts (and, like
every URL, through the SSRF-safe fetcher behind the VideoDownloader port). The body is checked as it streams:
its size against the limit and its first bytes for an MP4 `ftyp` box, so a wrong body is refused before a
single part is uploaded.

A copy is safe to repeat: the key depends only on the job, so a redelivered finalize message overwrites the
same object with the same bytes.
"""

import ipaddress
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from avatarjobs.domain.job import JobOutput
from avatarjobs.domain.ports import FetchFailed, MalformedUrl, VideoDownloader

DEFAULT_MAX_VIDEO_BYTES = 2 * 1024**3
VIDEO_CONTENT_TYPE = "video/mp4"
# fal serves its MP4 results as application/octet-stream (seeds/fal-ai-avatar-multitalk.txt); S3, where Mirako's
# results may live (its spec's s3_info), answers binary/octet-stream for an object stored without a type. The
# body's ftyp box is checked whatever the type says.
ACCEPTED_CONTENT_TYPES = frozenset({"video/mp4", "application/octet-stream", "binary/octet-stream"})
# An ISO-BMFF file starts with a box: 4 bytes of size, then its type, which for MP4 is `ftyp`.
_FTYP_OFFSET = 4
_FTYP = b"ftyp"
_SNIFF_BYTES = _FTYP_OFFSET + len(_FTYP)


class CopyFailed(Exception):
    """The video was not copied; `retryable` says whether another attempt may succeed (network, S3)."""

    def __init__(self, reason: str, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class NotMp4(Exception):
    def __init__(self) -> None:
        super().__init__("the body is not an MP4 video (no ftyp box at its start)")


class VideoTooLarge(Exception):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"the video is larger than the limit of {max_bytes} bytes")
        self.max_bytes = max_bytes


class EmptyVideo(Exception):
    def __init__(self) -> None:
        super().__init__("the video is empty")


class VideoStoreFailed(Exception):
    """The store itself failed (S3 refused or did not answer); another attempt may succeed."""


@dataclass(frozen=True)
class StoredVideo:
    bucket: str
    key: str
    size: int
    sha256: str  # hex, of the whole object
    content_type: str


class VideoStore(Protocol):
    def store(self, key: str, chunks: Iterable[bytes], *, content_type: str, max_bytes: int) -> StoredVideo:
        """Stores the chunks as one object, or nothing at all.

        Raises VideoTooLarge, EmptyVideo, VideoStoreFailed, or what iterating `chunks` raised.
        """
        ...


def video_key(job_id: str) -> str:
    return f"videos/{job_id}.mp4"


def _normalized_host(host: str) -> str:
    return host.strip().lower().rstrip(".")


def _as_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def url_is_listed(host: str, path: str, entries: Iterable[str]) -> bool:
    """Whether a URL's host and path match an entry: a domain (itself and its subdomains, any path), or a host
    with a path prefix (`storage.googleapis.com/falserverless`: that host, paths under that folder only)."""
    for entry in entries:
        domain, slash, prefix = entry.partition("/")
        if not slash:
            if host_is_listed(host, [domain]):
                return True
        elif _normalized_host(host) == _normalized_host(domain) and path.startswith(f"/{prefix.strip('/')}/"):
            return True
    return False


def host_is_listed(host: str, domains: Iterable[str]) -> bool:
    """Whether `host` is one of `domains` or a subdomain of one; an IP address only matches itself."""
    host = _normalized_host(host)
    host_ip = _as_ip(host)
    for listed in domains:
        domain = _normalized_host(listed)
        if not domain:
            continue
        domain_ip = _as_ip(domain)
        if host_ip is not None or domain_ip is not None:
            # "1.127.0.0.1" is a DNS name that merely ends like an address: it is nobody's subdomain.
            if host_ip is not None and host_ip == domain_ip:
                return True
        elif host == domain or host.endswith("." + domain):
            return True
    return False


def _checked_mp4(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Passes the chunks on, refusing the body unless its first bytes carry an `ftyp` box.

    The check needs only the first 8 bytes, so it is made on the first chunk (or the first few, when a
    server sends tinier ones) before anything is passed on, and nothing more is buffered.
    """
    head = b""
    pending: list[bytes] = []
    for chunk in chunks:
        if len(head) >= _SNIFF_BYTES:
            yield chunk
            continue
        head += chunk[: _SNIFF_BYTES - len(head)]
        pending.append(chunk)
        if len(head) >= _SNIFF_BYTES:
            if head[_FTYP_OFFSET:_SNIFF_BYTES] != _FTYP:
                raise NotMp4()
            yield from pending
            pending.clear()
    if len(head) < _SNIFF_BYTES:
        raise NotMp4()


class VideoCopier:
    def __init__(
        self,
        downloader: VideoDownloader,
        store: VideoStore,
        media_hosts: Mapping[str, Sequence[str]],
        max_bytes: int = DEFAULT_MAX_VIDEO_BYTES,
    ) -> None:
        self._downloader = downloader
        self._store = store
        self._media_hosts = media_hosts
        self._max_bytes = max_bytes

    def copy(self, job_id: str, provider: str, url: str) -> JobOutput:
        """Streams the video at `url` to `videos/{job_id}.mp4`; CopyFailed (and no object) when it cannot."""
        self._check_host(provider, url)
        try:
            with self._downloader.open_stream(
                url, max_bytes=self._max_bytes, allowed_content_types=ACCEPTED_CONTENT_TYPES
            ) as response:
                # iter_raw: the bytes exactly as sent (the fetcher refuses content-encoded bodies anyway).
                stored = self._store.store(
                    video_key(job_id),
                    _checked_mp4(response.iter_raw()),
                    content_type=VIDEO_CONTENT_TYPE,
                    max_bytes=self._max_bytes,
                )
        except FetchFailed as error:
            raise CopyFailed(f"could not download the video: {error.reason}", error.retryable) from error
        except (NotMp4, VideoTooLarge, EmptyVideo) as error:
            raise CopyFailed(str(error), retryable=False) from error
        except VideoStoreFailed as error:
            raise CopyFailed(f"could not store the video: {error}", retryable=True) from error
        return JobOutput(
            bucket=stored.bucket,
            key=stored.key,
            size=stored.size,
            sha256=stored.sha256,
            content_type=stored.content_type,
        )

    def _check_host(self, provider: str, url: str) -> None:
        try:
            # Parsed by the downloader, so the host checked here is the host it connects to.
            host, path = self._downloader.host_and_path(url)
        except MalformedUrl:
            raise CopyFailed("the video URL is not a well-formed URL", retryable=False) from None
        entries = self._media_hosts.get(provider, ())
        if not host or not url_is_listed(host, path, entries):
            raise CopyFailed(
                f"the video URL's host {host or '(none)'} is not a media host of {provider}", retryable=False
            )
