"""S3: inline inputs, presigned uploads into the inputs bucket, presigned video downloads."""

from typing import TYPE_CHECKING

from avatarjobs.domain.ports import InputTooLarge

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
