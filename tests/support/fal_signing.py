"""fal's webhook signatures made here: ED25519 keys as a JWKS, the headers fal signs, a clock to set."""

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

from nacl.signing import SigningKey

NOW = 1_760_000_000
RAW_BODY = b'{"request_id":"req-123","gateway_request_id":"req-123","status":"OK","payload":{"seed":1}}'


class Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


class Jwks:
    """Serves the given documents in turn (the last one again once they run out) and counts the fetches."""

    def __init__(self, *documents: Mapping[str, Any]) -> None:
        self._documents = list(documents)
        self.fetches = 0

    def __call__(self) -> Mapping[str, Any]:
        document = self._documents[min(self.fetches, len(self._documents) - 1)]
        self.fetches += 1
        return document


def jwk(key: SigningKey) -> dict[str, str]:
    x = base64.urlsafe_b64encode(bytes(key.verify_key)).rstrip(b"=").decode()
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": x[:8], "use": "sig"}


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [jwk(key) for key in keys]}


def signed_headers(
    key: SigningKey, body: bytes, *, timestamp: int = NOW, request_id: str = "req-123", user_id: str = "user-9"
) -> dict[str, str]:
    message = "\n".join([request_id, user_id, str(timestamp), hashlib.sha256(body).hexdigest()]).encode()
    return {
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": user_id,
        "X-Fal-Webhook-Timestamp": str(timestamp),
        "X-Fal-Webhook-Signature": key.sign(message).signature.hex(),
    }
