"""The notifier under moto: stream records of real jobs in, one message per terminal transition out on each channel.

What subscribers get is observed as they would get it: an SQS queue subscribed to the topic (raw delivery off,
so the SNS envelope with its message attributes arrives) and an EventBridge rule on the bus with an SQS target.
"""

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

from avatarjobs import composition
from avatarjobs.adapters import aws_clients
from avatarjobs.adapters.jobs_table import DynamoJobsRepository, job_from_item, job_to_item
from avatarjobs.domain.ids import new_job_id
from avatarjobs.domain.job import Job, JobStatus, isoformat
from avatarjobs.domain.job_events import subscriber_event
from avatarjobs.partial_batch import EveryRecordFailed
from devstack.cloudformation import Stack
from functions.notify import app as notify_app
from tests.api_events import OWNER, load_event
from tests.lambda_context import LambdaContext
from tests.support import moto_clients
from tests.support.job_states import move
from tests.support.subscribers import Channels, real_stream_records

if TYPE_CHECKING:
    pass

S = JobStatus
T0 = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
BODY_KEYS = [
    "event_id",
    "type",
    "job_id",
    "status",
    "provider",
    "model",
    "owner",
    "metadata",
    "output",
    "error",
    "created_at",
    "finished_at",
]
# EventBridge's detail-type per status (DESIGN.md); also the SNS Subject.
DETAIL_TYPES = {
    "SUCCEEDED": "Avatar Video Job Succeeded",
    "FAILED": "Avatar Video Job Failed",
    "CANCELED": "Avatar Video Job Canceled",
    "TIMED_OUT": "Avatar Video Job Timed Out",
}
# The path to each status, from ACCEPTED, along the state machine of DESIGN.md.
PATHS: dict[JobStatus, list[JobStatus]] = {
    S.ACCEPTED: [],
    S.SUBMITTED: [S.SUBMITTED],
    S.RUNNING: [S.SUBMITTED, S.RUNNING],
    S.FINALIZING: [S.SUBMITTED, S.RUNNING, S.FINALIZING],
    S.CANCEL_REQUESTED: [S.SUBMITTED, S.RUNNING, S.CANCEL_REQUESTED],
}


@pytest.fixture
def repository(stack: Stack) -> DynamoJobsRepository:
    client = moto_clients.dynamodb()
    return DynamoJobsRepository(client, stack.refs["JobsTable"], stack.refs["IdempotencyTable"])


def at(seconds: float) -> str:
    return isoformat(T0 + timedelta(seconds=seconds))


def new_job(repository: DynamoJobsRepository, provider: str = "fal") -> Job:
    model = "fal-ai/ai-avatar/single-text" if provider == "fal" else "talking-avatar"
    job = Job.new(
        job_id=new_job_id(),
        owner=OWNER,
        provider=provider,
        model=model,
        request={"image_url": "https://example.com/face.png", "text_input": "Hello!", "voice": "Bill"},
        metadata={"order_id": "A-7", "price": 2.5, "tags": ["demo", None]},
        idempotency_key=None,
        deadline_seconds=None,
        now=T0,
    )
    repository.create(job, None)
    return job


def job_in(repository: DynamoJobsRepository, status: JobStatus, provider: str = "fal") -> Job:
    """A job stored by the repository and moved, transition by transition, into `status`."""
    job = new_job(repository, provider)
    for step, next_status in enumerate(PATHS[status], start=1):
        job = move(repository, job, next_status, now=at(step * 10))
    return job


OUTPUT = {"key": "videos/{job_id}.mp4", "size": 4718592, "sha256": "ab" * 32, "content_type": "video/mp4"}
ERROR = {
    "code": "GENERATION_FAILED",
    "message": "no face detected in the image",
    "retryable": False,
    "provider_code": None,
}


def finish(repository: DynamoJobsRepository, job: Job, status: JobStatus, stack: Stack) -> Job:
    """The terminal transition the services make, with what they record alongside it."""
    changes: dict[str, Any] = {}
    if status == S.SUCCEEDED:
        output = {**OUTPUT, "key": f"videos/{job.job_id}.mp4"}
        changes["output"] = {"bucket": stack.refs["OutputsBucket"], **output}
    elif status == S.FAILED:
        changes["error"] = ERROR
    return move(repository, job, status, now=at(100), changes=changes)


_sequence = iter(range(100_000_000_000_000_000_000, 200_000_000_000_000_000_000))


def stream_record(stack: Stack, old: Job | None, new: Job | None, *, event_name: str | None = None) -> dict[str, Any]:
    """The record the Jobs table's stream gives Lambda for a change from `old` to `new` (items as the repo writes)."""
    record: dict[str, Any] = copy.deepcopy(load_event("ddb_stream_job_succeeded.json")["Records"][0])
    some = new or old
    assert some is not None
    images = {"OldImage": old, "NewImage": new}
    dynamodb = record["dynamodb"]
    for name, job in images.items():
        dynamodb.pop(name)
        if job is not None:
            dynamodb[name] = job_to_item(job)
    sequence = str(next(_sequence))
    dynamodb.update(Keys={"job_id": {"S": some.job_id}}, SequenceNumber=sequence)
    default_name = "INSERT" if old is None else "REMOVE" if new is None else "MODIFY"
    record.update(
        eventID=f"event-{sequence}",
        eventName=event_name or default_name,
        eventSourceARN=stack.attributes[("JobsTable", "StreamArn")],
    )
    return record


def notify(*records: dict[str, Any]) -> list[str]:
    """Runs the notifier on one batch; returns the sequence numbers of the records it reported as failed."""
    response = notify_app.lambda_handler({"Records": list(records)}, LambdaContext("NotifyFunction"))
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


def sequence_of(record: dict[str, Any]) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


def expected_body(job: Job, status: JobStatus, stack: Stack) -> dict[str, Any]:
    """DESIGN.md's body, spelled out."""
    kind = {S.SUCCEEDED: "succeeded", S.FAILED: "failed", S.CANCELED: "canceled", S.TIMED_OUT: "timed_out"}
    output = {"bucket": stack.refs["OutputsBucket"], **OUTPUT, "key": f"videos/{job.job_id}.mp4"}
    return {
        "event_id": f"{job.job_id}:{status}",
        "type": f"job.{kind[status]}",
        "job_id": job.job_id,
        "status": str(status),
        "provider": job.provider,
        "model": job.model,
        "owner": OWNER,
        "metadata": {"order_id": "A-7", "price": 2.5, "tags": ["demo", None]},
        "output": output if status == S.SUCCEEDED else None,
        "error": ERROR if status == S.FAILED else None,
        "created_at": at(0),
        "finished_at": at(100),
    }


def assert_told_once(channels: Channels, body: dict[str, Any]) -> None:
    """Exactly one message on each channel, with the same body, the attributes and the detail-type."""
    [message] = channels.topic_messages()
    assert json.loads(message["Message"]) == body
    assert list(json.loads(message["Message"])) == BODY_KEYS
    assert message["TopicArn"] == channels.topic_arn
    assert message["Subject"] == DETAIL_TYPES[body["status"]]
    assert message["MessageAttributes"] == {
        "status": {"Type": "String", "Value": body["status"]},
        "provider": {"Type": "String", "Value": body["provider"]},
        "type": {"Type": "String", "Value": body["type"]},
    }
    [event] = channels.bus_events()
    assert event["source"] == "avatarjobs"
    assert event["detail-type"] == DETAIL_TYPES[body["status"]]
    assert event["detail"] == body


# -- terminal transitions --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "status"),
    [
        (S.FINALIZING, S.SUCCEEDED),
        (S.RUNNING, S.FAILED),
        (S.ACCEPTED, S.FAILED),
        (S.ACCEPTED, S.CANCELED),
        (S.CANCEL_REQUESTED, S.CANCELED),
        (S.RUNNING, S.TIMED_OUT),
        (S.CANCEL_REQUESTED, S.TIMED_OUT),
    ],
)
def test_a_terminal_transition_is_told_once_on_each_channel(
    stack: Stack, channels: Channels, repository: DynamoJobsRepository, before: JobStatus, status: JobStatus
) -> None:
    old = job_in(repository, before)
    new = finish(repository, old, status, stack)
    assert notify(stream_record(stack, old, new)) == []
    assert_told_once(channels, expected_body(new, status, stack))


def test_a_mirako_job_is_told_with_its_provider_for_filter_policies(
    stack: Stack, channels: Channels, repository: DynamoJobsRepository
) -> None:
    old = job_in(repository, S.RUNNING, provider="mirako")
    new = finish(repository, old, S.FAILED, stack)
    assert notify(stream_record(stack, old, new)) == []
    assert_told_once(channels, expected_body(new, S.FAILED, stack))


def test_finished_at_is_when_the_job_entered_its_terminal_status(repository: DynamoJobsRepository) -> None:
    old = job_in(repository, S.RUNNING)
    new = move(repository, old, S.FAILED, now=at(100), changes={"error": ERROR})
    later = repository.update_fields(new, now=at(500), changes={"attempts": 3})  # status_since stays
    event = subscriber_event(old, later)
    assert event is not None
    assert event.finished_at == at(100)
    assert subscriber_event(old, later.model_copy(update={"timeline": {}})) == event  # older records: status_since


def test_a_batch_of_changes_tells_each_terminal_one(
    stack: Stack, channels: Channels, repository: DynamoJobsRepository
) -> None:
    first, second = job_in(repository, S.FINALIZING), job_in(repository, S.RUNNING)
    running = job_in(repository, S.SUBMITTED)
    records = [
        stream_record(stack, first, finish(repository, first, S.SUCCEEDED, stack)),
        stream_record(stack, running, move(repository, running, S.RUNNING, now=at(50))),
        stream_record(stack, second, finish(repository, second, S.TIMED_OUT, stack)),
    ]
    assert notify(*records) == []
    told = sorted(json.loads(message["Message"])["event_id"] for message in channels.topic_messages())
    assert told == sorted([f"{first.job_id}:SUCCEEDED", f"{second.job_id}:TIMED_OUT"])
    assert sorted(event["detail"]["event_id"] for event in channels.bus_events()) == told


# -- changes that tell nothing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (S.ACCEPTED, S.SUBMITTED),
        (S.SUBMITTED, S.RUNNING),
        (S.RUNNING, S.FINALIZING),
        (S.RUNNING, S.CANCEL_REQUESTED),
        (S.CANCEL_REQUESTED, S.FINALIZING),
    ],
)
def test_a_non_terminal_transition_tells_nothing(
    stack: Stack, channels: Channels, repository: DynamoJobsRepository, before: JobStatus, after: JobStatus
) -> None:
    old = job_in(repository, before)
    new = move(repository, old, after, now=at(90))
    assert notify(stream_record(stack, old, new)) == []
    assert channels.topic_messages() == []
    assert channels.bus_events() == []


@pytest.mark.parametrize("status", [S.SUCCEEDED, S.FAILED, S.CANCELED, S.TIMED_OUT])
def test_a_later_change_to_a_finished_job_tells_nothing(
    stack: Stack, channels: Channels, repository: DynamoJobsRepository, status: JobStatus
) -> None:
    # Each from a status the state machine ends that way (a deadline does not end a FINALIZING job).
    before = {S.CANCELED: S.CANCEL_REQUESTED, S.TIMED_OUT: S.RUNNING}.get(status, S.FINALIZING)
    finished = finish(repository, job_in(repository, before), status, stack)
    updated = repository.update_fields(finished, now=at(200), changes={"requeued_at": at(200)})
    assert notify(stream_record(stack, finished, updated)) == []
    assert channels.topic_messages() == []
    assert channels.bus_events() == []


def test_a_new_job_tells_nothing(stack: Stack, channels: Channels, repository: DynamoJobsRepository) -> None:
    assert notify(stream_record(stack, None, new_job(repository))) == []
    assert channels.topic_messages() == []
    assert channels.bus_events() == []


def test_a_ttl_delete_of_a_finished_job_tells_nothing(
    stack: Stack, channels: Channels, repository: DynamoJobsRepository
) -> None:
    finished = finish(repository, job_in(repository, S.FINALIZING), S.SUCCEEDED, stack)
    record = stream_record(stack, finished, None)
    record["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}  # as TTL deletes carry
    assert notify(record) == []
    assert channels.topic_messages() == []
    assert channels.bus_events() == []


# -- the sample events ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample", "status", "job_id"),
    [
        ("ddb_stream_job_succeeded.json", S.SUCCEEDED, "01JD0000000000000000000001"),
        ("ddb_stream_job_failed.json", S.FAILED, "01JD0000000000000000000002"),
    ],
)
def test_the_sample_events_run_through_the_handler(
    channels: Channels, sample: str, status: JobStatus, job_id: str
) -> None:
    event = load_event(sample)
    response = notify_app.lambda_handler(event, LambdaContext("NotifyFunction"))
    assert response == {"batchItemFailures": []}
    [record] = event["Records"]
    new = job_from_item(record["dynamodb"]["NewImage"])
    [message] = channels.topic_messages()
    body = json.loads(message["Message"])
    assert body["event_id"] == f"{job_id}:{status}"
    assert body["finished_at"] == new.timeline[status]
    assert (body["output"] is not None) == (status == S.SUCCEEDED)
    assert (body["error"] is not None) == (status == S.FAILED)
    [bus_event] = channels.bus_events()
    assert bus_event["detail"] == body


@pytest.mark.parametrize("sample", ["ddb_stream_job_succeeded.json", "ddb_stream_job_failed.json"])
def test_the_sample_images_are_what_the_repository_writes(sample: str) -> None:
    [record] = load_event(sample)["Records"]
    dynamodb = record["dynamodb"]
    for name in ("OldImage", "NewImage"):
        assert job_to_item(job_from_item(dynamodb[name])) == dynamodb[name]
    old, new = job_from_item(dynamodb["OldImage"]), job_from_item(dynamodb["NewImage"])
    assert dynamodb["Keys"] == {"job_id": dynamodb["NewImage"]["job_id"]}
    assert new.version == old.version + 1
    assert record["eventName"] == "MODIFY"
    assert dynamodb["StreamViewType"] == "NEW_AND_OLD_IMAGES"


# -- failures and retries --------------------------------------------------------------------------------------


def reject_put_events_for(job_id: str) -> None:
    """Makes EventBridge answer PutEvents for `job_id` with a failed entry (HTTP 200), as it does when throttled."""

    def answer(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        entries = json.loads(params["body"])["Entries"]
        if json.loads(entries[0]["Detail"])["job_id"] != job_id:
            return None
        failed = {"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"}
        response = {"FailedEntryCount": 1, "Entries": [failed], "ResponseMetadata": {"HTTPStatusCode": 200}}
        return AWSResponse(params["url"], 200, HTTPHeaders(), None), response

    # A before-call handler that returns (http response, parsed response) stands in for the service's answer;
    # the stubs type handlers as returning None.
    handler = cast("Callable[..., None]", answer)
    aws_clients.events().meta.events.register("before-call.events.PutEvents", handler)


def test_a_rejected_event_reports_exactly_its_record_and_the_retry_tells_the_same_event(
    stack: Stack, channels: Channels, repository: DynamoJobsRepository
) -> None:
    jobs = [job_in(repository, S.FINALIZING) for _ in range(3)]
    records = [stream_record(stack, job, finish(repository, job, S.SUCCEEDED, stack)) for job in jobs]
    rejected = jobs[1]
    reject_put_events_for(rejected.job_id)

    assert notify(*records) == [sequence_of(records[1])]
    first_topic = {json.loads(message["Message"])["job_id"]: message for message in channels.topic_messages()}
    assert set(first_topic) == {job.job_id for job in jobs}  # SNS was told before EventBridge refused
    assert sorted(event["detail"]["job_id"] for event in channels.bus_events()) == sorted(
        [jobs[0].job_id, jobs[2].job_id]
    )

    composition.reset()  # EventBridge takes events again
    assert notify(records[1], records[2]) == []  # Lambda retries from the failed record on
    retried_topic = [json.loads(message["Message"]) for message in channels.topic_messages()]
    retried_bus = [event["detail"] for event in channels.bus_events()]
    assert [body["job_id"] for body in retried_topic] == [rejected.job_id, jobs[2].job_id]
    # The duplicates carry the same event_id and body, so subscribers can drop them.
    assert retried_topic[0] == json.loads(first_topic[rejected.job_id]["Message"])
    assert retried_topic[0]["event_id"] == f"{rejected.job_id}:SUCCEEDED"
    assert retried_bus[0] == retried_topic[0]


def test_a_missing_topic_fails_the_invocation_and_tells_the_bus_nothing(
    stack: Stack, channels: Channels, repository: DynamoJobsRepository
) -> None:
    jobs = [job_in(repository, S.RUNNING) for _ in range(2)]
    records = [stream_record(stack, job, finish(repository, job, S.FAILED, stack)) for job in jobs]
    moto_clients.sns().delete_topic(TopicArn=channels.topic_arn)
    # Every record failed: an invocation error (the errors alarm; Lambda bisects and retries the batch).
    with pytest.raises(EveryRecordFailed, match="All records failed"):
        notify(*records)
    assert channels.bus_events() == []


# -- the real stream -------------------------------------------------------------------------------------------


def test_records_read_from_the_tables_stream_tell_the_terminal_transition_once(
    stack: Stack, channels: Channels, repository: DynamoJobsRepository
) -> None:
    job = job_in(repository, S.FINALIZING)
    done = finish(repository, job, S.SUCCEEDED, stack)
    repository.update_fields(done, now=at(300), changes={"requeued_at": at(300)})  # a later change: no event

    records = real_stream_records(stack)
    assert [record["eventName"] for record in records] == ["INSERT"] + ["MODIFY"] * 5
    assert notify(*records) == []
    assert_told_once(channels, expected_body(done, S.SUCCEEDED, stack))


def test_the_sample_events_have_the_shape_of_the_real_stream(stack: Stack, repository: DynamoJobsRepository) -> None:
    job = job_in(repository, S.RUNNING)
    move(repository, job, S.FAILED, now=at(100), changes={"error": ERROR})
    real = real_stream_records(stack)[-1]
    sample = load_event("ddb_stream_job_failed.json")["Records"][0]
    assert set(real) == set(sample)
    assert set(real["dynamodb"]) == set(sample["dynamodb"])
    for name in ("OldImage", "NewImage"):
        # Every attribute of the real image is in the sample (which has the dispatcher's extras too), as the same type.
        real_types = {key: set(value) for key, value in real["dynamodb"][name].items()}
        sample_types = {key: set(value) for key, value in sample["dynamodb"][name].items()}
        assert real_types.items() <= sample_types.items()
