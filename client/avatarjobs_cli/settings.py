"""Where the API is and the key to it: from --base-url/--api-key or AVATARJOBS_BASE_URL/AVATARJOBS_API_KEY."""

import ipaddress
from dataclasses import dataclass, field

import httpx

from avatarjobs_cli.errors import CliError

BASE_URL_ENV = "AVATARJOBS_BASE_URL"
API_KEY_ENV = "AVATARJOBS_API_KEY"

LOCAL_STACK_HINT = "For the local stack: start it with `make up` and use the URL and key it prints."
STACK_NOT_RUNNING_HINT = "Is the local stack running? Start it with `make up` and use the URL and key it prints."
DEPLOYED_KEY_HINT = (
    "For a deployed stack: aws apigateway get-api-key --include-value --query value --output text "
    "--api-key <the stack's ApiKeyId output>"
)


@dataclass(frozen=True)
class Connection:
    base_url: str
    api_key: str = field(repr=False)  # kept out of reprs, so out of logs and tracebacks


def resolve_connection(base_url: str | None, api_key: str | None) -> Connection:
    if not base_url:
        raise CliError(
            f"No API URL: pass --base-url or set {BASE_URL_ENV}.",
            "For a deployed stack: its ApiUrl output (https://<id>.execute-api.<region>.amazonaws.com/v1).",
            LOCAL_STACK_HINT,
        )
    if not api_key:
        raise CliError(
            f"No API key: pass --api-key or set {API_KEY_ENV} (it is sent as x-api-key).",
            LOCAL_STACK_HINT,
            DEPLOYED_KEY_HINT,
        )
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as error:
        raise CliError(f"--base-url {base_url!r} is not a URL: {error}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise CliError(
            f"--base-url {base_url!r} is not an http(s) URL, e.g. https://<id>.execute-api.<region>.amazonaws.com/v1"
        )
    if url.scheme == "http" and not is_loopback(url):
        # The key would cross the network in clear text; only the local stack on this machine speaks plain http.
        raise CliError(f"Refusing to send the API key over plain http to {url.host}: use https.")
    return Connection(base_url=base_url.rstrip("/"), api_key=api_key)


def is_loopback(url: httpx.URL) -> bool:
    if url.host == "localhost":
        return True
    try:
        return ipaddress.ip_address(url.host).is_loopback
    except ValueError:
        return False
