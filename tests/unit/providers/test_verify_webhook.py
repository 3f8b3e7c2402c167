"""Provider.verify_webhook: authentic webhooks are read, anything else is InvalidWebhook."""

import json

import pytest
from nacl.signing import SigningKey

from avatarjobs.domain.ids import new_webhook_token
from avatarjobs.domain.providers import InvalidWebhook
from avatarjobs.providers.fal import FalQueueProvider
from avatarjobs.providers.fal_webhook_signature import FalWebhookVerifier
from avatarjobs.providers.mirako import MirakoProvider
from tests.support.fal_signing import NOW, Clock, Jwks, jwks, signed_headers

VIDEO = {"url": "https://v3.fal.media/files/zebra/x.mp4", "content_type": "video/mp4", "file_size": 352679}


def fal_body(request_id: str = "req-123", status: str = "OK") -> bytes:
    payload = {"video": VIDEO, "seed": 81} if status == "OK" else {"detail": [{"loc": ["body"], "msg": "bad face"}]}
    body = {"request_id": request_id, "gateway_request_id": request_id, "status": status, "payload": payload}
    return json.dumps(body).encode()


@pytest.fixture
def fal(fal_key: SigningKey) -> FalQueueProvider:
    verifier = FalWebhookVerifier(Jwks(jwks(fal_key)), clock=Clock())
    return FalQueueProvider("https://queue.fal.run", "fal-key", webhook_verifier=verifier)


def test_a_signed_fal_completion_is_trusted(fal: FalQueueProvider, fal_key: SigningKey) -> None:
    body = fal_body()
    notice = fal.verify_webhook(signed_headers(fal_key, body), body, token_sha256=None)
    assert notice.trusted
    assert notice.request_id == "req-123"
    assert notice.succeeded is True
    assert (notice.video_url, notice.content_type, notice.file_size) == (VIDEO["url"], "video/mp4", 352679)


def test_a_signed_fal_error_carries_fals_message(fal: FalQueueProvider, fal_key: SigningKey) -> None:
    body = fal_body(status="ERROR")
    notice = fal.verify_webhook(signed_headers(fal_key, body), body, token_sha256=None)
    assert notice.succeeded is False
    assert notice.error is not None
    assert "bad face" in notice.error


def test_a_fal_body_naming_another_request_than_its_signature_is_refused(
    fal: FalQueueProvider, fal_key: SigningKey
) -> None:
    body = fal_body(request_id="req-other")
    with pytest.raises(InvalidWebhook, match="another request"):
        fal.verify_webhook(signed_headers(fal_key, body, request_id="req-123"), body, token_sha256=None)


def test_a_forged_or_stale_fal_webhook_is_refused(fal: FalQueueProvider, fal_key: SigningKey) -> None:
    body = fal_body()
    for headers in (
        signed_headers(SigningKey.generate(), body),
        signed_headers(fal_key, body, timestamp=NOW - 301),
        {},
    ):
        with pytest.raises(InvalidWebhook):
            fal.verify_webhook(headers, body, token_sha256=None)


def test_fal_without_a_verifier_refuses_every_webhook() -> None:
    with pytest.raises(InvalidWebhook):
        FalQueueProvider("https://queue.fal.run", "fal-key").verify_webhook({}, fal_body(), token_sha256=None)


def test_a_mirako_callback_with_the_jobs_token_is_a_hint() -> None:
    token, token_hash = new_webhook_token()
    mirako = MirakoProvider("https://mirako.co", "mirako-key")
    body = json.dumps({"id": "xdac2o3c", "status": "COMPLETED", "delayTime": 1, "executionTime": 2}).encode()
    notice = mirako.verify_webhook({"authorization": f"Bearer {token}"}, body, token_sha256=token_hash)
    assert notice.request_id == "xdac2o3c"
    assert not notice.trusted  # to be confirmed through the status endpoint
    assert (
        mirako.verify_webhook({"Authorization": f"Bearer {token}"}, b"not json", token_sha256=token_hash).request_id
        is None
    )


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}, {"Authorization": ""}],
)
def test_a_mirako_callback_without_the_jobs_token_is_refused(headers: dict[str, str]) -> None:
    _, token_hash = new_webhook_token()
    with pytest.raises(InvalidWebhook):
        MirakoProvider("https://mirako.co", "k").verify_webhook(headers, b"{}", token_sha256=token_hash)


def test_a_mirako_callback_for_a_job_without_a_token_is_refused() -> None:
    with pytest.raises(InvalidWebhook):
        MirakoProvider("https://mirako.co", "k").verify_webhook(
            {"Authorization": "Bearer some-token"}, b"{}", token_sha256=None
        )
