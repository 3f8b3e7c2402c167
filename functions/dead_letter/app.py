"""Fails the job of every message that landed in a dead-letter queue (dispatch or finalize), with the reason."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from avatarjobs.adapters.job_queues import message_of
from avatarjobs.composition import dead_letters
from avatarjobs.domain.messages import JobMessage
from avatarjobs.observability import logger, metrics, tracer
from avatarjobs.partial_batch import PartialBatchResponse, process_sqs_batch

# A batch whose every record must be retried is reported like any partial failure: an invocation error
# would count against the Errors alarm and bring the messages back without the backoff set per record.


def fail_job(record: dict[str, Any]) -> None:
    message = message_of(record, JobMessage)
    if message is not None:
        dead_letters().fail_stuck_job(message.job_id)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialBatchResponse:
    return process_sqs_batch(event, fail_job)
