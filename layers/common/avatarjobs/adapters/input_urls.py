"""Presigned GET URLs of inputs whose life is known: signed with a role session whose end STS tells us.

A presigned URL stops working when the credentials that signed it expire, whatever its X-Amz-Expires says, and
a Lambda function's own role session ends at a time the function is not told (docs/decisions.md, "Inputs fal
fetches"). So the dispatcher signs fal's input URLs with a session of the InputReaderRole (it may only read the
inputs bucket), assumed with sts:AssumeRole, whose answer gives the session's expiration. A session is reused
while it has at least the life a URL needs; a new one is assumed otherwise (role chaining caps a session at an
hour, so each serves a warm dispatcher for the rest of it).
"""

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from avatarjobs.domain.job import utc_now
from avatarjobs.domain.ports import SignedUrl

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sts import STSClient

# Role chaining (a Lambda role assuming another) allows at most an hour.
SESSION_SECONDS = 3600
_PRESIGN_CONFIG = Config(signature_version="s3v4", s3={"addressing_style": "virtual"})


class RoleSignedInputUrls:
    def __init__(
        self,
        sts: "STSClient",
        role_arn: str,
        inputs_bucket: str,
        *,
        session_name: str = "avatarjobs-dispatch",
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._sts = sts
        self._role_arn = role_arn
        self.inputs_bucket = inputs_bucket
        self._session_name = session_name
        self._clock = clock
        self._lock = threading.Lock()
        self._signer: S3Client | None = None
        self._session_ends: datetime | None = None

    def presign_input(self, key: str, *, valid_for_seconds: int) -> SignedUrl:
        """A GET URL of s3://<inputs>/<key> that works for at least `valid_for_seconds` (at most an hour)."""
        valid_for_seconds = min(valid_for_seconds, SESSION_SECONDS - 60)
        signer, session_ends = self._session_lasting(timedelta(seconds=valid_for_seconds))
        url = signer.generate_presigned_url(
            "get_object", Params={"Bucket": self.inputs_bucket, "Key": key}, ExpiresIn=valid_for_seconds
        )
        return SignedUrl(url=url, valid_until=min(session_ends, self._clock() + timedelta(seconds=valid_for_seconds)))

    def _session_lasting(self, needed: timedelta) -> tuple["S3Client", datetime]:
        with self._lock:
            now = self._clock()
            if self._signer is None or self._session_ends is None or self._session_ends - now < needed:
                answer = self._sts.assume_role(
                    RoleArn=self._role_arn, RoleSessionName=self._session_name, DurationSeconds=SESSION_SECONDS
                )
                credentials = answer["Credentials"]
                self._signer = boto3.client(
                    "s3",
                    aws_access_key_id=credentials["AccessKeyId"],
                    aws_secret_access_key=credentials["SecretAccessKey"],
                    aws_session_token=credentials["SessionToken"],
                    config=_PRESIGN_CONFIG,
                )
                self._session_ends = credentials["Expiration"]
            return self._signer, self._session_ends
