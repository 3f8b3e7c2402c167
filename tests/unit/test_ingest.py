"""Intake under moto: manifests in incoming/ of the inputs bucket and "Avatar Video Requested" bus events.

The function gets IngestFunction's environment when template.yaml has it and the local stack made its
`JobEventBus`; otherwise the API's environment and a bus made here. Rejections are observed through a rule on
the bus with an SQS target, as a subscriber would see them.
"""

import copy
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_plus

import pytest
from botocore.exceptions import ClientError

from avatarjobs import composition
from avatarjobs.adapters import aws_clients
from avatarjobs.adapters.event_bus import EventBusRejected
from avatarjobs.domain.intake import EVENTS_OWNER, MANIFEST_MAX_BYTES, S3_OWNER
from avatarjobs.domain.job import Job
from devstack.cloudformation import REGION, Stack
from functions.ingest import app as ingest_app
from functions.ingest.app import IntakeIncomplete
from tests.api_events import load_event
from tests.lambda_context import LambdaContext
from tests.support import moto_clients

PNG = b"\x89PNG\r\n\x1a\n" + b"face" * 16
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"voice" * 16
FOLDER = "incoming/batch-7/"
MANIFEST_KEY = f"{FOLDER}job.json"
BUS_NAME = "avatarjobs-JobEventBus"


def multi_text(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "provider": "fal",
        "model": "fal-ai/ai-avatar/multi-text",
        "image_url": "face.png",
        "first_text_input": "Welcome back.",
        "second_text_input": "Glad to be here.",
        "prompt": "Two hosts talking in a studio.",
    }
    body.update(fields)
    return {name: value for name, value in body.items() if value is not None}


@pytest.fixture
def ingest_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    if "IngestFunction" in stack.template["Resources"] and "JobEventBus" in stack.refs:
        environment = stack.function_environment("IngestFunction")
    else:
        moto_clients.events().create_event_bus(Name=BUS_NAME)
        environment = {**stack.function_environment("ApiFunction"), "JOB_EVENT_BUS_NAME": BUS_NAME}
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    composition.reset()
    yield stack
    composition.reset()


@pytest.fixture
def rejections(ingest_env: Stack) -> str:
    """A queue that receives the bus's "Avatar Video Request Rejected" events."""
    sqs = moto_clients.sqs()
    events = moto_clients.events()
    url = sqs.create_queue(QueueName="rejections-subscriber")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = composition.settings().job_event_bus_name
    assert bus is not None
    pattern = {"source": ["avatarjobs"], "detail-type": ["Avatar Video Request Rejected"]}
    events.put_rule(Name="rejections", EventBusName=bus, EventPattern=json.dumps(pattern))
    events.put_targets(Rule="rejections", EventBusName=bus, Targets=[{"Id": "subscriber", "Arn": arn}])
    return url


# -- helpers ---------------------------------------------------------------------------------------------------


def inputs_bucket() -> str:
    return composition.settings().inputs_bucket_name


def s3() -> Any:
    return moto_clients.s3()


def put(key: str, body: bytes | str | dict[str, Any] | list[Any], content_type: str = "application/json") -> str:
    """Stores an object in the inputs bucket; returns its eTag as a notification carries it (no quotes)."""
    data = json.dumps(body).encode() if isinstance(body, dict | list) else body
    data = data.encode() if isinstance(data, str) else data
    etag: str = s3().put_object(Bucket=inputs_bucket(), Key=key, Body=data, ContentType=content_type)["ETag"]
    return etag.strip('"')


def put_media(folder: str = FOLDER) -> None:
    put(f"{folder}face.png", PNG, "image/png")
    put(f"{folder}media/voice.wav", WAV, "audio/wav")


def s3_record(key: str, etag: str, *, version_id: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = copy.deepcopy(load_event("s3_manifest_created.json")["Records"][0])
    record["s3"]["bucket"].update(name=inputs_bucket(), arn=f"arn:aws:s3:::{inputs_bucket()}")
    s3_object = record["s3"]["object"]
    s3_object.update(key=quote_plus(key, safe="/"), eTag=etag)  # as S3 sends keys: URL-encoded, + for space
    if version_id is None:
        del s3_object["versionId"]  # an unversioned bucket (as template.yaml's)
    else:
        s3_object["versionId"] = version_id
    return record


def object_created(key: str, etag: str, *, version_id: str | None = None) -> dict[str, Any]:
    """S3's "Object Created" event on the default bus (the trigger template.yaml gives IngestFunction)."""
    s3_object: dict[str, Any] = {"key": quote_plus(key, safe="/"), "size": 231, "etag": etag,
                                 "sequencer": "0067408F28A1B2C3D4"}  # fmt: skip
    if version_id is not None:
        s3_object["version-id"] = version_id
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2024-11-22T14:05:12Z",
        "region": REGION,
        "resources": [f"arn:aws:s3:::{inputs_bucket()}"],
        "detail": {
            "version": "0",
            "bucket": {"name": inputs_bucket()},
            "object": s3_object,
            "request-id": "C3D13FE58DE4C810",
            "requester": "123456789012",
            "source-ip-address": "203.0.113.24",
            "reason": "PutObject",
        },
    }


def ingest(event: dict[str, Any]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = ingest_app.lambda_handler(event, LambdaContext("IngestFunction"))["results"]
    return results


def drop_manifest(body: Any, key: str = MANIFEST_KEY) -> dict[str, Any]:
    """Uploads a manifest and runs the handler on its notification; returns the one result."""
    etag = put(key, body)
    [result] = ingest(object_created(key, etag))
    return result


def bus_event(detail: Any, event_id: str = "0b6f4f0e-2c4e-4f1b-9b53-3c1f5e9a7d10") -> dict[str, Any]:
    event = load_event("eventbridge_video_requested.json")
    event.update(id=event_id, detail=detail)
    return event


def jobs_of(owner: str) -> list[str]:
    page = composition.jobs_service().list_jobs(owner, status=None, limit=100, cursor=None)
    return [job.job_id for job in page.items]


def job(owner: str, job_id: str) -> Job:
    return composition.jobs_service().get_job(owner, job_id)


def queued_job_ids(stack: Stack) -> list[str]:
    sqs = moto_clients.sqs()
    messages = sqs.receive_message(QueueUrl=stack.refs["DispatchQueue"], MaxNumberOfMessages=10)
    return [json.loads(message["Body"])["job_id"] for message in messages.get("Messages", [])]


def report(key: str) -> dict[str, Any] | None:
    try:
        body = s3().get_object(Bucket=inputs_bucket(), Key=key)["Body"].read()
    except s3().exceptions.NoSuchKey:
        return None
    loaded: dict[str, Any] = json.loads(body)
    return loaded


def received_rejections(queue_url: str) -> list[dict[str, Any]]:
    sqs = moto_clients.sqs()
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(message["Body"]) for message in messages]


def pointers(errors: list[dict[str, Any]]) -> set[str]:
    return {error["pointer"] for error in errors}


# -- S3 manifests ----------------------------------------------------------------------------------------------


def test_a_manifest_beside_its_media_creates_a_job_that_reads_them_from_s3(ingest_env: Stack) -> None:
    put_media()
    body = {"provider": "fal", "model": "fal-ai/ai-avatar", "image_url": "./face.png",
            "audio_url": "media/voice.wav", "prompt": "A presenter speaking."}  # fmt: skip
    etag = put(MANIFEST_KEY, body)
    [result] = ingest({"Records": [s3_record(MANIFEST_KEY, etag)]})

    assert result["outcome"] == "created"
    assert result["manifest"] == f"s3://{inputs_bucket()}/{MANIFEST_KEY}"
    created = job(S3_OWNER, result["job_id"])
    assert created.request["image_url"] == f"s3://{inputs_bucket()}/{FOLDER}face.png"
    assert created.request["audio_url"] == f"s3://{inputs_bucket()}/{FOLDER}media/voice.wav"
    assert created.idempotency_key == f"{MANIFEST_KEY}#{etag}"
    assert queued_job_ids(ingest_env) == [created.job_id]
    assert report(f"{FOLDER}job.job.json") == {"manifest": MANIFEST_KEY, "version": etag, "job_id": created.job_id}
    assert report(f"{FOLDER}job.error.json") is None


def test_an_object_created_event_on_the_default_bus_creates_a_job_once(ingest_env: Stack) -> None:
    folder = "incoming/batch 9/"
    put(f"{folder}face.png", PNG, "image/png")
    key = f"{folder}job.json"
    etag = put(key, multi_text())
    event = object_created(key, etag)
    [result] = ingest(event)
    assert result["outcome"] == "created"
    created = job(S3_OWNER, result["job_id"])
    assert created.request["image_url"] == f"s3://{inputs_bucket()}/{folder}face.png"
    assert created.idempotency_key == f"{key}#{etag}"

    [again] = ingest(event)
    assert again == {**result, "outcome": "replayed"}
    # The report it wrote matches the bus rule too, and comes back as an event: it is ignored.
    [report_event] = ingest(object_created(f"{folder}job.job.json", put(f"{folder}job.job.json", {})))
    assert report_event["outcome"] == "ignored"
    assert jobs_of(S3_OWNER) == [created.job_id]
    assert queued_job_ids(ingest_env) == [created.job_id]


def test_the_same_notification_twice_creates_one_job(ingest_env: Stack) -> None:
    put_media()
    etag = put(MANIFEST_KEY, multi_text())
    event = {"Records": [s3_record(MANIFEST_KEY, etag)]}
    [first] = ingest(event)
    [second] = ingest(event)
    assert first["outcome"] == "created"
    assert second == {**first, "outcome": "replayed"}
    assert jobs_of(S3_OWNER) == [first["job_id"]]
    assert queued_job_ids(ingest_env) == [first["job_id"]]


def test_a_bad_manifest_gets_an_error_file_with_field_pointers_and_no_job(ingest_env: Stack) -> None:
    put_media()
    result = drop_manifest(multi_text(num_frames=5, prompt=None, voice1="Nobody"))

    assert result["outcome"] == "rejected"
    error_report = report(f"{FOLDER}job.error.json")
    assert error_report is not None
    assert error_report["manifest"] == MANIFEST_KEY
    assert error_report["errors"] == result["errors"]
    details = {error["pointer"]: error["detail"] for error in error_report["errors"]}
    assert set(details) == {"#/num_frames", "#/prompt", "#/voice1"}
    assert details["#/num_frames"] == "Input should be greater than or equal to 81"
    assert details["#/prompt"] == "Field required"
    assert jobs_of(S3_OWNER) == []
    assert queued_job_ids(ingest_env) == []
    assert report(f"{FOLDER}job.job.json") is None


@pytest.mark.parametrize(
    ("body", "pointer", "detail"),
    [
        ("{not json", "#", "the manifest is not valid JSON"),
        ('{"provider": "fal", "num_frames": NaN}', "#/num_frames", "NaN is not a JSON number"),
        ('{"provider": "fal", "provider": "mirako"}', "#/provider", "appears more than once"),
        ([multi_text()], "#", "must be a JSON object"),
        ({**multi_text(), "model": "fal-ai/unknown"}, "#/model", "must be one of: fal-ai/ai-avatar, "),
        ({**multi_text(), "extra": 1}, "#/extra", "Extra inputs are not permitted"),
        ({**multi_text(), "image_url": "http://example.com/face.png"}, "#/image_url", "must use https://"),
    ],
)
def test_what_is_wrong_with_a_manifest_is_pointed_at(ingest_env: Stack, body: Any, pointer: str, detail: str) -> None:
    put_media()
    result = drop_manifest(body)
    assert result["outcome"] == "rejected"
    [error] = result["errors"]
    assert error["pointer"] == pointer
    assert detail in error["detail"]
    assert jobs_of(S3_OWNER) == []


def test_an_oversized_manifest_is_refused_unread(ingest_env: Stack) -> None:
    result = drop_manifest(multi_text(metadata={"padding": "x" * MANIFEST_MAX_BYTES}))
    assert result["outcome"] == "rejected"
    assert result["errors"][0]["pointer"] == "#"
    assert f"at most {MANIFEST_MAX_BYTES} bytes" in result["errors"][0]["detail"]


@pytest.mark.parametrize(
    ("image_url", "detail"),
    [
        ("../batch-8/face.png", "must not leave the manifest's folder"),
        ("media/../../batch-8/face.png", "must not leave the manifest's folder"),
        ("/incoming/batch-7/face.png", "not an absolute path"),
        ("media\\face.png", "never a backslash"),
        ("media//face.png", "empty path segment"),
        ("s3://{bucket}/incoming/batch-8/face.png", "must be an object under the manifest's folder"),
        ("s3://{bucket}/uploads/a1b2c3d4e5/01JD0000000000000000000001/face.png", "under the manifest's folder"),
        ("s3://{bucket}/incoming/batch-7/../batch-8/face.png", "under the manifest's folder"),
        ("s3://someone-elses-bucket/incoming/batch-7/face.png", "under the manifest's folder"),
    ],
)
def test_references_that_leave_the_manifests_folder_are_refused(ingest_env: Stack, image_url: str, detail: str) -> None:
    put_media()
    put_media("incoming/batch-8/")
    result = drop_manifest(multi_text(image_url=image_url.format(bucket=inputs_bucket())))
    assert result["outcome"] == "rejected"
    [error] = result["errors"]
    assert error["pointer"] == "#/image_url"
    assert detail in error["detail"]
    assert jobs_of(S3_OWNER) == []
    assert queued_job_ids(ingest_env) == []


def test_a_referenced_file_that_is_not_there_is_reported(ingest_env: Stack) -> None:
    result = drop_manifest(multi_text(image_url="missing.png"))
    assert result["outcome"] == "rejected"
    assert result["errors"] == [
        {
            "pointer": "#/image_url",
            "detail": f"s3://{inputs_bucket()}/{FOLDER}missing.png does not exist (was it uploaded?) or cannot be read",
        }
    ]


def test_https_and_data_inputs_of_a_manifest_are_kept(ingest_env: Stack) -> None:
    result = drop_manifest(multi_text(image_url="https://assets.example.com/face.png"))
    assert result["outcome"] == "created"
    assert job(S3_OWNER, result["job_id"]).request["image_url"] == "https://assets.example.com/face.png"


def test_a_key_with_spaces_arrives_url_encoded_and_is_decoded(ingest_env: Stack) -> None:
    folder = "incoming/batch 7 (final)/"
    put(f"{folder}face.png", PNG, "image/png")
    key = f"{folder}job one.json"
    etag = put(key, multi_text())
    record = s3_record(key, etag)
    assert record["s3"]["object"]["key"] == "incoming/batch+7+%28final%29/job+one.json"
    [result] = ingest({"Records": [record]})
    assert result["outcome"] == "created"
    assert job(S3_OWNER, result["job_id"]).request["image_url"] == f"s3://{inputs_bucket()}/{folder}face.png"
    assert report(f"{folder}job one.job.json") is not None


@pytest.mark.parametrize(
    "key",
    [f"{FOLDER}job.error.json", f"{FOLDER}job.job.json", f"{FOLDER}face.png", "uploads/a1b2c3d4e5/job.json"],
)
def test_our_reports_and_objects_that_are_no_manifests_are_ignored(ingest_env: Stack, key: str) -> None:
    put_media()
    result = drop_manifest(multi_text(), key=key)
    assert result["outcome"] == "ignored"
    assert jobs_of(S3_OWNER) == []
    listed = s3().list_objects_v2(Bucket=inputs_bucket())["Contents"]
    assert not [item["Key"] for item in listed if item["Key"].endswith((".error.json", ".job.json"))
                and item["Key"] != key]  # fmt: skip


def test_a_manifest_overwritten_before_its_notification_is_left_to_the_newer_one(ingest_env: Stack) -> None:
    put_media()
    first_etag = put(MANIFEST_KEY, multi_text(prompt="First take."))
    second_etag = put(MANIFEST_KEY, multi_text(prompt="Second take."))
    [stale] = ingest({"Records": [s3_record(MANIFEST_KEY, first_etag)]})
    assert stale["outcome"] == "ignored"
    assert jobs_of(S3_OWNER) == []
    [fresh] = ingest({"Records": [s3_record(MANIFEST_KEY, second_etag)]})
    assert job(S3_OWNER, fresh["job_id"]).request["prompt"] == "Second take."


def test_a_fixed_manifest_replaces_its_error_report_with_a_job_report(ingest_env: Stack) -> None:
    put_media()
    assert drop_manifest(multi_text(num_frames=5))["outcome"] == "rejected"
    assert report(f"{FOLDER}job.error.json") is not None
    fixed = drop_manifest(multi_text(num_frames=81))
    assert fixed["outcome"] == "created"
    assert report(f"{FOLDER}job.error.json") is None
    job_report = report(f"{FOLDER}job.job.json")
    assert job_report is not None
    assert job_report["job_id"] == fixed["job_id"]


def test_an_aws_failure_fails_the_invocation_after_the_other_records(
    ingest_env: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_media()
    broken_key, fine_key = f"{FOLDER}a.json", f"{FOLDER}b.json"
    event = {"Records": [s3_record(broken_key, put(broken_key, multi_text())),
                         s3_record(fine_key, put(fine_key, multi_text(prompt="Another.")))]}  # fmt: skip
    store = composition.intake().store
    read_manifest = store.read_manifest

    def flaky_read(bucket: str, key: str, version: str, *, versioned: bool) -> bytes | None:
        if key == broken_key:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}, "Get")
        return read_manifest(bucket, key, version, versioned=versioned)

    monkeypatch.setattr(store, "read_manifest", flaky_read)
    with pytest.raises(IntakeIncomplete, match="1 of 2 manifests failed"):
        ingest(event)
    [fine_job] = jobs_of(S3_OWNER)

    monkeypatch.setattr(store, "read_manifest", read_manifest)
    results = ingest(event)  # Lambda's retry of the same event
    assert [result["outcome"] for result in results] == ["created", "replayed"]
    assert results[1]["job_id"] == fine_job
    assert len(jobs_of(S3_OWNER)) == 2
    assert sorted(queued_job_ids(ingest_env)) == sorted(jobs_of(S3_OWNER))


def test_the_sample_s3_event_runs_on_a_versioned_bucket(ingest_env: Stack) -> None:
    s3().put_bucket_versioning(Bucket=inputs_bucket(), VersioningConfiguration={"Status": "Enabled"})
    put_media()
    response = s3().put_object(Bucket=inputs_bucket(), Key=MANIFEST_KEY, Body=json.dumps(multi_text()).encode())
    event = load_event("s3_manifest_created.json")
    assert event["Records"][0]["s3"]["bucket"]["name"] == inputs_bucket()
    event["Records"][0]["s3"]["object"].update(versionId=response["VersionId"], eTag=response["ETag"].strip('"'))
    [result] = ingest(event)
    assert result["outcome"] == "created"
    assert job(S3_OWNER, result["job_id"]).idempotency_key == f"{MANIFEST_KEY}#{response['VersionId']}"

    # The same key written again is a new version, and a new job.
    put(MANIFEST_KEY, multi_text(prompt="Another take."))
    [again] = ingest(event)
    assert again == {**result, "outcome": "replayed"}


def test_the_sample_object_created_event_the_template_delivers_creates_a_job(ingest_env: Stack) -> None:
    put_media()
    event = load_event("eventbridge_s3_object_created.json")
    assert event["detail"]["bucket"]["name"] == inputs_bucket()
    event["detail"]["object"]["etag"] = put(MANIFEST_KEY, multi_text())
    [result] = ingest(event)
    assert result["outcome"] == "created"
    assert job(S3_OWNER, result["job_id"]).idempotency_key == f"{MANIFEST_KEY}#{event['detail']['object']['etag']}"


def test_a_sample_event_for_a_version_that_is_gone_is_ignored(ingest_env: Stack) -> None:
    [result] = ingest(load_event("s3_manifest_created.json"))
    assert result["outcome"] == "ignored"
    assert jobs_of(S3_OWNER) == []


def test_s3s_test_event_is_ignored(ingest_env: Stack) -> None:
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2024-11-22T14:00:00.000Z",
                  "Bucket": "avatarjobs-inputsbucket", "RequestId": "5582815E1AEA5ADF",
                  "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"}  # fmt: skip
    assert ingest(test_event) == []


# -- bus events ------------------------------------------------------------------------------------------------


def test_the_sample_bus_event_creates_a_job_once(ingest_env: Stack) -> None:
    event = load_event("eventbridge_video_requested.json")
    [result] = ingest(event)
    assert result["outcome"] == "created"
    assert result["event_id"] == event["id"]
    created = job(EVENTS_OWNER, result["job_id"])
    assert created.owner == EVENTS_OWNER
    assert created.idempotency_key == event["id"]
    assert created.request["image_url"] == event["detail"]["image_url"]
    assert created.metadata == {"order_id": "ord-20417"}

    [again] = ingest(event)  # EventBridge delivers at least once
    assert again == {**result, "outcome": "replayed"}
    assert jobs_of(EVENTS_OWNER) == [created.job_id]
    assert queued_job_ids(ingest_env) == [created.job_id]


def test_events_with_the_same_idempotency_key_make_one_job(ingest_env: Stack, rejections: str) -> None:
    [first] = ingest(bus_event({**multi_text(image_url="https://example.com/a.png"), "idempotency_key": "ord-1"}))
    [second] = ingest(bus_event({**multi_text(image_url="https://example.com/a.png"), "idempotency_key": "ord-1"},
                                event_id="another-event-id"))  # fmt: skip
    assert second == {**first, "event_id": "another-event-id", "outcome": "replayed"}
    assert job(EVENTS_OWNER, first["job_id"]).idempotency_key == "ord-1"

    [conflict] = ingest(bus_event({**multi_text(image_url="https://example.com/b.png"), "idempotency_key": "ord-1"},
                                  event_id="third-event-id"))  # fmt: skip
    assert conflict["outcome"] == "rejected"
    assert pointers(conflict["errors"]) == {"#/idempotency_key"}
    assert jobs_of(EVENTS_OWNER) == [first["job_id"]]
    [rejection] = received_rejections(rejections)
    assert rejection["detail"]["request_event_id"] == "third-event-id"


def test_a_bad_bus_event_is_answered_with_a_rejection_event_and_no_job(ingest_env: Stack, rejections: str) -> None:
    event = bus_event(multi_text(image_url="https://example.com/face.png", num_frames=5, voice2="Nobody"))
    [result] = ingest(event)
    assert result["outcome"] == "rejected"

    [rejection] = received_rejections(rejections)
    assert rejection["source"] == "avatarjobs"
    assert rejection["detail-type"] == "Avatar Video Request Rejected"
    detail = rejection["detail"]
    assert detail["request_event_id"] == event["id"]
    assert detail["request_source"] == "com.example.orders"
    assert pointers(detail["errors"]) == {"#/num_frames", "#/voice2"}
    assert detail["errors"] == result["errors"]
    assert jobs_of(EVENTS_OWNER) == []
    assert queued_job_ids(ingest_env) == []


@pytest.mark.parametrize(
    ("detail", "pointer"),
    [
        ({"provider": "fal"}, "#/model"),
        ({**multi_text(image_url="https://example.com/face.png"), "idempotency_key": ""}, "#/idempotency_key"),
        ({**multi_text(image_url="https://example.com/face.png"), "idempotency_key": 7}, "#/idempotency_key"),
        (multi_text(image_url="face.png"), "#/image_url"),  # no folder to be relative to
    ],
)
def test_bus_event_errors_are_pointed_at(ingest_env: Stack, rejections: str, detail: Any, pointer: str) -> None:
    [result] = ingest(bus_event(detail))
    assert result["outcome"] == "rejected"
    assert pointer in pointers(result["errors"])
    [rejection] = received_rejections(rejections)
    assert pointer in pointers(rejection["detail"]["errors"])


def test_s3_inputs_of_bus_events_must_be_under_incoming(ingest_env: Stack, rejections: str) -> None:
    put_media()
    put("uploads/a1b2c3d4e5/01JD0000000000000000000001/face.png", PNG, "image/png")
    outside = f"s3://{inputs_bucket()}/uploads/a1b2c3d4e5/01JD0000000000000000000001/face.png"
    [refused] = ingest(bus_event(multi_text(image_url=outside), event_id="outside"))
    assert refused["outcome"] == "rejected"
    assert refused["errors"] == [
        {"pointer": "#/image_url", "detail": f"must be an object under s3://{inputs_bucket()}/incoming/"}
    ]

    inside = f"s3://{inputs_bucket()}/{FOLDER}face.png"
    [accepted] = ingest(bus_event(multi_text(image_url=inside), event_id="inside"))
    assert accepted["outcome"] == "created"
    assert job(EVENTS_OWNER, accepted["job_id"]).request["image_url"] == inside
    assert [message["detail"]["request_event_id"] for message in received_rejections(rejections)] == ["outside"]


def test_a_rejection_the_bus_does_not_take_fails_the_invocation(
    ingest_env: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(**_: Any) -> dict[str, Any]:
        return {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}]}

    monkeypatch.setattr(aws_clients.events(), "put_events", refuse)
    with pytest.raises(EventBusRejected, match="InternalFailure"):
        ingest(bus_event({"provider": "fal"}))


def test_other_events_are_ignored(ingest_env: Stack) -> None:
    event = {**load_event("eventbridge_video_requested.json"), "detail-type": "Something Else"}
    assert ingest(event) == []
    assert jobs_of(EVENTS_OWNER) == []
