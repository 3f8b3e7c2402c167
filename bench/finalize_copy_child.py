"""One copy of the finalize-copy benchmark, in a fresh process: `python -m bench.finalize_copy_child ...`.

`avatarjobs` is the finalizer's real copy path as composition builds it from the environment (VideoCopier,
SafeFetcher with the local stack's loopback http, S3VideoStore with the configured part size, on the
production S3 client of aws_clients); `upload_fileobj` streams the same URL with httpx and hands the raw body,
wrapped as a file object, to boto3's managed upload (default TransferConfig) on the same client;
`s3transfer_tuned` does the same with the TransferConfig of our copy's shape and a SHA-256 wrapper over the
stream. The S3 endpoint comes from AWS_ENDPOINT_URL.

The one change to the production client is a longer read timeout (for both): moto answers the
CompleteMultipartUpload of 1 GiB only after joining the parts, 5-20 s of silence on a loaded machine, where
S3 keeps the connection alive with whitespace. At the production 10 s botocore retried it, and moto joined
the parts again while still busy with the first attempt, which measured moto and not the copy.

Everything is imported and built first; then the peak resident set is reset (writing 5 to
/proc/self/clear_refs) and only the copy is timed and watched. One JSON line on stdout gives the figures.
"""

import argparse
import gc
import hashlib
import io
import json
import resource
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from avatarjobs import composition
from avatarjobs.adapters import aws_clients
from avatarjobs.domain.video_copy import VIDEO_CONTENT_TYPE, video_key

AVATARJOBS = "avatarjobs"
UPLOAD_FILEOBJ = "upload_fileobj"
# boto3's managed upload tuned to our copy's shape: 8 MiB parts, 4 in flight, 4 parts read ahead at most, and the
# SHA-256 of the whole taken by a wrapper over the stream (the job reports it). Measured as a replacement of our
# store (docs/decisions.md).
S3TRANSFER_TUNED = "s3transfer_tuned"
CONTENDERS = (AVATARJOBS, UPLOAD_FILEOBJ, S3TRANSFER_TUNED)
TUNED_PART_BYTES = 8 * 1024 * 1024
TUNED_PARTS_IN_FLIGHT = 4
PROVIDER = "fal"  # FAL_MEDIA_HOSTS=127.0.0.1 in the child's environment
READ_TIMEOUT_SECONDS = 300


def memory_kib() -> dict[str, int]:
    """VmRSS and VmHWM (the peak resident set since start or since the last reset) from /proc/self/status."""
    figures: dict[str, int] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            figures[name] = int(value.split()[0])  # "  123456 kB"
    return figures


def reset_peak() -> bool:
    """Sets VmHWM to the current VmRSS (Linux 4.0+); False when the kernel refused."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def _cpu_seconds() -> float:
    """User and system CPU time of this process, every thread."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class RawStream(io.RawIOBase):
    """An iterator of byte chunks as a read-only, non-seekable file (what boto3 takes for a stream)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        taken = min(len(buffer), len(self._pending))
        buffer[:taken] = self._pending[:taken]
        self._pending = self._pending[taken:]
        return taken


class HashingRawStream(RawStream):
    """RawStream that takes the SHA-256 of what it hands out, as it hands it out."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__(chunks)
        self.sha256 = hashlib.sha256()

    def readinto(self, buffer: Any) -> int:
        taken = super().readinto(buffer)
        self.sha256.update(memoryview(buffer)[:taken])
        return taken


def tuned_transfer_config() -> TransferConfig:
    config = TransferConfig(multipart_chunksize=TUNED_PART_BYTES, max_concurrency=TUNED_PARTS_IN_FLIGHT)
    # s3transfer's own setting (boto3's TransferConfig does not take it as an argument): parts read ahead.
    config.max_in_memory_upload_chunks = TUNED_PARTS_IN_FLIGHT
    return config


class S3Calls:
    """Counts the S3 calls and their attempts (botocore's retries), and times CompleteMultipartUpload."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()
        self.complete_seconds = 0.0
        self._complete_started = 0.0

    def watch(self, client: Any) -> None:
        client.meta.events.register("before-call.s3", self._before_call)
        client.meta.events.register("before-send.s3", self._before_send)
        client.meta.events.register("after-call.s3.CompleteMultipartUpload", self._after_complete)

    def _before_call(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1
        if model.name == "CompleteMultipartUpload":
            self._complete_started = time.perf_counter()

    def _before_send(self, event_name: str, **_: Any) -> None:
        self.attempts[event_name.rsplit(".", 1)[-1]] += 1  # before-send.s3.<Operation>

    def _after_complete(self, **_: Any) -> None:
        self.complete_seconds += time.perf_counter() - self._complete_started


def run(contender: str, url: str, bucket: str, job_id: str) -> dict[str, object]:
    aws_clients._CONFIG = aws_clients._CONFIG.merge(Config(read_timeout=READ_TIMEOUT_SECONDS))
    s3 = aws_clients.s3()
    s3_calls = S3Calls()
    s3_calls.watch(s3)
    copier = composition.video_copier(bucket)
    client = httpx.Client(timeout=httpx.Timeout(30.0, connect=5.0), headers={"Accept-Encoding": "identity"})
    gc.collect()
    peak_was_reset = reset_peak()
    before = memory_kib()
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    sha256: str | None = None
    if contender == AVATARJOBS:
        output = copier.copy(job_id, PROVIDER, url)
        size, sha256 = output.size, output.sha256
    else:
        tuned = contender == S3TRANSFER_TUNED
        with client.stream("GET", url) as response:
            response.raise_for_status()
            raw = HashingRawStream(response.iter_raw()) if tuned else RawStream(response.iter_raw())
            s3.upload_fileobj(
                io.BufferedReader(raw),
                bucket,
                video_key(job_id),
                ExtraArgs={"ContentType": VIDEO_CONTENT_TYPE},
                Config=tuned_transfer_config() if tuned else None,
            )
            size = response.num_bytes_downloaded
        if isinstance(raw, HashingRawStream):
            sha256 = raw.sha256.hexdigest()
    seconds = time.perf_counter() - started
    cpu_seconds = _cpu_seconds() - cpu_before
    after = memory_kib()
    return {
        "contender": contender,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "size": size,
        "sha256": sha256,
        "rss_before_kib": before["VmRSS"],
        "rss_after_kib": after["VmRSS"],
        "peak_kib": after["VmHWM"],
        "peak_was_reset": peak_was_reset,
        "part_bytes": composition.provider_settings().finalize_part_bytes,
        "s3_calls": dict(s3_calls.calls),
        "s3_attempts": dict(s3_calls.attempts),
        "complete_seconds": s3_calls.complete_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("contender", choices=CONTENDERS)
    parser.add_argument("url")
    parser.add_argument("bucket")
    parser.add_argument("job_id")
    options = parser.parse_args()
    figures = run(options.contender, options.url, options.bucket, options.job_id)
    sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
