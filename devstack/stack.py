"""The local stack: template.yaml running on one machine, with moto for AWS and loopback for everything else.

    with LocalStack() as local:
        httpx.post(f"{local.api_url}/jobs", headers={"x-api-key": local.api_key}, json=...)

Starting: moto (a child process), the template's resources in it (devstack.cloudformation), optionally the
provider emulators (children), one worker per function (children, see lambda_worker), the API gateway and
the event source pollers (threads of this process). Stopping (on exit, also after a failed start) ends every
child and joins every thread, in an order that never waits on a long invocation: pollers are told to stop,
the gateway stops taking requests, the workers stop (cutting what they run), then the threads are joined.

A worker that dies (killed, crashed) is replaced at the function's next invocation, as Lambda starts a new
execution environment after one fails; the invocation that was in flight fails with Runtime.ExitError. The
faults a test can inject (devstack/faults.py) are options here and in the emulators' settings.
"""

import logging
import os
import secrets
import signal
import tempfile
import threading
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from devstack.api_gateway import ApiGateway
from devstack.cloudformation import REGION, TEMPLATE_PATH, FunctionSpec, Stack, load_template, provision
from devstack.emulators.settings import settings_from_environment
from devstack.event_sources.from_template import event_sources_of
from devstack.event_sources.poller import Poller, stop_all
from devstack.faults import FAULT_LOG_VARIABLE, S3_UPLOAD_FAILURE_RATE_VARIABLE, read_faults, record_fault
from devstack.lambda_worker import FunctionError, Worker
from devstack.moto_server import FAKE_CREDENTIALS, local_session
from devstack.processes import REPO_ROOT, ChildServer, launch
from devstack.processes import stop_all as stop_children

if TYPE_CHECKING:
    import boto3

log = logging.getLogger("devstack")

SCHEDULE_SECONDS_VARIABLE = "DEVSTACK_SCHEDULE_SECONDS"
# The process environment a worker inherits; everything else comes from the template and the stack, so a
# developer's AWS profile or endpoint settings never leak into a local function.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "SYSTEMROOT")
LOCAL_FAL_KEY = "local-fal-key"
LOCAL_MIRAKO_KEY = "local-mirako-key"
# Without the emulators, the providers' stand-ins (tests' fakes) serve their files from their own address.
LOOPBACK_MEDIA_HOST = "127.0.0.1"


class LocalStack:
    """A context manager; inside it: `api_url`, `api_key`, `endpoint_url`, `stack`, `invoke(logical_id, event)`.

    template: template.yaml (default), another template file, or a template already loaded (a dict); a
        function's CodeUri is relative to `code_root` (default: the template's folder, or the repository).
    emulators: start the fal and Mirako emulators (devstack.emulators.fal, .mirako) and point the functions at
        them. `fal_base_url`, `fal_jwks_url`, `mirako_base_url` point them at other servers instead; with
        neither, the functions keep the template's (real) provider URLs.
    schedule_seconds: the period of Schedule events (default: DEVSTACK_SCHEDULE_SECONDS, else the template's).
    parameters: template parameter overrides (e.g. a short WebhookOverdueSeconds for tests). FalMediaHosts and
        MirakoMediaHosts default to where the emulators serve their files (their media_host), or to 127.0.0.1
        without the emulators; the functions get what the parameters say, as deployed.
    visibility_timeouts: queue logical id -> seconds, set after provisioning: a local acceleration of the
        template's visibility timeouts (6 x the consumer's timeout, i.e. minutes), so that a message whose
        invocation crashed comes back within seconds. The local pollers take one batch at a time per queue, so
        a timeout shorter than the function's cannot make two local invocations hold one message at once.
    s3_upload_failures: function logical id -> the share of its S3 uploads (PutObject, UploadPart) whose first
        attempt answers 500 InternalError (devstack.faults.install_s3_upload_faults).
    Injected faults are recorded in `log_dir/faults.jsonl` (`injected_faults()`), worker kills included.
    """

    def __init__(
        self,
        template: Path | dict[str, Any] = TEMPLATE_PATH,
        *,
        code_root: Path | None = None,
        emulators: bool = False,
        fal_base_url: str | None = None,
        fal_jwks_url: str | None = None,
        mirako_base_url: str | None = None,
        schedule_seconds: float | None = None,
        api_key: str | None = None,
        log_dir: Path | None = None,
        stack_name: str = "avatarjobs",
        parameters: dict[str, str] | None = None,
        visibility_timeouts: Mapping[str, int] | None = None,
        s3_upload_failures: Mapping[str, float] | None = None,
    ) -> None:
        self._template = load_template(template) if isinstance(template, Path) else template
        default_root = template.resolve().parent if isinstance(template, Path) else REPO_ROOT
        self._code_root = code_root or default_root
        self._start_emulators = emulators
        self._provider_urls = {
            "FAL_QUEUE_BASE_URL": fal_base_url,
            "FAL_JWKS_URL": fal_jwks_url,
            "MIRAKO_BASE_URL": mirako_base_url,
        }
        configured = os.environ.get(SCHEDULE_SECONDS_VARIABLE)
        self._schedule_seconds = schedule_seconds or (float(configured) if configured else None)
        self.api_key = api_key or secrets.token_urlsafe(30)
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="devstack-logs-"))
        self._stack_name = stack_name
        self._parameters = {**_media_host_parameters(emulators), **(parameters or {})}
        self._visibility_timeouts = dict(visibility_timeouts or {})
        self._s3_upload_failures = dict(s3_upload_failures or {})
        self._moto: ChildServer | None = None
        self._emulators: list[ChildServer] = []
        self._worker_children: dict[str, ChildServer] = {}
        self._workers: dict[str, Worker] = {}
        self._worker_locks: dict[str, threading.Lock] = {}
        self._worker_restarts: dict[str, int] = {}
        self._public_base_url = ""
        self._stopping = False
        self._gateway: ApiGateway | None = None
        self._pollers: list[Poller] = []
        self._stack: Stack | None = None

    # --- what a caller uses ------------------------------------------------------------------------------

    @property
    def stack(self) -> Stack:
        if self._stack is None:
            raise RuntimeError("the local stack is not started")
        return self._stack

    @property
    def endpoint_url(self) -> str:
        """moto's URL: give it to boto3 clients as endpoint_url (with local_session() or any fake keys)."""
        if self._moto is None:
            raise RuntimeError("the local stack is not started")
        return self._moto.url

    @property
    def api_url(self) -> str:
        """The API stage's base URL (`http://127.0.0.1:<port>/v1`)."""
        if self._gateway is None:
            raise RuntimeError("the local stack is not started")
        return self._gateway.url

    @property
    def client_exports(self) -> str:
        """The shell exports the CLI reads (`make up` prints them and writes them to its env file)."""
        return f"export AVATARJOBS_BASE_URL={self.api_url}\nexport AVATARJOBS_API_KEY={self.api_key}\n"

    @property
    def parameters(self) -> dict[str, str]:
        """The template parameters the stack is provisioned with (the caller's, and the local defaults)."""
        return dict(self._parameters)

    @property
    def provider_urls(self) -> dict[str, str | None]:
        """Where the functions reach the providers (the emulators' URLs when they run)."""
        return dict(self._provider_urls)

    @property
    def child_pids(self) -> list[int]:
        children = [self._moto, *self._emulators, *self._worker_children.values()]
        return [child.pid for child in children if child is not None]

    @property
    def threads(self) -> list[threading.Thread]:
        """The gateway's and the pollers' threads (all joined by stop())."""
        gateway = [self._gateway.thread] if self._gateway is not None else []
        return gateway + [poller.thread for poller in self._pollers]

    @property
    def fault_log(self) -> Path:
        """Where the workers and the stack record the faults they inject (JSON lines)."""
        return self.log_dir / "faults.jsonl"

    def injected_faults(self) -> list[dict[str, Any]]:
        """Every fault recorded in `fault_log` so far (devstack.faults.record_fault)."""
        return read_faults(self.fault_log)

    def worker_pid(self, logical_id: str) -> int:
        """The process id of the function's current worker (its execution environment)."""
        return self._worker_children[logical_id].pid

    @property
    def worker_restarts(self) -> dict[str, int]:
        """How many times each function's worker was replaced after it died."""
        return dict(self._worker_restarts)

    def kill_worker(self, logical_id: str) -> int:
        """SIGKILLs the function's worker, as a crash of its execution environment; returns the killed pid.

        The invocation in flight fails (Runtime.ExitError) and its event source reacts as Lambda's does (an SQS
        message comes back after its visibility timeout); the next invocation starts a new worker, cold.
        """
        with self._worker_locks[logical_id]:
            child = self._worker_children[logical_id]
            child.process.send_signal(signal.SIGKILL)
            child.process.wait()
        record_fault("worker_killed", record_to=self.fault_log, function=logical_id, pid=child.pid)
        return child.pid

    def invoke(self, logical_id: str, event: Any) -> Any:
        """A synchronous invocation of the template's function (FunctionError when it fails)."""
        worker, child = self._live_worker(logical_id)
        try:
            return worker.invoke(event)
        except FunctionError as error:
            exit_code = child.process.poll()
            if error.error_type != "Runtime.Unavailable" or exit_code is None:
                raise
            # What Lambda reports when the runtime dies during an invocation.
            cause = f"signal: {signal.Signals(-exit_code).name}" if exit_code < 0 else f"exit status {exit_code}"
            raise FunctionError(logical_id, "Runtime.ExitError", f"Runtime exited with error: {cause}") from None

    def _live_worker(self, logical_id: str) -> tuple[Worker, ChildServer]:
        """The function's worker, a new one if the last one died (a new execution environment)."""
        with self._worker_locks[logical_id]:
            child = self._worker_children[logical_id]
            if child.process.poll() is not None:
                if self._stopping:
                    raise FunctionError(logical_id, "Runtime.Unavailable", "the local stack is stopping")
                child = self._restart_worker(logical_id)
            return self._workers[logical_id], child

    def _restart_worker(self, logical_id: str) -> ChildServer:
        dead = self._worker_children[logical_id]
        log.warning("%s: its worker (pid %d) died; starting a new one", logical_id, dead.pid)
        dead.stop()  # reaps it and closes its log
        function = self.stack.function(logical_id)
        child = self._launch_worker(function, append_log=True)
        self._worker_children[logical_id] = child
        url = child.wait_until_serving()
        self._workers[logical_id] = Worker(logical_id, url, function.timeout_seconds)
        self._worker_restarts[logical_id] = self._worker_restarts.get(logical_id, 0) + 1
        return child

    # --- lifecycle ---------------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        self._stopping = False
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._moto = launch("devstack.moto_server", log=self.log_dir / "moto.log")
        self._moto.wait_until_serving()
        session = local_session()
        self._stack = provision(
            session, self._template, self._stack_name, endpoint_url=self._moto.url, parameters=self._parameters
        )
        self._shorten_visibility_timeouts(session)
        self._start_provider_emulators()
        # The gateway's port first: the dispatcher's PUBLIC_BASE_URL (webhook base) names it.
        self._gateway = ApiGateway(self._stack, self.invoke, self.api_key)
        self._start_workers(self._stack.functions(), self._gateway.url)
        self._gateway.start()
        self._pollers = event_sources_of(self._stack, session, self._moto.url, self.invoke, self._schedule_seconds)
        for poller in self._pollers:
            poller.start()
        log.info("local stack up: API %s, moto %s, logs in %s", self.api_url, self.endpoint_url, self.log_dir)

    def _start_provider_emulators(self) -> None:
        if not self._start_emulators:
            return
        # The emulators expect the keys the functions send (their settings otherwise come from the environment).
        fal_env = {**os.environ, "FAL_EMULATOR_API_KEY": LOCAL_FAL_KEY}
        fal = launch("devstack.emulators.fal", log=self.log_dir / "emulator-fal.log", env=fal_env)
        self._emulators.append(fal)
        mirako_env = {**os.environ, "MIRAKO_EMULATOR_API_KEY": LOCAL_MIRAKO_KEY}
        mirako = launch("devstack.emulators.mirako", log=self.log_dir / "emulator-mirako.log", env=mirako_env)
        self._emulators.append(mirako)
        fal_url, mirako_url = fal.wait_until_serving(), mirako.wait_until_serving()
        # Explicit URLs win over the emulators'.
        self._provider_urls["FAL_QUEUE_BASE_URL"] = self._provider_urls["FAL_QUEUE_BASE_URL"] or fal_url
        self._provider_urls["FAL_JWKS_URL"] = self._provider_urls["FAL_JWKS_URL"] or f"{fal_url}/.well-known/jwks.json"
        self._provider_urls["MIRAKO_BASE_URL"] = self._provider_urls["MIRAKO_BASE_URL"] or mirako_url

    def _shorten_visibility_timeouts(self, session: "boto3.Session") -> None:
        sqs = session.client("sqs", region_name=REGION, endpoint_url=self.endpoint_url)
        queues = self.stack.resources_of_type("AWS::SQS::Queue")
        for logical_id, seconds in self._visibility_timeouts.items():
            if logical_id not in queues:
                raise ValueError(f"visibility_timeouts: {logical_id} is not a queue of the template")
            url = self.stack.refs[logical_id]
            sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": str(int(seconds))})
            log.info("%s: visibility timeout %d s (local acceleration)", logical_id, seconds)

    def _start_workers(self, functions: dict[str, FunctionSpec], public_base_url: str) -> None:
        unknown = set(self._s3_upload_failures) - set(functions)
        if unknown:
            raise ValueError(f"s3_upload_failures: {sorted(unknown)} are not functions of the template")
        self._public_base_url = public_base_url
        for logical_id, function in functions.items():  # all at once: each one's imports take a while
            self._worker_locks[logical_id] = threading.Lock()
            self._worker_children[logical_id] = self._launch_worker(function)
        for logical_id, child in self._worker_children.items():
            url = child.wait_until_serving()
            self._workers[logical_id] = Worker(logical_id, url, functions[logical_id].timeout_seconds)

    def _launch_worker(self, function: FunctionSpec, *, append_log: bool = False) -> ChildServer:
        arguments = [str(self._code_root / function.code_uri), function.handler]
        for layer in function.layer_uris:
            arguments += ["--layer", str(self._code_root / layer)]
        return launch(
            "devstack.lambda_worker",
            *arguments,
            log=self.log_dir / f"{function.logical_id}.log",
            env=self.function_environment(function, self._public_base_url),
            append_log=append_log,
        )

    def function_environment(self, function: FunctionSpec, public_base_url: str) -> dict[str, str]:
        """The template's environment of the function, pointed at the local stack (docs/architecture.md)."""
        template_given = self.stack.function_environment(function.logical_id)
        # Where the template gives a function a provider or webhook setting, the local one replaces it; a
        # function the template does not give one keeps not having it, as deployed.
        local_values = {
            **{name: url for name, url in self._provider_urls.items() if url},
            "PUBLIC_BASE_URL": public_base_url,
        }
        overrides = {name: value for name, value in local_values.items() if name in template_given}
        rate = self._s3_upload_failures.get(function.logical_id)
        faults = {S3_UPLOAD_FAILURE_RATE_VARIABLE: str(rate)} if rate else {}
        return {
            **{name: os.environ[name] for name in _INHERITED if name in os.environ},
            **template_given,
            **overrides,
            **FAKE_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "POWERTOOLS_TRACE_DISABLED": "1",
            "FAL_KEY": LOCAL_FAL_KEY,
            "MIRAKO_API_KEY": LOCAL_MIRAKO_KEY,
            # The only place this is ever set: the emulators and moto's presigned URLs are plain http on loopback.
            "AVATARJOBS_ALLOW_LOOPBACK_HTTP": "1",
            "PYTHONUNBUFFERED": "1",  # logs reach the log file as they are written
            FAULT_LOG_VARIABLE: str(self.fault_log),
            **faults,
        }

    def stop(self) -> None:
        """Ends everything started so far; safe to call twice, and after a start that failed half way."""
        self._stopping = True  # a worker that dies from here on stays dead
        for poller in self._pollers:
            poller.stop()  # no new invocations from here on
        with ExitStack() as restarts:  # a worker being replaced right now is among those stopped below
            for lock in self._worker_locks.values():
                restarts.enter_context(lock)
            workers = list(self._worker_children.values())
        with ExitStack() as cleanup:  # runs the callbacks last-in first-out, all of them even if one fails
            if self._moto is not None:
                cleanup.callback(self._moto.stop)
            cleanup.callback(stop_children, list(self._emulators))
            cleanup.callback(stop_all, list(self._pollers))  # after the workers: nothing they wait on is left
            cleanup.callback(stop_children, workers)
            if self._gateway is not None:
                cleanup.callback(self._gateway.stop)
        self._pollers, self._emulators, self._worker_children, self._workers = [], [], {}, {}
        self._gateway, self._moto = None, None


def _media_host_parameters(emulators: bool) -> dict[str, str]:
    """FalMediaHosts and MirakoMediaHosts: the address each emulator serves its result files from."""
    if not emulators:
        return {"FalMediaHosts": LOOPBACK_MEDIA_HOST, "MirakoMediaHosts": LOOPBACK_MEDIA_HOST}
    return {
        "FalMediaHosts": settings_from_environment("FAL_EMULATOR_").media_host,
        "MirakoMediaHosts": settings_from_environment("MIRAKO_EMULATOR_").media_host,
    }
