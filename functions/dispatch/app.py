"""The dispatcher: submits each accepted job on the dispatch queue to its provider (partial batch failures)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from avatarjobs.adapters.job_queues import retry_later
from avatarjobs.composition import dispatch_redelivery, dispatcher
from avatarjobs.domain.messages import JobMessage
from avatarjobs.domain.retries import RetryLater
from avatarjobs.observability import logger, metrics, tracer
from avatarjobs.partial_batch import PartialBatchResponse, process_sqs_batch

# A batch whose every record must be retried is reported like any partial failure: an invocation error
# would count against the Errors alarm and bring the messages back without the backoff set per record.


@tracer.capture_method
def dispatch_record(record: dict[str, Any], lambda_context: LambdaContext) -> None:
    message = JobMessage.model_validate_json(record["body"])
    try:
        dispatcher().dispatch(message.job_id, seconds_left=lambda_context.get_remaining_time_in_millis() / 1000)
    except RetryLater as retry:
        retry_later(record, retry, dispatch_redelivery())
        raise


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialBatchResponse:
    return process_sqs_batch(event, lambda record: dispatch_record(record, context))
