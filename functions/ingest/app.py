"""Intake: manifests dropped in incoming/ of the inputs bucket and "Avatar Video Requested" bus events become jobs.

A manifest arrives as an S3 "Object Created" event on the default bus (how template.yaml wires it) or as an S3
event notification (Records[]). Notifications have no partial-failure report: each record is handled on its
own, a bad manifest is answered with its error file, and the invocation fails (and is retried) only when AWS
itself failed us. Jobs are created idempotently, so whatever a retry sees again makes no second job.
"""

from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, S3Event
from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventBridgeNotificationEvent, S3EventRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from avatarjobs.composition import intake
from avatarjobs.domain.intake import REQUESTED_DETAIL_TYPE, IntakeResult, Outcome
from avatarjobs.observability import logger, metrics, tracer

OBJECT_CREATED = ("aws.s3", "Object Created")
_METRICS = {Outcome.CREATED: "JobsAccepted", Outcome.REJECTED: "IntakeRequestsRejected"}


class IntakeIncomplete(RuntimeError):
    """Some manifests of the notification could not be processed for a reason that may pass: retry them."""


def _count(result: IntakeResult) -> None:
    name = _METRICS.get(result.outcome)
    if name is not None:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


def _ingest_manifest(bucket: str, key: str, version_id: str | None, etag: str) -> dict[str, Any]:
    versioned = bool(version_id) and version_id != "null"  # "null": written while versioning was off
    version = version_id if versioned and version_id else etag
    result = intake().from_manifest(bucket, key, version, versioned=versioned)
    _count(result)
    return {"manifest": f"s3://{bucket}/{key}", **result.as_dict()}


@tracer.capture_method
def ingest_manifest(record: S3EventRecord) -> dict[str, Any]:
    bucket = record.s3.bucket.name
    s3_object = record.s3.get_object
    key = unquote_plus(s3_object.key)  # notifications URL-encode keys, with + for a space
    if not record.event_name.startswith("ObjectCreated:"):
        reason = f"{record.event_name} is not a creation"
        return {"manifest": f"s3://{bucket}/{key}", "outcome": Outcome.IGNORED.value, "reason": reason}
    logger.set_correlation_id((record.get("responseElements") or {}).get("x-amz-request-id"))
    return _ingest_manifest(bucket, key, s3_object.version_id, s3_object.etag)


@tracer.capture_method
def ingest_object_created(event: S3EventBridgeNotificationEvent) -> dict[str, Any]:
    logger.set_correlation_id(event.get_id)
    detail = event.detail
    s3_object = detail.object  # its `key` is decoded (the event carries it URL-encoded, + for a space)
    result = _ingest_manifest(detail.bucket.name, s3_object.key, s3_object.get("version-id"), s3_object.etag)
    return {"results": [result]}


def ingest_manifests(event: S3Event) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    failures: list[Exception] = []
    for record in event.records:
        try:
            results.append(ingest_manifest(record))
        except Exception as error:  # the others still go ahead; this one comes back with the retry
            logger.exception("manifest not processed, will be retried", extra={"key": record.s3.get_object.key})
            failures.append(error)
    if failures:
        raise IntakeIncomplete(f"{len(failures)} of {len(failures) + len(results)} manifests failed") from failures[0]
    return {"results": results}


@tracer.capture_method
def ingest_request(event: EventBridgeEvent) -> dict[str, Any]:
    logger.set_correlation_id(event.get_id)
    result = intake().from_event(event.detail, event.get_id, event.source)
    _count(result)
    return {"results": [{"event_id": event.get_id, **result.as_dict()}]}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "Records" in event:
        return ingest_manifests(S3Event(event))
    if (event.get("source"), event.get("detail-type")) == OBJECT_CREATED:
        return ingest_object_created(S3EventBridgeNotificationEvent(event))
    if event.get("detail-type") == REQUESTED_DETAIL_TYPE:
        return ingest_request(EventBridgeEvent(event))
    # S3 sends s3:TestEvent (no Records) when the notification is set up; nothing else is expected here.
    logger.info("event ignored", extra={"detail_type": event.get("detail-type"), "s3_event": event.get("Event")})
    return {"results": []}
