"""When to repeat a request the API asked us to slow down on (429) or could not serve for now (503)."""

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

RETRYABLE_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    first_delay: float = 1.0  # doubled on each attempt when the answer has no Retry-After
    max_delay: float = 30.0  # a longer Retry-After (a spent daily quota) is not worth sitting through

    def delay_before_retry(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None to give up with this response."""
        if response.status_code not in RETRYABLE_STATUSES or attempt >= self.max_attempts:
            return None
        asked = retry_after_seconds(response.headers.get("retry-after"))
        if asked is None:
            return min(self.first_delay * 2.0 ** (attempt - 1), self.max_delay)
        return asked if asked <= self.max_delay else None


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After is either delay-seconds or an HTTP date (RFC 9110, 10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # RFC 850 and asctime dates carry no zone; HTTP dates are in GMT
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())
