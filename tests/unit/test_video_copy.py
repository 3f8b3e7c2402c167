"""Copying a provider's video into S3 (moto): multipart, checksums, refusals, and nothing left after a failure."""

import base64
import hashlib
import threading
import time
import zlib
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from avatarjobs import composition
from avatarjobs.adapters import aws_clients
from avatarjobs.adapters.video_download import FetcherVideoDownloader
from avatarjobs.adapters.video_store import MIB, EmptyVideo, S3VideoStore, VideoTooLarge
from avatarjobs.domain.video_copy import (
    ACCEPTED_CONTENT_TYPES,
    DEFAULT_MAX_VIDEO_BYTES,
    CopyFailed,
    StoredVideo,
    VideoCopier,
    host_is_listed,
)
from avatarjobs.net.safe_fetch import FetchError
from avatarjobs.settings import InvalidSetting, ProviderSettings
from tests.support.generated_video import FTYP_BOX

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from avatarjobs.net.safe_fetch import SafeFetcher

BUCKET = "avatarjobs-outputs"
JOB_ID = "01JD0000000000000000000001"
KEY = f"videos/{JOB_ID}.mp4"
PART_SIZE = 5 * MIB  # S3's smallest part: the smallest body that still needs several parts
MEDIA_HOSTS = {
    "fal": ["fal.media", "fal.run", "storage.googleapis.com/falserverless"],
    "mirako": ["mirako.co", "amazonaws.com"],
    "local": ["127.0.0.1"],
}
FAL_URL = "https://v3.fal.media/files/rabbit/result.mp4"


def video_body(size: int) -> bytes:
    """An MP4-looking body whose bytes differ from part to part (a misplaced part changes the hash)."""
    filler = hashlib.shake_256(b"video").digest(size)
    return FTYP_BOX + filler[len(FTYP_BOX) :]


def in_chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def failing_after(chunks: Iterable[bytes], error: Exception) -> Iterator[bytes]:
    yield from chunks
    raise error


class FakeResponse:
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks

    def iter_raw(self) -> Iterator[bytes]:
        yield from self._chunks


class FakeFetcher:
    """SafeFetcher's streaming side: `open_stream` yields a response whose `iter_raw()` gives the chunks."""

    def __init__(self, chunks: Iterable[bytes] = (), *, error: FetchError | None = None) -> None:
        self._chunks = chunks
        self._error = error
        self.calls: list[dict[str, Any]] = []

    @contextmanager
    def open_stream(
        self, url: str, *, max_bytes: int, allowed_content_types: Collection[str]
    ) -> Iterator[FakeResponse]:
        self.calls.append({"url": url, "max_bytes": max_bytes, "allowed_content_types": set(allowed_content_types)})
        if self._error is not None:
            raise self._error
        yield FakeResponse(self._chunks)


class MemoryStore:
    """A store without S3, for tests about which URLs are fetched at all."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def store(self, key: str, chunks: Iterable[bytes], *, content_type: str, max_bytes: int) -> StoredVideo:
        data = b"".join(chunks)
        self.objects[key] = data
        return StoredVideo(BUCKET, key, len(data), hashlib.sha256(data).hexdigest(), content_type)


@pytest.fixture
def s3() -> Iterator["S3Client"]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def copier(s3: "S3Client", fetcher: FakeFetcher, *, max_bytes: int = 64 * MIB) -> VideoCopier:
    return VideoCopier(
        FetcherVideoDownloader(fetcher), S3VideoStore(s3, BUCKET, part_size=PART_SIZE), MEDIA_HOSTS, max_bytes=max_bytes
    )


def stored_keys(s3: "S3Client") -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def pending_uploads(s3: "S3Client") -> list[str]:
    return [upload["Key"] for upload in s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])]


def assert_nothing_stored(s3: "S3Client") -> None:
    assert stored_keys(s3) == []
    assert pending_uploads(s3) == []


def crc32(data: bytes) -> bytes:
    return zlib.crc32(data).to_bytes(4, "big")


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(crc32(data)).decode()


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_streams_the_video_into_one_object_in_parts_with_their_checksums(s3: "S3Client") -> None:
    body = video_body(3 * PART_SIZE + 4321)
    sent_parts: list[dict[str, Any]] = []

    def record_part(params: dict[str, Any], **_: Any) -> None:
        sent_parts.append({"number": params["PartNumber"], "size": len(params["Body"]), **params})
        if params["PartNumber"] == 1:
            time.sleep(0.2)  # parts are uploaded side by side: the first one lands after the others

    s3.meta.events.register("provide-client-params.s3.UploadPart", record_part)
    # Odd chunk sizes, so chunks straddle part boundaries; one chunk is larger than a whole part.
    chunks = [*in_chunks(body[: 2 * MIB], 64 * 1024 + 7), body[2 * MIB : 9 * MIB], *in_chunks(body[9 * MIB :], 333_333)]
    fetcher = FakeFetcher(chunks)

    output = copier(s3, fetcher).copy(JOB_ID, "fal", FAL_URL)

    assert output.model_dump() == {
        "bucket": BUCKET,
        "key": KEY,
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "content_type": "video/mp4",
    }
    assert fetcher.calls == [
        {"url": FAL_URL, "max_bytes": 64 * MIB, "allowed_content_types": set(ACCEPTED_CONTENT_TYPES)}
    ]
    stored = s3.get_object(Bucket=BUCKET, Key=KEY, ChecksumMode="ENABLED")
    assert stored["Body"].read() == body
    assert stored["ContentType"] == "video/mp4"
    assert stored["ETag"].strip('"').endswith("-4")  # a multipart object of four parts
    # Parts of exactly part_size but the last, each sent with the CRC32 of its own bytes.
    parts = [body[start : start + PART_SIZE] for start in range(0, len(body), PART_SIZE)]
    sent_parts.sort(key=lambda part: part["number"])
    assert [(part["number"], part["size"]) for part in sent_parts] == [
        (1, PART_SIZE),
        (2, PART_SIZE),
        (3, PART_SIZE),
        (4, 4321),
    ]
    assert [part["ChecksumCRC32"] for part in sent_parts] == [crc32_b64(part) for part in parts]
    # S3 (here moto) derives the object's composite checksum from the bytes it received: it matches ours.
    composite = base64.b64encode(zlib.crc32(b"".join(crc32(part) for part in parts)).to_bytes(4, "big")).decode()
    assert stored["ChecksumCRC32"] == f"{composite}-4"
    assert pending_uploads(s3) == []


def recorded_calls(s3: "S3Client") -> list[str]:
    """The names of the S3 operations called from now on, in the order they were called (any thread)."""
    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        calls.append(model.name)

    s3.meta.events.register("provide-client-params.s3", record)
    return calls


@pytest.mark.parametrize("size", [1000, PART_SIZE])
def test_a_video_that_fits_in_one_part_is_one_put_object_with_its_sha256(s3: "S3Client", size: int) -> None:
    body = video_body(size)
    calls = recorded_calls(s3)
    sent: list[dict[str, Any]] = []
    s3.meta.events.register("provide-client-params.s3.PutObject", lambda params, **_: sent.append(dict(params)))

    output = copier(s3, FakeFetcher([body[:3], body[3:5], *in_chunks(body[5:], MIB)])).copy(JOB_ID, "fal", FAL_URL)

    assert calls == ["PutObject"]  # no CreateMultipartUpload, UploadPart, CompleteMultipartUpload
    assert output.model_dump() == {
        "bucket": BUCKET,
        "key": KEY,
        "size": size,
        "sha256": hashlib.sha256(body).hexdigest(),
        "content_type": "video/mp4",
    }
    assert sent[0]["ChecksumSHA256"] == sha256_b64(body)
    assert sent[0]["ContentType"] == "video/mp4"
    stored = s3.get_object(Bucket=BUCKET, Key=KEY, ChecksumMode="ENABLED")
    assert stored["Body"].read() == body
    assert stored["ContentType"] == "video/mp4"
    assert stored["ChecksumSHA256"] == sha256_b64(body)  # kept, and checked by S3 (not by moto) against the bytes
    assert "-" not in stored["ETag"]  # a plain object, not a multipart one
    assert pending_uploads(s3) == []


def test_one_byte_more_than_a_part_is_a_multipart_upload_of_two_parts(s3: "S3Client") -> None:
    body = video_body(PART_SIZE + 1)
    calls = recorded_calls(s3)

    output = copier(s3, FakeFetcher(in_chunks(body, MIB))).copy(JOB_ID, "fal", FAL_URL)

    assert calls == ["CreateMultipartUpload", "UploadPart", "UploadPart", "CompleteMultipartUpload"]
    assert output.sha256 == hashlib.sha256(body).hexdigest()
    stored = s3.get_object(Bucket=BUCKET, Key=KEY)
    assert stored["Body"].read() == body
    assert stored["ETag"].strip('"').endswith("-2")


def test_a_refused_put_object_is_retryable_and_leaves_nothing(s3: "S3Client") -> None:
    def refuse(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "reduce your request rate"}}, "PutObject")

    calls = recorded_calls(s3)
    s3.meta.events.register("before-call.s3.PutObject", refuse)

    with pytest.raises(CopyFailed) as failure:
        copier(s3, FakeFetcher([video_body(1000)])).copy(JOB_ID, "fal", FAL_URL)

    assert failure.value.retryable
    assert "PutObject failed (SlowDown)" in failure.value.reason
    assert calls == ["PutObject"]
    assert_nothing_stored(s3)


def test_a_body_refused_before_its_first_part_costs_no_s3_call(s3: "S3Client") -> None:
    calls = recorded_calls(s3)

    with pytest.raises(CopyFailed):
        copier(s3, FakeFetcher(in_chunks(b"<html>" + bytes(3 * PART_SIZE), MIB))).copy(JOB_ID, "fal", FAL_URL)
    with pytest.raises(CopyFailed):
        copier(s3, FakeFetcher(in_chunks(video_body(3 * PART_SIZE), MIB)), max_bytes=PART_SIZE).copy(
            JOB_ID, "fal", FAL_URL
        )

    assert calls == []


def test_a_read_error_in_the_middle_aborts_the_upload(s3: "S3Client") -> None:
    body = video_body(2 * PART_SIZE + 10)  # two whole parts are uploaded before the failure
    broken = FetchError("the connection failed (ReadError)", retryable=True)

    with pytest.raises(CopyFailed) as failure:
        copier(s3, FakeFetcher(failing_after(in_chunks(body, MIB), broken))).copy(JOB_ID, "fal", FAL_URL)

    assert failure.value.retryable
    assert "ReadError" in failure.value.reason
    assert_nothing_stored(s3)


def test_an_s3_error_in_the_middle_aborts_the_upload_and_is_retryable(s3: "S3Client") -> None:
    def refuse_second_part(params: dict[str, Any], **_: Any) -> None:
        if params["PartNumber"] == 2:
            raise ClientError({"Error": {"Code": "InternalError", "Message": "try again"}}, "UploadPart")

    s3.meta.events.register("provide-client-params.s3.UploadPart", refuse_second_part)

    with pytest.raises(CopyFailed) as failure:
        copier(s3, FakeFetcher(in_chunks(video_body(3 * PART_SIZE), MIB))).copy(JOB_ID, "fal", FAL_URL)

    assert failure.value.retryable
    assert "InternalError" in failure.value.reason
    assert_nothing_stored(s3)


def test_a_missing_bucket_is_a_retryable_failure(s3: "S3Client") -> None:
    store = S3VideoStore(s3, "no-such-bucket", part_size=PART_SIZE)
    video_copier = VideoCopier(FetcherVideoDownloader(FakeFetcher([video_body(100)])), store, MEDIA_HOSTS)

    with pytest.raises(CopyFailed) as failure:
        video_copier.copy(JOB_ID, "fal", FAL_URL)

    assert failure.value.retryable
    assert "NoSuchBucket" in failure.value.reason


def test_a_video_over_the_limit_aborts_the_upload(s3: "S3Client") -> None:
    fetcher = FakeFetcher(in_chunks(video_body(3 * PART_SIZE), MIB))

    with pytest.raises(CopyFailed) as failure:
        copier(s3, fetcher, max_bytes=2 * PART_SIZE).copy(JOB_ID, "fal", FAL_URL)

    assert not failure.value.retryable
    assert f"larger than the limit of {2 * PART_SIZE} bytes" in failure.value.reason
    assert fetcher.calls[0]["max_bytes"] == 2 * PART_SIZE  # the fetcher enforces the same limit
    assert_nothing_stored(s3)


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (FetchError("the server answered HTTP 503", retryable=True), True),
        (FetchError("the server answered HTTP 404"), False),
        (FetchError("the content type text/html is not one of application/octet-stream, video/mp4"), False),
        (FetchError("the body is 3000000000 bytes, larger than the limit of 2147483648 bytes"), False),
    ],
)
def test_fetch_failures_keep_their_retryability(s3: "S3Client", error: FetchError, retryable: bool) -> None:
    with pytest.raises(CopyFailed) as failure:
        copier(s3, FakeFetcher(error=error)).copy(JOB_ID, "fal", FAL_URL)

    assert failure.value.retryable is retryable
    assert error.reason in failure.value.reason
    assert_nothing_stored(s3)


@pytest.mark.parametrize(
    ("provider", "url"),
    [
        ("fal", "https://example.com/video.mp4"),
        ("fal", "https://evilfal.media/video.mp4"),  # ends like fal.media but is another domain
        ("fal", "https://fal.media.evil.com/video.mp4"),
        ("fal", "https://fal.media\\@evil.com/video.mp4"),  # parsers that disagree on the host
        ("fal", "https://mirako.co/video.mp4"),  # another provider's host
        ("mirako", "https://v3.fal.media/video.mp4"),
        ("unknown", FAL_URL),
        ("local", "http://127.0.0.2:8080/video.mp4"),
        ("local", "http://1.127.0.0.1/video.mp4"),  # a DNS name, not a subdomain of an address
        ("fal", "not a url"),
        ("fal", "https://storage.googleapis.com/someone-elses-bucket/video.mp4"),  # only fal's folder is listed
        ("fal", "https://storage.googleapis.com/falserverless-evil/video.mp4"),
        ("fal", "https://x.storage.googleapis.com/falserverless/video.mp4"),  # a folder entry has no subdomains
    ],
)
def test_refuses_hosts_that_are_not_the_providers_media_hosts(provider: str, url: str) -> None:
    fetcher = FakeFetcher([video_body(100)])
    store = MemoryStore()

    with pytest.raises(CopyFailed) as failure:
        VideoCopier(FetcherVideoDownloader(fetcher), store, MEDIA_HOSTS).copy(JOB_ID, provider, url)

    assert not failure.value.retryable
    assert "media host" in failure.value.reason or "well-formed" in failure.value.reason
    assert fetcher.calls == []  # refused before any connection
    assert store.objects == {}


@pytest.mark.parametrize(
    ("provider", "url"),
    [
        ("fal", "https://fal.media/files/video.mp4"),
        ("fal", "https://v3.fal.media/files/video.mp4"),
        ("fal", "https://V3.FAL.MEDIA./files/video.mp4"),
        ("mirako", "https://cdn.mirako.co/out/video.mp4"),
        ("local", "http://127.0.0.1:8080/video.mp4"),
        ("fal", "https://storage.googleapis.com/falserverless/example_outputs/out.mp4"),
        ("mirako", "https://mirako-results.s3.ap-east-1.amazonaws.com/videos/x.mp4"),  # its spec's s3_info
    ],
)
def test_accepts_the_providers_media_hosts_and_their_subdomains(provider: str, url: str) -> None:
    fetcher = FakeFetcher([video_body(100)])
    store = MemoryStore()

    VideoCopier(FetcherVideoDownloader(fetcher), store, MEDIA_HOSTS).copy(JOB_ID, provider, url)

    assert [call["url"] for call in fetcher.calls] == [url]
    assert store.objects == {KEY: video_body(100)}


@pytest.mark.parametrize(
    ("host", "domains", "listed"),
    [
        ("fal.media", ["fal.media"], True),
        ("a.b.fal.media", ["fal.media"], True),
        ("evilfal.media", ["fal.media"], False),
        ("media", ["fal.media"], False),
        ("127.0.0.1", ["127.0.0.1"], True),
        ("::1", ["::1"], True),
        ("0:0::1", ["::1"], True),
        ("2130706433", ["127.0.0.1"], False),  # a legacy spelling is not matched: refused, never widened
        ("x.127.0.0.1", ["127.0.0.1"], False),
        ("fal.media", ["", " "], False),
    ],
)
def test_host_matching(host: str, domains: list[str], listed: bool) -> None:
    assert host_is_listed(host, domains) is listed


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>Access denied</body></html>" + b"x" * 100,
        b"\x1aE\xdf\xa3" + b"webm" * 100,  # a WebM (Matroska) file
        b"\x00\x00\x00\x18ft",  # too short to be a video
        b"",
    ],
)
def test_refuses_a_body_that_is_not_an_mp4(s3: "S3Client", body: bytes) -> None:
    with pytest.raises(CopyFailed) as failure:
        copier(s3, FakeFetcher(in_chunks(body, 3))).copy(JOB_ID, "fal", FAL_URL)

    assert not failure.value.retryable
    assert "not an MP4" in failure.value.reason
    assert_nothing_stored(s3)


def test_the_mp4_check_needs_no_more_than_the_first_chunk(s3: "S3Client") -> None:
    """A non-MP4 body is refused after its first chunk: the rest is never read, and nothing is uploaded."""
    read: list[int] = []

    def chunks() -> Iterator[bytes]:
        for index in range(100):
            read.append(index)
            yield b"not a video, " * 1000

    with pytest.raises(CopyFailed):
        copier(s3, FakeFetcher(chunks())).copy(JOB_ID, "fal", FAL_URL)

    assert read == [0]
    assert_nothing_stored(s3)


def test_redelivery_after_a_crash_leaves_exactly_one_object(s3: "S3Client") -> None:
    body = video_body(PART_SIZE + 77)
    crash = FetchError("the connection failed (RemoteProtocolError)", retryable=True)
    with pytest.raises(CopyFailed):
        copier(s3, FakeFetcher(failing_after([body[:PART_SIZE]], crash))).copy(JOB_ID, "fal", FAL_URL)

    first = copier(s3, FakeFetcher(in_chunks(body, MIB))).copy(JOB_ID, "fal", FAL_URL)
    again = copier(s3, FakeFetcher(in_chunks(body, MIB))).copy(JOB_ID, "fal", FAL_URL)

    assert first == again
    assert stored_keys(s3) == [KEY]
    assert pending_uploads(s3) == []
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == body


def test_the_store_refuses_an_empty_stream_and_a_stream_over_the_limit(s3: "S3Client") -> None:
    store = S3VideoStore(s3, BUCKET, part_size=PART_SIZE)

    with pytest.raises(EmptyVideo):
        store.store(KEY, iter([b"", b""]), content_type="video/mp4", max_bytes=MIB)
    with pytest.raises(VideoTooLarge):
        store.store(KEY, in_chunks(bytes(2 * PART_SIZE), MIB), content_type="video/mp4", max_bytes=PART_SIZE + 1)

    assert_nothing_stored(s3)


@pytest.mark.parametrize("part_size", [5 * MIB - 1, 16 * MIB + 1])
def test_part_sizes_outside_s3s_and_our_bounds_are_refused(s3: "S3Client", part_size: int) -> None:
    with pytest.raises(ValueError, match="part_size"):
        S3VideoStore(s3, BUCKET, part_size=part_size)


def test_accepted_content_types_include_fals_and_s3s_octet_streams() -> None:
    assert {"video/mp4", "application/octet-stream", "binary/octet-stream"} == ACCEPTED_CONTENT_TYPES


def test_parts_are_uploaded_side_by_side_and_the_download_stays_one_part_ahead(s3: "S3Client") -> None:
    body = video_body(7 * PART_SIZE + 999)
    chunks_read = 0
    read_when_both_were_in_flight = 0
    in_flight = 0
    most_in_flight = 0
    lock = threading.Lock()
    # The first two parts wait for each other (the copy fails unless two parts really are in flight together),
    # then stay in flight while the download runs ahead as far as it may.
    both_first_parts = threading.Barrier(2, timeout=30)
    counted = threading.Event()

    def chunks() -> Iterator[bytes]:
        nonlocal chunks_read
        for chunk in in_chunks(body, MIB):
            chunks_read += 1
            yield chunk

    def part_starts(params: dict[str, Any], **_: Any) -> None:
        nonlocal in_flight, most_in_flight, read_when_both_were_in_flight
        with lock:
            in_flight += 1
            most_in_flight = max(most_in_flight, in_flight)
        if params["PartNumber"] <= 2:
            both_first_parts.wait()
        if params["PartNumber"] == 1:
            time.sleep(0.3)
            read_when_both_were_in_flight = chunks_read
            counted.set()
        elif params["PartNumber"] == 2:
            counted.wait(timeout=30)

    def part_lands(**_: Any) -> None:
        nonlocal in_flight
        with lock:
            in_flight -= 1

    s3.meta.events.register("provide-client-params.s3.UploadPart", part_starts)
    s3.meta.events.register("after-call.s3.UploadPart", part_lands)
    store = S3VideoStore(s3, BUCKET, part_size=PART_SIZE, parts_in_flight=2)

    output = VideoCopier(FetcherVideoDownloader(FakeFetcher(chunks())), store, MEDIA_HOSTS).copy(JOB_ID, "fal", FAL_URL)

    assert output.sha256 == hashlib.sha256(body).hexdigest()
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == body
    assert most_in_flight == 2
    # While parts 1 and 2 were in flight, part 3 could be read, and the first chunk of part 4 (which tells that
    # part 3 is full): memory holds at most parts_in_flight + 1 parts, however long the video.
    parts_ahead = 3 * PART_SIZE // MIB + 1
    assert read_when_both_were_in_flight <= parts_ahead < chunks_read


def test_an_upload_is_aborted_only_after_the_parts_in_flight_have_landed(s3: "S3Client") -> None:
    body = video_body(3 * PART_SIZE)
    events: list[str] = []

    def slow_first_part(params: dict[str, Any], **_: Any) -> None:
        if params["PartNumber"] == 1:
            time.sleep(0.3)  # still in flight when the download breaks

    s3.meta.events.register("provide-client-params.s3.UploadPart", slow_first_part)
    s3.meta.events.register("after-call.s3.UploadPart", lambda **_: events.append("part landed"))
    s3.meta.events.register("before-call.s3.AbortMultipartUpload", lambda **_: events.append("abort"))
    broken = FetchError("the connection failed (ReadError)", retryable=True)
    store = S3VideoStore(s3, BUCKET, part_size=PART_SIZE, parts_in_flight=2)
    chunks = failing_after(in_chunks(body[: 2 * PART_SIZE + MIB], MIB), broken)

    with pytest.raises(CopyFailed) as failure:
        VideoCopier(FetcherVideoDownloader(FakeFetcher(chunks)), store, MEDIA_HOSTS).copy(JOB_ID, "fal", FAL_URL)

    assert failure.value.retryable
    assert events == ["part landed", "part landed", "abort"]
    assert_nothing_stored(s3)


def test_a_failed_part_stops_the_download_and_no_later_part_is_sent(s3: "S3Client") -> None:
    body = video_body(8 * PART_SIZE)
    part_uploads: list[int] = []
    chunks_read = 0

    def refuse_first_part(params: dict[str, Any], **_: Any) -> None:
        part_uploads.append(params["PartNumber"])
        if params["PartNumber"] == 1:
            raise ClientError({"Error": {"Code": "InternalError", "Message": "try again"}}, "UploadPart")

    def chunks() -> Iterator[bytes]:
        nonlocal chunks_read
        for chunk in in_chunks(body, MIB):
            chunks_read += 1
            yield chunk

    s3.meta.events.register("provide-client-params.s3.UploadPart", refuse_first_part)
    store = S3VideoStore(s3, BUCKET, part_size=PART_SIZE, parts_in_flight=1)

    with pytest.raises(CopyFailed) as failure:
        VideoCopier(FetcherVideoDownloader(FakeFetcher(chunks())), store, MEDIA_HOSTS).copy(JOB_ID, "fal", FAL_URL)

    assert failure.value.retryable
    assert "UploadPart failed (InternalError)" in failure.value.reason
    # The part being filled when part 1 failed may have been handed over; nothing after it.
    assert part_uploads in ([1], [1, 2])
    assert chunks_read <= 3 * PART_SIZE // MIB + 1  # not the 40 chunks of the whole body
    assert_nothing_stored(s3)


@pytest.mark.parametrize("parts_in_flight", [0, -1])
def test_at_least_one_part_is_in_flight(s3: "S3Client", parts_in_flight: int) -> None:
    with pytest.raises(ValueError, match="parts_in_flight"):
        S3VideoStore(s3, BUCKET, part_size=PART_SIZE, parts_in_flight=parts_in_flight)


@pytest.mark.parametrize(
    ("part_size", "parts_in_flight"),
    [(5 * MIB, 4), (8 * MIB, 4), (12 * MIB, 2), (16 * MIB, 1), (16 * 1024, 4)],
)
def test_the_part_buffers_stay_within_40_mib(s3: "S3Client", part_size: int, parts_in_flight: int) -> None:
    store = S3VideoStore(s3, BUCKET, part_size=part_size, min_part_size=min(part_size, 5 * MIB))

    assert store.parts_in_flight == parts_in_flight
    assert (store.parts_in_flight + 1) * part_size <= 40 * MIB


@pytest.fixture
def local_stack_parts(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """The local stack's settings with 16 KiB parts, and a moto that accepts them (S3_UPLOAD_PART_MIN_SIZE)."""
    part_bytes = 16 * 1024
    monkeypatch.setenv("AVATARJOBS_ALLOW_LOOPBACK_HTTP", "1")
    monkeypatch.setenv("FINALIZE_PART_BYTES", str(part_bytes))
    monkeypatch.setenv("FAL_MEDIA_HOSTS", "127.0.0.1")
    monkeypatch.setattr("moto.s3.models.S3_UPLOAD_PART_MIN_SIZE", part_bytes)
    composition.reset()
    yield part_bytes
    composition.reset()


def test_the_local_stack_can_copy_a_small_video_in_many_small_parts(s3: "S3Client", local_stack_parts: int) -> None:
    """What a failure suite needs to make S3 part uploads fail: parts in ~100 kB emulator videos."""
    body = video_body(100_000)
    fetcher = FakeFetcher(in_chunks(body, 4096))
    calls = recorded_calls(aws_clients.s3())

    with composition.override(safe_fetcher=cast("SafeFetcher", fetcher)):
        output = composition.video_copier(BUCKET).copy(JOB_ID, "fal", "http://127.0.0.1:8123/video.mp4")

    parts = -(-len(body) // local_stack_parts)
    assert parts == 7
    assert calls == ["CreateMultipartUpload", *["UploadPart"] * parts, "CompleteMultipartUpload"]
    assert output.sha256 == hashlib.sha256(body).hexdigest()
    stored = s3.get_object(Bucket=BUCKET, Key=KEY)
    assert stored["Body"].read() == body
    assert stored["ETag"].strip('"').endswith(f"-{parts}")
    # 10,000 parts of 16 KiB: the largest video the local stack then takes is smaller than the 2 GiB limit.
    assert fetcher.calls[0]["max_bytes"] == 10_000 * local_stack_parts


def test_a_deployed_finalizer_uses_8_mib_parts_and_the_2_gib_limit(
    s3: "S3Client", monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AVATARJOBS_ALLOW_LOOPBACK_HTTP", "FINALIZE_PART_BYTES"):
        monkeypatch.delenv(name, raising=False)
    fetcher = FakeFetcher([video_body(1000)])
    composition.reset()
    try:
        with composition.override(safe_fetcher=cast("SafeFetcher", fetcher)):
            composition.video_copier(BUCKET).copy(JOB_ID, "fal", FAL_URL)
    finally:
        composition.reset()

    assert fetcher.calls[0]["max_bytes"] == DEFAULT_MAX_VIDEO_BYTES
    assert composition.provider_settings().finalize_part_bytes == 8 * MIB


@pytest.mark.parametrize(
    ("local_stack", "value", "expected"),
    [
        (False, None, 8 * MIB),
        (False, "", 8 * MIB),
        (False, str(12 * MIB), 12 * MIB),
        (False, str(16 * MIB), 16 * MIB),
        (True, None, 8 * MIB),
        (True, "16384", 16384),
        (True, "1024", 1024),
        (True, str(16 * MIB), 16 * MIB),
    ],
)
def test_the_part_size_setting(
    monkeypatch: pytest.MonkeyPatch, local_stack: bool, value: str | None, expected: int
) -> None:
    monkeypatch.setenv("AVATARJOBS_ALLOW_LOOPBACK_HTTP", "1" if local_stack else "")
    if value is None:
        monkeypatch.delenv("FINALIZE_PART_BYTES", raising=False)
    else:
        monkeypatch.setenv("FINALIZE_PART_BYTES", value)

    assert ProviderSettings.from_environment().finalize_part_bytes == expected


@pytest.mark.parametrize(
    ("local_stack", "value"),
    [
        (False, "16384"),  # small parts are for the local stack only
        (False, str(5 * MIB)),  # S3 takes it, DESIGN.md says 8-16 MiB
        (False, str(16 * MIB + 1)),
        (False, "8MiB"),
        (True, "1023"),
        (True, str(16 * MIB + 1)),
        (True, "-16384"),
    ],
)
def test_part_sizes_outside_the_range_are_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, local_stack: bool, value: str
) -> None:
    monkeypatch.setenv("AVATARJOBS_ALLOW_LOOPBACK_HTTP", "1" if local_stack else "")
    monkeypatch.setenv("FINALIZE_PART_BYTES", value)

    with pytest.raises(InvalidSetting, match="FINALIZE_PART_BYTES"):
        ProviderSettings.from_environment()
