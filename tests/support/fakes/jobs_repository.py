"""An in-memory JobsRepository with the conditional semantics of the DynamoDB one (adapters/jobs_table.py):
every write checks the status and version it expects, refuses with TransitionConflict carrying the job as it
was, and takes the next status from the state machine. tests/unit/test_jobs_repository.py runs the same tests
against both, so domain tests that use this fake cannot pass on semantics the table does not have."""

import threading
from collections.abc import Mapping
from typing import Any

from avatarjobs.adapters.jobs_table import STATUS_FIELDS
from avatarjobs.domain.errors import TransitionConflict
from avatarjobs.domain.job import Job, JobStatus, isoformat, utc_now
from avatarjobs.domain.ports import (
    JOB_LIST_MAX_EVALUATED,
    IdempotencyKeyTaken,
    IdempotencyRecord,
    JobAlreadyExists,
    JobFilters,
    StoredVersion,
)
from avatarjobs.domain.state_machine import JobEvent, next_status, sources


class InMemoryJobsRepository:
    def __init__(self, *, max_evaluated: int = JOB_LIST_MAX_EVALUATED) -> None:
        self._max_evaluated = max_evaluated
        self._jobs: dict[str, Job] = {}
        self._idempotency: dict[tuple[str, str], IdempotencyRecord] = {}
        self._lock = threading.Lock()  # one writer at a time, as DynamoDB serialises the writes of one item

    def create(self, job: Job, idempotency: IdempotencyRecord | None) -> None:
        with self._lock:
            if job.job_id in self._jobs:
                raise JobAlreadyExists(job.job_id)
            if idempotency is not None:
                if self._live_record(idempotency.owner, idempotency.key) is not None:
                    raise IdempotencyKeyTaken()
                self._idempotency[(idempotency.owner, idempotency.key)] = idempotency
            self._jobs[job.job_id] = job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def get_idempotency_record(self, owner: str, key: str) -> IdempotencyRecord | None:
        return self._live_record(owner, key)

    def transition(
        self, job: StoredVersion, event: JobEvent, *, now: str, changes: dict[str, Any] | None = None
    ) -> Job:
        new_status = next_status(job.status, event)
        _refuse_status_fields(changes or {})
        with self._lock:
            stored = self._unchanged(job)
            return self._write(stored, now, changes or {}, status=new_status)

    def update_fields(
        self, job: StoredVersion, *, now: str, changes: dict[str, Any], remove: tuple[str, ...] = ()
    ) -> Job:
        _refuse_status_fields({**changes, **dict.fromkeys(remove)})
        with self._lock:
            stored = self._unchanged(job)
            return self._write(stored, now, {**changes, **dict.fromkeys(remove)})

    def claim_for_dispatch(self, job_id: str, *, now: str, lease_until: str, webhook_token_sha256: str) -> Job:
        with self._lock:
            stored = self._jobs.get(job_id)
            if stored is None or stored.status != JobStatus.ACCEPTED or stored.dispatch_lease_until is not None:
                raise TransitionConflict(job_id, stored)
            changes = {
                "dispatch_lease_until": lease_until,
                "webhook_token_sha256": webhook_token_sha256,
                "attempts": (stored.attempts or 0) + 1,
            }
            return self._write(stored, now, changes)

    def enter_finalizing(self, job_id: str, *, expected: Mapping[str, str], now: str, changes: dict[str, Any]) -> Job:
        _refuse_status_fields(changes)
        with self._lock:
            stored = self._jobs.get(job_id)
            values = stored.model_dump(mode="json") if stored is not None else {}
            if (
                stored is None
                or stored.status not in sources(JobEvent.PROVIDER_COMPLETED)
                or any(values.get(field) != value for field, value in expected.items())
            ):
                raise TransitionConflict(job_id, stored)
            return self._write(stored, now, changes, status=next_status(stored.status, JobEvent.PROVIDER_COMPLETED))

    def list_in_status(self, status: JobStatus, *, changed_before: str) -> list[Job]:
        found = [job for job in self._jobs.values() if job.status == status and job.status_since < changed_before]
        return sorted(found, key=lambda job: (job.status_since, job.job_id))

    def list_for_owner(
        self,
        owner: str,
        *,
        status: JobStatus | None,
        limit: int,
        after_job_id: str | None,
        filters: JobFilters | None = None,
    ) -> tuple[list[Job], str | None]:
        filters = filters or JobFilters()
        candidates = sorted(
            (
                job
                for job in self._jobs.values()
                if job.owner == owner
                and (status is None or job.status == status)
                and (after_job_id is None or job.job_id < after_job_id)
            ),
            key=lambda job: job.job_id,
            reverse=True,
        )
        found: list[Job] = []
        for evaluated, job in enumerate(candidates, start=1):
            if _matches(job, filters):
                found.append(job)
            if len(found) > limit:
                return found[:limit], found[limit - 1].job_id
            if filters and evaluated == self._max_evaluated and evaluated < len(candidates):
                return found, job.job_id  # the search's budget is spent, as the table's
        return found, None

    def _live_record(self, owner: str, key: str) -> IdempotencyRecord | None:
        record = self._idempotency.get((owner, key))
        if record is None or record.expiration < int(utc_now().timestamp()):
            return None
        return record

    def _unchanged(self, job: StoredVersion) -> Job:
        stored = self._jobs.get(job.job_id)
        if stored is None or stored.status != job.status or stored.version != job.version:
            raise TransitionConflict(job.job_id, stored)
        return stored

    def _write(self, stored: Job, now: str, changes: dict[str, Any], *, status: JobStatus | None = None) -> Job:
        values = {**stored.model_dump(mode="json"), **changes, "version": stored.version + 1, "updated_at": now}
        if status is not None:
            values.update(status=status, status_since=now, timeline={**values["timeline"], status.value: now})
        moved = Job.model_validate(values)
        self._jobs[stored.job_id] = moved
        return moved


def _matches(job: Job, filters: JobFilters) -> bool:
    return (
        (filters.model is None or job.model == filters.model)
        and (filters.created_from is None or job.created_at >= isoformat(filters.created_from))
        and (filters.created_before is None or job.created_at < isoformat(filters.created_before))
    )


def _refuse_status_fields(changes: Mapping[str, Any]) -> None:
    written = STATUS_FIELDS.intersection(changes)
    if written:
        raise ValueError(f"status fields change only through a transition: {sorted(written)}")
