"""Reconcile, every minute: overdue webhooks are polled, expired jobs end TIMED_OUT, lost messages resent."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from avatarjobs.call_deadline import outbound_calls_end_in_time
from avatarjobs.composition import reconciler
from avatarjobs.domain.job import utc_now
from avatarjobs.observability import logger, metrics, tracer


@outbound_calls_end_in_time
@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = reconciler().run(utc_now())
    metrics.add_metric(name="JobsTimedOut", unit="Count", value=report.timed_out)
    metrics.add_metric(name="JobsSubmissionUnconfirmed", unit="Count", value=report.unconfirmed)
    return {"polled": report.polled, "timed_out": report.timed_out, "requeued": report.requeued,
            "unconfirmed": report.unconfirmed, "errors": len(report.failed_to_handle)}  # fmt: skip
