"""What the provider emulators share: a loopback HTTP server, control routes, media, inputs and webhooks.

An emulator runs in-process (`with FalEmulator() as fal: fal.base_url`) or as a child process of the local
stack (`python -m devstack.emulators.fal` prints its port and serves until its stdin closes). The standard
library's threading HTTP server is enough: one thread per connection, and one thread per generation run.
Control routes, for tests and the demo (loopback only, no key):
`GET|POST /_emulator/settings` (see settings.py) and `GET /_emulator/requests` (what was submitted, what was
refused, and every download of a result file, with the faults injected into each: see devstack/faults.py).
The API listens on 127.0.0.1; result files are served from a second socket on `media_host` (another loopback
address, 127.0.0.2 by default), as providers serve them from a CDN, not from their API's host.
"""

import base64
import binascii
import json
import logging
import os
import select
import socket
import threading
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self

import httpx

from devstack import media
from devstack.emulators.settings import EmulatorSettings, SettingsStore, settings_from_environment
from devstack.faults import EvenSelection
from devstack.processes import redirect_stdout_to_log, serve_until_stdin_closes

logger = logging.getLogger("devstack.emulators")

HOST = "127.0.0.1"
REQUEST_BODY_MAX_BYTES = 64 * 1024 * 1024  # Mirako takes the face and the speech as base64 in the body
INPUT_MAX_BYTES = 32 * 1024 * 1024
INPUT_FETCH_TIMEOUT = httpx.Timeout(10.0)
WEBHOOK_TIMEOUT = httpx.Timeout(10.0)
WEBHOOK_FIRST_BACKOFF_SECONDS = 0.25
WEBHOOK_MAX_BACKOFF_SECONDS = 2.0
STOP_JOIN_SECONDS = 10.0
_POLL_SECONDS = 0.05  # how often a waiting run looks for a cancel or a stop
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


def dropped_answer() -> Response:
    """No answer at all: the server closes the connection (a client sees "Server disconnected")."""
    return Response(HTTPStatus.BAD_GATEWAY, drop_connection=True)


def gateway_error_page(status: int) -> Response:
    """A load balancer's own error page: HTML, none of the provider's JSON or headers."""
    title = f"{status} {HTTPStatus(status).phrase}"
    page = f"<html><head><title>{title}</title></head><body><center><h1>{title}</h1></center></body></html>"
    return Response(status, page.encode(), {"Content-Type": "text/html"})


class InputUnavailable(Exception):
    """An input file (URL or data URI) could not be read; `reason` is the message the provider would give."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def fetch_input(url: str, *, max_bytes: int = INPUT_MAX_BYTES) -> bytes:
    """The bytes of an input the way a provider gets them: a data URI, or a GET of an http(s) URL.

    In the local stack the URLs are moto's presigned S3 URLs on 127.0.0.1.
    """
    if url.startswith("data:"):
        return _data_uri_bytes(url, max_bytes)
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise InputUnavailable("the URL is neither http(s) nor a data URI")
    try:
        with (
            httpx.Client(timeout=INPUT_FETCH_TIMEOUT, follow_redirects=True) as client,
            client.stream("GET", url) as response,
        ):
            if not response.is_success:
                raise InputUnavailable(f"the file's server answered HTTP {response.status_code}")
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise InputUnavailable(f"the file is larger than {max_bytes} bytes")
                chunks.append(chunk)
    except httpx.HTTPError as error:
        raise InputUnavailable(f"the file could not be downloaded ({type(error).__name__})") from None
    if not size:
        raise InputUnavailable("the file is empty")
    return b"".join(chunks)


def _data_uri_bytes(uri: str, max_bytes: int) -> bytes:
    header, comma, data = uri.partition(",")
    if not comma:
        raise InputUnavailable("the data URI has no data")
    if header.endswith(";base64"):
        try:
            content = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise InputUnavailable("the data URI is not valid base64") from None
    else:
        content = urllib.parse.unquote_to_bytes(data)
    if not content:
        raise InputUnavailable("the data URI is empty")
    if len(content) > max_bytes:
        raise InputUnavailable(f"the file is larger than {max_bytes} bytes")
    return content


@dataclass
class Run:
    """One submitted generation: what the runs of both emulators have in common."""

    request_id: str
    webhook_url: str | None
    submitted_at: float = field(default_factory=time.time)
    status: str = "IN_QUEUE"
    started_at: float | None = None
    finished_at: float | None = None
    logs: list[dict[str, str]] = field(default_factory=list)
    webhook_deliveries: list[dict[str, Any]] = field(default_factory=list)
    # Decided at submit time, so a test that sets "the next N" knows which requests they hit.
    inject_failure: bool = False
    drop_webhook: bool = False
    media_errors: bool = False  # its result file answers 503 on every download
    submit_answer: str = "answered"  # or how the submit's answer was lost: "dropped", "gateway_502", "gateway_504"
    # A provider's time-to-start deadline (time.monotonic()): a run still IN_QUEUE then never starts.
    start_deadline: float | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    def start_overdue(self) -> bool:
        return self.status == "IN_QUEUE" and self.start_deadline is not None and time.monotonic() >= self.start_deadline

    def fault_record(self) -> dict[str, Any]:
        """The faults injected into this run, for the record (both emulators)."""
        return {
            "failure_injected": self.inject_failure,
            "webhook_dropped": self.drop_webhook,
            "media_errors": self.media_errors,
            "submit_answer": self.submit_answer,
        }

    def log(self, message: str) -> None:
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
        self.logs.append({"message": message, "level": "INFO", "source": "USER", "timestamp": when})


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
        self._servers: list[ThreadingHTTPServer] = []  # the API's, then the media host's
        self._serving: list[threading.Thread] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._runs: dict[str, Run] = {}
        self._rejected: list[dict[str, Any]] = []
        self._run_threads: list[threading.Thread] = []
        self._media: dict[str, tuple[bytes, float]] = {}
        self._slots = threading.Condition()
        self._running = 0
        self._sample: bytes | None = None
        self._sample_lock = threading.Lock()
        self._selections: dict[str, EvenSelection] = {}
        self._faulted_once: set[tuple[str, str]] = set()  # (fault, caller): the faults that hit only a first submit
        self._media_downloads: list[dict[str, Any]] = []

    # -- life ---------------------------------------------------------------------------------------------------

    def start(self) -> Self:
        self._serve("http", (HOST, self._port), self.handle)
        self._serve("media", (self.settings.current().media_host, 0), self.handle_media)
        logger.info("%s emulator serving at %s, its media at %s", self.name, self.base_url, self.media_base_url)
        return self

    def _serve(self, role: str, address: tuple[str, int], handle: Callable[[Request], Response]) -> None:
        server = ThreadingHTTPServer(address, _handler_for(self, handle))
        server.daemon_threads = True
        self._servers.append(server)
        thread = threading.Thread(
            target=server.serve_forever, args=(_POLL_SECONDS,), name=f"{self.name}-{role}", daemon=True
        )
        self._serving.append(thread)
        thread.start()

    def stop(self) -> None:
        """Stops serving, interrupts the runs' waits and waits for their threads (bounded)."""
        self.stopping.set()
        with self._slots:
            self._slots.notify_all()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._serving:
            thread.join(STOP_JOIN_SECONDS)
        deadline = time.monotonic() + STOP_JOIN_SECONDS
        with self._lock:
            threads = list(self._run_threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def _address(self, index: int) -> tuple[str, int]:
        if len(self._servers) <= index:
            raise RuntimeError("the emulator is not started")
        host, port = self._servers[index].server_address[:2]
        return str(host), int(port)

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
            return {
                "requests": [self.describe(run) for run in self._runs.values()],
                "rejected": list(self._rejected),
                "media_downloads": [dict(download) for download in self._media_downloads],
            }

    @abstractmethod
    def describe(self, run: Run) -> dict[str, Any]:
        """A run as JSON for the record (no large inputs)."""

    # -- HTTP ---------------------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        if request.path == "/_emulator/settings":
            return self._settings_route(request)
        if request.path == "/_emulator/requests" and request.method == "GET":
            return json_response(200, self.requests_record())
        if request.path.startswith("/media/"):  # the files live on the media host only
            return _not_found()
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
        return _not_found()

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
        run = self.run_of(name.rpartition(".")[0])  # a result file is named after its run
        download: dict[str, Any] = {
            "file_name": name,
            "request_id": run.request_id if run is not None else None,
            "method": request.method,
            "at": time.time(),
            "slow": False,
        }
        if stored is None or time.monotonic() - stored[1] > settings.media_ttl_seconds:
            response = _not_found()
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

    # -- faults (devstack/faults.py) ------------------------------------------------------------------------

    def selects(self, fraction_setting: str, key: str) -> bool:
        """Whether the share `fraction_setting` (e.g. drop_webhook_fraction) picks `key` (a job's webhook URL)."""
        settings = self.settings.current()
        fraction = float(getattr(settings, fraction_setting))
        if fraction <= 0:
            return False
        salt = f"{settings.fault_seed}:{fraction_setting}"
        with self._lock:
            selection = self._selections.get(fraction_setting)
            if selection is None or (selection.fraction, selection.salt) != (fraction, salt):
                selection = self._selections[fraction_setting] = EvenSelection(fraction, salt)
        return selection.selects(key)

    def submit_refusal(self, caller: str) -> str | None:
        """ "server_error" (503) or "rate_limit" (429) when this submit is to be refused, else None.

        First the counters (the next N submits, whoever sends them); then the fractions, which refuse only
        the first submit of a picked caller: `caller` is the submit's webhook URL, which names our job.
        """
        if self.settings.take("server_error_submits"):
            return "server_error"
        if self.settings.take("rate_limit_submits"):
            return "rate_limit"
        # Both shares see every caller, in the order they first submit; one picked by both is refused twice.
        picked = [
            refusal for refusal in ("server_error", "rate_limit") if self.selects(f"{refusal}_submit_fraction", caller)
        ]
        return next((refusal for refusal in picked if self._first_time(refusal, caller)), None)

    def submit_answer_fault(self, caller: str) -> str:
        """How the answer of an accepted submit reaches the client: "answered", "dropped" or "gateway_<status>".

        The run exists either way. Counters first (the next N accepted submits); then the fractions, which hit
        only the first accepted submit of a picked caller, so a client that submits the job again is answered.
        """
        settings = self.settings.current()
        gateway = f"gateway_{settings.gateway_error_status}"
        if self.settings.take("submit_answer_drops"):
            return "dropped"
        if self.settings.take("submit_gateway_errors"):
            return gateway
        shares = (("dropped", "submit_answer_drop_fraction"), (gateway, "submit_gateway_error_fraction"))
        picked = [fault for fault, share in shares if self.selects(share, caller)]
        return next((fault for fault in picked if self._first_time(fault, caller)), "answered")

    def _first_time(self, fault: str, caller: str) -> bool:
        """True the first time `fault` is asked about for `caller`, then False."""
        with self._lock:
            first = (fault, caller) not in self._faulted_once
            self._faulted_once.add((fault, caller))
        return first

    @staticmethod
    def answer_of_submit(run: Run, answer: Response) -> Response:
        """`answer` (the ticket), or what reaches the client instead when the run's submit_answer says so."""
        if run.submit_answer == "dropped":
            return dropped_answer()
        if run.submit_answer.startswith("gateway_"):
            return gateway_error_page(int(run.submit_answer.removeprefix("gateway_")))
        return answer

    def drops_webhook(self, caller: str) -> bool:
        """Whether a new run (of the job `caller` names) is to send no webhook."""
        return self.settings.take("drop_webhooks") or self.selects("drop_webhook_fraction", caller)

    # -- runs -------------------------------------------------------------------------------------------------

    def reject(self, response: Response, **details: Any) -> Response:
        with self._lock:
            self._rejected.append({"status": response.status, "at": time.time(), **details})
        return response

    def add_run(self, run: Run, work: Callable[[], None]) -> None:
        """Records a new run and starts its thread, which calls `work`."""
        thread = threading.Thread(target=self._guarded(run, work), name=f"{self.name}-run-{run.request_id}")
        thread.daemon = True
        with self._lock:
            self._runs[run.request_id] = run
            self._run_threads = [alive for alive in self._run_threads if alive.is_alive()]
            self._run_threads.append(thread)
        thread.start()

    def _guarded(self, run: Run, work: Callable[[], None]) -> Callable[[], None]:
        def target() -> None:
            try:
                work()
            except Exception:  # a bug in a run must not die silently in its thread
                logger.exception("%s emulator: run %s crashed", self.name, run.request_id)

        return target

    def run_of(self, request_id: str) -> Run | None:
        with self._lock:
            return self._runs.get(request_id)

    def queue_position(self, run: Run) -> int:
        with self._lock:
            return sum(
                1
                for other in self._runs.values()
                if other.status == "IN_QUEUE" and other.submitted_at < run.submitted_at
            )

    def wait(self, run: Run, seconds: float) -> bool:
        """Sleeps `seconds`; False as soon as the run is canceled, misses its start deadline or the emulator stops."""
        deadline = time.monotonic() + seconds
        while not self._interrupted(run):
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            run.cancel_requested.wait(min(left, _POLL_SECONDS))
        return False

    def _interrupted(self, run: Run) -> bool:
        return run.cancel_requested.is_set() or self.stopping.is_set() or run.start_overdue()

    @contextmanager
    def worker_slot(self, run: Run) -> Iterator[bool]:
        """A place among the `workers` runs that may run at once; yields False if interrupted while waiting."""
        acquired = self._acquire_slot(run)
        try:
            yield acquired and not self._interrupted(run)
        finally:
            if acquired:
                with self._slots:
                    self._running -= 1
                    self._slots.notify()

    def _acquire_slot(self, run: Run) -> bool:
        with self._slots:
            while self._running >= self.settings.current().workers:
                if self._interrupted(run):
                    return False
                self._slots.wait(_POLL_SECONDS)
            self._running += 1
            return True

    # -- webhooks ---------------------------------------------------------------------------------------------

    def deliver_webhook(self, run: Run, body: bytes, headers: Callable[[], dict[str, str]]) -> None:
        """POSTs the webhook `webhook_copies` times; each copy is retried until a 2xx (`webhook_attempts`).

        `headers` is called for every delivery: a signature carries the time of its own delivery.
        """
        if not run.webhook_url:
            return
        if run.drop_webhook:
            run.log("webhook not sent (emulated loss)")
            return
        settings = self.settings.current()
        with httpx.Client(timeout=WEBHOOK_TIMEOUT) as client:
            for copy in range(settings.webhook_copies):
                self._deliver_one(client, run, body, headers, copy=copy, attempts=settings.webhook_attempts)

    def _deliver_one(
        self,
        client: httpx.Client,
        run: Run,
        body: bytes,
        headers: Callable[[], dict[str, str]],
        *,
        copy: int,
        attempts: int,
    ) -> None:
        assert run.webhook_url is not None
        backoff = WEBHOOK_FIRST_BACKOFF_SECONDS
        for attempt in range(1, attempts + 1):
            outcome: dict[str, Any] = {"copy": copy, "attempt": attempt, "at": time.time()}
            try:
                answer = client.post(run.webhook_url, content=body, headers={"Content-Type": _JSON, **headers()})
                outcome["status"] = answer.status_code
                delivered = answer.is_success
            except httpx.HTTPError as error:
                outcome["error"] = type(error).__name__
                delivered = False
            run.webhook_deliveries.append(outcome)
            logger.info("%s webhook for %s: %s", self.name, run.request_id, outcome)
            if delivered or attempt == attempts or self.stopping.wait(backoff):
                return
            backoff = min(backoff * 2, WEBHOOK_MAX_BACKOFF_SECONDS)


def truncated(value: Any, limit: int = 120) -> Any:
    """Long strings (data URIs, base64) cut for the record."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]}... ({len(value)} chars)"
    return value


def _not_found() -> Response:
    return Response(404, b"Not Found", {"Content-Type": "text/plain"})


def _handler_for(emulator: Emulator, handle: Callable[[Request], Response]) -> type[BaseHTTPRequestHandler]:
    class EmulatorHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = f"{emulator.name}-emulator"

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
                logger.exception("%s emulator: %s %s failed", emulator.name, self.command, split.path)
                response = json_response(500, {"detail": "emulator error"})
            self._send(response, head=self.command == "HEAD")

        def _send(self, response: Response, *, head: bool) -> None:
            if response.drop_connection:  # nothing written: the server closes the socket when this returns
                self.close_connection = True
                return
            self.send_response(response.status, HTTPStatus(response.status).phrase)
            for name, value in response.headers.items():
                self.send_header(name, value)
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
            while (left := deadline - time.monotonic()) > 0 and not emulator.stopping.is_set():
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
            logger.debug("%s emulator: " + format, emulator.name, *args)

    return EmulatorHandler


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
