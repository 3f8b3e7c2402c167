"""Turns a job's stored media references into what its provider takes (its capabilities' InputDelivery).

A provider that fetches inputs itself gets URLs: `s3://` inputs become presigned GET URLs whose life is known
(see adapters/input_urls.py), and the job is staged with the time its inputs stop being fetchable, which bounds
how long the provider may wait before it starts the job. A provider that takes the bytes gets them, read from
S3 or fetched from an https URL through the SSRF-safe fetcher, under the names it gives its inputs.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from avatarjobs.domain import limits
from avatarjobs.domain.media import MediaKind, media_field_names, media_fields, parse_s3_uri
from avatarjobs.domain.ports import Fetcher, FetchFailed, InputTooLarge, InputUrlSigner, MediaStore
from avatarjobs.domain.requests import MODEL_CLASSES

_CONTENT_TYPES = {"image": limits.IMAGE_CONTENT_TYPES, "audio": limits.AUDIO_CONTENT_TYPES}


class InputUnavailable(Exception):
    """A media input cannot be used: `retryable` when it may work later (a network failure)."""

    def __init__(self, field: str, reason: str, *, retryable: bool) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.retryable = retryable


@dataclass(frozen=True)
class InputUrls:
    inputs: dict[str, Any]
    fetchable_until: datetime | None  # when the first of its presigned URLs stops working (None: it has none)


class InputStager:
    def __init__(self, media: MediaStore, fetcher: Fetcher, input_urls: InputUrlSigner) -> None:
        self._media = media
        self._fetcher = fetcher
        self._input_urls = input_urls

    def as_urls(self, model: str, request: dict[str, Any], *, fetchable_for_seconds: int) -> InputUrls:
        """The model's input with `s3://` inputs as URLs that work for at least `fetchable_for_seconds`."""
        staged = dict(request)
        until: datetime | None = None
        for name in media_field_names(MODEL_CLASSES[model]):
            value = staged.get(name)
            if isinstance(value, str) and value.startswith("s3://"):
                signed = self._input_urls.presign_input(
                    self._input_key(name, value), valid_for_seconds=fetchable_for_seconds
                )
                staged[name] = signed.url
                until = signed.valid_until if until is None else min(until, signed.valid_until)
        return InputUrls(staged, until)

    def as_bytes(
        self, model: str, request: dict[str, Any], byte_inputs: Mapping[str, str], passed_inputs: tuple[str, ...]
    ) -> dict[str, Any]:
        """The media fields of `byte_inputs` read, under the provider's names; `passed_inputs` as they are."""
        kinds = media_fields(MODEL_CLASSES[model])
        staged: dict[str, Any] = {key: request[key] for key in passed_inputs if key in request}
        for name, provider_name in byte_inputs.items():
            value = request.get(name)
            if isinstance(value, str):
                staged[provider_name] = self._read(name, value, kinds[name])
        return staged

    def _read(self, name: str, value: str, kind: MediaKind) -> bytes:
        max_bytes = limits.UPLOAD_MAX_BYTES[kind]
        if value.startswith("s3://"):
            try:
                data, _ = self._media.read_input(self._input_key(name, value), max_bytes=max_bytes)
            except InputTooLarge as error:
                raise InputUnavailable(name, str(error), retryable=False) from None
            return data
        try:
            data, _ = self._fetcher.fetch(value, max_bytes=max_bytes, allowed_content_types=_CONTENT_TYPES[kind])
        except FetchFailed as error:
            raise InputUnavailable(name, error.reason, retryable=error.retryable) from None
        return data

    def _input_key(self, name: str, value: str) -> str:
        uri = parse_s3_uri(value)
        # The API accepted only keys in our inputs bucket; anything else means a tampered record.
        if uri.bucket != self._media.inputs_bucket:
            raise InputUnavailable(name, "is not in the inputs bucket", retryable=False)
        return uri.key
