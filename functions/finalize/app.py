"""Finalize: copies each finished job's video from the provider into our bucket (one message per video)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from avatarjobs.adapters.job_queues import message_of, retry_later
from avatarjobs.call_deadline import outbound_calls_end_in_time
from avatarjobs.composition import finalize_redelivery, finalizer
from avatarjobs.domain.messages import FinalizeMessage
from avatarjobs.domain.retries import RetryLater
from avatarjobs.observability import logger, metrics, tracer
from avatarjobs.partial_batch import PartialBatchResponse, process_sqs_batch

# A failed copy comes back after the visibility timeout; after maxReceiveCount the dead-letter consumer
# fails the job. Reported per record, never as an invocation error (see functions/dispatch/app.py).


@tracer.capture_method
def finalize_record(record: dict[str, Any]) -> None:
    message = message_of(record, FinalizeMessage)
    if message is None:
        return
    try:
        finalizer().finalize(message)
    except RetryLater as retry:
        retry_later(record, retry, finalize_redelivery())
        raise


@outbound_calls_end_in_time
@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialBatchResponse:
    return process_sqs_batch(event, finalize_record)
