"""A loopback REST API Gateway for the template's API: requests become Lambda proxy events, answers HTTP responses.

The routes are the `Api` events of the template's functions on one AWS::Serverless::Api (`JobsApi`), with its
stage as the first path segment and its `Auth.ApiKeyRequired` as each route's default; an explicit method of a
resource before its ANY, a literal segment before a parameter, as API Gateway picks them. The gateway's own
errors (unknown route, missing or wrong API key, body too large, a function that failed) are rendered from the
API's `GatewayResponses`, as API Gateway renders them, so clients see the same problem+json as deployed.

One local API key stands for the deployed usage plan's keys: its id becomes `requestContext.identity.apiKeyId`,
which the API uses as the owner of jobs. Throttling and quotas are not emulated.
"""

import base64
import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qsl, unquote, urlsplit

from devstack.cloudformation import ACCOUNT_ID, Stack
from devstack.lambda_worker import FunctionError

API_ID = "JobsApi"
LOCAL_API_KEY_ID = "local-key-id"
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
# A body over the limit is still read (up to this much) before the 413, so the client sees the answer rather than
# a connection reset in the middle of its upload.
MAX_DRAINED_BYTES = 64 * 1024 * 1024
# Headers the gateway sets itself; a function's values for them are not passed on.
_HOP_BY_HOP = {"connection", "content-length", "transfer-encoding", "keep-alive"}

Invoke = Callable[[str, dict[str, Any]], Any]


@dataclass(frozen=True)
class Route:
    function: str  # logical id
    method: str  # upper case, or ANY
    resource: str  # the template's path, e.g. /jobs/{job_id}
    api_key_required: bool
    pattern: re.Pattern[str]

    @property
    def static_segments(self) -> int:
        """More literal segments win over parameters, as in API Gateway (/jobs/mine before /jobs/{job_id})."""
        return sum(1 for segment in self.resource.split("/") if segment and not segment.startswith("{"))


def _path_pattern(resource: str) -> re.Pattern[str]:
    """`{name}` matches one segment, `{name+}` the rest of the path."""
    parts: list[str] = []
    for segment in resource.strip("/").split("/"):
        greedy = re.fullmatch(r"\{(\w+)\+\}", segment)
        single = re.fullmatch(r"\{(\w+)\}", segment)
        if greedy:
            parts.append(f"(?P<{greedy[1]}>.+)")
        elif single:
            parts.append(f"(?P<{single[1]}>[^/]+)")
        else:
            parts.append(re.escape(segment))
    return re.compile("/" + "/".join(parts) if parts != [""] else "/")


def routes_of(stack: Stack, api_id: str = API_ID) -> list[Route]:
    """Every `Api` event of every function on the API, most specific first."""
    api_key_default = bool(
        stack.resolve(stack.template["Resources"][api_id]["Properties"].get("Auth", {}).get("ApiKeyRequired", False))
    )
    routes: list[Route] = []
    for function in stack.functions().values():
        for event in function.events.values():
            properties = event.properties
            if event.type != "Api" or properties.get("RestApiId") != stack.refs[api_id]:
                continue
            required = properties.get("Auth", {}).get("ApiKeyRequired", api_key_default)
            method = str(properties["Method"]).upper()
            resource = str(properties["Path"])
            routes.append(Route(function.logical_id, method, resource, bool(required), _path_pattern(resource)))
    return sorted(routes, key=lambda route: (-route.static_segments, route.method == "ANY"))


@dataclass(frozen=True)
class GatewayAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class GatewayResponses:
    """The API's GatewayResponses: the answers API Gateway itself gives, by response type."""

    _DEFAULT_STATUS: ClassVar[dict[str, int]] = {
        "MISSING_AUTHENTICATION_TOKEN": 403,
        "INVALID_API_KEY": 403,
        "REQUEST_TOO_LARGE": 413,
        "INTEGRATION_TIMEOUT": 504,
    }
    _ERROR_TYPES: ClassVar[dict[str, str]] = {
        "MISSING_AUTHENTICATION_TOKEN": "MissingAuthenticationTokenException",
        "INVALID_API_KEY": "ForbiddenException",
        "REQUEST_TOO_LARGE": "RequestTooLargeException",
    }

    def __init__(self, stack: Stack, api_id: str = API_ID) -> None:
        properties = stack.template["Resources"][api_id]["Properties"]
        self._responses: dict[str, Any] = stack.resolve(properties.get("GatewayResponses", {}))

    def answer(self, response_type: str, message: str, status: int | None = None) -> GatewayAnswer:
        status = status or self._DEFAULT_STATUS.get(response_type, 500)
        default = "DEFAULT_4XX" if status < 500 else "DEFAULT_5XX"
        configured = self._responses.get(response_type) or self._responses.get(default) or {}
        status = int(configured.get("StatusCode", status))
        headers = [
            (name, str(value).strip("'"))
            for name, value in configured.get("ResponseParameters", {}).get("Headers", {}).items()
        ]
        template = configured.get("ResponseTemplates", {}).get("application/json")
        if template is None:
            template = '{"message":$context.error.messageString}'  # API Gateway's own default body
            headers = headers or [("Content-Type", "application/json")]
        body = template.replace("$context.error.messageString", json.dumps(message))
        headers.append(("x-amzn-ErrorType", self._ERROR_TYPES.get(response_type, "InternalServerErrorException")))
        return GatewayAnswer(status, headers, body.encode())


class BodyTooLarge(Exception):
    pass


def _multi_value(pairs: list[tuple[str, str]]) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    """API Gateway's pair of views: the last value of each name, and every value of each name."""
    if not pairs:
        return None, None
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        multi.setdefault(name, []).append(value)
    return {name: values[-1] for name, values in multi.items()}, multi


def _body_field(raw: bytes) -> tuple[str | None, bool]:
    """The event's body: text when it is UTF-8, else base64 (isBase64Encoded)."""
    if not raw:
        return None, False
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), True


@dataclass(frozen=True)
class IncomingRequest:
    method: str
    path: str  # without the stage
    query: str
    headers: Message
    body: bytes
    source_ip: str


class _GatewayServer(ThreadingHTTPServer):
    # socketserver's default backlog is 5: a burst of clients (200 orders at once) would see connections reset,
    # where API Gateway takes them all.
    request_queue_size = 1024


class ApiGateway:
    """A threaded loopback server in front of the functions (`invoke(logical_id, event)`)."""

    def __init__(self, stack: Stack, invoke: Invoke, api_key: str) -> None:
        self._routes = routes_of(stack)
        self._responses = GatewayResponses(stack)
        self._invoke = invoke
        self._api_key = api_key
        self._api_id = stack.refs[API_ID]
        self.stage = str(stack.resolve(stack.template["Resources"][API_ID]["Properties"].get("StageName", "v1")))
        self._server = _GatewayServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = False  # server_close() joins every request thread
        self.thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="api-gateway"
        )

    @property
    def url(self) -> str:
        """The stage's base URL, like https://<id>.execute-api.<region>.amazonaws.com/<stage>."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/{self.stage}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if self.thread.ident is not None:  # shutdown() would wait forever for a loop that never ran
            self._server.shutdown()
            self.thread.join()
        self._server.server_close()

    def handle(self, request: IncomingRequest) -> GatewayAnswer:
        match = self._route(request.method, request.path)
        if match is None:
            return self.missing_route()
        route, path_parameters = match
        key = request.headers.get("x-api-key")
        if route.api_key_required and key != self._api_key:
            return self._responses.answer("INVALID_API_KEY", "Forbidden")
        event = self._event(request, route, path_parameters, key if route.api_key_required else None)
        try:
            result = self._invoke(route.function, event)
        except FunctionError as error:
            if error.error_type == "Sandbox.Timedout":
                return self._responses.answer("INTEGRATION_TIMEOUT", "Endpoint request timed out")
            return self._responses.answer("DEFAULT_5XX", "Internal server error", status=502)
        return self._proxy_answer(result)

    def missing_route(self) -> GatewayAnswer:
        """What a REST API answers for a path or method it does not have (or a URL without the stage)."""
        return self._responses.answer("MISSING_AUTHENTICATION_TOKEN", "Missing Authentication Token")

    def too_large(self) -> GatewayAnswer:
        return self._responses.answer("REQUEST_TOO_LARGE", "Request Too Long")

    def _route(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        # A REST API routes /jobs/ as /jobs (the event keeps the path as sent): Powertools' REST resolver was made to
        # ignore the slash for that reason (aws-powertools/powertools-lambda-python#1552).
        resource_path = path[:-1] if len(path) > 1 and path.endswith("/") else path
        for route in self._routes:
            found = route.pattern.fullmatch(resource_path)
            if found and route.method in (method, "ANY"):
                return route, {name: unquote(value) for name, value in found.groupdict().items()}
        return None

    def _event(
        self, request: IncomingRequest, route: Route, path_parameters: dict[str, str], api_key: str | None
    ) -> dict[str, Any]:
        now = time.time()
        headers, multi_headers = _multi_value(list(request.headers.items()))
        query, multi_query = _multi_value(parse_qsl(request.query, keep_blank_values=True))
        body, is_base64 = _body_field(request.body)
        host = request.headers.get("Host", "127.0.0.1")
        request_id = str(uuid.uuid4())
        identity: dict[str, Any] = dict.fromkeys(
            (
                "cognitoIdentityPoolId",
                "cognitoIdentityId",
                "principalOrgId",
                "cognitoAuthenticationType",
                "userArn",
                "accountId",
                "caller",
                "accessKey",
                "cognitoAuthenticationProvider",
                "user",
            )
        )
        identity.update(
            apiKey=api_key,
            apiKeyId=LOCAL_API_KEY_ID if api_key else None,
            sourceIp=request.source_ip,
            userAgent=request.headers.get("User-Agent"),
        )
        return {
            "resource": route.resource,
            "path": request.path,
            "httpMethod": request.method,
            "headers": headers,
            "multiValueHeaders": multi_headers,
            "queryStringParameters": query,
            "multiValueQueryStringParameters": multi_query,
            "pathParameters": path_parameters or None,
            "stageVariables": None,
            "requestContext": {
                "resourceId": hashlib.sha256(route.resource.encode()).hexdigest()[:6],
                "resourcePath": route.resource,
                "httpMethod": request.method,
                "extendedRequestId": request_id.replace("-", "")[:16],
                "requestTime": datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "path": f"/{self.stage}{request.path}",
                "accountId": ACCOUNT_ID,
                "protocol": "HTTP/1.1",
                "stage": self.stage,
                "domainPrefix": host.split(".")[0],
                "requestTimeEpoch": int(now * 1000),
                "requestId": request_id,
                "identity": identity,
                "domainName": host,
                "deploymentId": "local",
                "apiId": self._api_id,
            },
            "body": body,
            "isBase64Encoded": is_base64,
        }

    def _proxy_answer(self, result: Any) -> GatewayAnswer:
        """The function's proxy response; anything else is API Gateway's 'Malformed Lambda proxy response'."""
        if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
            return self._responses.answer("DEFAULT_5XX", "Internal server error", status=502)
        headers: list[tuple[str, str]] = []
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers.extend((name, str(value)) for value in values)
        named = {name.lower() for name, _ in headers}
        single = (result.get("headers") or {}).items()
        headers.extend((name, str(value)) for name, value in single if name.lower() not in named)
        headers = [(name, value) for name, value in headers if name.lower() not in _HOP_BY_HOP]
        if not any(name.lower() == "content-type" for name, _ in headers):
            headers.append(("Content-Type", "application/json"))
        body = result.get("body") or ""
        raw = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
        return GatewayAnswer(result["statusCode"], headers, raw)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class GatewayHandler(BaseHTTPRequestHandler):
            # One request per connection: shutting down never waits on an idle keep-alive client.
            protocol_version = "HTTP/1.0"

            def _serve(self) -> None:
                address = urlsplit(self.path)
                stage_prefix = f"/{gateway.stage}"
                if address.path != stage_prefix and not address.path.startswith(stage_prefix + "/"):
                    self._send(gateway.missing_route())
                    return
                try:
                    body = self._read_body()
                except BodyTooLarge:
                    self._send(gateway.too_large())
                    return
                path = unquote(address.path[len(stage_prefix) :]) or "/"
                request = IncomingRequest(self.command, path, address.query, self.headers, body, self.client_address[0])
                self._send(gateway.handle(request))

            def _read_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    return self._read_chunked()
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    self._drain(length)
                    raise BodyTooLarge()
                return self.rfile.read(length)

            def _drain(self, length: int) -> None:
                left = min(length, MAX_DRAINED_BYTES)
                while left > 0 and (chunk := self.rfile.read(min(left, 1024 * 1024))):
                    left -= len(chunk)

            def _read_chunked(self) -> bytes:
                chunks: list[bytes] = []
                total = 0
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    total += size
                    if total > MAX_BODY_BYTES:
                        raise BodyTooLarge()
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()  # the CRLF after each chunk
                while self.rfile.readline().strip():  # trailers, up to the empty line
                    pass
                return b"".join(chunks)

            def _send(self, answer: GatewayAnswer) -> None:
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers:
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped waiting (its timeout); the invocation happened all the same

            # http.server calls do_<METHOD>; every method goes through the routes (MISSING_AUTHENTICATION_TOKEN for
            # one no route has).
            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve  # noqa: N815

            def __getattr__(self, name: str) -> Any:
                # Any other method (TRACE, QUERY, ...) too, where http.server would answer 501: API Gateway
                # answers a method the API does not have as it does an unknown path (MISSING_AUTHENTICATION_TOKEN).
                if name.startswith("do_"):
                    return self._serve
                raise AttributeError(name)

            def log_message(self, format: str, *args: object) -> None:  # the functions log each request
                pass

        return GatewayHandler
