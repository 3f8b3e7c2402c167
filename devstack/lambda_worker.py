"""One function of the template in its own process, like one warm Lambda execution environment.

`python -m devstack.lambda_worker <CodeUri> <Handler> [--layer <ContentUri>]...` puts the function's folder and
its layers on sys.path, imports the handler once (its module-level clients and caches then serve every
invocation, as in a warm Lambda), announces its port (see devstack.processes) and serves `POST /invoke`:
the body is the event, header `X-Remaining-Ms` the time the invocation may take, `X-Request-Id` its id.
The answer is 200 with the handler's JSON result, or 500 with `{"errorType", "errorMessage", "stackTrace"}`.

One invocation at a time, as in one execution environment: the server is single-threaded, so concurrent
callers queue on its socket. The environment (resource names, endpoints, credentials) comes from the parent,
and so do the faults the local stack injects at this process's boundary (devstack/faults.py).

`Worker` (below) is the parent's side: it invokes over loopback and turns every failure into FunctionError.
"""

import argparse
import http.client
import importlib
import json
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from devstack import faults
from devstack.cloudformation import ACCOUNT_ID, REGION
from devstack.processes import redirect_stdout_to_log, serve_until_stdin_closes

DEFAULT_TIMEOUT_MS = 3_000  # Lambda's default timeout, for a caller that does not say
# The caller waits this much longer than the function may run: the worker's own answer, not a socket timeout,
# should report a slow handler whenever it can.
TRANSPORT_MARGIN_SECONDS = 5.0

Handler = Callable[[Any, Any], Any]


class LambdaContext:
    """The context object the Python runtime passes a handler (the attributes Powertools reads)."""

    function_version = "$LATEST"

    def __init__(self, request_id: str, remaining_ms: int) -> None:
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        region = os.environ.get("AWS_REGION", REGION)
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{self.function_name}"
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_handler(code_uri: str, handler: str, layers: list[str]) -> Handler:
    """Imports `module.function` of Handler with the code folder first on sys.path, then the layers."""
    for folder in reversed([code_uri, *layers]):
        sys.path.insert(0, str(Path(folder).resolve()))
    module_name, _, function_name = handler.rpartition(".")
    function: Handler = getattr(importlib.import_module(module_name), function_name)
    return function


def _error_body(error: BaseException) -> bytes:
    return json.dumps(
        {
            "errorType": type(error).__name__,
            "errorMessage": str(error),
            "stackTrace": traceback.format_tb(error.__traceback__),
        }
    ).encode()


def handler_class(function: Handler) -> type[BaseHTTPRequestHandler]:
    class InvokeHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            if self.path != "/invoke":
                self._answer(404, b'{"errorType": "NotFound", "errorMessage": "POST /invoke only"}')
                return
            event = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"null")
            remaining_ms = int(self.headers.get("X-Remaining-Ms", DEFAULT_TIMEOUT_MS))
            context = LambdaContext(self.headers.get("X-Request-Id") or str(uuid.uuid4()), remaining_ms)
            try:
                result = function(event, context)
            except Exception as error:  # what the runtime reports as an unhandled function error
                traceback.print_exc()
                self._answer(500, _error_body(error))
                return
            try:
                body = json.dumps(result).encode()
            except (TypeError, ValueError) as error:  # the runtime's Runtime.MarshalError
                self._answer(500, _error_body(error))
                return
            self._answer(200, body)

        def _answer(self, status: int, body: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                # The caller stopped waiting (its timeout); the invocation ran all the same, as in Lambda.
                print(f"the caller did not wait for the result ({status})", file=sys.stderr)

        def log_message(self, format: str, *args: object) -> None:  # the handler's own logs say enough
            pass

    return InvokeHandler


class _InvokeServer(HTTPServer):
    # Callers queue on the socket (one invocation at a time): with socketserver's default backlog of 5, a burst
    # of them (the gateway's threads during 200 orders at once) would have their connections reset.
    request_queue_size = 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("code_uri")
    parser.add_argument("handler")
    parser.add_argument("--layer", action="append", default=[])
    options = parser.parse_args()
    announcer = redirect_stdout_to_log()  # before the import: Powertools logs to stdout
    faults.install_from_environment()  # before the import: the handler's module-level clients get the hooks
    function = load_handler(options.code_uri, options.handler, options.layer)
    server = _InvokeServer(("127.0.0.1", 0), handler_class(function))
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="invoke")
    serving.start()
    try:
        serve_until_stdin_closes(server.server_address[1], announcer)
    finally:
        server.shutdown()  # lets an invocation in flight finish
        serving.join()
        server.server_close()
    # Like a Lambda environment that is shut down: no interpreter teardown of the handler's module graph, which
    # takes seconds when all the workers stop at once on a small machine.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class FunctionError(Exception):
    """An invocation that did not return a result: the handler raised, timed out, or the worker is gone."""

    def __init__(self, function: str, error_type: str, message: str) -> None:
        super().__init__(f"{function}: {error_type}: {message}")
        self.error_type = error_type
        self.error_message = message


@dataclass(frozen=True)
class Worker:
    """The parent's handle on a worker: synchronous invocations over loopback.

    Invocations wait for the worker here, one at a time, before their clock starts: a function's timeout counts
    from the start of its invocation, as in Lambda, not from when it queued behind others (which Lambda would
    have run in other execution environments). A burst of API requests is then slow, never timed out.
    """

    logical_id: str
    url: str
    timeout_seconds: int
    _turn: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def invoke(self, event: Any, request_id: str | None = None) -> Any:
        """The handler's result; FunctionError for a raised error, a timeout or an unreachable worker."""
        with self._turn:
            return self._invoke(event, request_id)

    def _invoke(self, event: Any, request_id: str | None) -> Any:
        address = urlsplit(self.url)
        connection = http.client.HTTPConnection(
            address.hostname or "127.0.0.1", address.port, timeout=self.timeout_seconds + TRANSPORT_MARGIN_SECONDS
        )
        body = json.dumps(event).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Remaining-Ms": str(self.timeout_seconds * 1000),
            "X-Request-Id": request_id or str(uuid.uuid4()),
        }
        try:
            connection.request("POST", "/invoke", body=body, headers=headers)
            response = connection.getresponse()
            payload = json.loads(response.read() or b"null")
        except TimeoutError:
            raise FunctionError(self.logical_id, "Sandbox.Timedout", "the invocation timed out") from None
        except (OSError, http.client.HTTPException, ValueError) as error:
            raise FunctionError(self.logical_id, "Runtime.Unavailable", str(error)) from None
        finally:
            connection.close()
        if response.status != 200:
            details = payload if isinstance(payload, dict) else {}
            raise FunctionError(
                self.logical_id, str(details.get("errorType", "Unhandled")), str(details.get("errorMessage", ""))
            )
        return payload


if __name__ == "__main__":
    main()
