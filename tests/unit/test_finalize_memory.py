"""Acceptance: finalize streams a video far larger than the memory it may use, over real sockets.

A loopback HTTP server (its own process) generates a body of 256 MiB and a bit; moto runs as a server in
another process, so the parts it keeps are not counted here. This process runs the real SafeFetcher,
S3VideoStore and VideoCopier under tracemalloc: if the copy buffered the video, the traced peak would be
hundreds of MiB. The store keeps a fixed set of part buffers (the parts in flight and the one being filled),
so the peak must stay within those buffers and a few MiB of botocore's and httpx's own. A body that breaks off
in the middle must leave neither an object nor an open upload. (bench/finalize_copy.py measures the resident
set of a 1 GiB copy, native memory included, in a fresh process.)
"""

import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from avatarjobs.adapters.video_download import FetcherVideoDownloader
from avatarjobs.adapters.video_store import MIB, S3VideoStore
from avatarjobs.domain.job import JobOutput
from avatarjobs.domain.video_copy import CopyFailed, VideoCopier
from avatarjobs.net.safe_fetch import SafeFetcher
from devstack.processes import server_process
from tests.support.generated_video import generated_chunks, generated_sha256, stored_size_and_sha256

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

VIDEO_BYTES = 256 * MIB + 12_345  # not a multiple of the part size: the last part is a short one
DROP_AFTER_BYTES = 100 * MIB
SEED = 7
PEAK_LIMIT_BYTES = 64 * MIB
# What the copy may use besides its part buffers (which botocore reads and sends as views, without copies):
# httpx's chunks, botocore's requests and responses, the threads' frames.
OVERHEAD_BYTES = 8 * MIB
JOB_ID = "01JD00000000000000000BIG01"
KEY = f"videos/{JOB_ID}.mp4"


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with server_process("devstack.moto_server", log=tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def video_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    args = ("--size", str(VIDEO_BYTES), "--seed", str(SEED), "--drop-after", str(DROP_AFTER_BYTES))
    log: Path = tmp_path_factory.mktemp("video") / "video.log"
    with server_process("tests.support.video_server", *args, log=log) as base_url:
        yield base_url


@pytest.fixture
def s3(moto_endpoint: str) -> "S3Client":
    client = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 1}),
    )
    return client


@pytest.fixture
def bucket(s3: "S3Client") -> str:
    name = f"outputs-{uuid.uuid4().hex[:12]}"  # one per test: what one test leaves cannot pass another
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def fetcher() -> Iterator[SafeFetcher]:
    with SafeFetcher(allow_loopback_http=True) as safe_fetcher:
        yield safe_fetcher


def traced_peak(action: Callable[[], JobOutput]) -> tuple[JobOutput | CopyFailed, int, float]:
    """Runs the copy under tracemalloc: its outcome, the peak of traced allocations, and the seconds it took."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    started = time.monotonic()
    outcome: JobOutput | CopyFailed
    try:
        outcome = action()
    except CopyFailed as failure:
        outcome = failure
    finally:
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return outcome, peak, elapsed


def test_a_256_mib_video_is_streamed_into_s3_in_bounded_memory(
    s3: "S3Client", bucket: str, fetcher: SafeFetcher, video_server: str, record_property: Callable[[str, object], None]
) -> None:
    store = S3VideoStore(s3, bucket)
    copier = VideoCopier(FetcherVideoDownloader(fetcher), store, {"fal": ["127.0.0.1"]})
    part_buffers = (store.parts_in_flight + 1) * store.part_size

    outcome, peak, elapsed = traced_peak(lambda: copier.copy(JOB_ID, "fal", f"{video_server}/video.mp4"))

    record_property("peak_traced_bytes", peak)
    record_property("copy_seconds", round(elapsed, 2))
    print(f"\n256 MiB copy: peak traced allocation {peak / MIB:.1f} MiB, {elapsed:.1f} s")
    assert isinstance(outcome, JobOutput), outcome
    assert peak < PEAK_LIMIT_BYTES, f"the copy buffered: peak {peak / MIB:.1f} MiB"
    assert peak < part_buffers + OVERHEAD_BYTES, f"peak {peak / MIB:.1f} MiB, buffers {part_buffers / MIB:.0f} MiB"
    expected_sha256 = generated_sha256(VIDEO_BYTES, SEED)
    assert outcome == JobOutput(
        bucket=bucket, key=KEY, size=VIDEO_BYTES, sha256=expected_sha256, content_type="video/mp4"
    )
    # What S3 holds, read back: not only what the copier says it sent.
    assert stored_size_and_sha256(s3, bucket, KEY) == (VIDEO_BYTES, expected_sha256)
    head = s3.head_object(Bucket=bucket, Key=KEY)
    assert head["ContentType"] == "video/mp4"
    assert head["ETag"].strip('"').endswith(f"-{-(-VIDEO_BYTES // (8 * MIB))}")  # 8 MiB parts
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_connection_dropped_in_the_middle_aborts_the_upload(
    s3: "S3Client", bucket: str, fetcher: SafeFetcher, video_server: str
) -> None:
    store = S3VideoStore(s3, bucket)
    copier = VideoCopier(FetcherVideoDownloader(fetcher), store, {"fal": ["127.0.0.1"]})

    outcome, peak, elapsed = traced_peak(lambda: copier.copy(JOB_ID, "fal", f"{video_server}/broken.mp4"))

    print(f"\nbroken copy: peak traced allocation {peak / MIB:.1f} MiB, {elapsed:.1f} s")
    assert isinstance(outcome, CopyFailed), outcome
    assert outcome.retryable  # a broken connection may work next time
    assert peak < PEAK_LIMIT_BYTES
    assert peak < (store.parts_in_flight + 1) * store.part_size + OVERHEAD_BYTES
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket=bucket, Key=KEY)
    assert missing.value.response["Error"]["Code"] == "404"


def test_the_generated_body_is_an_mp4_that_differs_from_chunk_to_chunk() -> None:
    """The generator the two tests above rely on: an ftyp box first, and no two chunks alike."""
    first, second, *_ = generated_chunks(3 * MIB, SEED)
    assert first[4:8] == b"ftyp"
    assert first != second
    assert sum(len(chunk) for chunk in generated_chunks(VIDEO_BYTES, SEED)) == VIDEO_BYTES
