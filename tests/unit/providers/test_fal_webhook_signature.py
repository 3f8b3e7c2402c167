"""fal webhook signatures: real ED25519 signatures made with keys generated here, served by an injected JWKS."""

import json
from collections.abc import Mapping

import httpx
import pytest
import respx
from nacl.signing import SigningKey

from avatarjobs.domain.providers import SigningKeysUnavailable
from avatarjobs.providers.fal_webhook_signature import (
    FalWebhookVerifier,
    InvalidSignature,
    VerifiedWebhook,
    http_jwks_fetcher,
)
from tests.support.fal_signing import NOW, RAW_BODY, Clock, Jwks, jwk, jwks, signed_headers


@pytest.fixture
def clock() -> Clock:
    return Clock()


def refusal(verifier: FalWebhookVerifier, headers: Mapping[str, str], body: bytes = RAW_BODY) -> str:
    with pytest.raises(InvalidSignature) as raised:
        verifier.verify(headers, body)
    return raised.value.reason


def test_a_genuine_webhook_is_accepted_and_its_signed_values_returned(fal_key: SigningKey, clock: Clock) -> None:
    verifier = FalWebhookVerifier(Jwks(jwks(fal_key)), clock=clock)

    verified = verifier.verify(signed_headers(fal_key, RAW_BODY), RAW_BODY)

    assert verified == VerifiedWebhook(request_id="req-123", user_id="user-9", timestamp=NOW)


def test_header_names_are_case_insensitive(fal_key: SigningKey, clock: Clock) -> None:
    verifier = FalWebhookVerifier(Jwks(jwks(fal_key)), clock=clock)
    headers = {name.lower(): value for name, value in signed_headers(fal_key, RAW_BODY).items()}
    headers["X-FAL-WEBHOOK-SIGNATURE"] = headers.pop("x-fal-webhook-signature")

    assert verifier.verify(headers, RAW_BODY).request_id == "req-123"


def test_any_key_of_the_jwks_may_have_signed(fal_key: SigningKey, clock: Clock) -> None:
    verifier = FalWebhookVerifier(Jwks(jwks(SigningKey.generate(), fal_key)), clock=clock)

    assert verifier.verify(signed_headers(fal_key, RAW_BODY), RAW_BODY).user_id == "user-9"


def test_a_signature_by_another_key_is_refused(fal_key: SigningKey, clock: Clock) -> None:
    verifier = FalWebhookVerifier(Jwks(jwks(fal_key)), clock=clock)

    reason = refusal(verifier, signed_headers(SigningKey.generate(), RAW_BODY))

    assert "does not verify" in reason


def test_a_flipped_body_byte_is_refused(fal_key: SigningKey, clock: Clock) -> None:
    verifier = FalWebhookVerifier(Jwks(jwks(fal_key)), clock=clock)
    tampered = bytearray(RAW_BODY)
    tampered[RAW_BODY.index(b"OK")] ^= 0x01

    assert "does not verify" in refusal(verifier, signed_headers(fal_key, RAW_BODY), bytes(tampered))


def test_a_re_serialized_body_is_refused(fal_key: SigningKey, clock: Clock) -> None:
    verifier = FalWebhookVerifier(Jwks(jwks(fal_key)), clock=clock)
    reserialized = json.dumps(json.loads(RAW_BODY)).encode()  # same JSON, different spacing
    assert reserialized != RAW_BODY

    assert "does not verify" in refusal(verifier, signed_headers(fal_key, RAW_BODY), reserialized)


@pytest.mark.parametrize("age", [301, -301, 10_000])
def test_a_timestamp_more_than_300_seconds_away_is_refused(fal_key: SigningKey, clock: Clock, age: int) -> None:
    verifier = FalWebhookVerifier(Jwks(jwks(fal_key)), clock=clock)

    reason = refusal(verifier, signed_headers(fal_key, RAW_BODY, timestamp=NOW - age))

    assert "stale" in reason


@pytest.mark.parametrize("age", [300, -300])
def test_a_timestamp_exactly_300_seconds_away_is_accepted(fal_key: SigningKey, clock: Clock, age: int) -> None:
    verifier = FalWebhookVerifier(Jwks(jwks(fal_key)), clock=clock)

    assert verifier.verify(signed_headers(fal_key, RAW_BODY, timestamp=NOW - age), RAW_BODY).timestamp == NOW - age


@pytest.mark.parametrize(
    "missing",
    ["X-Fal-Webhook-Request-Id", "X-Fal-Webhook-User-Id", "X-Fal-Webhook-Timestamp", "X-Fal-Webhook-Signature"],
)
def test_each_missing_header_is_named(fal_key: SigningKey, clock: Clock, missing: str) -> None:
    verifier = FalWebhookVerifier(Jwks(jwks(fal_key)), clock=clock)
    headers = signed_headers(fal_key, RAW_BODY)
    del headers[missing]

    assert refusal(verifier, headers) == f"missing header {missing.lower()}"


@pytest.mark.parametrize(
    "signature",
    [
        "zz" * 64,  # not hex
        "abc",  # odd length
        "ab" * 63,  # 63 bytes
        "ab" * 65,  # 65 bytes
        "é" * 128,  # not ASCII
        "ab" * 300,  # far too long
        " ",
    ],
)
def test_garbage_signatures_are_refused(fal_key: SigningKey, clock: Clock, signature: str) -> None:
    verifier = FalWebhookVerifier(Jwks(jwks(fal_key)), clock=clock)
    headers = signed_headers(fal_key, RAW_BODY) | {"X-Fal-Webhook-Signature": signature}

    assert "signature" in refusal(verifier, headers)


@pytest.mark.parametrize(
    "timestamp", ["abc", "-5", "1.7e9", "\uff11\uff17\uff16" + "\uff10" * 7, f"{NOW} ", "9" * 5000]
)
def test_a_timestamp_that_is_not_unix_seconds_is_refused(fal_key: SigningKey, clock: Clock, timestamp: str) -> None:
    verifier = FalWebhookVerifier(Jwks(jwks(fal_key)), clock=clock)
    headers = signed_headers(fal_key, RAW_BODY) | {"X-Fal-Webhook-Timestamp": timestamp}

    assert "timestamp" in refusal(verifier, headers)


def test_header_text_that_cannot_be_encoded_is_refused(fal_key: SigningKey, clock: Clock) -> None:
    verifier = FalWebhookVerifier(Jwks(jwks(fal_key)), clock=clock)
    headers = signed_headers(fal_key, RAW_BODY) | {"X-Fal-Webhook-User-Id": "\ud800"}

    assert refusal(verifier, headers) == "a signature header is not valid text"


def test_a_rotated_key_is_found_by_one_refetch(fal_key: SigningKey, clock: Clock) -> None:
    new_key = SigningKey.generate()
    served = Jwks(jwks(fal_key), jwks(fal_key, new_key))
    verifier = FalWebhookVerifier(served, clock=clock)
    verifier.verify(signed_headers(fal_key, RAW_BODY), RAW_BODY)
    assert served.fetches == 1

    clock.now += 120
    verified = verifier.verify(signed_headers(new_key, RAW_BODY, timestamp=int(clock.now)), RAW_BODY)

    assert verified.timestamp == int(clock.now)
    assert served.fetches == 2
    # The refreshed keys are cached: the next webhook signed with the new key needs no fetch.
    verifier.verify(signed_headers(new_key, RAW_BODY, timestamp=int(clock.now)), RAW_BODY)
    assert served.fetches == 2


def test_refetching_for_unknown_keys_happens_at_most_once_a_minute(fal_key: SigningKey, clock: Clock) -> None:
    served = Jwks(jwks(fal_key))
    verifier = FalWebhookVerifier(served, clock=clock)
    forger = SigningKey.generate()

    refusal(verifier, signed_headers(forger, RAW_BODY))
    assert served.fetches == 1  # the first fetch fills the cache; no second one right after it

    for _ in range(5):
        clock.now += 10
        refusal(verifier, signed_headers(forger, RAW_BODY, timestamp=int(clock.now)))
    assert served.fetches == 1

    clock.now += 10  # 60 s after the last fetch
    refusal(verifier, signed_headers(forger, RAW_BODY, timestamp=int(clock.now)))
    assert served.fetches == 2


def test_the_keys_are_cached_for_at_most_a_day(fal_key: SigningKey, clock: Clock) -> None:
    served = Jwks(jwks(fal_key))
    verifier = FalWebhookVerifier(served, clock=clock)
    verifier.verify(signed_headers(fal_key, RAW_BODY), RAW_BODY)

    clock.now += 23 * 3600
    verifier.verify(signed_headers(fal_key, RAW_BODY, timestamp=int(clock.now)), RAW_BODY)
    assert served.fetches == 1

    clock.now += 3600 + 1
    verifier.verify(signed_headers(fal_key, RAW_BODY, timestamp=int(clock.now)), RAW_BODY)
    assert served.fetches == 2


def test_unusable_jwks_entries_are_skipped(fal_key: SigningKey, clock: Clock) -> None:
    document = {
        "keys": [
            {"kty": "RSA", "n": "abc", "e": "AQAB"},
            {"kty": "OKP", "crv": "X25519", "x": jwk(fal_key)["x"]},
            {"kty": "OKP", "crv": "Ed25519", "x": "!!not base64!!"},
            {"kty": "OKP", "crv": "Ed25519", "x": "c2hvcnQ"},
            {"kty": "OKP", "crv": "Ed25519"},
            "junk",
            jwk(fal_key),
        ]
    }
    verifier = FalWebhookVerifier(Jwks(document), clock=clock)

    assert verifier.verify(signed_headers(fal_key, RAW_BODY), RAW_BODY).request_id == "req-123"


def test_a_jwks_without_any_usable_key_means_the_keys_are_unavailable(fal_key: SigningKey, clock: Clock) -> None:
    verifier = FalWebhookVerifier(Jwks({"keys": [{"kty": "RSA"}]}), clock=clock)

    with pytest.raises(SigningKeysUnavailable):
        verifier.verify(signed_headers(fal_key, RAW_BODY), RAW_BODY)


def test_bad_headers_are_refused_before_any_key_is_fetched(fal_key: SigningKey, clock: Clock) -> None:
    served = Jwks(jwks(fal_key))
    verifier = FalWebhookVerifier(served, clock=clock)

    refusal(verifier, signed_headers(fal_key, RAW_BODY, timestamp=NOW - 3600))
    refusal(verifier, signed_headers(fal_key, RAW_BODY) | {"X-Fal-Webhook-Signature": "00"})

    assert served.fetches == 0


JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"


def test_the_http_fetcher_gets_the_jwks_document(fal_key: SigningKey, clock: Clock) -> None:
    with respx.mock() as router:
        route = router.get(JWKS_URL).respond(200, json=jwks(fal_key))
        verifier = FalWebhookVerifier(http_jwks_fetcher(JWKS_URL), clock=clock)

        assert verifier.verify(signed_headers(fal_key, RAW_BODY), RAW_BODY).request_id == "req-123"
        assert route.call_count == 1


@pytest.mark.parametrize("answer", [httpx.Response(503), httpx.Response(200, text="<html>"), httpx.ReadTimeout("")])
def test_the_http_fetcher_reports_an_unavailable_jwks(
    fal_key: SigningKey, clock: Clock, answer: httpx.Response | Exception
) -> None:
    with respx.mock() as router:
        route = router.get(JWKS_URL)
        if isinstance(answer, Exception):
            route.mock(side_effect=answer)
        else:
            route.mock(return_value=answer)
        verifier = FalWebhookVerifier(http_jwks_fetcher(JWKS_URL), clock=clock)

        with pytest.raises(SigningKeysUnavailable):
            verifier.verify(signed_headers(fal_key, RAW_BODY), RAW_BODY)
