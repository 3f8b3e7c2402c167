"""Verification of fal's webhook signatures (ED25519 over the raw body's digest, keys from fal's JWKS).

fal signs "\\n".join([request_id, user_id, timestamp, sha256(raw_body).hexdigest()]) and sends the pieces in
X-Fal-Webhook-Request-Id, -User-Id, -Timestamp (unix seconds) and -Signature (hex). A webhook is genuine when
any current fal key verifies it and the timestamp is within five minutes of now (replays of old
deliveries are refused). The raw body bytes are hashed: re-serialized JSON would not verify.
"""

import base64
import binascii
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from avatarjobs.domain.providers import SigningKeysUnavailable
from avatarjobs.providers.http import TIMEOUT, USER_AGENT, NoTimeForCall, call_timeout

REQUEST_ID_HEADER = "x-fal-webhook-request-id"
USER_ID_HEADER = "x-fal-webhook-user-id"
TIMESTAMP_HEADER = "x-fal-webhook-timestamp"
SIGNATURE_HEADER = "x-fal-webhook-signature"

TOLERANCE_SECONDS = 300
JWKS_MAX_AGE_SECONDS = 24 * 3600
JWKS_REFETCH_MIN_INTERVAL_SECONDS = 60
_HEADER_MAX_CHARS = 512  # the real values are ids, a 10-digit time and 128 hex digits
_ED25519_KEY_BYTES = 32
_ED25519_SIGNATURE_BYTES = 64

JwksFetcher = Callable[[], Mapping[str, Any]]
Clock = Callable[[], float]


class InvalidSignature(Exception):
    """The webhook is not proven to come from fal; `reason` says why (safe to log, not to echo)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class VerifiedWebhook:
    """The signed header values, so the caller can match the request id against its job."""

    request_id: str
    user_id: str
    timestamp: int


def http_jwks_fetcher(url: str, client: httpx.Client | None = None) -> JwksFetcher:
    """A fetcher that GETs fal's JWKS document."""

    def fetch() -> Mapping[str, Any]:
        http = client if client is not None else httpx.Client(timeout=TIMEOUT, headers={"User-Agent": USER_AGENT})
        try:
            response = http.get(url, timeout=call_timeout("fal JWKS"))
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError, NoTimeForCall) as error:
            raise SigningKeysUnavailable(f"could not fetch fal's JWKS: {type(error).__name__}") from None
        finally:
            if client is None:
                http.close()
        if not isinstance(document, dict):
            raise SigningKeysUnavailable("fal's JWKS is not a JSON object")
        return document

    return fetch


def ed25519_keys(jwks: Mapping[str, Any]) -> list[VerifyKey]:
    """The usable Ed25519 keys of a JWKS document; anything else in it is skipped."""
    keys: list[VerifyKey] = []
    entries = jwks.get("keys")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
            continue
        x = entry.get("x")
        if not isinstance(x, str):
            continue
        try:
            raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(raw) == _ED25519_KEY_BYTES:
            keys.append(VerifyKey(raw))
    return keys


class FalWebhookVerifier:
    """Verifies fal webhooks; keep one per process so the JWKS cache survives warm invocations."""

    def __init__(self, fetch_jwks: JwksFetcher, *, clock: Clock = time.time) -> None:
        self._fetch_jwks = fetch_jwks
        self._clock = clock
        self._keys: list[VerifyKey] = []
        self._fetched_at: float | None = None  # last successful fetch: bounds the cache's age
        self._attempted_at: float | None = None  # last attempt: bounds the refetch rate

    def verify(self, headers: Mapping[str, str], raw_body: bytes) -> VerifiedWebhook:
        """Raise InvalidSignature unless fal signed exactly these bytes within the last five minutes."""
        lowered = {name.lower(): value for name, value in headers.items()}
        request_id = self._header(lowered, REQUEST_ID_HEADER)
        user_id = self._header(lowered, USER_ID_HEADER)
        timestamp_text = self._header(lowered, TIMESTAMP_HEADER)
        signature_hex = self._header(lowered, SIGNATURE_HEADER)

        timestamp = self._timestamp(timestamp_text)
        signature = self._signature(signature_hex)
        try:
            message = "\n".join([request_id, user_id, timestamp_text, hashlib.sha256(raw_body).hexdigest()]).encode()
        except UnicodeEncodeError:
            raise InvalidSignature("a signature header is not valid text") from None

        if self._verifies(self._current_keys(), message, signature):
            return VerifiedWebhook(request_id=request_id, user_id=user_id, timestamp=timestamp)
        # fal may have rotated its keys since the cache was filled: look once more, but not more than once a minute.
        if self._may_refetch() and self._verifies(self._refetch(), message, signature):
            return VerifiedWebhook(request_id=request_id, user_id=user_id, timestamp=timestamp)
        raise InvalidSignature("the signature does not verify with any of fal's keys")

    @staticmethod
    def _header(headers: Mapping[str, str], name: str) -> str:
        value = headers.get(name)
        if not value:
            raise InvalidSignature(f"missing header {name}")
        if len(value) > _HEADER_MAX_CHARS:
            raise InvalidSignature(f"header {name} is too long")
        return value

    def _timestamp(self, text: str) -> int:
        if not (text.isascii() and text.isdigit()):
            raise InvalidSignature(f"bad timestamp: {TIMESTAMP_HEADER} is not unix seconds")
        timestamp = int(text)
        if abs(self._clock() - timestamp) > TOLERANCE_SECONDS:
            raise InvalidSignature(f"stale timestamp: more than {TOLERANCE_SECONDS} s from now")
        return timestamp

    @staticmethod
    def _signature(text: str) -> bytes:
        try:
            signature = bytes.fromhex(text)
        except ValueError:
            raise InvalidSignature(f"bad signature: {SIGNATURE_HEADER} is not hex") from None
        if len(signature) != _ED25519_SIGNATURE_BYTES:
            raise InvalidSignature(f"bad signature: {SIGNATURE_HEADER} is not {_ED25519_SIGNATURE_BYTES} bytes")
        return signature

    @staticmethod
    def _verifies(keys: list[VerifyKey], message: bytes, signature: bytes) -> bool:
        for key in keys:
            try:
                key.verify(message, signature)
            except BadSignatureError:
                continue
            return True
        return False

    def _current_keys(self) -> list[VerifyKey]:
        if self._fetched_at is None or self._clock() - self._fetched_at > JWKS_MAX_AGE_SECONDS:
            return self._refetch()
        return self._keys

    def _may_refetch(self) -> bool:
        return self._attempted_at is None or self._clock() - self._attempted_at >= JWKS_REFETCH_MIN_INTERVAL_SECONDS

    def _refetch(self) -> list[VerifyKey]:
        now = self._clock()
        self._attempted_at = now
        keys = ed25519_keys(self._fetch_jwks())
        if not keys:
            raise SigningKeysUnavailable("fal's JWKS holds no Ed25519 key")
        self._keys, self._fetched_at = keys, now
        return keys
