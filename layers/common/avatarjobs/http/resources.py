"""The methods each resource serves: 405 with Allow for the others, OPTIONS answered, no path but a resource's own.

API Gateway sends the function every method of the resources it serves (template.yaml's ANY and OPTIONS events),
with the resource's template path (`/jobs/{job_id}`) in the event; Powertools lists no resolver's routes, so the
resolver records them as they are declared.
"""

import re
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from avatarjobs.http.problems import problem

NextMiddleware = Callable[[APIGatewayRestResolver], Response[Any]]


def _template_path(rule: str) -> str:
    """A resolver rule as API Gateway names the resource: `/jobs/<job_id>` is `/jobs/{job_id}`."""
    return re.sub(r"<(\w+)>", r"{\1}", rule.rstrip("/") or "/")


class ResourceResolver(APIGatewayRestResolver):
    """A REST resolver that answers the methods its resources do not serve, as HTTP says, rather than 404."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self._served: dict[str, set[str]] = {}
        self.use([_methods_of_the_resource])

    def route(self, rule: str, method: str | list[str] | tuple[str], *args: Any, **kwargs: Any) -> Any:
        methods = [method] if isinstance(method, str) else list(method)
        self._served.setdefault(_template_path(rule), set()).update(name.upper() for name in methods)
        return super().route(rule, method, *args, **kwargs)

    def served_methods(self, resource: str) -> frozenset[str]:
        """The methods the resolver has routes for on a resource (none for a resource it does not have)."""
        return frozenset(self._served.get(resource, ()))


def _methods_of_the_resource(app: ResourceResolver, next_middleware: NextMiddleware) -> Response[Any]:
    event = app.current_event
    # API Gateway passes /jobs/ to the /jobs resource, and Powertools' REST resolver would serve it: it is not
    # the resource's URL, so it is the 404 an unknown route is.
    if event.path != "/" and event.path.endswith("/"):
        raise NotFoundError()
    served = app.served_methods(event.resource)
    method = event.http_method.upper()
    if not served or method in served:
        return next_middleware(app)  # a route of the resolver, or a resource it does not have (404)
    headers = {"Allow": ", ".join(sorted({*served, "OPTIONS"}))}
    if method == "OPTIONS":
        return Response(status_code=HTTPStatus.NO_CONTENT, content_type=None, body="", headers=headers)
    detail = f"{event.resource} does not take {method}: Allow lists the methods it takes"
    return problem(HTTPStatus.METHOD_NOT_ALLOWED, "method_not_allowed", detail, headers=headers)
