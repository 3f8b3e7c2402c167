"""The emulators' HTTP: requests and answers as values, and a loopback server that speaks HTTP/1.1 for them.

The standard library's threading HTTP server is enough: one thread per connection. An answer can also be
slow (`stall_after`) or lost (`drop_connection`), which the fault knobs use.
"""

import json
import logging
import select
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger("devstack.emulators")

HOST = "127.0.0.1"
REQUEST_BODY_MAX_BYTES = 64 * 1024 * 1024  # Mirako takes the face and the speech as base64 in the body
STOP_JOIN_SECONDS = 10.0
_POLL_SECONDS = 0.05  # how often the server looks for a shutdown, and a stalled answer for its client
_JSON = "application/json"


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query string, percent-decoding left to the routes
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # names in lower case
    body: bytes

    def query_value(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # A slow answer: the first `stall_after` bytes of the body, then a pause of `stall_seconds` (cut short
    # when the client goes away), then the rest. `on_sent` hears each step: "stalled", "sent" or "aborted".
    stall_after: int | None = None
    stall_seconds: float = 0.0
    on_sent: Callable[[str], None] | None = None
    # The connection is closed without a byte of the answer (an accepted request whose answer is lost).
    drop_connection: bool = False


def json_response(
    status: int, document: Any, *, content_type: str = _JSON, headers: Mapping[str, str] | None = None
) -> Response:
    body = json.dumps(document, separators=(",", ":")).encode()
    return Response(status, body, {"Content-Type": content_type, **(headers or {})})


def not_found() -> Response:
    return Response(404, b"Not Found", {"Content-Type": "text/plain"})


class LoopbackServer:
    """`handle` served at `address` in a thread of its own, until `stop()`; `stopping` ends stalled answers."""

    def __init__(
        self,
        provider: str,
        role: str,
        address: tuple[str, int],
        handle: Callable[[Request], Response],
        stopping: threading.Event,
    ) -> None:
        self._server = ThreadingHTTPServer(address, _handler_for(provider, handle, stopping))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(_POLL_SECONDS,), name=f"{provider}-{role}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(STOP_JOIN_SECONDS)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)


def _handler_for(
    provider: str, handle: Callable[[Request], Response], stopping: threading.Event
) -> type[BaseHTTPRequestHandler]:
    class EmulatorHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = f"{provider}-emulator"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > REQUEST_BODY_MAX_BYTES:
                self._send(json_response(413, {"detail": "request body too large"}), head=False)
                self.close_connection = True
                return
            split = urllib.parse.urlsplit(self.path)
            request = Request(
                method=self.command,
                path=split.path,
                query=urllib.parse.parse_qs(split.query, keep_blank_values=True),
                headers={name.lower(): value for name, value in self.headers.items()},
                body=self.rfile.read(length) if length else b"",
            )
            try:
                response = handle(request)
            except Exception:
                logger.exception("%s emulator: %s %s failed", provider, self.command, split.path)
                response = json_response(500, {"detail": "emulator error"})
            self._send(response, head=self.command == "HEAD")

        def _send(self, response: Response, *, head: bool) -> None:
            if response.drop_connection:  # nothing written: the server closes the socket when this returns
                self.close_connection = True
                return
            self.send_response(response.status, HTTPStatus(response.status).phrase)
            for header, value in response.headers.items():
                self.send_header(header, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            outcome = "sent"
            try:
                if not head:
                    self._write_body(response)
            except OSError:  # the client went away (a crashed downloader)
                outcome = "aborted"
                self.close_connection = True
            if response.on_sent is not None:
                response.on_sent(outcome)

        def _write_body(self, response: Response) -> None:
            body = response.body
            if response.stall_after is not None:
                if response.on_sent is not None:
                    response.on_sent("stalled")  # before the bytes: a client that has them sees it said
                self.wfile.write(body[: response.stall_after])
                self.wfile.flush()
                if self._client_left_within(response.stall_seconds):
                    raise ConnectionAbortedError("the client closed the connection during the stall")
                body = body[response.stall_after :]
            self.wfile.write(body)

        def _client_left_within(self, seconds: float) -> bool:
            """Waits `seconds` (or until the emulator stops); True as soon as the client closes its end."""
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0 and not stopping.is_set():
                readable, _, _ = select.select([self.connection], [], [], min(left, _POLL_SECONDS * 4))
                if readable:
                    try:
                        if not self.connection.recv(1, socket.MSG_PEEK):
                            return True
                    except OSError:
                        return True
                    time.sleep(_POLL_SECONDS)  # the client sent something (a pipelined request): keep waiting
            return False

        def do_GET(self) -> None:
            self._serve()

        def do_HEAD(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_PUT(self) -> None:
            self._serve()

        def do_DELETE(self) -> None:
            self._serve()

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("%s emulator: " + format, provider, *args)

    return EmulatorHandler
