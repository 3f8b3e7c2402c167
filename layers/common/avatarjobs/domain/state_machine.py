"""The job state machine of DESIGN.md as one table: (current status, event) -> next status.

The table is the only gate: the jobs repository's `transition(job, event)` takes the next status from it, and
nothing else writes a status (tests/unit/test_status_writes.py fails if something does). A pair that is not in
the table is not a transition: callers treat it as a duplicate or a lost race.
"""

from enum import StrEnum

from avatarjobs.domain.errors import InvalidTransition
from avatarjobs.domain.job import TERMINAL_STATUSES, JobStatus


class JobEvent(StrEnum):
    DISPATCHED = "DISPATCHED"  # the provider accepted the job
    PROVIDER_RUNNING = "PROVIDER_RUNNING"  # the provider says it is working on it
    PROVIDER_COMPLETED = "PROVIDER_COMPLETED"  # a result is ready to copy
    COPIED = "COPIED"  # the video is in our bucket
    FAILED = "FAILED"  # the provider refused or failed it, or the copy failed for good
    CANCEL = "CANCEL"  # the owner asked to cancel
    CANCEL_CONFIRMED = "CANCEL_CONFIRMED"  # the provider confirmed the cancellation
    DEADLINE_PASSED = "DEADLINE_PASSED"


S = JobStatus
E = JobEvent
_NON_TERMINAL = [status for status in JobStatus if status not in TERMINAL_STATUSES]

TRANSITIONS: dict[tuple[JobStatus, JobEvent], JobStatus] = {
    (S.ACCEPTED, E.DISPATCHED): S.SUBMITTED,
    (S.SUBMITTED, E.PROVIDER_RUNNING): S.RUNNING,
    (S.SUBMITTED, E.PROVIDER_COMPLETED): S.FINALIZING,
    (S.RUNNING, E.PROVIDER_COMPLETED): S.FINALIZING,
    (S.FINALIZING, E.COPIED): S.SUCCEEDED,
    # ACCEPTED -> FAILED: the provider refused the submission for good, or the job could not be queued.
    (S.ACCEPTED, E.FAILED): S.FAILED,
    (S.SUBMITTED, E.FAILED): S.FAILED,
    (S.RUNNING, E.FAILED): S.FAILED,
    (S.FINALIZING, E.FAILED): S.FAILED,
    (S.ACCEPTED, E.CANCEL): S.CANCELED,
    (S.SUBMITTED, E.CANCEL): S.CANCEL_REQUESTED,
    (S.RUNNING, E.CANCEL): S.CANCEL_REQUESTED,
    (S.CANCEL_REQUESTED, E.CANCEL_CONFIRMED): S.CANCELED,
    # The provider finished before the cancellation reached it: the video is paid for, so it is kept.
    (S.CANCEL_REQUESTED, E.PROVIDER_COMPLETED): S.FINALIZING,
    (S.CANCEL_REQUESTED, E.FAILED): S.FAILED,
    # Past its deadline a job times out, except while FINALIZING: its video is made and paid for, and finalize
    # (with its dead-letter queue) ends it within a bounded time, SUCCEEDED or FAILED (docs/decisions.md).
    **{(status, E.DEADLINE_PASSED): S.TIMED_OUT for status in _NON_TERMINAL if status != S.FINALIZING},
}


def next_status(current: JobStatus, event: JobEvent) -> JobStatus:
    try:
        return TRANSITIONS[(current, event)]
    except KeyError:
        raise InvalidTransition(current, event) from None


def sources(event: JobEvent) -> frozenset[JobStatus]:
    """The statuses `event` moves a job on from."""
    return frozenset(status for (status, on) in TRANSITIONS if on == event)
