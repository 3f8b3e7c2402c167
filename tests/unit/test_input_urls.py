"""Input URLs signed with a role session whose end STS gives: reused while it lasts long enough, renewed before."""

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from avatarjobs.adapters.input_urls import SESSION_SECONDS, RoleSignedInputUrls
from devstack.cloudformation import REGION, Stack

if TYPE_CHECKING:
    from mypy_boto3_sts import STSClient


class CountingSts:
    """moto's STS, counting AssumeRole calls."""

    def __init__(self) -> None:
        self._sts: STSClient = boto3.client("sts", region_name=REGION)
        self.assumed: list[str] = []

    def assume_role(self, **arguments: object) -> object:
        answer = self._sts.assume_role(**arguments)  # type: ignore[arg-type]
        self.assumed.append(answer["Credentials"]["AccessKeyId"])
        return answer


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def signer(stack: Stack) -> tuple[RoleSignedInputUrls, CountingSts, Clock]:
    sts, clock = CountingSts(), Clock()
    role_arn = stack.attributes[("InputReaderRole", "Arn")]
    urls = RoleSignedInputUrls(sts, role_arn, stack.refs["InputsBucket"], clock=clock)  # type: ignore[arg-type]
    return urls, sts, clock


def test_an_input_url_is_signed_by_the_role_session_and_works_as_long_as_asked(
    signer: tuple[RoleSignedInputUrls, CountingSts, Clock], stack: Stack
) -> None:
    urls, sts, clock = signer
    signed = urls.presign_input("uploads/owner/face.png", valid_for_seconds=2100)
    query = parse_qs(urlsplit(signed.url).query)
    assert query["X-Amz-Credential"][0].startswith(sts.assumed[0])
    assert query["X-Amz-Expires"] == ["2100"]
    assert signed.valid_until == clock.now + timedelta(seconds=2100)
    assert urlsplit(signed.url).path == "/uploads/owner/face.png"


def test_a_session_is_reused_while_it_lasts_as_long_as_a_url_needs_and_renewed_after(
    signer: tuple[RoleSignedInputUrls, CountingSts, Clock],
) -> None:
    urls, sts, clock = signer
    first = urls.presign_input("inline/a", valid_for_seconds=2100)
    clock.now += timedelta(seconds=SESSION_SECONDS - 2100 - 60)  # the session still has 2160 s
    second = urls.presign_input("inline/b", valid_for_seconds=2100)
    assert len(sts.assumed) == 1
    assert second.valid_until == clock.now + timedelta(seconds=2100)
    clock.now += timedelta(seconds=120)  # now it has 2040 s: too little for a URL of 2100 s
    third = urls.presign_input("inline/c", valid_for_seconds=2100)
    assert len(sts.assumed) == 2
    assert parse_qs(urlsplit(third.url).query)["X-Amz-Credential"][0].startswith(sts.assumed[1])
    assert first.valid_until < third.valid_until


def test_a_url_never_claims_to_outlive_its_session(signer: tuple[RoleSignedInputUrls, CountingSts, Clock]) -> None:
    urls, _, clock = signer
    signed = urls.presign_input("inline/a", valid_for_seconds=10 * SESSION_SECONDS)
    # Asked for more than a session can last: capped below the hour role chaining allows.
    assert signed.valid_until <= clock.now + timedelta(seconds=SESSION_SECONDS)
    assert int(parse_qs(urlsplit(signed.url).query)["X-Amz-Expires"][0]) < SESSION_SECONDS
