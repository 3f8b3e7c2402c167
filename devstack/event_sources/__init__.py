"""Lambda's event sources against moto: what invokes the template's functions besides the API.

`from_template.event_sources_of` makes one poller thread per event of the template:
- `SQS` (sqs.py): batches of up to BatchSize (within MaximumBatchingWindowInSeconds), records shaped as Lambda
  shapes them; successful messages deleted; with ReportBatchItemFailures the reported ones are left alone, and
  after an invocation error all are: they come back after their visibility timeout (or the backoff the function
  set), and moto moves them to the dead-letter queue after maxReceiveCount receives. One batch at a time per
  queue, so ScalingConfig.MaximumConcurrency (at least 2) always holds. FilterCriteria as for streams.
- `DynamoDB` (dynamodb_stream.py, the Jobs table's stream): records from StartingPosition, the event's
  FilterCriteria applied before batching, failed records (batchItemFailures by SequenceNumber, or an invocation
  error, with BisectBatchOnFunctionError) retried up to MaximumRetryAttempts, then described on the on-failure
  destination queue. MaximumRecordAgeInSeconds is not applied (the local stack does not run for a day).
- `Schedule` (schedule.py): an EventBridge "Scheduled Event" every `schedule_seconds`.
- `EventBridgeRule` (eventbridge_rule.py): the rule (made by provision, with the template's pattern, on its bus)
  gets an SQS queue as its target, so moto does the matching (S3 "Object Created" on the default bus included);
  the queue's events are invoked asynchronously: retried per EventInvokeConfig.MaximumRetryAttempts (the
  queue's redelivery stands for Lambda's retry delays, shortened), then sent to its OnFailure destination.
FilterCriteria are matched by patterns.py (EventBridge's pattern language, the exact-value subset); what the
pollers share (the thread loop, Lambda's reading of batchItemFailures) is in poller.py.
"""


class UnsupportedTemplate(Exception):
    """A trigger or filter the local stack does not emulate: refused loudly rather than run differently."""
