"""Uploads to and downloads from presigned S3 URLs.

A client of its own, without the API key: a presigned URL carries its own authorization, and the key must
never travel to S3 (or wherever a URL from an answer points).
"""

import hashlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

import httpx

from avatarjobs_cli.api import USER_AGENT
from avatarjobs_cli.errors import DownloadMismatch, TransferFailed
from avatarjobs_cli.schemas import UploadTarget

CHUNK_BYTES = 1024 * 1024
TIMEOUT = httpx.Timeout(120.0, connect=10.0)

Progress = Callable[[int], None]  # called with the bytes moved since the last call


class TransferClient:
    def __init__(self, *, timeout: httpx.Timeout = TIMEOUT) -> None:
        self._http = httpx.Client(timeout=timeout, headers={"user-agent": USER_AGENT})

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._http.close()

    def upload(self, target: UploadTarget, path: Path, on_progress: Progress) -> None:
        """PUT the file to the presigned URL with exactly the headers the API returned (type and size are signed)."""
        try:
            with path.open("rb") as file:
                response = self._http.request(
                    target.get("method", "PUT"),
                    target["url"],
                    headers=target["headers"],
                    # Streamed: an explicit Content-Length (in the headers) keeps httpx from chunked encoding.
                    content=_chunks(file, on_progress),
                )
        except httpx.HTTPError as error:
            raise TransferFailed(f"Uploading {path} failed: {error or type(error).__name__}.") from None
        except OSError as error:
            raise TransferFailed(f"Cannot read {path}: {error.strerror or error}.") from None
        if not response.is_success:
            raise TransferFailed(f"Uploading {path} failed with {response.status_code}{_s3_error(response.text)}.")

    def download(self, url: str, destination: Path, *, size: int, sha256: str, on_progress: Progress) -> None:
        """Stream the URL into `destination`, which appears only once its size and SHA-256 are the expected ones."""
        partial = destination.with_name(f"{destination.name}.part")
        try:
            digest, received = self._stream_to(url, partial, size, on_progress)
            if received != size:
                raise DownloadMismatch(f"The download has {received} bytes; the job's video has {size}.")
            if digest != sha256.lower():
                raise DownloadMismatch(
                    f"The download's SHA-256 is {digest}; the job's video has {sha256}.",
                    "The file was not kept. Try again; if it persists, the stored video differs from the record.",
                )
            partial.replace(destination)
        except OSError as error:
            raise TransferFailed(f"Cannot write {destination}: {error.strerror or error}.") from None
        finally:
            partial.unlink(missing_ok=True)

    def _stream_to(self, url: str, partial: Path, size: int, on_progress: Progress) -> tuple[str, int]:
        digest = hashlib.sha256()
        received = 0
        try:
            # identity + raw bytes: what is hashed is the object as stored, not a re-encoding of it.
            with self._http.stream("GET", url, headers={"accept-encoding": "identity"}) as response:
                if not response.is_success:
                    response.read()
                    raise TransferFailed(
                        f"Downloading the video failed with {response.status_code}{_s3_error(response.text)}.",
                        "The video URL is presigned and expires: `avatarjobs download` fetches a fresh one.",
                    )
                with partial.open("wb") as file:
                    for chunk in response.iter_raw(CHUNK_BYTES):
                        received += len(chunk)
                        if received > size:  # a wrong answer must not fill the disk
                            break
                        file.write(chunk)
                        digest.update(chunk)
                        on_progress(len(chunk))
        except httpx.HTTPError as error:
            raise TransferFailed(f"Downloading the video failed: {error or type(error).__name__}.") from None
        return digest.hexdigest(), received


def _chunks(file: BinaryIO, on_progress: Progress) -> Iterator[bytes]:
    while chunk := file.read(CHUNK_BYTES):
        yield chunk
        on_progress(len(chunk))


def _s3_error(body: str) -> str:
    """S3 explains a refusal in XML: <Code> and <Message> are enough to act on."""
    code = re.search(r"<Code>([^<]{1,200})</Code>", body)
    message = re.search(r"<Message>([^<]{1,500})</Message>", body)
    parts = [match.group(1) for match in (code, message) if match]
    return f" ({': '.join(parts)})" if parts else ""
