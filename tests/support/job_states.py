"""Puts a stored job into a status for a test, the only way the code may: through the state machine's table; and
makes time pass for a stored job."""

import os
from collections import deque
from typing import Any

from avatarjobs.adapters.jobs_table import job_from_item
from avatarjobs.domain.job import Job, JobStatus
from avatarjobs.domain.ports import JobsRepository, StoredVersion
from avatarjobs.domain.state_machine import TRANSITIONS, JobEvent
from tests.support import moto_clients


def events_to(source: JobStatus, target: JobStatus) -> list[JobEvent]:
    """The shortest sequence of events the table moves `source` to `target` with (ValueError if none)."""
    paths: dict[JobStatus, list[JobEvent]] = {source: []}
    waiting = deque([source])
    while waiting:
        status = waiting.popleft()
        if status == target:
            return paths[status]
        for (origin, event), reached in TRANSITIONS.items():
            if origin == status and reached not in paths:
                paths[reached] = [*paths[status], event]
                waiting.append(reached)
    raise ValueError(f"the state machine has no way from {source} to {target}")


def move(
    repository: JobsRepository,
    job: StoredVersion,
    target: JobStatus,
    *,
    now: str,
    changes: dict[str, Any] | None = None,
) -> Job:
    """`job` walked to `target` by `repository.transition`, one conditional write per step (`changes` with the
    last); the job as stored after it."""
    events = events_to(job.status, target)
    if not events:
        raise ValueError(f"the job is already {target}")
    moved: Any = job
    for step, event in enumerate(events, start=1):
        moved = repository.transition(moved, event, now=now, changes=changes if step == len(events) else None)
    assert isinstance(moved, Job)
    return moved


def backdate(job: Job, **timestamps: str) -> Job:
    """The stored job as if its timestamps (`status_since`, `deadline_at`, ...) were these: time passing, written
    straight into the mocked table (JOBS_TABLE_NAME), since no code path may rewrite them. Status and version stay."""
    names = {f"#f{index}": name for index, name in enumerate(timestamps)}
    values = {f":v{index}": {"S": value} for index, value in enumerate(timestamps.values())}
    answer = moto_clients.dynamodb().update_item(
        TableName=os.environ["JOBS_TABLE_NAME"],
        Key={"job_id": {"S": job.job_id}},
        UpdateExpression="SET " + ", ".join(f"#f{index} = :v{index}" for index in range(len(timestamps))),
        ConditionExpression="attribute_exists(job_id)",
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
        ReturnValues="ALL_NEW",
    )
    return job_from_item(answer["Attributes"])
