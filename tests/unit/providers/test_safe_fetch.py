"""The SSRF guard: what it refuses (before any connection), what it pins, and its size and type limits.

A recording network backend stands in for the sockets: it serves canned HTTP answers per IP address and
records every connection it is asked for, so "nothing was fetched" is checked, not assumed.
"""

import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpcore
import pytest

from avatarjobs.call_deadline import calls_end_within
from avatarjobs.net.safe_fetch import FetchError, SafeFetcher, UnsafeUrl, VettingNetworkBackend

PUBLIC_IP = "93.184.216.34"
OTHER_PUBLIC_IP = "151.101.1.69"
PUBLIC_IPV6 = "2606:2800:220:1:248:1893:25c8:1946"
IMAGES = {"image/png", "image/jpeg"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24


def http_answer(
    status: int = 200, *, body: bytes = PNG, content_type: str | None = "image/png", **headers: str
) -> list[bytes]:
    """The bytes of one HTTP/1.1 response, as a server would write them (head, then body)."""
    lines = [f"HTTP/1.1 {status} Whatever"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    if "Transfer_Encoding" not in headers:
        lines.append(f"Content-Length: {headers.pop('Content_Length', str(len(body)))}")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return [("\r\n".join(lines) + "\r\n\r\n").encode(), body]


def chunked(body: bytes, size: int = 10) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)]
    return b"".join(parts) + b"0\r\n\r\n"


class RecordingStream(httpcore.NetworkStream):
    def __init__(self, backend: "RecordingBackend", answer: list[bytes]) -> None:
        self._backend = backend
        self._answer = list(answer)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._answer.pop(0) if self._answer else b""

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._backend.sent += buffer

    def close(self) -> None:
        pass

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        self._backend.tls_server_names.append(server_hostname)
        return self


class RecordingBackend(httpcore.NetworkBackend):
    """Answers per IP address; records what it was asked to connect to and what was sent."""

    def __init__(self, answers: dict[str, list[bytes]] | None = None) -> None:
        self.answers = answers or {}
        self.connections: list[tuple[str, int]] = []
        self.connect_timeouts: list[float | None] = []
        self.tls_server_names: list[str | None] = []
        self.sent = b""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        self.connections.append((host, port))
        self.connect_timeouts.append(timeout)
        if host not in self.answers:
            raise httpcore.ConnectError(f"nothing listens on {host}")
        return RecordingStream(self, self.answers[host])


class Resolver:
    """DNS in a dict: each name has a list of answers, given out one call after another (the last one repeats)."""

    def __init__(self, names: dict[str, list[list[str]]] | None = None) -> None:
        self.names = names or {}
        self.asked: list[str] = []

    def __call__(self, host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        self.asked.append(host)
        answers = self.names.get(host)
        if answers is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        addresses = answers[min(self.asked.count(host), len(answers)) - 1]
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, port, 0, 0))
            if ":" in ip
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
            for ip in addresses
        ]


def fetcher(resolver: Resolver, backend: RecordingBackend) -> SafeFetcher:
    return SafeFetcher(resolver=resolver, network_backend=backend)


def refusal(fetcher: SafeFetcher, url: str) -> str:
    with pytest.raises(UnsafeUrl) as raised:
        fetcher.fetch(url, max_bytes=1_000, allowed_content_types=IMAGES)
    assert raised.value.retryable is False
    return raised.value.reason


# -- what is fetched ---------------------------------------------------------------------------------------


def test_a_public_https_url_is_fetched_with_the_hosts_name_in_sni_and_host_header() -> None:
    resolver = Resolver({"cdn.example.com": [[PUBLIC_IP]]})
    backend = RecordingBackend({PUBLIC_IP: http_answer(content_type="image/png; charset=binary")})

    body, content_type = fetcher(resolver, backend).fetch(
        "https://cdn.example.com/face.png?sig=1", max_bytes=1_000, allowed_content_types=IMAGES
    )

    assert (body, content_type) == (PNG, "image/png")
    assert backend.connections == [(PUBLIC_IP, 443)]
    assert backend.tls_server_names == ["cdn.example.com"]
    assert backend.sent.startswith(b"GET /face.png?sig=1 HTTP/1.1\r\nHost: cdn.example.com\r\n")


def test_the_connection_goes_to_the_address_that_was_vetted_not_to_a_second_dns_answer() -> None:
    # A rebinding name: public on the first lookup, the metadata service on any later one.
    resolver = Resolver({"rebind.example.com": [[PUBLIC_IP], ["169.254.169.254"]]})
    backend = RecordingBackend({PUBLIC_IP: http_answer(), "169.254.169.254": http_answer(body=b"secrets")})

    body, _ = fetcher(resolver, backend).fetch(
        "https://rebind.example.com/face.png", max_bytes=1_000, allowed_content_types=IMAGES
    )

    assert body == PNG
    assert resolver.asked == ["rebind.example.com"]  # resolved once, for the check and the connection both
    assert backend.connections == [(PUBLIC_IP, 443)]


def test_each_connection_resolves_once_and_connects_only_to_what_it_vetted() -> None:
    resolver = Resolver({"rebind.example.com": [[PUBLIC_IP], ["10.0.0.7"]]})
    backend = RecordingBackend({PUBLIC_IP: [], "10.0.0.7": []})
    vetting = VettingNetworkBackend(resolver, allow_loopback=False, inner=backend)

    vetting.connect_tcp("rebind.example.com", 443)
    with pytest.raises(UnsafeUrl, match=r"resolves to 10\.0\.0\.7, which is a private address"):
        vetting.connect_tcp("rebind.example.com", 443)

    assert backend.connections == [(PUBLIC_IP, 443)]


def test_the_next_vetted_address_is_tried_when_the_first_does_not_answer() -> None:
    resolver = Resolver({"cdn.example.com": [[OTHER_PUBLIC_IP, PUBLIC_IPV6]]})
    backend = RecordingBackend({PUBLIC_IPV6: http_answer()})

    body, _ = fetcher(resolver, backend).fetch(
        "https://cdn.example.com/a.png", max_bytes=1_000, allowed_content_types=IMAGES
    )

    assert body == PNG
    assert backend.connections == [(OTHER_PUBLIC_IP, 443), (PUBLIC_IPV6, 443)]


def test_redirects_between_public_hosts_are_followed() -> None:
    resolver = Resolver({"a.example.com": [[PUBLIC_IP]], "b.example.com": [[OTHER_PUBLIC_IP]]})
    backend = RecordingBackend(
        {
            PUBLIC_IP: http_answer(302, content_type=None, body=b"", Location="https://b.example.com/final.png"),
            OTHER_PUBLIC_IP: http_answer(),
        }
    )

    body, _ = fetcher(resolver, backend).fetch(
        "https://a.example.com/start", max_bytes=1_000, allowed_content_types=IMAGES
    )

    assert body == PNG
    assert backend.connections == [(PUBLIC_IP, 443), (OTHER_PUBLIC_IP, 443)]


def test_more_than_three_redirects_are_refused() -> None:
    resolver = Resolver({"loop.example.com": [[PUBLIC_IP]]})
    backend = RecordingBackend({PUBLIC_IP: http_answer(301, content_type=None, body=b"", Location="/again")})

    with pytest.raises(FetchError, match="more than 3 redirects") as raised:
        fetcher(resolver, backend).fetch("https://loop.example.com/", max_bytes=1_000, allowed_content_types=IMAGES)

    assert not isinstance(raised.value, UnsafeUrl)
    assert len(backend.connections) == 4  # the first request and three redirects, each on a fresh connection


# -- what is refused before any connection -----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://cdn.example.com/face.png",
        "ftp://cdn.example.com/face.png",
        "file:///etc/passwd",
        "https://user:password@cdn.example.com/face.png",
        "https://127.0.0.1/face.png",
        "https://127.9.9.9:8443/face.png",
        "https://10.0.0.1/face.png",
        "https://172.16.0.1/face.png",
        "https://172.31.255.254/face.png",
        "https://192.168.1.1/face.png",
        "https://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "https://100.64.0.1/face.png",
        "https://0.0.0.0/face.png",
        "https://224.0.0.1/face.png",
        "https://240.0.0.1/face.png",
        "https://[::1]/face.png",
        "https://[::]/face.png",
        "https://[fd00:ec2::254]/latest/meta-data/",
        "https://[fe80::1]/face.png",
        "https://[fc00::1]/face.png",
        "https://[ff02::1]/face.png",
        "https://[::ffff:127.0.0.1]/face.png",
        "https://[::ffff:169.254.169.254]/face.png",
        "https://[::ffff:10.0.0.1]/face.png",
        "https://[64:ff9b::a9fe:a9fe]/face.png",  # NAT64 of the metadata address
        "https://[::a9fe:a9fe]/face.png",  # IPv4-compatible form of it
        "https://[2002:a9fe:a9fe::1]/face.png",  # 6to4 of it
        "https://2130706433/face.png",  # 127.0.0.1 as one number
        "https://0x7f.1/face.png",
        "https://127.1/face.png",
        "not a url",
    ],
)
def test_unsafe_urls_are_refused_without_resolving_or_connecting(url: str) -> None:
    resolver = Resolver({"cdn.example.com": [[PUBLIC_IP]]})
    backend = RecordingBackend({PUBLIC_IP: http_answer()})

    refusal(fetcher(resolver, backend), url)

    assert resolver.asked == []
    assert backend.connections == []


@pytest.mark.parametrize(
    "addresses",
    [
        ["10.1.2.3"],
        ["127.0.0.1"],
        ["169.254.169.254"],
        ["fd00:ec2::254"],
        ["::ffff:192.168.0.10"],
        [PUBLIC_IP, "192.168.0.10"],  # one private address among public ones is enough to refuse
        ["192.168.0.10", PUBLIC_IP],
    ],
)
def test_a_name_that_resolves_to_any_non_public_address_is_refused_without_connecting(addresses: list[str]) -> None:
    resolver = Resolver({"internal.example.com": [addresses]})
    backend = RecordingBackend({ip: http_answer() for ip in addresses})

    reason = refusal(fetcher(resolver, backend), "https://internal.example.com/face.png")

    assert reason.startswith("refused to connect: internal.example.com resolves to")
    assert resolver.asked == ["internal.example.com"]
    assert backend.connections == []


@pytest.mark.parametrize(
    "location",
    [
        "https://internal.example.com/secret",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]:8080/admin",
        "http://cdn.example.com/face.png",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
def test_a_redirect_to_an_unsafe_place_is_refused_without_connecting_there(location: str) -> None:
    resolver = Resolver({"cdn.example.com": [[PUBLIC_IP]], "internal.example.com": [["10.0.0.5"]]})
    backend = RecordingBackend(
        {
            PUBLIC_IP: http_answer(302, content_type=None, body=b"", Location=location),
            "10.0.0.5": http_answer(body=b"internal"),
        }
    )

    refusal(fetcher(resolver, backend), "https://cdn.example.com/face.png")

    assert backend.connections == [(PUBLIC_IP, 443)]


def test_a_name_that_does_not_resolve_is_a_fetch_error() -> None:
    with pytest.raises(FetchError, match=r"could not resolve nowhere\.example\.com") as raised:
        fetcher(Resolver(), RecordingBackend()).fetch(
            "https://nowhere.example.com/a.png", max_bytes=1_000, allowed_content_types=IMAGES
        )
    assert raised.value.retryable is False


# -- within the invocation's deadline ---------------------------------------------------------------------


def test_a_fetch_under_a_deadline_connects_within_a_quarter_of_the_time_left() -> None:
    safe, backend = public(http_answer(body=b"x" * 10))
    with calls_end_within(8):
        body, _ = safe.fetch("https://cdn.example.com/a.png", max_bytes=1_000, allowed_content_types=IMAGES)
    assert body == b"x" * 10
    [timeout] = backend.connect_timeouts
    assert timeout is not None
    assert timeout <= 2


def test_a_fetch_the_deadline_leaves_no_time_for_is_a_retryable_error_without_a_connection() -> None:
    safe, backend = public(http_answer(body=b"x" * 10))
    with calls_end_within(0.5), pytest.raises(FetchError, match="before this invocation's deadline") as raised:
        safe.fetch("https://cdn.example.com/a.png", max_bytes=1_000, allowed_content_types=IMAGES)
    assert raised.value.retryable is True
    assert backend.connections == []


# -- limits on what comes back -----------------------------------------------------------------------------


def public(answer: list[bytes]) -> tuple[SafeFetcher, RecordingBackend]:
    backend = RecordingBackend({PUBLIC_IP: answer})
    return fetcher(Resolver({"cdn.example.com": [[PUBLIC_IP]]}), backend), backend


def test_a_declared_size_over_the_limit_is_refused_before_reading() -> None:
    safe, _ = public(http_answer(body=b"x" * 2_000))

    with pytest.raises(FetchError, match="2000 bytes, larger than the limit of 1000 bytes") as raised:
        safe.fetch("https://cdn.example.com/a.png", max_bytes=1_000, allowed_content_types=IMAGES)
    assert raised.value.retryable is False


def test_an_undeclared_size_over_the_limit_is_stopped_while_streaming() -> None:
    safe, _ = public(http_answer(body=chunked(b"x" * 2_000, size=100), Transfer_Encoding="chunked"))

    with pytest.raises(FetchError, match="larger than the limit of 1000 bytes"):
        safe.fetch("https://cdn.example.com/a.png", max_bytes=1_000, allowed_content_types=IMAGES)


def test_a_body_exactly_at_the_limit_is_accepted() -> None:
    safe, _ = public(http_answer(body=chunked(b"x" * 1_000, size=100), Transfer_Encoding="chunked"))

    body, _ = safe.fetch("https://cdn.example.com/a.png", max_bytes=1_000, allowed_content_types=IMAGES)

    assert body == b"x" * 1_000


@pytest.mark.parametrize("content_type", ["text/html", "image/svg+xml", "", None])
def test_a_content_type_outside_the_allowed_set_is_refused(content_type: str | None) -> None:
    safe, _ = public(http_answer(content_type=content_type))

    with pytest.raises(FetchError, match="content type"):
        safe.fetch("https://cdn.example.com/a.png", max_bytes=1_000, allowed_content_types=IMAGES)


def test_a_compressed_body_is_refused() -> None:
    safe, backend = public(http_answer(Content_Encoding="gzip"))

    with pytest.raises(FetchError, match="gzip-encoded"):
        safe.fetch("https://cdn.example.com/a.png", max_bytes=1_000, allowed_content_types=IMAGES)
    assert b"Accept-Encoding: identity\r\n" in backend.sent


@pytest.mark.parametrize(("status", "retryable"), [(404, False), (403, False), (429, True), (503, True)])
def test_an_error_status_is_a_fetch_error(status: int, retryable: bool) -> None:
    safe, _ = public(http_answer(status, content_type="text/plain", body=b"no"))

    with pytest.raises(FetchError, match=f"HTTP {status}") as raised:
        safe.fetch("https://cdn.example.com/a.png", max_bytes=1_000, allowed_content_types=IMAGES)
    assert raised.value.retryable is retryable


VIDEO = b"v" * 5_000


def video_answer() -> list[bytes]:
    return http_answer(content_type="video/mp4", body=chunked(VIDEO, size=1_000), Transfer_Encoding="chunked")


def test_open_stream_yields_the_checked_response_to_stream_in_chunks() -> None:
    safe, _ = public(video_answer())

    with safe.open_stream("https://cdn.example.com/v.mp4", max_bytes=10_000, allowed_content_types={"video/mp4"}) as r:
        assert r.headers["Content-Type"] == "video/mp4"
        chunks = list(r.iter_bytes())

    assert b"".join(chunks) == VIDEO
    assert len(chunks) > 1


def test_open_stream_stops_the_body_at_the_limit() -> None:
    safe, _ = public(video_answer())
    streamed: list[bytes] = []

    with (
        pytest.raises(FetchError, match="larger than the limit of 2500 bytes"),
        safe.open_stream("https://cdn.example.com/v.mp4", max_bytes=2_500, allowed_content_types={"video/mp4"}) as r,
    ):
        streamed.extend(r.iter_raw())

    assert sum(len(chunk) for chunk in streamed) <= 2_500


# -- the local stack's loopback setting --------------------------------------------------------------------


class _ImageHandler(BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(PNG)))
        self.end_headers()
        self.wfile.write(PNG)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def loopback_server() -> Iterator[str]:
    _ImageHandler.hits = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ImageHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_default_refuses_http_to_loopback_and_nothing_reaches_the_server(loopback_server: str) -> None:
    with SafeFetcher() as safe:
        refusal(safe, f"{loopback_server}/face.png")
        refusal(safe, loopback_server.replace("http://127.0.0.1", "https://localhost") + "/face.png")

    assert _ImageHandler.hits == 0


def test_the_local_stack_setting_fetches_http_from_loopback(loopback_server: str) -> None:
    with SafeFetcher(allow_loopback_http=True) as safe:
        body, content_type = safe.fetch(f"{loopback_server}/face.png", max_bytes=1_000, allowed_content_types=IMAGES)

    assert (body, content_type) == (PNG, "image/png")
    assert _ImageHandler.hits == 1


@pytest.mark.parametrize(
    "url",
    ["http://cdn.example.com/a.png", "http://10.0.0.1/a.png", "https://10.0.0.1/a.png", "https://[fd00:ec2::254]/"],
)
def test_the_local_stack_setting_still_refuses_everything_but_loopback(url: str) -> None:
    resolver = Resolver({"cdn.example.com": [[PUBLIC_IP]]})
    backend = RecordingBackend({PUBLIC_IP: http_answer()})

    refusal(SafeFetcher(allow_loopback_http=True, resolver=resolver, network_backend=backend), url)

    assert backend.connections == []
