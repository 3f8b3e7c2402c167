"""The dispatcher: submits each accepted job on the dispatch queue to its provider (partial batch failures)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from avatarjobs.adapters.job_queues import message_of, retry_later
from avatarjobs.call_deadline import outbound_calls_end_in_time
from avatarjobs.composition import dispatch_redelivery, dispatcher
from avatarjobs.domain.messages import JobMessage
from avatarjobs.domain.retries import NoTimeToStart, RetryLater
from avatarjobs.observability import logger, metrics, tracer
from avatarjobs.partial_batch import PartialBatchResponse, process_sqs_batch

# A batch whose every record must be retried is reported like any partial failure: an invocation error
# would count against the Errors alarm and bring the messages back without the backoff set per record.


class BatchProgress:
    """Whether a record of this invocation's batch has had its try: after one has, a record left without time
    was left only because the batch ran long, so it goes back as a new message, spending none of its receives
    (docs/decisions.md, "Dispatch: a record the batch had no time for goes back as a new message")."""

    def __init__(self) -> None:
        self.tried_one = False


@tracer.capture_method
def dispatch_record(record: dict[str, Any], lambda_context: LambdaContext, batch: BatchProgress) -> None:
    message = message_of(record, JobMessage)
    if message is None:
        return
    tried = True
    try:
        dispatcher().dispatch(message.job_id, seconds_left=lambda_context.get_remaining_time_in_millis() / 1000)
    except NoTimeToStart as untried:
        tried = False
        if batch.tried_one:
            dispatch_redelivery().send_afresh(record)
            logger.info("no time left in this batch; sent again as a new message", extra={"job_id": message.job_id})
            return
        retry_later(record, untried, dispatch_redelivery())  # the invocation itself began without the time
        raise
    except RetryLater as retry:
        retry_later(record, retry, dispatch_redelivery())
        raise
    finally:
        batch.tried_one = batch.tried_one or tried


@outbound_calls_end_in_time
@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialBatchResponse:
    batch = BatchProgress()
    return process_sqs_batch(event, lambda record: dispatch_record(record, context, batch))
