"""The notifier: tells subscribers (SNS and EventBridge) of every terminal transition on the Jobs table's stream."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from avatarjobs.composition import job_notifier
from avatarjobs.observability import logger, metrics, tracer
from avatarjobs.partial_batch import PartialBatchResponse, process_stream_batch

# A record that could not be published is reported by its sequence number: the stream resumes from it (with
# BisectBatchOnFunctionError, the batch is split there). When every record failed (the topic or the bus is
# unreachable), the invocation fails instead, so NotifyFunctionErrorsAlarm sees the outage and Lambda bisects
# the batch; records that keep failing end in NotifyFailureQueue.


@tracer.capture_method
def notify_record(record: dict[str, Any]) -> None:
    # The raw AttributeValue images, decoded as the repository decodes its items. REMOVE (a TTL delete) has no
    # new image: nothing to tell.
    images: dict[str, Any] = record["dynamodb"]
    if "NewImage" not in images:
        return
    event = job_notifier().notify(images.get("OldImage"), images["NewImage"])
    if event is None:
        return
    logger.info("job event published", extra={"event_id": event.event_id, "type": event.type})
    metrics.add_metric(name="JobEventsPublished", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialBatchResponse:
    return process_stream_batch(event, notify_record)
