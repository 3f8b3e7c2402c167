"""The intake's AWS side: manifests and their reports in the inputs bucket, rejections on the event bus."""

import json
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from avatarjobs.adapters.event_bus import JobEventBus
from avatarjobs.domain.intake import MANIFEST_MAX_BYTES, REJECTED_DETAIL_TYPE, ManifestTooLarge

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# A missing object: 404, or 403 when the caller may not list the bucket. A replaced one: 412 (If-Match).
_GONE = frozenset({"NoSuchKey", "NoSuchVersion", "404", "PreconditionFailed", "412"})


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class S3IntakeStore:
    """Manifests and their reports in the inputs bucket."""

    def __init__(self, client: "S3Client") -> None:
        self._client = client

    def read_manifest(self, bucket: str, key: str, version_or_etag: str, *, versioned: bool) -> bytes | None:
        try:
            if versioned:
                response = self._client.get_object(Bucket=bucket, Key=key, VersionId=version_or_etag)
            else:
                etag = version_or_etag if version_or_etag.startswith('"') else f'"{version_or_etag}"'
                response = self._client.get_object(Bucket=bucket, Key=key, IfMatch=etag)
        except ClientError as error:
            if _error_code(error) in _GONE:
                return None
            raise
        body = response["Body"]
        if response["ContentLength"] > MANIFEST_MAX_BYTES:
            body.close()
            raise ManifestTooLarge(response["ContentLength"])
        return body.read(MANIFEST_MAX_BYTES + 1)

    def write_report(self, bucket: str, key: str, report: dict[str, Any]) -> None:
        body = json.dumps(report, indent=2, ensure_ascii=False).encode()
        self._client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")

    def delete_report(self, bucket: str, key: str) -> None:
        self._client.delete_object(Bucket=bucket, Key=key)  # succeeds when there is no such object too


class EventBridgeRejections:
    def __init__(self, bus: JobEventBus) -> None:
        self._bus = bus

    def publish(self, detail: dict[str, Any]) -> None:
        self._bus.put(REJECTED_DETAIL_TYPE, json.dumps(detail, ensure_ascii=False), what="the rejection event")
