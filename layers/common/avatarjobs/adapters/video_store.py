"""S3: finished videos, streamed into the outputs bucket by multipart upload.

A video may be larger than the finalizer's memory, so it is never held whole: the body is cut into parts
as it arrives and each part is uploaded before the next one is read. At most one part is in memory (one
reused buffer). Each part carries its SHA-256, so S3 refuses a part that was damaged on the way; the
SHA-256 of the whole object is computed as the bytes pass, since S3's own multipart checksum is only a
checksum of the parts' checksums.

Any failure aborts the upload: S3 keeps (and bills) the parts of an upload that is neither completed nor
aborted, and a completed upload would leave a truncated video behind. The bucket's lifecycle rule is the
backstop for a process killed before it could abort.
"""

import base64
import hashlib
import io
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

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


__all__ = ["EmptyVideo", "S3VideoStore", "StoredVideo", "VideoStoreFailed", "VideoTooLarge"]


def _part_checksum(part: io.BytesIO) -> str:
    with part.getbuffer() as view:  # no copy; released before the buffer is written again
        return base64.b64encode(hashlib.sha256(view).digest()).decode("ascii")


class S3VideoStore:
    def __init__(self, client: "S3Client", bucket: str, part_size: int = DEFAULT_PART_SIZE) -> None:
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ValueError(f"part_size must be between {MIN_PART_SIZE} and {MAX_PART_SIZE} bytes")
        self._client = client
        self.bucket = bucket
        self.part_size = part_size

    def store(self, key: str, chunks: Iterable[bytes], *, content_type: str, max_bytes: int) -> StoredVideo:
        """Uploads the chunks as one object at `key`, or leaves nothing behind and re-raises what went wrong.

        Raises VideoTooLarge past `max_bytes`, EmptyVideo for no bytes at all, VideoStoreFailed when S3
        fails (the botocore error is its cause), and an error raised by `chunks` itself as it is.
        """
        if max_bytes > self.part_size * MAX_PARTS:
            raise ValueError(f"max_bytes {max_bytes} needs more than {MAX_PARTS} parts of {self.part_size} bytes")
        upload = _MultipartUpload(self._client, self.bucket, key, content_type)
        try:
            size, sha256 = self._upload_parts(upload, chunks, max_bytes)
            upload.complete()
        except BaseException:
            upload.abort()
            raise
        return StoredVideo(bucket=self.bucket, key=key, size=size, sha256=sha256, content_type=content_type)

    def _upload_parts(self, upload: "_MultipartUpload", chunks: Iterable[bytes], max_bytes: int) -> tuple[int, str]:
        # One buffer for the whole upload: each part overwrites the previous one in place, and is sent from
        # it as a file (botocore streams a file; a bytes body would be a second copy of the part).
        part = io.BytesIO()
        filled = 0
        size = 0
        whole = hashlib.sha256()
        for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise VideoTooLarge(max_bytes)
            whole.update(chunk)
            view = memoryview(chunk)
            while view:
                taken = min(len(view), self.part_size - filled)
                part.write(view[:taken])
                filled += taken
                view = view[taken:]
                if filled == self.part_size:
                    upload.send_part(part)
                    part.seek(0)
                    filled = 0
        if size == 0:
            raise EmptyVideo()
        if filled:
            part.truncate(filled)  # the last part: drop what is left of the previous one
            upload.send_part(part)
        return size, whole.hexdigest()


@contextmanager
def _s3_call(operation: str) -> Iterator[None]:
    try:
        yield
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "unknown")
        raise VideoStoreFailed(f"S3 {operation} failed ({code})") from error
    except BotoCoreError as error:
        raise VideoStoreFailed(f"S3 {operation} failed ({type(error).__name__})") from error


class _MultipartUpload:
    """One S3 multipart upload, created when its first part is ready (so a refused body costs no call)."""

    def __init__(self, client: "S3Client", bucket: str, key: str, content_type: str) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._content_type = content_type
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []

    def send_part(self, part: io.BytesIO) -> None:
        """Uploads the whole content of `part` as the next part."""
        upload_id = self._upload_id or self._create()
        number = len(self._parts) + 1
        checksum = _part_checksum(part)
        part.seek(0)
        # Our own ChecksumSHA256 also stops botocore from computing a checksum of another algorithm.
        with _s3_call("UploadPart"):
            response = self._client.upload_part(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=upload_id,
                PartNumber=number,
                Body=part,
                ChecksumSHA256=checksum,
            )
        self._parts.append({"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": checksum})

    def complete(self) -> None:
        assert self._upload_id is not None  # store() sends at least one part or raises EmptyVideo
        with _s3_call("CompleteMultipartUpload"):
            self._client.complete_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
            )

    def abort(self) -> None:
        if self._upload_id is None:
            return
        try:
            self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)
        except Exception:
            # The failure that made us abort is what the caller must see; the bucket's lifecycle rule removes
            # the parts of an upload we could not abort.
            logger.warning("could not abort a multipart upload", extra={"key": self._key}, exc_info=True)

    def _create(self) -> str:
        with _s3_call("CreateMultipartUpload"):
            response = self._client.create_multipart_upload(
                Bucket=self._bucket, Key=self._key, ContentType=self._content_type, ChecksumAlgorithm="SHA256"
            )
        self._upload_id = response["UploadId"]
        return self._upload_id
