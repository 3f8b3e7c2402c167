"""S3: finished videos, streamed into the outputs bucket, by multipart upload unless they fit in one part.

A video may be larger than the finalizer's memory, so it is never held whole: the body is cut into parts as
it arrives. A part is uploaded by a worker thread while the next ones are read, with a fixed set of reused
part buffers (`parts_in_flight` uploading plus the one being filled), so memory is bounded whatever the size
and the download does not wait for S3 (nor S3 for the download). Each byte is copied once, into a buffer.

Each part carries its CRC32, so S3 refuses a part that was damaged on the way. CRC32 is S3's default part
checksum (what boto3 sends) and costs a fraction of a SHA-256 of the same bytes: the copy already hashes every
byte once with SHA-256, for the whole object, in order as the bytes pass (the video's SHA-256 that the job
reports, which S3's multipart checksum, a checksum of the parts' checksums, could not give). Both are taken
of each chunk as it is copied into its part, while its bytes are still in the CPU's cache.

A video that ends within its first part is one PutObject carrying its SHA-256 (which is then also the
SHA-256 of the whole): one call instead of CreateMultipartUpload, UploadPart and CompleteMultipartUpload.
That is decided when the body ends, so a part is sent only once the next byte after it has arrived.

Any failure aborts the upload: S3 keeps (and bills) the parts of an upload that is neither completed nor
aborted, and a completed upload would leave a truncated video behind. The parts still in flight are waited
for first (an in-flight part could land after the abort and be kept), and no part is sent once one has
failed. Parts are not re-sent by us: botocore's retries of one call are all there is. The bucket's lifecycle
rule is the backstop for a process killed before it could abort.
"""

import base64
import hashlib
import io
import queue
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, cast

from botocore.exceptions import BotoCoreError, ClientError

from avatarjobs.domain.video_copy import EmptyVideo, StoredVideo, VideoStoreFailed, VideoTooLarge
from avatarjobs.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

MIB = 1024 * 1024
DEFAULT_PART_SIZE = 8 * MIB
# S3 refuses parts under 5 MiB except the last; above 16 MiB the memory a copy needs grows for no gain.
MIN_PART_SIZE = 5 * MIB
MAX_PART_SIZE = 16 * MIB
MAX_PARTS = 10_000  # S3's limit per upload
# The part buffers together (being filled and in flight) stay within this; at most this many parts in flight.
PART_BUFFERS_BYTES = 40 * MIB
MAX_PARTS_IN_FLIGHT = 4


__all__ = ["EmptyVideo", "S3VideoStore", "StoredVideo", "VideoStoreFailed", "VideoTooLarge"]


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def default_parts_in_flight(part_size: int) -> int:
    return max(1, min(MAX_PARTS_IN_FLIGHT, PART_BUFFERS_BYTES // part_size - 1))


class S3VideoStore:
    def __init__(
        self,
        client: "S3Client",
        bucket: str,
        part_size: int = DEFAULT_PART_SIZE,
        *,
        min_part_size: int = MIN_PART_SIZE,
        parts_in_flight: int | None = None,
    ) -> None:
        """`min_part_size` below S3's 5 MiB is for the local stack only, whose moto is told to accept such parts."""
        if not 1 <= min_part_size <= part_size <= MAX_PART_SIZE:
            raise ValueError(f"part_size must be between {min_part_size} and {MAX_PART_SIZE} bytes")
        self._client = client
        self.bucket = bucket
        self.part_size = part_size
        self.parts_in_flight = parts_in_flight if parts_in_flight is not None else default_parts_in_flight(part_size)
        if self.parts_in_flight < 1:
            raise ValueError("parts_in_flight must be at least 1")

    def store(self, key: str, chunks: Iterable[bytes], *, content_type: str, max_bytes: int) -> StoredVideo:
        """Uploads the chunks as one object at `key`, or leaves nothing behind and re-raises what went wrong.

        Raises VideoTooLarge past `max_bytes`, EmptyVideo for no bytes at all, VideoStoreFailed when S3
        fails (the botocore error is its cause), and an error raised by `chunks` itself as it is.
        """
        if max_bytes > self.part_size * MAX_PARTS:
            raise ValueError(f"max_bytes {max_bytes} needs more than {MAX_PARTS} parts of {self.part_size} bytes")
        upload = _Upload(self._client, self.bucket, key, content_type, self.parts_in_flight)
        try:
            size, sha256 = self._upload(upload, chunks, max_bytes)
        except BaseException:
            upload.abort()
            raise
        return StoredVideo(bucket=self.bucket, key=key, size=size, sha256=sha256, content_type=content_type)

    def _upload(self, upload: "_Upload", chunks: Iterable[bytes], max_bytes: int) -> tuple[int, str]:
        # Each part is copied once, into a reused bytearray, and sent from it without another copy (_PartBody).
        # Both hashes are taken of each chunk as it is copied, while its bytes are in the CPU's cache.
        # A full part is sent when the next byte arrives, not before: the last part may be the only one.
        part = upload.free_buffer()
        filled = 0
        crc32 = 0
        size = 0
        whole = hashlib.sha256()
        for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise VideoTooLarge(max_bytes)
            whole.update(chunk)
            view = memoryview(chunk)
            while view:
                if filled == self.part_size:
                    upload.send_part(part, filled, crc32)
                    part = upload.free_buffer()
                    filled = crc32 = 0
                taken = min(len(view), self.part_size - filled)
                piece = view[:taken]
                part[filled : filled + taken] = piece  # in place, or appended while the buffer is new
                crc32 = zlib.crc32(piece, crc32)
                filled += taken
                view = view[taken:]
        if size == 0:
            raise EmptyVideo()
        digest = whole.digest()
        if upload.is_multipart:
            upload.send_part(part, filled, crc32)
            upload.complete()
        else:
            upload.put(part, filled, _b64(digest))
        return size, digest.hex()


class _PartBody:
    """The first `length` bytes of a part buffer as the file botocore sends, without copying them.

    `read(n)` gives views into the buffer, which botocore hashes (SigV4 over plain http) and the socket sends
    as they are. A bytes body would be a fresh copy of every part (memory that comes and goes) and a bytearray
    is not a body moto's in-process mock can read; a BytesIO would be a copy as it is filled and another as it
    is read.
    """

    def __init__(self, buffer: bytearray, length: int) -> None:
        self._view = memoryview(buffer)[:length]
        self._position = 0

    def __enter__(self) -> "_PartBody":
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Views botocore still holds keep the buffer readable; it is never resized, only overwritten in place.
        self._view.release()

    def __len__(self) -> int:
        return len(self._view)

    def as_file(self) -> IO[bytes]:
        return cast("IO[bytes]", self)

    def read(self, size: int | None = -1) -> bytes | memoryview:
        whole = size is None or size < 0
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._position + size)
        chunk = self._view[self._position : end]
        self._position = end
        # All at once is how moto's in-process mock reads a body, and it takes bytes only; botocore reads blocks.
        return chunk.tobytes() if whole else chunk

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        self._position = max(0, min(len(self._view), base + offset))
        return self._position

    def tell(self) -> int:
        return self._position

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True


@contextmanager
def _s3_call(operation: str) -> Iterator[None]:
    try:
        yield
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "unknown")
        raise VideoStoreFailed(f"S3 {operation} failed ({code})") from error
    except BotoCoreError as error:
        raise VideoStoreFailed(f"S3 {operation} failed ({type(error).__name__})") from error


class _Upload:
    """One object's upload: a PutObject, or a multipart upload created when its first part is ready.

    The reader (the caller's thread) fills buffers and hands full ones to `send_part`; workers upload them
    and give them back. A body that is refused before its first part is sent costs no call at all.
    """

    def __init__(self, client: "S3Client", bucket: str, key: str, content_type: str, parts_in_flight: int) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._content_type = content_type
        self._parts_in_flight = parts_in_flight
        self._upload_id: str | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._sent: list[Future[CompletedPartTypeDef]] = []
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self._buffers = 0
        self._failure: BaseException | None = None

    @property
    def is_multipart(self) -> bool:
        return self._upload_id is not None

    def free_buffer(self) -> bytearray:
        """A part buffer to fill from its start: a sent one back from its worker (full size, overwritten in
        place), or a new, empty one while there are fewer than `parts_in_flight` + 1. A new one grows as it is
        filled: a small video never allocates a whole part.

        Waits while every buffer is in flight; raises the failure of a part sent before.
        """
        if self._buffers <= self._parts_in_flight and self._free.empty():
            self._buffers += 1
            return bytearray()
        buffer = self._free.get()
        self._raise_failure()
        return buffer

    def send_part(self, part: bytearray, length: int, crc32: int) -> None:
        """Hands the first `length` bytes of `part` (their CRC32: `crc32`) to a worker as the next part; the
        buffer comes back when it is sent."""
        self._raise_failure()
        upload_id = self._upload_id or self._create()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._parts_in_flight, thread_name_prefix="upload-part")
        number = len(self._sent) + 1
        checksum = _b64(crc32.to_bytes(4, "big"))
        self._sent.append(self._executor.submit(self._upload_part, upload_id, number, part, length, checksum))

    def complete(self) -> None:
        assert self._upload_id is not None  # store() sends at least one part before it completes
        self._shut_down(cancel=False)  # every part has landed or failed
        self._raise_failure()
        parts = [sent.result() for sent in self._sent]
        with _s3_call("CompleteMultipartUpload"):
            self._client.complete_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, MultipartUpload={"Parts": parts}
            )

    def put(self, part: bytearray, length: int, checksum: str) -> None:
        """The first `length` bytes of `part` as the whole object, in one call; `checksum`: their base64 SHA-256."""
        with _s3_call("PutObject"), _PartBody(part, length) as body:
            # S3 refuses a body that does not match the checksum, and keeps it (as for the multipart's parts).
            self._client.put_object(
                Bucket=self._bucket,
                Key=self._key,
                Body=body.as_file(),
                ContentType=self._content_type,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=checksum,
            )

    def abort(self) -> None:
        self._shut_down(cancel=True)  # the parts in flight land (or fail) before the abort; none outlives it
        if self._upload_id is None:
            return
        try:
            self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)
        except Exception:
            # The failure that made us abort is what the caller must see; the bucket's lifecycle rule removes
            # the parts of an upload we could not abort.
            logger.warning("could not abort a multipart upload", extra={"key": self._key}, exc_info=True)

    def _upload_part(
        self, upload_id: str, number: int, part: bytearray, length: int, checksum: str
    ) -> "CompletedPartTypeDef":
        """A worker's task: uploads one part, then gives its buffer back (also when it failed)."""
        try:
            if self._failure is not None:  # another part failed: this one would only be aborted
                raise VideoStoreFailed("S3 UploadPart skipped: an earlier part failed")
            with _s3_call("UploadPart"), _PartBody(part, length) as body:
                # Our own checksum also stops botocore from computing one (and reading the part once more).
                response = self._client.upload_part(
                    Bucket=self._bucket,
                    Key=self._key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=body.as_file(),
                    ChecksumAlgorithm="CRC32",
                    ChecksumCRC32=checksum,
                )
            return {"PartNumber": number, "ETag": response["ETag"], "ChecksumCRC32": checksum}
        except BaseException as error:
            if self._failure is None:
                self._failure = error
            raise
        finally:
            self._free.put(part)

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _shut_down(self, *, cancel: bool) -> None:
        """Waits for the parts in flight; `cancel` drops the parts not started yet."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=cancel)
            self._executor = None

    def _create(self) -> str:
        with _s3_call("CreateMultipartUpload"):
            response = self._client.create_multipart_upload(
                Bucket=self._bucket, Key=self._key, ContentType=self._content_type, ChecksumAlgorithm="CRC32"
            )
        self._upload_id = response["UploadId"]
        return self._upload_id
