"""What subscribers are told (DESIGN.md, "Events to subscribers"): one event per terminal transition of a job.

The same body goes to SNS and to EventBridge. `event_id` is `<job_id>:<status>`: a terminal status is entered at
most once per job, so the id is the same however often the transition is delivered, and subscribers drop
duplicates by it (delivery is at least once).
"""

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from avatarjobs.domain.job import Job, JobError, JobOutput, JobStatus
from avatarjobs.domain.ports import EventPublisher

EVENT_SOURCE = "avatarjobs"

EventType = Literal["job.succeeded", "job.failed", "job.canceled", "job.timed_out"]

_EVENT_TYPES: dict[JobStatus, EventType] = {
    JobStatus.SUCCEEDED: "job.succeeded",
    JobStatus.FAILED: "job.failed",
    JobStatus.CANCELED: "job.canceled",
    JobStatus.TIMED_OUT: "job.timed_out",
}

DETAIL_TYPES: dict[JobStatus, str] = {
    JobStatus.SUCCEEDED: "Avatar Video Job Succeeded",
    JobStatus.FAILED: "Avatar Video Job Failed",
    JobStatus.CANCELED: "Avatar Video Job Canceled",
    JobStatus.TIMED_OUT: "Avatar Video Job Timed Out",
}


class SubscriberEvent(BaseModel):
    """The body of the message on both channels; its JSON is exactly DESIGN.md's, every key always present."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    type: EventType
    job_id: str
    status: JobStatus
    provider: str
    model: str
    owner: str
    metadata: dict[str, Any] | None
    output: JobOutput | None
    error: JobError | None
    created_at: str
    finished_at: str

    @property
    def detail_type(self) -> str:
        """EventBridge's detail-type for this event (not part of the body)."""
        return DETAIL_TYPES[self.status]

    def body(self) -> str:
        return self.model_dump_json()


def subscriber_event(old: Job | None, new: Job) -> SubscriberEvent | None:
    """The event of a change from `old` (None: the job is new) to `new`; None unless it entered a terminal status.

    Changes within a status (an output or bookkeeping update after the job finished, a second write of the
    same status) and moves between non-terminal statuses tell subscribers nothing.
    """
    if not new.status.is_terminal or (old is not None and old.status == new.status):
        return None
    return SubscriberEvent(
        event_id=f"{new.job_id}:{new.status}",
        type=_EVENT_TYPES[new.status],
        job_id=new.job_id,
        status=new.status,
        provider=new.provider,
        model=new.model,
        owner=new.owner,
        metadata=new.metadata,
        output=new.output,
        error=new.error,
        created_at=new.created_at,
        finished_at=new.timeline.get(new.status) or new.status_since,
    )


class JobNotifier:
    """Tells subscribers of a job's terminal transition, given its item before and after (as the table stores it)."""

    def __init__(self, decode: Callable[[dict[str, Any]], Job], publisher: EventPublisher) -> None:
        self._decode = decode
        self._publisher = publisher

    def notify(self, old_item: dict[str, Any] | None, new_item: dict[str, Any]) -> SubscriberEvent | None:
        """The event published, or None when the change tells subscribers nothing."""
        old = self._decode(old_item) if old_item is not None else None
        event = subscriber_event(old, self._decode(new_item))
        if event is not None:
            self._publisher.publish(event)
        return event
