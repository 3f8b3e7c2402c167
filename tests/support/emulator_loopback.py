"""The emulator tests' loopback server: it serves inputs (like moto's presigned URLs) and records the webhooks
it receives."""

import base64
import json
import queue
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

WAIT_SECONDS = 30.0  # bound of every wait for a webhook or a final state (a run takes about a second)
SENTENCE = "Hello from the test."
QUIET_SECONDS = 1.5  # how long "no webhook" is watched for


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Loopback:
    """Serves `files` on GET (like presigned S3 URLs) and records every POST (a webhook receiver).

    `answers`: the HTTP statuses of the next POSTs (then 200), to make the sender retry.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.deliveries: queue.Queue[Delivery] = queue.Queue()
        self.answers: list[int] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        loopback = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                content = loopback.files.get(self.path)
                self.send_response(200 if content is not None else 404)
                self.send_header("Content-Length", str(len(content or b"")))
                self.end_headers()
                self.wfile.write(content or b"")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {name.lower(): value for name, value in self.headers.items()}
                loopback.deliveries.put(Delivery(self.path, headers, body))
                status = loopback.answers.pop(0) if loopback.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def serve(self, path: str, content: bytes) -> str:
        self.files[path] = content
        return f"{self.base_url}{path}"

    def next_delivery(self, timeout: float = WAIT_SECONDS) -> Delivery:
        try:
            return self.deliveries.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no webhook within {timeout} s") from None

    def assert_quiet(self, seconds: float = QUIET_SECONDS) -> None:
        try:
            delivery = self.deliveries.get(timeout=seconds)
        except queue.Empty:
            return
        pytest.fail(f"unexpected webhook: {delivery.body[:300]!r}")

    def __enter__(self) -> "Loopback":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def download(url: str) -> httpx.Response:
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    return response


def text_inputs(face: bytes, **extra: Any) -> dict[str, Any]:
    image = "data:image/png;base64," + base64.b64encode(face).decode()
    return {"image_url": image, "text_input": SENTENCE, "voice": "Sarah", "prompt": "A person talking.", **extra}
