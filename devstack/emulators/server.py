"""What the provider emulators share: their life, control routes, the media host and the request record.

An emulator runs in-process (`with FalEmulator() as fal: fal.base_url`) or as a child process of the local
stack (`python -m devstack.emulators.fal` prints its port and serves until its stdin closes). Its parts:
HTTP serving (http_serving.py), runs and their worker slots (runs.py), fault decisions (fault_knobs.py),
input downloads and webhook deliveries (outbound.py); the provider's own API is fal.py's or mirako.py's.
Control routes, for tests and the demo (loopback only, no key):
`GET|POST /_emulator/settings` (see settings.py) and `GET /_emulator/requests` (what was submitted, what was
refused, and every download of a result file, with the faults injected into each: see devstack/faults.py).
The API listens on 127.0.0.1; result files are served from a second socket on `media_host` (another loopback
address, 127.0.0.2 by default), as providers serve them from a CDN, not from their API's host.
"""

import json
import logging
import os
import threading
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable
from types import TracebackType
from typing import Any, ClassVar, Self

from devstack import media
from devstack.emulators.fault_knobs import FaultKnobs
from devstack.emulators.http_serving import (
    HOST,
    STOP_JOIN_SECONDS,
    LoopbackServer,
    Request,
    Response,
    json_response,
    not_found,
)
from devstack.emulators.outbound import deliver_webhook
from devstack.emulators.runs import Run, Runs
from devstack.emulators.settings import EmulatorSettings, SettingsStore, settings_from_environment
from devstack.processes import redirect_stdout_to_log, serve_until_stdin_closes

logger = logging.getLogger("devstack.emulators")


class Emulator(ABC):
    """A provider emulator on a free loopback port (or `port`): start()/stop(), or use it as a context manager.

    `api_key`: the only key accepted; None accepts any non-empty key.
    """

    name: ClassVar[str]
    environment_prefix: ClassVar[str]  # of its settings' environment variables, e.g. FAL_EMULATOR_

    def __init__(self, settings: EmulatorSettings | None = None, *, api_key: str | None = None, port: int = 0) -> None:
        self.settings = SettingsStore(settings or EmulatorSettings())
        self.api_key = api_key
        self._port = port
        self._servers: list[LoopbackServer] = []  # the API's, then the media host's
        self.stopping = threading.Event()
        self.runs = Runs(self.name, self.settings, self.stopping)
        self.faults = FaultKnobs(self.settings)
        self._lock = threading.Lock()
        self._rejected: list[dict[str, Any]] = []
        self._media: dict[str, tuple[bytes, float]] = {}
        self._sample: bytes | None = None
        self._sample_lock = threading.Lock()
        self._media_downloads: list[dict[str, Any]] = []

    # -- life ---------------------------------------------------------------------------------------------------

    def start(self) -> Self:
        self._serve("http", (HOST, self._port), self.handle)
        self._serve("media", (self.settings.current().media_host, 0), self.handle_media)
        logger.info("%s emulator serving at %s, its media at %s", self.name, self.base_url, self.media_base_url)
        return self

    def _serve(self, role: str, address: tuple[str, int], handle: Callable[[Request], Response]) -> None:
        server = LoopbackServer(self.name, role, address, handle, self.stopping)
        self._servers.append(server)
        server.start()

    def stop(self) -> None:
        """Stops serving, interrupts the runs' waits and waits for their threads (bounded)."""
        self.stopping.set()
        for server in self._servers:
            server.stop()
        self.runs.stop(STOP_JOIN_SECONDS)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def _address(self, index: int) -> tuple[str, int]:
        if len(self._servers) <= index:
            raise RuntimeError("the emulator is not started")
        return self._servers[index].address

    @property
    def port(self) -> int:
        return self._address(0)[1]

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def media_base_url(self) -> str:
        """Where the result files are served: another host than the API's."""
        host, port = self._address(1)
        return f"http://{host}:{port}"

    # -- for tests and the demo -------------------------------------------------------------------------------

    def update_settings(self, **values: Any) -> EmulatorSettings:
        return self.settings.update(values)

    def requests_record(self) -> dict[str, Any]:
        """What `GET /_emulator/requests` answers: every accepted submit, the refused ones, the media downloads."""
        with self._lock:
            rejected = list(self._rejected)
            downloads = [dict(download) for download in self._media_downloads]
        # Runs read after the downloads: every download recorded names a run already listed.
        return {
            "requests": [self.describe(run) for run in self.runs.all()],
            "rejected": rejected,
            "media_downloads": downloads,
        }

    @abstractmethod
    def describe(self, run: Run) -> dict[str, Any]:
        """A run as JSON for the record (no large inputs)."""

    def reject(self, response: Response, **details: Any) -> Response:
        """`response`, recorded as a refused request."""
        with self._lock:
            self._rejected.append({"status": response.status, "at": time.time(), **details})
        return response

    # -- HTTP ---------------------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        if request.path == "/_emulator/settings":
            return self._settings_route(request)
        if request.path == "/_emulator/requests" and request.method == "GET":
            return json_response(200, self.requests_record())
        if request.path.startswith("/media/"):  # the files live on the media host only
            return not_found()
        delay = self.settings.current().response_delay_seconds
        if delay:
            self.stopping.wait(delay)
        return self.route(request)

    @abstractmethod
    def route(self, request: Request) -> Response:
        """The provider's own API."""

    def _settings_route(self, request: Request) -> Response:
        if request.method == "GET":
            return json_response(200, self.settings.current().as_json())
        if request.method != "POST":
            return json_response(405, {"detail": "GET or POST"})
        try:
            values = json.loads(request.body or b"{}")
            if not isinstance(values, dict):
                raise ValueError("the settings must be a JSON object")
            updated = self.settings.update(values)
        except ValueError as error:
            return json_response(400, {"detail": str(error)})
        logger.info("%s emulator settings changed: %s", self.name, values)
        return json_response(200, updated.as_json())

    # -- media ------------------------------------------------------------------------------------------------

    def handle_media(self, request: Request) -> Response:
        """The media host: result files at /media/<name>, nothing else."""
        if request.path.startswith("/media/") and request.method in ("GET", "HEAD"):
            return self._media_route(request, request.path.removeprefix("/media/"))
        return not_found()

    def store_media(self, file_name: str, content: bytes) -> str:
        """Keeps a result file and returns its URL on the media host (gone after media_ttl_seconds)."""
        with self._lock:
            self._media[file_name] = (content, time.monotonic())
        return f"{self.media_base_url}/media/{urllib.parse.quote(file_name)}"

    @abstractmethod
    def result_content_type(self) -> str:
        """The Content-Type a result video is served with."""

    def _media_route(self, request: Request, quoted_name: str) -> Response:
        name = urllib.parse.unquote(quoted_name)
        settings = self.settings.current()
        with self._lock:
            stored = self._media.get(name)
        run = self.runs.get(name.rpartition(".")[0])  # a result file is named after its run
        download: dict[str, Any] = {
            "file_name": name,
            "request_id": run.request_id if run is not None else None,
            "method": request.method,
            "at": time.time(),
            "slow": False,
        }
        if stored is None or time.monotonic() - stored[1] > settings.media_ttl_seconds:
            response = not_found()
        elif run is not None and run.media_errors:
            response = Response(503, b"Service Unavailable", {"Content-Type": "text/plain", "Retry-After": "1"})
        else:
            content_type = "audio/wav" if name.endswith(".wav") else self.result_content_type()
            response = Response(200, stored[0], {"Content-Type": content_type})
            if request.method == "GET" and len(stored[0]) > 1 and self.settings.take("slow_media"):
                download["slow"] = True
                response.stall_after = len(stored[0]) // 2
                response.stall_seconds = settings.slow_media_seconds
        download.update(status=response.status, outcome="in_progress")

        def on_sent(outcome: str) -> None:
            with self._lock:
                download["outcome"] = outcome

        response.on_sent = on_sent
        with self._lock:
            self._media_downloads.append(download)
        return response

    def sample_video(self) -> bytes:
        """Instant mode's one video for every run (the bundled face), made the first time it is needed."""
        with self._sample_lock:
            if self._sample is None:
                speech = media.speak(f"Hello from the local {self.name} emulator.")
                self._sample = media.make_video(media.SAMPLE_FACE.read_bytes(), [speech])
            return self._sample

    # -- webhooks ---------------------------------------------------------------------------------------------

    def deliver_webhook(self, run: Run, body: bytes, headers: Callable[[], dict[str, str]]) -> None:
        """The run's webhook, `webhook_copies` times, each tried up to `webhook_attempts` times (outbound.py)."""
        settings = self.settings.current()
        deliver_webhook(
            self.name,
            run,
            body,
            headers,
            copies=settings.webhook_copies,
            attempts=settings.webhook_attempts,
            stopping=self.stopping,
        )


def truncated(value: Any, limit: int = 120) -> Any:
    """Long strings (data URIs, base64) cut for the record."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]}... ({len(value)} chars)"
    return value


def run_from_command_line(emulator_class: type[Emulator], api_key_variables: tuple[str, ...]) -> None:
    """`python -m devstack.emulators.<name>`: settings from the environment, the port printed on stdout,
    served until stdin closes (devstack/processes.py). The key is the first of `api_key_variables` set."""
    announcer = redirect_stdout_to_log()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    api_key = next((os.environ[name] for name in api_key_variables if os.environ.get(name)), None)
    port = int(os.environ.get(f"{emulator_class.environment_prefix}PORT", "0"))
    emulator = emulator_class(settings_from_environment(emulator_class.environment_prefix), api_key=api_key, port=port)
    emulator.start()
    try:
        serve_until_stdin_closes(emulator.port, announcer)
    finally:
        emulator.stop()
