"""Fails the job of every message that landed in a dead-letter queue (dispatch or finalize), with the reason."""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from avatarjobs.composition import dead_letters
from avatarjobs.domain.messages import JobMessage
from avatarjobs.observability import logger, metrics, tracer

# A batch whose every record must be retried is reported like any partial failure: an invocation error
# would count against the Errors alarm and bring the messages back without the backoff set per record.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def fail_job(record: SQSRecord) -> None:
    dead_letters().fail_stuck_job(JobMessage.model_validate_json(record.body).job_id)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=fail_job, processor=processor, context=context)
