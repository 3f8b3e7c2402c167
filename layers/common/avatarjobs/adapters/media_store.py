"""S3: inline inputs, presigned uploads into the inputs bucket, presigned video downloads."""

from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from avatarjobs.domain.ports import InputTooLarge, StoredInput

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class S3MediaStore:
    def __init__(self, client: "S3Client", inputs_bucket: str) -> None:
        self._client = client
        self.inputs_bucket = inputs_bucket

    def put_input(self, key: str, data: bytes, content_type: str) -> None:
        self._client.put_object(Bucket=self.inputs_bucket, Key=key, Body=data, ContentType=content_type)

    def presign_upload(self, key: str, *, content_type: str, size: int, expires_in: int) -> str:
        # Content-Type and Content-Length are signed: an upload of another type or size is refused by S3.
        return self._client.generate_presigned_url(
            "put_object",
            Params={"Bucket": self.inputs_bucket, "Key": key, "ContentType": content_type, "ContentLength": size},
            ExpiresIn=expires_in,
        )

    def presign_download(self, bucket: str, key: str, *, expires_in: int) -> str:
        return self._client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_in
        )

    def read_input(self, key: str, *, max_bytes: int) -> tuple[bytes, str]:
        response = self._client.get_object(Bucket=self.inputs_bucket, Key=key)
        body = response["Body"]
        if response["ContentLength"] > max_bytes:
            body.close()
            raise InputTooLarge(f"s3://{self.inputs_bucket}/{key} is over {max_bytes} bytes")
        return body.read(), response.get("ContentType", "application/octet-stream")

    def peek_input(self, key: str, *, head_bytes: int) -> StoredInput | None:
        # One ranged GET answers what a HeadObject would (exists, size) and also the magic bytes.
        try:
            response = self._client.get_object(Bucket=self.inputs_bucket, Key=key, Range=f"bytes=0-{head_bytes - 1}")
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "InvalidRange":  # S3's answer to a range on an empty object
                return StoredInput(size=0, head=b"")
            if code in _UNREADABLE:
                return None
            raise
        head = response["Body"].read(head_bytes)
        # Content-Range: "bytes 0-15/123456"; absent when S3 sent the whole (short) object.
        total = response.get("ContentRange", "").rpartition("/")[2]
        return StoredInput(size=int(total) if total.isdigit() else response["ContentLength"], head=head)


# Missing, or not readable by this function (S3 answers 403 for a missing key without s3:ListBucket).
_UNREADABLE = frozenset({"NoSuchKey", "404", "NotFound", "AccessDenied", "403"})
