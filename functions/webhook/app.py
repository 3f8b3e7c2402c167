"""Provider webhooks: POST /webhooks/{provider}/{job_id}, authenticated by signature or token, not API key."""

import base64
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from avatarjobs.call_deadline import outbound_calls_end_in_time
from avatarjobs.composition import webhook_receiver
from avatarjobs.domain import limits
from avatarjobs.http.problems import UnsupportedMediaType, refuse_bodies_over, register_problem_handlers
from avatarjobs.observability import logger, metrics, tracer

app = APIGatewayRestResolver()
register_problem_handlers(app)


def _raw_body() -> bytes:
    # The signature covers the exact bytes the provider sent: never a re-serialized JSON.
    event = app.current_event
    body = event.body or ""
    return base64.b64decode(body) if event.is_base64_encoded else body.encode()


@app.post("/webhooks/<provider>/<job_id>")
def receive_webhook(provider: str, job_id: str) -> Response[Any]:
    content_type = (app.current_event.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise UnsupportedMediaType()
    outcome = webhook_receiver().receive(provider, job_id, dict(app.current_event.headers), _raw_body())
    metrics.add_metric(name=f"Webhook{outcome.value.title()}", unit="Count", value=1)
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body={"status": outcome.value})


@refuse_bodies_over(limits.WEBHOOK_BODY_MAX_BYTES)
@outbound_calls_end_in_time
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
