"""The state machine over every (state, event) pair, against DESIGN.md's diagram written out independently."""

import itertools

import pytest

from avatarjobs.domain.errors import InvalidTransition
from avatarjobs.domain.job import TERMINAL_STATUSES, JobStatus
from avatarjobs.domain.state_machine import JobEvent, next_status, sources

S = JobStatus
E = JobEvent

# DESIGN.md, "Job model and state machine", one line per arrow; plus ACCEPTED -> FAILED (the provider refused
# the submission for good, or the job could not be queued) and CANCEL_REQUESTED -> FINALIZING (the provider
# finished before the cancellation reached it: the paid-for video is still copied); less FINALIZING -> TIMED_OUT
# (a made and paid-for video is copied whatever the deadline; finalize and its dead-letter queue end the job).
EXPECTED = {
    (S.ACCEPTED, E.DISPATCHED): S.SUBMITTED,
    (S.SUBMITTED, E.PROVIDER_RUNNING): S.RUNNING,
    (S.SUBMITTED, E.PROVIDER_COMPLETED): S.FINALIZING,
    (S.RUNNING, E.PROVIDER_COMPLETED): S.FINALIZING,
    (S.FINALIZING, E.COPIED): S.SUCCEEDED,
    (S.ACCEPTED, E.FAILED): S.FAILED,
    (S.SUBMITTED, E.FAILED): S.FAILED,
    (S.RUNNING, E.FAILED): S.FAILED,
    (S.FINALIZING, E.FAILED): S.FAILED,
    (S.ACCEPTED, E.CANCEL): S.CANCELED,
    (S.SUBMITTED, E.CANCEL): S.CANCEL_REQUESTED,
    (S.RUNNING, E.CANCEL): S.CANCEL_REQUESTED,
    (S.CANCEL_REQUESTED, E.CANCEL_CONFIRMED): S.CANCELED,
    (S.CANCEL_REQUESTED, E.PROVIDER_COMPLETED): S.FINALIZING,
    (S.CANCEL_REQUESTED, E.FAILED): S.FAILED,
    (S.ACCEPTED, E.DEADLINE_PASSED): S.TIMED_OUT,
    (S.SUBMITTED, E.DEADLINE_PASSED): S.TIMED_OUT,
    (S.RUNNING, E.DEADLINE_PASSED): S.TIMED_OUT,
    (S.CANCEL_REQUESTED, E.DEADLINE_PASSED): S.TIMED_OUT,
}
ALL_PAIRS = list(itertools.product(JobStatus, JobEvent))


@pytest.mark.parametrize(("status", "event"), ALL_PAIRS, ids=[f"{s}-{e}" for s, e in ALL_PAIRS])
def test_every_pair_is_either_the_designed_transition_or_refused(status: JobStatus, event: JobEvent) -> None:
    if (status, event) in EXPECTED:
        assert next_status(status, event) == EXPECTED[(status, event)]
    else:
        with pytest.raises(InvalidTransition) as refused:
            next_status(status, event)
        assert str(event) in str(refused.value)
        assert str(status) in str(refused.value)


def test_the_pair_space_is_complete() -> None:
    assert len(ALL_PAIRS) == len(JobStatus) * len(JobEvent) == 72


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATUSES))
def test_a_terminal_state_never_moves(terminal: JobStatus) -> None:
    for event in JobEvent:
        with pytest.raises(InvalidTransition):
            next_status(terminal, event)


def test_every_non_terminal_state_can_reach_a_terminal_state() -> None:
    reachable = {status: {status} for status in JobStatus}
    changed = True
    while changed:
        changed = False
        for (source, _), target in EXPECTED.items():
            before = len(reachable[source])
            reachable[source] |= reachable[target]
            changed |= len(reachable[source]) != before
    for status in JobStatus:
        assert reachable[status] & TERMINAL_STATUSES, status


def test_the_completion_written_without_a_read_applies_exactly_where_the_table_says() -> None:
    """fal's webhook moves a job it did not read: its condition lists the statuses, so they must be the table's."""
    completable = sources(E.PROVIDER_COMPLETED)
    assert completable == {S.SUBMITTED, S.RUNNING, S.CANCEL_REQUESTED}
    for status in JobStatus:
        if status in completable:
            assert next_status(status, E.PROVIDER_COMPLETED) == S.FINALIZING
        else:
            with pytest.raises(InvalidTransition):
                next_status(status, E.PROVIDER_COMPLETED)


def test_a_finalizing_job_is_not_ended_by_its_deadline() -> None:
    """Its video is made and paid for: the copy ends it, SUCCEEDED or FAILED; the reconciler asks the table."""
    assert S.FINALIZING not in sources(E.DEADLINE_PASSED)
    with pytest.raises(InvalidTransition):
        next_status(S.FINALIZING, E.DEADLINE_PASSED)
