"""An SSRF-safe GET for URLs that callers chose (job inputs) and that providers return (result videos).

A caller's URL must never make us reach our own network: the instance metadata service, VPC hosts,
loopback services. So only https is fetched, with no credentials in the URL, and every address the host
resolves to must be public. The check happens where the connection is made: a custom httpcore network
backend resolves the host once, vets every address, and connects to the vetted address itself, so a DNS
answer that changes between check and connect (DNS rebinding) cannot slip through. TLS still verifies the
certificate against the host name (SNI) and the Host header still names the host: only the IP is pinned.
Redirects are followed by hand, at most three, each hop checked again. Sizes and content types are checked
before and while the body streams.

`allow_loopback_http=True` also accepts loopback addresses, and http:// to localhost or a loopback IP. Only
the local stack (devstack/) turns it on, to reach its emulators; a deployed stack never sets it.
"""

import ipaddress
import socket
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

from avatarjobs.net.timeouts import NoTimeLeft, within_deadline

Resolver = Callable[..., Sequence[tuple[Any, ...]]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_REDIRECTS = 3
TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=10.0, pool=5.0)
_LOOPBACK_NAMES = frozenset({"localhost", "localhost."})
_NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated ::a.b.c.d form; Python calls it global

# Checked before `is_global`, so the refusal names the reason. The metadata address precedes fc00::/7.
_BLOCKED_NETWORKS: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.ip_network(network), label)
    for network, label in (
        ("0.0.0.0/8", "a 'this network' address"),
        ("10.0.0.0/8", "a private address"),
        ("100.64.0.0/10", "a carrier-grade NAT address"),
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.0.0/16", "a link-local address (the instance metadata service lives there)"),
        ("172.16.0.0/12", "a private address"),
        ("192.0.0.0/24", "an IETF protocol address"),
        ("192.168.0.0/16", "a private address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved address"),
        ("::/128", "the unspecified address"),
        ("::1/128", "a loopback address"),
        ("fd00:ec2::254/128", "the AWS instance metadata service"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address"),
        ("fc00::/7", "a unique-local address"),
        ("ff00::/8", "a multicast address"),
    )
)


class FetchError(Exception):
    """The URL could not be fetched; `retryable` says whether trying again later may help."""

    def __init__(self, reason: str, retryable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class UnsafeUrl(FetchError):
    """The URL (or a redirect) leads somewhere we must not connect to. Never retryable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, retryable=False)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64, IPv4-compatible), which is what gets reached."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64_PREFIX or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_problem(address: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why we must not connect to this address, or None when it is a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            problem = address_problem(embedded, allow_loopback=allow_loopback)
            if problem is not None:
                return f"{problem}, embedded in an IPv6 address"
    if allow_loopback and address.is_loopback:
        return None
    for network, label in _BLOCKED_NETWORKS:
        if address.version == network.version and address in network:
            return label
    if not address.is_global:
        return "an address that is not globally routable"
    return None


def literal_address(host: str) -> IPAddress | None:
    """The IP address a URL host names literally, including the legacy forms (2130706433, 0x7f.1, 127.1)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        # inet_aton accepts exactly the numeric IPv4 spellings that resolvers also accept.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def media_type(response: httpx.Response) -> str:
    """The response's content type without parameters (`image/png; charset=x` -> `image/png`)."""
    header: str = response.headers.get("Content-Type", "")
    return header.split(";", 1)[0].strip().lower()


class VettingNetworkBackend(httpcore.NetworkBackend):
    """Resolves each host once, refuses it unless every address is public, and connects to a vetted address."""

    def __init__(self, resolver: Resolver, *, allow_loopback: bool, inner: httpcore.NetworkBackend) -> None:
        self._resolver = resolver
        self._allow_loopback = allow_loopback
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in self.vetted_addresses(host, port):
            try:
                # The IP, not the name: the resolver is not asked again between the check and the connect.
                return self._inner.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        assert failure is not None  # vetted_addresses never returns an empty list
        raise failure

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        raise UnsafeUrl("unix sockets are never connected to")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)

    def vetted_addresses(self, host: str, port: int) -> list[IPAddress]:
        literal = literal_address(host)
        addresses = [literal] if literal is not None else self._resolve(host, port)
        for address in addresses:
            problem = address_problem(address, allow_loopback=self._allow_loopback)
            if problem is not None:
                shown = f"{host} is" if literal is not None else f"{host} resolves to {address}, which is"
                raise UnsafeUrl(f"refused to connect: {shown} {problem}")
        return addresses

    def _resolve(self, host: str, port: int) -> list[IPAddress]:
        try:
            answers = self._resolver(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise FetchError(f"could not resolve {host}", retryable=error.errno == socket.EAI_AGAIN) from None
        addresses: list[IPAddress] = []
        for answer in answers:
            try:
                address = ipaddress.ip_address(answer[4][0])
            except (ValueError, IndexError, TypeError):
                raise UnsafeUrl(f"refused to connect: {host} resolves to something that is not an IP address") from None
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise FetchError(f"could not resolve {host}", retryable=True)
        return addresses


@contextmanager
def _transport_errors() -> Iterator[None]:
    try:
        yield
    except httpcore.TimeoutException as error:
        raise FetchError(f"timed out ({type(error).__name__})", retryable=True) from None
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as error:
        raise FetchError(f"the connection failed ({type(error).__name__})", retryable=True) from None


class _CoreStream(httpx.SyncByteStream):
    def __init__(self, core_response: httpcore.Response) -> None:
        self._core_response = core_response

    def __iter__(self) -> Iterator[bytes]:
        with _transport_errors():
            yield from self._core_response.iter_stream()

    def close(self) -> None:
        self._core_response.close()


class _PinnedTransport(httpx.BaseTransport):
    """httpx's HTTPTransport cannot take a network backend, so this is the few lines of it that we need."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=10,
            keepalive_expiry=30.0,
            network_backend=backend,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _transport_errors():
            core_response = self._pool.handle_request(core_request)
        return httpx.Response(
            status_code=core_response.status,
            headers=core_response.headers,
            stream=_CoreStream(core_response),
            extensions=core_response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


class _BoundedStream(httpx.SyncByteStream):
    """Counts the body as it streams and stops it once it passes the limit, whatever Content-Length said."""

    def __init__(self, inner: httpx.SyncByteStream, max_bytes: int) -> None:
        self._inner = inner
        self._max_bytes = max_bytes

    def __iter__(self) -> Iterator[bytes]:
        received = 0
        for chunk in self._inner:
            received += len(chunk)
            if received > self._max_bytes:
                raise FetchError(f"the body is larger than the limit of {self._max_bytes} bytes")
            yield chunk

    def close(self) -> None:
        self._inner.close()


class SafeFetcher:
    """GETs caller-chosen URLs without ever reaching a private, loopback, link-local or metadata address.

    Keep one per process: its connection pool is reused across warm invocations.
    `network_backend` is the raw connector to vetted addresses (httpcore's socket backend unless a test
    passes a fake that records what it was asked to connect to).
    """

    def __init__(
        self,
        allow_loopback_http: bool = False,
        resolver: Resolver = socket.getaddrinfo,
        *,
        network_backend: httpcore.NetworkBackend | None = None,
        timeout: httpx.Timeout = TIMEOUT,
    ) -> None:
        self._allow_loopback_http = allow_loopback_http
        self._timeout = timeout
        self.backend = VettingNetworkBackend(
            resolver, allow_loopback=allow_loopback_http, inner=network_backend or httpcore.SyncBackend()
        )
        self._client = httpx.Client(
            transport=_PinnedTransport(self.backend),
            timeout=timeout,
            follow_redirects=False,  # followed by hand, so that every hop is checked
            trust_env=False,  # a proxy would connect on our behalf, past the address check
            # Identity only: the limit counts the bytes we store, and a small gzip body must not inflate.
            headers={"Accept-Encoding": "identity", "User-Agent": "avatarjobs/0.1"},
        )

    def fetch(self, url: str, *, max_bytes: int, allowed_content_types: Collection[str]) -> tuple[bytes, str]:
        """The whole body (at most `max_bytes`) and its content type (one of `allowed_content_types`)."""
        with self.open_stream(url, max_bytes=max_bytes, allowed_content_types=allowed_content_types) as response:
            body = b"".join(response.iter_raw())
            return body, media_type(response)

    @contextmanager
    def open_stream(
        self, url: str, *, max_bytes: int, allowed_content_types: Collection[str]
    ) -> Iterator[httpx.Response]:
        """The checked response, its body not yet read: iterate `iter_raw()` / `iter_bytes()` to stream it.

        Reading past `max_bytes` raises FetchError; so do timeouts and broken connections while reading.
        """
        response = self._get_following_redirects(url)
        try:
            self._check_response(response, max_bytes, allowed_content_types)
            assert isinstance(response.stream, httpx.SyncByteStream)
            response.stream = _BoundedStream(response.stream, max_bytes)
            yield response
        finally:
            response.close()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "SafeFetcher":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _get_following_redirects(self, url: str) -> httpx.Response:
        try:
            target = httpx.URL(url)
        except (httpx.InvalidURL, TypeError):
            raise UnsafeUrl("not a well-formed URL") from None
        for _ in range(MAX_REDIRECTS + 1):
            self._check_url(target)
            try:
                timeout = within_deadline(self._timeout)
            except NoTimeLeft as reason:
                raise FetchError(str(reason), retryable=True) from None
            try:
                response = self._client.send(self._client.build_request("GET", target, timeout=timeout), stream=True)
            finally:
                # One job's URL must not plant cookies that another job's fetch would send.
                self._client.cookies.clear()
            if not response.is_redirect:
                return response
            location = response.headers["Location"]
            response.close()
            try:
                target = target.join(location)
            except httpx.InvalidURL:
                raise UnsafeUrl("the redirect's Location is not a well-formed URL") from None
        raise FetchError(f"more than {MAX_REDIRECTS} redirects")

    def _check_url(self, url: httpx.URL) -> None:
        if url.userinfo:
            raise UnsafeUrl("URLs with credentials (user:password@) are not fetched")
        host = url.host
        if not host:
            raise UnsafeUrl("the URL has no host")
        literal = literal_address(host)
        if url.scheme == "http" and self._allow_loopback_http:
            if host.lower() not in _LOOPBACK_NAMES and (literal is None or not literal.is_loopback):
                raise UnsafeUrl("http:// is accepted only for loopback addresses (local stack)")
        elif url.scheme != "https":
            raise UnsafeUrl(f"only https:// URLs are fetched, not {url.scheme}://")
        if literal is not None:
            problem = address_problem(literal, allow_loopback=self._allow_loopback_http)
            if problem is not None:
                raise UnsafeUrl(f"refused to connect: {host} is {problem}")

    @staticmethod
    def _check_response(response: httpx.Response, max_bytes: int, allowed_content_types: Collection[str]) -> None:
        status = response.status_code
        if not response.is_success:
            retryable = status in (httpx.codes.REQUEST_TIMEOUT, httpx.codes.TOO_MANY_REQUESTS) or status >= 500
            raise FetchError(f"the server answered HTTP {status}", retryable=retryable)
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise FetchError(f"the body is {encoding}-encoded; only unencoded bodies are accepted")
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise FetchError(f"the body is {declared} bytes, larger than the limit of {max_bytes} bytes")
        allowed = {content_type.lower() for content_type in allowed_content_types}
        found = media_type(response)
        if found not in allowed:
            raise FetchError(f"the content type {found or '(none)'} is not one of {', '.join(sorted(allowed))}")
