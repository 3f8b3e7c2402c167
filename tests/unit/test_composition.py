"""composition.override: the use cases built in the block get the given adapters, and none keeps them after."""

import pytest

from avatarjobs import composition
from avatarjobs.adapters.jobs_table import DynamoJobsRepository
from avatarjobs.domain.errors import JobNotFound
from avatarjobs.domain.ids import new_job_id
from avatarjobs.domain.job import Job
from avatarjobs.net.safe_fetch import SafeFetcher
from devstack.cloudformation import Stack
from tests.api_events import OWNER
from tests.support import moto_clients


class RecordingJobs(DynamoJobsRepository):
    """The real repository, noting the ids it is asked for."""

    def __init__(self, stack: Stack) -> None:
        client = moto_clients.dynamodb()
        super().__init__(client, stack.refs["JobsTable"], stack.refs["IdempotencyTable"])
        self.asked: list[str] = []

    def get(self, job_id: str) -> Job | None:
        self.asked.append(job_id)
        return super().get(job_id)


def test_the_use_cases_built_in_the_block_use_the_given_repository_and_later_ones_do_not(stack: Stack) -> None:
    before = composition.jobs_service()
    recording = RecordingJobs(stack)
    job_id = new_job_id()
    with composition.override(jobs=recording):
        assert composition.jobs_repository() is recording
        assert composition.jobs_service() is not before  # built again, with the given repository
        with pytest.raises(JobNotFound):
            composition.jobs_service().get_job(OWNER, job_id)
        assert recording.asked == [job_id]
    assert composition.jobs_repository() is not recording
    with pytest.raises(JobNotFound):
        composition.jobs_service().get_job(OWNER, job_id)
    assert recording.asked == [job_id]


def test_an_inner_block_wins_for_what_it_names_and_the_outer_one_comes_back(stack: Stack) -> None:
    outer, inner = RecordingJobs(stack), RecordingJobs(stack)
    fetcher = SafeFetcher()
    with composition.override(jobs=outer):
        with composition.override(jobs=inner, safe_fetcher=fetcher):
            assert composition.jobs_repository() is inner
            assert composition.safe_fetcher() is fetcher
        assert composition.jobs_repository() is outer
        assert composition.safe_fetcher() is not fetcher
