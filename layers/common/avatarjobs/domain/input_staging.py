"""Turns a job's stored media references into what its provider takes.

fal fetches inputs itself, so it gets URLs: `s3://` inputs become short-lived presigned GET URLs. Mirako
takes the bytes, so they are read from S3 or fetched from an https URL through the SSRF-safe fetcher.
"""

from collections.abc import Collection
from typing import Any, Literal, Protocol

from avatarjobs.domain import limits
from avatarjobs.domain.media import media_field_names, parse_s3_uri
from avatarjobs.domain.ports import InputTooLarge, MediaStore
from avatarjobs.domain.requests import MODEL_CLASSES
from avatarjobs.net.safe_fetch import FetchError

# fal may queue a job for a while before it fetches the inputs.
FAL_INPUT_URL_EXPIRY_SECONDS = 3600
_CONTENT_TYPES = {"image": limits.IMAGE_CONTENT_TYPES, "audio": limits.AUDIO_CONTENT_TYPES}
# Our request field -> (Mirako's field, media kind).
_MIRAKO_MEDIA: dict[str, tuple[str, Literal["image", "audio"]]] = {
    "image_url": ("image", "image"),
    "audio_url": ("audio", "audio"),
}


class InputUnavailable(Exception):
    """A media input cannot be used: `retryable` when it may work later (a network failure)."""

    def __init__(self, field: str, reason: str, *, retryable: bool) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.retryable = retryable


class Fetcher(Protocol):
    def fetch(self, url: str, *, max_bytes: int, allowed_content_types: Collection[str]) -> tuple[bytes, str]: ...


class InputStager:
    def __init__(self, media: MediaStore, fetcher: Fetcher) -> None:
        self._media = media
        self._fetcher = fetcher

    def for_fal(self, model: str, request: dict[str, Any]) -> dict[str, Any]:
        staged = dict(request)
        for name in media_field_names(MODEL_CLASSES[model]):
            value = staged.get(name)
            if isinstance(value, str) and value.startswith("s3://"):
                staged[name] = self._media.presign_download(
                    self._media.inputs_bucket, self._input_key(name, value), expires_in=FAL_INPUT_URL_EXPIRY_SECONDS
                )
        return staged

    def for_mirako(self, request: dict[str, Any]) -> dict[str, Any]:
        staged: dict[str, Any] = {key: request[key] for key in ("text", "voice_profile_id") if key in request}
        for name, (mirako_name, kind) in _MIRAKO_MEDIA.items():
            value = request.get(name)
            if isinstance(value, str):
                staged[mirako_name] = self._read(name, value, kind)
        return staged

    def _read(self, name: str, value: str, kind: Literal["image", "audio"]) -> bytes:
        max_bytes = limits.UPLOAD_MAX_BYTES[kind]
        if value.startswith("s3://"):
            try:
                data, _ = self._media.read_input(self._input_key(name, value), max_bytes=max_bytes)
            except InputTooLarge as error:
                raise InputUnavailable(name, str(error), retryable=False) from None
            return data
        try:
            data, _ = self._fetcher.fetch(value, max_bytes=max_bytes, allowed_content_types=_CONTENT_TYPES[kind])
        except FetchError as error:
            raise InputUnavailable(name, error.reason, retryable=error.retryable) from None
        return data

    def _input_key(self, name: str, value: str) -> str:
        uri = parse_s3_uri(value)
        # The API accepted only keys in our inputs bucket; anything else means a tampered record.
        if uri.bucket != self._media.inputs_bucket:
            raise InputUnavailable(name, "is not in the inputs bucket", retryable=False)
        return uri.key
