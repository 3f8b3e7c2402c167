"""The shared provider HTTP pieces: the cached clients and Retry-After."""

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import respx

from avatarjobs.domain.providers import CancelOutcome, Submission
from avatarjobs.providers import http
from avatarjobs.providers.fal import FalQueueProvider
from avatarjobs.providers.http import parse_retry_after, redact, reset_clients, shared_client

NOW = datetime(2025, 10, 21, 7, 28, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def fresh_clients() -> Iterator[None]:
    reset_clients()
    yield
    reset_clients()


def test_one_client_per_base_url_is_kept_for_warm_invocations() -> None:
    first = shared_client("https://queue.fal.run")

    assert shared_client("https://queue.fal.run") is first
    assert shared_client("https://mirako.co") is not first


def test_the_shared_client_has_explicit_timeouts_and_does_not_follow_redirects() -> None:
    client = shared_client("https://queue.fal.run")

    assert (client.timeout.connect, client.timeout.read) == (5.0, 30.0)
    assert client.follow_redirects is False


def test_reset_closes_the_clients_and_the_next_call_makes_a_new_one() -> None:
    first = shared_client("https://queue.fal.run")

    reset_clients()

    assert first.is_closed
    assert shared_client("https://queue.fal.run") is not first


def test_a_provider_without_a_client_uses_the_shared_one() -> None:
    cancel_url = "https://queue.fal.run/fal-ai/ai-avatar/requests/r/cancel"
    provider = FalQueueProvider("https://queue.fal.run/", "k")

    with respx.mock() as router:
        route = router.put(cancel_url).respond(200, json={"status": "OK"})
        assert provider.cancel(Submission("r", {"cancel_url": cancel_url})) == CancelOutcome.CANCELED

    assert route.call_count == 1
    assert shared_client("https://queue.fal.run") is provider._client


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("Tue, 21 Oct 2025 07:28:30 GMT", 30.0),
        ("Tue, 21 Oct 2025 07:27:00 GMT", 0.0),  # in the past: now
        ("soon", None),
        ("-3", None),
        ("1.5", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_seconds_or_an_http_date(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


def test_redact_removes_every_secret_and_keeps_messages_short() -> None:
    assert redact("key abc and tok xyz", ["abc", None, "", "xyz"]) == "key [redacted] and tok [redacted]"
    assert len(redact("x" * 5000, [])) == http.MESSAGE_MAX_CHARS
