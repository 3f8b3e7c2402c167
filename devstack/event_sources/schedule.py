"""A schedule: an EventBridge "Scheduled Event" every interval, invoked as Lambda invokes asynchronously."""

import logging
import uuid
from datetime import UTC, datetime

from devstack.cloudformation import ACCOUNT_ID, REGION, FunctionSpec
from devstack.event_sources.poller import DEFAULT_ASYNC_RETRIES, Invoke, Poller
from devstack.lambda_worker import FunctionError

log = logging.getLogger(__name__)


def rate_seconds(expression: str) -> float | None:
    """`rate(5 minutes)` in seconds; None for a cron expression."""
    if not expression.startswith("rate(") or not expression.endswith(")"):
        return None
    amount, unit = expression[5:-1].split()
    seconds = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}[unit]
    return int(amount) * seconds


class ScheduleSource(Poller):
    def __init__(self, invoke: Invoke, function: FunctionSpec, rule_arn: str, interval_seconds: float) -> None:
        super().__init__(f"schedule:{function.logical_id}")
        self._invoke = invoke
        self._function = function
        self._rule_arn = rule_arn
        self.interval_seconds = interval_seconds
        self._retries = int(function.event_invoke_config.get("MaximumRetryAttempts", DEFAULT_ASYNC_RETRIES))

    def poll(self) -> None:
        if self.stopping.wait(self.interval_seconds):
            return
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": ACCOUNT_ID,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION,
            "resources": [self._rule_arn],
            "detail": {},
        }
        for attempt in range(self._retries + 1):
            try:
                self._invoke(self._function.logical_id, event)
                return
            except FunctionError as error:
                log.warning("%s: tick failed (attempt %d): %s", self.name, attempt + 1, error)
