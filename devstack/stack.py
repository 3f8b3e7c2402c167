"""The local stack: template.yaml running on one machine, with moto for AWS and loopback for everything else.

    with LocalStack() as local:
        httpx.post(f"{local.api_url}/jobs", headers={"x-api-key": local.api_key}, json=...)

Starting: moto (a child process), the template's resources in it (devstack.cloudformation), optionally the
provider emulators (children), one worker per function (children, see lambda_worker), the API gateway and
the event source pollers (threads of this process). Stopping (on exit, also after a failed start) ends every
child and joins every thread, in an order that never waits on a long invocation: pollers are told to stop,
the gateway stops taking requests, the workers stop (cutting what they run), then the threads are joined.
"""

import logging
import os
import secrets
import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from devstack.api_gateway import ApiGateway
from devstack.cloudformation import REGION, TEMPLATE_PATH, FunctionSpec, Stack, load_template, provision
from devstack.event_sources import Poller, event_sources_of, stop_all
from devstack.lambda_worker import Worker
from devstack.moto_server import FAKE_CREDENTIALS, local_session
from devstack.processes import REPO_ROOT, ChildServer, launch
from devstack.processes import stop_all as stop_children

log = logging.getLogger("devstack")

SCHEDULE_SECONDS_VARIABLE = "DEVSTACK_SCHEDULE_SECONDS"
# The process environment a worker inherits; everything else comes from the template and the stack, so a
# developer's AWS profile or endpoint settings never leak into a local function.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "SYSTEMROOT")
LOCAL_FAL_KEY = "local-fal-key"
LOCAL_MIRAKO_KEY = "local-mirako-key"


class LocalStack:
    """A context manager; inside it: `api_url`, `api_key`, `endpoint_url`, `stack`, `invoke(logical_id, event)`.

    template: template.yaml (default), another template file, or a template already loaded (a dict); a
        function's CodeUri is relative to `code_root` (default: the template's folder, or the repository).
    emulators: start the fal and Mirako emulators (devstack.emulators.fal, .mirako) and point the functions at
        them. `fal_base_url`, `fal_jwks_url`, `mirako_base_url` point them at other servers instead; with
        neither, the functions keep the template's (real) provider URLs.
    schedule_seconds: the period of Schedule events (default: DEVSTACK_SCHEDULE_SECONDS, else the template's).
    parameters: template parameter overrides (e.g. a short WebhookOverdueSeconds for tests).
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
        self._parameters = parameters or {}
        self._moto: ChildServer | None = None
        self._emulators: list[ChildServer] = []
        self._worker_children: dict[str, ChildServer] = {}
        self._workers: dict[str, Worker] = {}
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

    def invoke(self, logical_id: str, event: Any) -> Any:
        """A synchronous invocation of the template's function (FunctionError when it fails)."""
        return self._workers[logical_id].invoke(event)

    # --- lifecycle ---------------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
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

    def _start_workers(self, functions: dict[str, FunctionSpec], public_base_url: str) -> None:
        for logical_id, function in functions.items():  # all at once: each one's imports take a while
            arguments = [str(self._code_root / function.code_uri), function.handler]
            for layer in function.layer_uris:
                arguments += ["--layer", str(self._code_root / layer)]
            self._worker_children[logical_id] = launch(
                "devstack.lambda_worker",
                *arguments,
                log=self.log_dir / f"{logical_id}.log",
                env=self.function_environment(function, public_base_url),
            )
        for logical_id, child in self._worker_children.items():
            url = child.wait_until_serving()
            self._workers[logical_id] = Worker(logical_id, url, functions[logical_id].timeout_seconds)

    def function_environment(self, function: FunctionSpec, public_base_url: str) -> dict[str, str]:
        """The template's environment of the function, pointed at the local stack (docs/architecture.md)."""
        template_given = self.stack.function_environment(function.logical_id)
        # Where the template gives a function a provider or webhook setting, the local one replaces it; a
        # function the template does not give one keeps not having it, as deployed.
        local_values = {
            **{name: url for name, url in self._provider_urls.items() if url},
            "PUBLIC_BASE_URL": public_base_url,
            "FAL_MEDIA_HOSTS": "127.0.0.1",
            "MIRAKO_MEDIA_HOSTS": "127.0.0.1",
        }
        overrides = {name: value for name, value in local_values.items() if name in template_given}
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
        }

    def stop(self) -> None:
        """Ends everything started so far; safe to call twice, and after a start that failed half way."""
        for poller in self._pollers:
            poller.stop()  # no new invocations from here on
        with ExitStack() as cleanup:  # runs the callbacks last-in first-out, all of them even if one fails
            if self._moto is not None:
                cleanup.callback(self._moto.stop)
            cleanup.callback(stop_children, list(self._emulators))
            cleanup.callback(stop_all, list(self._pollers))  # after the workers: nothing they wait on is left
            cleanup.callback(stop_children, list(self._worker_children.values()))
            if self._gateway is not None:
                cleanup.callback(self._gateway.stop)
        self._pollers, self._emulators, self._worker_children, self._workers = [], [], {}, {}
        self._gateway, self._moto = None, None
