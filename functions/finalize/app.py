"""Finalize: copies each finished job's video from the provider into our bucket (one message per video)."""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from avatarjobs.adapters.job_queues import retry_later
from avatarjobs.composition import finalize_redelivery, finalizer
from avatarjobs.domain.messages import FinalizeMessage
from avatarjobs.domain.retries import RetryLater
from avatarjobs.observability import logger, metrics, tracer

# A failed copy comes back after the visibility timeout; after maxReceiveCount the dead-letter consumer
# fails the job. Reported per record, never as an invocation error (see functions/dispatch/app.py).
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@tracer.capture_method
def finalize_record(record: SQSRecord) -> None:
    try:
        finalizer().finalize(FinalizeMessage.model_validate_json(record.body))
    except RetryLater as retry:
        retry_later(record, retry, finalize_redelivery())
        raise


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=finalize_record, processor=processor, context=context)
