"""The jobs repository's contract: conditional transitions through the state machine, and races. Every test runs
against the DynamoDB repository under moto (on the tables of template.yaml) and against the in-memory fake the
domain tests use (tests/support/fakes/), so the fake cannot drift from the table's semantics."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from ulid import ULID

from avatarjobs.adapters.jobs_table import DynamoJobsRepository
from avatarjobs.domain.errors import InvalidTransition, TransitionConflict
from avatarjobs.domain.ids import new_job_id
from avatarjobs.domain.job import Job, JobOutput, JobStatus, isoformat
from avatarjobs.domain.ports import (
    IdempotencyKeyTaken,
    IdempotencyRecord,
    JobAlreadyExists,
    JobFilters,
    JobsRepository,
)
from avatarjobs.domain.state_machine import JobEvent
from tests.support import moto_clients
from tests.support.fakes.jobs_repository import InMemoryJobsRepository


def build_repository(request: pytest.FixtureRequest, **options: int) -> JobsRepository:
    if request.param == "in_memory":
        return InMemoryJobsRepository(**options)
    stack = request.getfixturevalue("stack")
    client = moto_clients.dynamodb()
    return DynamoJobsRepository(client, stack.refs["JobsTable"], stack.refs["IdempotencyTable"], **options)


@pytest.fixture(params=["dynamodb", "in_memory"])
def repository(request: pytest.FixtureRequest) -> JobsRepository:
    return build_repository(request)


SEARCH_BUDGET = 6


@pytest.fixture(params=["dynamodb", "in_memory"])
def small_budget_repository(request: pytest.FixtureRequest) -> JobsRepository:
    """A repository whose filtered listings read at most SEARCH_BUDGET jobs per call."""
    return build_repository(request, max_evaluated=SEARCH_BUDGET)


def make_job(owner: str = "owner-1", **overrides: object) -> Job:
    job = Job.new(
        job_id=new_job_id(),
        owner=owner,
        provider="fal",
        model="fal-ai/ai-avatar",
        request={"image_url": "https://example.com/a.png", "prompt": "hi", "seed": 7},
        metadata={"order": 1, "price": 2.5, "tags": ["a", None]},
        idempotency_key=None,
        deadline_seconds=None,
        now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    return job.model_copy(update=overrides)


def test_a_job_round_trips_through_the_table(repository: JobsRepository) -> None:
    job = make_job()
    repository.create(job, None)
    assert repository.get(job.job_id) == job


def test_creating_the_same_job_id_twice_is_refused(repository: JobsRepository) -> None:
    job = make_job()
    repository.create(job, None)
    with pytest.raises(JobAlreadyExists):
        repository.create(job, None)
    with pytest.raises(JobAlreadyExists):  # with an idempotency record too, which is not written then
        repository.create(job, IdempotencyRecord("owner-1", "key-9", job.job_id, "print", expiration=2**40))
    assert repository.get_idempotency_record("owner-1", "key-9") is None


def test_an_idempotency_key_can_be_stored_once(repository: JobsRepository) -> None:
    first, second = make_job(), make_job()
    record = IdempotencyRecord("owner-1", "key-1", first.job_id, "print", expiration=2**40)
    repository.create(first, record)
    with pytest.raises(IdempotencyKeyTaken):
        repository.create(second, IdempotencyRecord("owner-1", "key-1", second.job_id, "print", expiration=2**40))
    assert repository.get(second.job_id) is None  # the transaction wrote neither item
    assert repository.get_idempotency_record("owner-1", "key-1") == record
    assert repository.get_idempotency_record("owner-2", "key-1") is None


def test_an_expired_idempotency_record_counts_as_absent(repository: JobsRepository) -> None:
    old, new = make_job(), make_job()
    repository.create(old, IdempotencyRecord("owner-1", "key-1", old.job_id, "print", expiration=1))
    assert repository.get_idempotency_record("owner-1", "key-1") is None
    repository.create(new, IdempotencyRecord("owner-1", "key-1", new.job_id, "other", expiration=2**40))
    stored = repository.get_idempotency_record("owner-1", "key-1")
    assert stored is not None
    assert stored.job_id == new.job_id


def test_a_transition_is_one_conditional_update(repository: JobsRepository) -> None:
    job = make_job()
    repository.create(job, None)
    now = isoformat(datetime(2026, 1, 2, 3, 5, 0, tzinfo=UTC))
    submitted = repository.transition(
        job, JobEvent.DISPATCHED, now=now, changes={"provider_request_id": "req-1", "attempts": 1}
    )
    assert submitted.status == JobStatus.SUBMITTED
    assert submitted.version == 2
    assert submitted.provider_request_id == "req-1"
    assert submitted.attempts == 1
    assert submitted.status_since == submitted.updated_at == now
    assert submitted.timeline == {"ACCEPTED": job.created_at, "SUBMITTED": now}
    assert repository.get(job.job_id) == submitted


def test_a_stale_snapshot_cannot_transition(repository: JobsRepository) -> None:
    job = make_job()
    repository.create(job, None)
    repository.transition(job, JobEvent.DISPATCHED, now=job.created_at)
    with pytest.raises(TransitionConflict) as refused:
        repository.transition(job, JobEvent.CANCEL, now=job.created_at)  # read before the first write
    stored = repository.get(job.job_id)
    assert stored is not None
    assert stored.status == JobStatus.SUBMITTED
    # The refused update returns the job as it found it (ReturnValuesOnConditionCheckFailure=ALL_OLD): no re-read.
    assert refused.value.current == stored


def test_a_refused_update_of_a_job_that_does_not_exist_says_so_and_makes_no_item(
    repository: JobsRepository,
) -> None:
    ghost = make_job()
    with pytest.raises(TransitionConflict) as refused:
        repository.transition(ghost, JobEvent.DISPATCHED, now=ghost.created_at)
    assert refused.value.current is None
    with pytest.raises(TransitionConflict) as refused:
        repository.claim_for_dispatch(
            ghost.job_id, now=ghost.created_at, lease_until=ghost.created_at, webhook_token_sha256="ab" * 32
        )
    assert refused.value.current is None
    with pytest.raises(TransitionConflict) as refused:
        repository.enter_finalizing(ghost.job_id, expected={}, now=ghost.created_at, changes={})
    assert refused.value.current is None
    assert repository.get(ghost.job_id) is None


TOKEN_HASH = "0f" * 32


def test_a_dispatch_claim_needs_an_accepted_job_that_nobody_holds(repository: JobsRepository) -> None:
    job = make_job()
    repository.create(job, None)
    claimed = repository.claim_for_dispatch(
        job.job_id,
        now="2026-01-02T03:05:00.000Z",
        lease_until="2026-01-02T03:07:00.000Z",
        webhook_token_sha256=TOKEN_HASH,
    )
    assert claimed.status == JobStatus.ACCEPTED
    assert claimed.dispatch_lease_until == "2026-01-02T03:07:00.000Z"
    assert claimed.webhook_token_sha256 == TOKEN_HASH  # stored before the provider can call back with it
    assert claimed.attempts == 1
    assert claimed.version == job.version + 1
    assert claimed.updated_at == "2026-01-02T03:05:00.000Z"
    assert repository.get(job.job_id) == claimed
    with pytest.raises(TransitionConflict) as refused:  # the lease is there, live or not: no second claim
        repository.claim_for_dispatch(
            job.job_id,
            now="2026-01-02T03:09:00.000Z",
            lease_until="2026-01-02T03:11:00.000Z",
            webhook_token_sha256=TOKEN_HASH,
        )
    assert refused.value.current == claimed
    released = repository.update_fields(claimed, now=claimed.updated_at, changes={}, remove=("dispatch_lease_until",))
    again = repository.claim_for_dispatch(
        job.job_id,
        now="2026-01-02T03:09:00.000Z",
        lease_until="2026-01-02T03:11:00.000Z",
        webhook_token_sha256=TOKEN_HASH,
    )
    assert again.attempts == 2
    assert again.version == released.version + 1
    submitted = repository.transition(
        again, JobEvent.DISPATCHED, now="2026-01-02T03:10:00.000Z", changes={"provider_request_id": "req-1"}
    )
    with pytest.raises(TransitionConflict) as refused:
        repository.claim_for_dispatch(
            job.job_id,
            now="2026-01-02T03:20:00.000Z",
            lease_until="2026-01-02T03:22:00.000Z",
            webhook_token_sha256=TOKEN_HASH,
        )
    assert refused.value.current == submitted


def test_entering_finalizing_without_a_read_checks_the_status_and_the_request(
    repository: JobsRepository,
) -> None:
    job = make_job()
    repository.create(job, None)
    submitted = repository.transition(
        job, JobEvent.DISPATCHED, now="2026-01-02T03:05:00.000Z", changes={"provider_request_id": "req-1"}
    )
    result = {"video_url": "https://v3.fal.media/files/x.mp4"}
    for expected in (
        {"provider": "fal", "provider_request_id": "req-2"},
        {"provider": "mirako", "provider_request_id": "req-1"},
    ):
        with pytest.raises(TransitionConflict) as refused:
            repository.enter_finalizing(
                job.job_id,
                expected=expected,
                now="2026-01-02T03:06:00.000Z",
                changes={"provider_result": result},
            )
        assert refused.value.current == submitted
    accepted = make_job()
    repository.create(accepted, None)
    with pytest.raises(TransitionConflict) as refused:  # not from a status the state machine completes
        repository.enter_finalizing(accepted.job_id, expected={}, now="2026-01-02T03:06:00.000Z", changes={})
    assert refused.value.current == accepted

    finalizing = repository.enter_finalizing(
        job.job_id,
        expected={"provider": "fal", "provider_request_id": "req-1"},
        now="2026-01-02T03:07:00.000Z",
        changes={"provider_result": result},
    )
    assert finalizing.status == JobStatus.FINALIZING
    assert finalizing.version == submitted.version + 1
    assert finalizing.status_since == finalizing.updated_at == "2026-01-02T03:07:00.000Z"
    assert finalizing.timeline == {**submitted.timeline, "FINALIZING": "2026-01-02T03:07:00.000Z"}
    assert finalizing.provider_result is not None
    assert finalizing.provider_result.video_url == result["video_url"]
    # The owner's status index has it under FINALIZING, though the owner was never read.
    listed, _ = repository.list_for_owner("owner-1", status=JobStatus.FINALIZING, limit=10, after_job_id=None)
    assert listed == [finalizing]
    with pytest.raises(TransitionConflict) as refused:  # a duplicate
        repository.enter_finalizing(
            job.job_id,
            expected={"provider_request_id": "req-1"},
            now="2026-01-02T03:08:00.000Z",
            changes={},
        )
    assert refused.value.current == finalizing


def test_a_terminal_state_never_regresses(repository: JobsRepository) -> None:
    job = make_job()
    repository.create(job, None)
    output = JobOutput(bucket="b", key="videos/x.mp4", size=10, sha256="0" * 64, content_type="video/mp4")
    current = job
    for event in (JobEvent.DISPATCHED, JobEvent.PROVIDER_COMPLETED, JobEvent.COPIED):
        changes = {"output": output.model_dump()} if event == JobEvent.COPIED else None
        current = repository.transition(current, event, now=job.created_at, changes=changes)
    assert current.status == JobStatus.SUCCEEDED
    # A late duplicate that still holds the FINALIZING snapshot cannot move the job back or sideways.
    finalizing = current.model_copy(update={"status": JobStatus.FINALIZING, "version": current.version - 1})
    with pytest.raises(TransitionConflict):
        repository.transition(finalizing, JobEvent.FAILED, now=job.created_at)
    stored = repository.get(job.job_id)
    assert stored is not None
    assert stored.status == JobStatus.SUCCEEDED
    assert stored.output == output


def test_two_concurrent_transitions_from_one_state_exactly_one_wins(repository: JobsRepository) -> None:
    job = make_job()
    repository.create(job, None)
    contenders = [JobEvent.DISPATCHED, JobEvent.CANCEL, JobEvent.FAILED, JobEvent.DEADLINE_PASSED] * 2
    barrier = threading.Barrier(len(contenders))
    outcomes: list[JobStatus | str] = []
    lock = threading.Lock()

    def contend(event: JobEvent) -> None:
        barrier.wait()
        try:
            result: JobStatus | str = repository.transition(job, event, now=job.created_at).status
        except TransitionConflict:
            result = "conflict"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=contend, args=(event,)) for event in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    winners = [outcome for outcome in outcomes if outcome != "conflict"]
    assert len(outcomes) == len(contenders)
    assert len(winners) == 1
    stored = repository.get(job.job_id)
    assert stored is not None
    assert stored.status == winners[0]
    assert stored.version == 2


def test_listing_pages_newest_first_and_stops_on_the_last_page(repository: JobsRepository) -> None:
    jobs = [make_job() for _ in range(5)]
    for job in jobs:
        repository.create(job, None)
    repository.create(make_job(owner="someone-else"), None)
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page, after = repository.list_for_owner("owner-1", status=None, limit=2, after_job_id=after)
        pages += 1
        seen.extend(job.job_id for job in page)
        if after is None:
            break
    assert pages == 3
    assert seen == sorted((job.job_id for job in jobs), reverse=True)


def test_listing_by_status_follows_transitions(repository: JobsRepository) -> None:
    jobs = [make_job() for _ in range(3)]
    for job in jobs:
        repository.create(job, None)
    repository.transition(jobs[1], JobEvent.CANCEL, now=jobs[1].created_at)
    canceled, _ = repository.list_for_owner("owner-1", status=JobStatus.CANCELED, limit=10, after_job_id=None)
    accepted, _ = repository.list_for_owner("owner-1", status=JobStatus.ACCEPTED, limit=10, after_job_id=None)
    assert [job.job_id for job in canceled] == [jobs[1].job_id]
    assert {job.job_id for job in accepted} == {jobs[0].job_id, jobs[2].job_id}


T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def job_created_at(moment: datetime, model: str = "fal-ai/ai-avatar", owner: str = "owner-1") -> Job:
    """A job as create_job makes one: its id (a ULID) made in the millisecond it was created."""
    job = make_job(owner, model=model, created_at=isoformat(moment), updated_at=isoformat(moment))
    return job.model_copy(update={"job_id": str(ULID.from_datetime(moment))})


def all_pages(
    repository: JobsRepository, limit: int, filters: JobFilters, status: JobStatus | None = None
) -> list[list[str]]:
    pages, after = [], None
    while True:
        page, after = repository.list_for_owner(
            "owner-1", status=status, limit=limit, after_job_id=after, filters=filters
        )
        pages.append([job.job_id for job in page])
        if after is None:
            return pages


def test_listing_by_model_fills_each_page_though_the_filter_drops_most_of_what_is_read(
    repository: JobsRepository,
) -> None:
    # 3 of 150: DynamoDB's Limit counts jobs read before the filter, so one Query cannot fill a page of 2.
    wanted = {0, 70, 149}
    jobs = [
        job_created_at(T0 + timedelta(seconds=second), "talking-avatar" if second in wanted else "fal-ai/ai-avatar")
        for second in range(150)
    ]
    for job in jobs:
        repository.create(job, None)
    pages = all_pages(repository, 2, JobFilters(model="talking-avatar"))
    newest_first = [jobs[second].job_id for second in sorted(wanted, reverse=True)]
    assert pages == [newest_first[:2], newest_first[2:]]


def test_listing_by_created_time_takes_a_half_open_window_combined_with_the_status_and_the_cursor(
    repository: JobsRepository,
) -> None:
    jobs = [job_created_at(T0 + timedelta(minutes=minute)) for minute in range(8)]
    for job in jobs:
        repository.create(job, None)
    repository.transition(jobs[3], JobEvent.CANCEL, now=jobs[3].created_at)
    window = JobFilters(created_from=T0 + timedelta(minutes=2), created_before=T0 + timedelta(minutes=6))
    assert all_pages(repository, 2, window) == [[jobs[5].job_id, jobs[4].job_id], [jobs[3].job_id, jobs[2].job_id]]
    accepted = all_pages(repository, 2, window, status=JobStatus.ACCEPTED)
    assert accepted == [[jobs[5].job_id, jobs[4].job_id], [jobs[2].job_id]]
    assert all_pages(repository, 10, JobFilters(created_from=T0 + timedelta(minutes=6))) == [
        [jobs[7].job_id, jobs[6].job_id]
    ]
    assert all_pages(repository, 10, JobFilters(created_before=T0 + timedelta(minutes=1))) == [[jobs[0].job_id]]


def test_the_created_time_bounds_are_exact_to_the_millisecond(repository: JobsRepository) -> None:
    job = job_created_at(T0)
    repository.create(job, None)
    millisecond = timedelta(milliseconds=1)
    assert all_pages(repository, 5, JobFilters(created_from=T0)) == [[job.job_id]]
    assert all_pages(repository, 5, JobFilters(created_from=T0 + millisecond)) == [[]]
    assert all_pages(repository, 5, JobFilters(created_before=T0)) == [[]]
    assert all_pages(repository, 5, JobFilters(created_before=T0 + millisecond)) == [[job.job_id]]


def test_a_filtered_search_stops_after_its_budget_with_a_short_page_and_a_cursor_that_continues_it(
    small_budget_repository: JobsRepository,
) -> None:
    repository = small_budget_repository
    models = ["fal-ai/ai-avatar"] * 10 + ["talking-avatar"] * 2  # the oldest two match
    jobs = [job_created_at(T0 + timedelta(seconds=second), model) for second, model in enumerate(reversed(models))]
    for job in jobs:
        repository.create(job, None)
    filters = JobFilters(model="talking-avatar")
    first, after = repository.list_for_owner("owner-1", status=None, limit=5, after_job_id=None, filters=filters)
    assert (first, after) == ([], jobs[-SEARCH_BUDGET].job_id)  # read the newest 6, none matched
    assert all_pages(repository, 5, filters) == [[], [jobs[1].job_id, jobs[0].job_id]]


def test_a_transition_takes_its_status_from_the_state_machine_and_refuses_what_the_table_does_not_have(
    repository: JobsRepository,
) -> None:
    job = make_job()
    repository.create(job, None)
    with pytest.raises(InvalidTransition):
        repository.transition(job, JobEvent.COPIED, now=job.created_at)  # ACCEPTED is not copied
    assert repository.get(job.job_id) == job  # nothing written
    canceled = repository.transition(job, JobEvent.CANCEL, now=job.created_at)
    assert canceled.status == JobStatus.CANCELED


@pytest.mark.parametrize("field", ["status", "status_since", "owner_status", "timeline"])
def test_no_field_of_the_status_is_written_outside_a_transition(repository: JobsRepository, field: str) -> None:
    job = make_job()
    repository.create(job, None)
    with pytest.raises(ValueError, match="only through a transition"):
        repository.update_fields(job, now=job.created_at, changes={field: "SUCCEEDED"})
    with pytest.raises(ValueError, match="only through a transition"):
        repository.transition(job, JobEvent.CANCEL, now=job.created_at, changes={field: "SUCCEEDED"})
    assert repository.get(job.job_id) == job
