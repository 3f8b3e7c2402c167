"""The jobs API: the real handler under moto, on the resources of template.yaml, with API Gateway events."""

import base64
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema_rs
import pytest

from avatarjobs import composition
from avatarjobs.domain import limits
from avatarjobs.domain.job import JobOutput, JobStatus
from avatarjobs.domain.messages import JobMessage
from avatarjobs.http.openapi import render
from devstack.cloudformation import Stack
from functions.api.app import app, lambda_handler
from tests.api_events import OWNER, api_event, load_event
from tests.lambda_context import LambdaContext
from tests.support import moto_clients
from tests.support.aws_calls import calls_made
from tests.support.job_states import move

FACE = "https://example.com/face.png"
SPEECH = "https://example.com/speech.wav"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_data_uri(size: int) -> str:
    """A data URI of `size` decoded bytes that starts as a PNG does (the API checks magic bytes, not the image)."""
    return "data:image/png;base64," + base64.b64encode(PNG_MAGIC + b"0" * (size - len(PNG_MAGIC))).decode()


PNG_DATA_URI = png_data_uri(72)

VALID_REQUESTS: dict[str, dict[str, Any]] = {
    "fal-ai/ai-avatar": {"provider": "fal", "image_url": FACE, "audio_url": SPEECH, "prompt": "A person talking."},
    "fal-ai/ai-avatar/single-text": {
        "provider": "fal",
        "image_url": FACE,
        "text_input": "Hello there.",
        "voice": "Aria",
        "prompt": "A person talking.",
    },
    "fal-ai/ai-avatar/multi": {
        "provider": "fal",
        "image_url": FACE,
        "first_audio_url": SPEECH,
        "second_audio_url": SPEECH,
        "prompt": "Two people talking.",
    },
    "fal-ai/ai-avatar/multi-text": {
        "provider": "fal",
        "image_url": FACE,
        "first_text_input": "Hi.",
        "second_text_input": "Hello!",
        "prompt": "Two people talking.",
    },
    "talking-avatar": {"provider": "mirako", "image_url": FACE, "audio_url": SPEECH},
}


def job_body(model: str = "fal-ai/ai-avatar/multi-text", **fields: Any) -> dict[str, Any]:
    body = {"model": model, **VALID_REQUESTS[model], **fields}
    return {name: value for name, value in body.items() if value is not None}


Call = Callable[..., tuple[int, dict[str, str], Any]]


@pytest.fixture
def call(stack: Stack) -> Call:
    def invoke(method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, str], Any]:
        event = kwargs.pop("event", None) or api_event(method, path, **kwargs)
        response = lambda_handler(event, LambdaContext("ApiFunction"))
        headers = {name: values[-1] for name, values in response.get("multiValueHeaders", {}).items()}
        headers.update(response.get("headers") or {})
        body = response["body"]
        return response["statusCode"], headers, json.loads(body) if body else None

    return invoke


def dispatch_messages(stack: Stack) -> list[dict[str, Any]]:
    sqs = moto_clients.sqs()
    messages: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=stack.refs["DispatchQueue"], MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return messages
        messages.extend(json.loads(message["Body"]) for message in batch)


def assert_problem(status: int, headers: dict[str, str], body: Any, expected_status: int) -> dict[str, Any]:
    assert status == expected_status, body
    assert headers["Content-Type"] == "application/problem+json"
    assert body["status"] == expected_status
    assert body["title"]
    assert body["detail"]
    assert body["code"]
    assert "Traceback" not in json.dumps(body)
    problem: dict[str, Any] = body
    return problem


def pointers(problem: dict[str, Any]) -> list[str]:
    return [error.get("pointer") or error.get("name") for error in problem["errors"]]


# -- POST /jobs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", sorted(VALID_REQUESTS))
def test_each_model_is_accepted_and_queued_once(call: Call, stack: Stack, model: str) -> None:
    status, headers, body = call("POST", "/jobs", body=job_body(model, metadata={"order": "42"}))
    assert status == 202, body
    assert body["status"] == "ACCEPTED"
    assert body["model"] == model
    assert body["provider"] == VALID_REQUESTS[model]["provider"]
    assert body["metadata"] == {"order": "42"}
    assert headers["Location"] == f"/v1/jobs/{body['job_id']}"
    assert dispatch_messages(stack) == [{"job_id": body["job_id"]}]


def test_the_stored_request_is_the_models_input_with_defaults_and_without_unset_options(call: Call) -> None:
    status, _, body = call("POST", "/jobs", body=job_body("fal-ai/ai-avatar/multi-text", num_frames=81))
    assert status == 202
    job = composition.jobs_service().get_job(OWNER, body["job_id"])
    assert job.request == {
        "image_url": FACE,
        "first_text_input": "Hi.",
        "second_text_input": "Hello!",
        "prompt": "Two people talking.",
        "voice1": "Sarah",
        "voice2": "Roger",
        "num_frames": 81,
    }
    assert job.owner == OWNER


def test_a_number_without_a_fraction_is_the_integer_json_schema_says_it_is(call: Call) -> None:
    # The document's "integer" (JSON Schema 2020-12) is any number whose fraction is zero: 97.0 is 97, stored as 97.
    body = job_body("fal-ai/ai-avatar/multi-text", num_frames=97.0, seed=7.0, deadline_seconds=6e2)
    status, _, created = call("POST", "/jobs", body=body)
    assert status == 202, created
    job = composition.jobs_service().get_job(OWNER, created["job_id"])
    assert (job.request["num_frames"], job.request["seed"]) == (97, 7)
    assert all(type(job.request[name]) is int for name in ("num_frames", "seed"))
    files = [{"name": "face.png", "content_type": "image/png", "size": 1000.0}]
    status, _, uploads = call("POST", "/uploads", body={"files": files})
    assert status == 201, uploads
    assert uploads["uploads"][0]["headers"]["Content-Length"] == "1000"


def test_the_document_says_what_the_mirako_and_multi_validators_refuse(call: Call) -> None:
    """Each rule across fields is in the request's schema too, so a request valid by the document is accepted."""
    components = json.loads(render(app))["components"]

    def schema_of(name: str) -> jsonschema_rs.Draft202012Validator:  # schemathesis's own judge of "valid"
        return jsonschema_rs.Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": components})

    mirako, multi = schema_of("MirakoTalkingAvatarRequest"), schema_of("FalMultiAudioRequest")
    text = {"audio_url": None, "text": "Hi", "voice_profile_id": "v"}
    for validator, body in [
        (mirako, job_body("talking-avatar")),
        (mirako, job_body("talking-avatar", **text)),
        (multi, job_body("fal-ai/ai-avatar/multi")),
        (multi, job_body("fal-ai/ai-avatar/multi", second_audio_url=None, use_only_first_audio=True)),
    ]:
        assert validator.is_valid(body), body
        assert call("POST", "/jobs", body=body)[0] == 202, body
    for validator, body in [
        (mirako, job_body("talking-avatar", audio_url=None)),
        (mirako, job_body("talking-avatar", text="Hi", voice_profile_id="v")),
        (mirako, job_body("talking-avatar", **text | {"voice_profile_id": None})),
        (multi, job_body("fal-ai/ai-avatar/multi", second_audio_url=None)),
        (multi, job_body("fal-ai/ai-avatar/multi", second_audio_url=None, use_only_first_audio=False)),
    ]:
        assert not validator.is_valid(body), body
        assert call("POST", "/jobs", body=body)[0] == 422, body


def test_a_data_uri_input_is_moved_to_the_inputs_bucket(call: Call, stack: Stack) -> None:
    status, _, body = call("POST", "/jobs", body=job_body("talking-avatar", image_url=PNG_DATA_URI))
    assert status == 202, body
    job = composition.jobs_service().get_job(OWNER, body["job_id"])
    key = f"inline/{OWNER}/{body['job_id']}/image_url"
    assert job.request["image_url"] == f"s3://{stack.refs['InputsBucket']}/{key}"
    stored = moto_clients.s3().get_object(Bucket=stack.refs["InputsBucket"], Key=key)
    assert stored["ContentType"] == "image/png"
    assert stored["Body"].read() == base64.b64decode(PNG_DATA_URI.split(",", 1)[1])


def put_upload(uri: str, data: bytes = PNG_MAGIC + b"0" * 64) -> str:
    """Puts `data` where an s3:// URI of POST /uploads points, as the caller's PUT would."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    moto_clients.s3().put_object(Bucket=bucket, Key=key, Body=data)
    return uri


def test_an_upload_of_the_caller_is_accepted_as_input(call: Call, stack: Stack) -> None:
    uri = put_upload(f"s3://{stack.refs['InputsBucket']}/uploads/{OWNER}/01JD00000000000000000000AA/face.png")
    status, _, body = call("POST", "/jobs", body=job_body("fal-ai/ai-avatar", image_url=uri))
    assert status == 202, body


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (None, "does not exist (was it uploaded?)"),
        (b"", "is empty"),
        (b"GIF89a" + b"0" * 64, "is not an image of an accepted type"),
        (b"RIFF\0\0\0\0WAVEfmt ", "is not an image of an accepted type"),  # audio in the image field
    ],
    ids=["never uploaded", "empty", "a GIF", "a WAV"],
)
def test_an_upload_that_is_no_usable_image_is_refused_at_accept(
    call: Call, stack: Stack, data: bytes | None, detail: str
) -> None:
    uri = f"s3://{stack.refs['InputsBucket']}/uploads/{OWNER}/01JD00000000000000000000AB/face.png"
    if data is not None:
        put_upload(uri, data)
    problem = assert_problem(*call("POST", "/jobs", body=job_body("fal-ai/ai-avatar", image_url=uri)), 422)
    [error] = problem["errors"]
    assert error["pointer"] == "#/image_url"
    assert detail in error["detail"]
    assert dispatch_messages(stack) == []


def test_every_unusable_upload_of_a_request_is_named_at_once(call: Call, stack: Stack) -> None:
    prefix = f"s3://{stack.refs['InputsBucket']}/uploads/{OWNER}/01JD00000000000000000000AC"
    body = job_body("fal-ai/ai-avatar/multi", image_url=f"{prefix}/face.png", first_audio_url=f"{prefix}/a.wav")
    body["second_audio_url"] = put_upload(f"{prefix}/b.wav", PNG_MAGIC)  # an image where audio goes
    problem = assert_problem(*call("POST", "/jobs", body=body), 422)
    assert sorted(pointers(problem)) == ["#/first_audio_url", "#/image_url", "#/second_audio_url"]
    assert problem["detail"] == "3 fields are invalid"


def test_an_upload_over_its_kinds_limit_is_refused_at_accept(call: Call, stack: Stack) -> None:
    uri = put_upload(
        f"s3://{stack.refs['InputsBucket']}/uploads/{OWNER}/01JD00000000000000000000AD/face.png",
        PNG_MAGIC + b"0" * limits.UPLOAD_MAX_BYTES["image"],
    )
    problem = assert_problem(*call("POST", "/jobs", body=job_body("fal-ai/ai-avatar", image_url=uri)), 422)
    assert f"over the {limits.UPLOAD_MAX_BYTES['image']}-byte image limit" in problem["errors"][0]["detail"]


def test_a_mirako_text_job_needs_a_voice_profile(call: Call) -> None:
    body = job_body("talking-avatar", audio_url=None, text="Hello", voice_profile_id="voice-1")
    assert call("POST", "/jobs", body=body)[0] == 202


@pytest.mark.parametrize(
    ("sample", "expected_status"),
    [
        ("api_create_job.json", 202),
        ("api_create_job_mirako.json", 202),
        ("api_get_job.json", 404),  # its job id names no job in a fresh table
        ("api_list_jobs.json", 200),
        ("api_cancel_job.json", 404),
        ("api_create_uploads.json", 201),
    ],
)
def test_the_handler_answers_every_sample_event(call: Call, stack: Stack, sample: str, expected_status: int) -> None:
    status, _, body = call("", "", event=load_event(sample))
    assert status == expected_status, body
    if sample.startswith("api_create_job"):
        assert dispatch_messages(stack) == [{"job_id": body["job_id"]}]
    if sample == "api_list_jobs.json":
        assert body == {"items": [], "next_cursor": None}


# -- Idempotency-Key ----------------------------------------------------------------------------------------


def test_the_same_key_and_body_replay_the_same_job_and_queue_nothing_more(call: Call, stack: Stack) -> None:
    headers = {"Idempotency-Key": "order-1"}
    first = call("POST", "/jobs", body=job_body(metadata={"a": 1, "b": 2}), headers=headers)
    # The same body with other key order and spacing is the same request.
    raw = json.dumps(job_body(metadata={"b": 2, "a": 1}), indent=2, sort_keys=True)
    second = call("POST", "/jobs", raw_body=raw, headers=headers)
    assert first[0] == second[0] == 202
    assert first[2]["job_id"] == second[2]["job_id"]
    assert first[1]["Idempotent-Replayed"] == "false"
    assert second[1]["Idempotent-Replayed"] == "true"
    assert dispatch_messages(stack) == [{"job_id": first[2]["job_id"]}]


def test_the_same_key_with_another_body_is_a_conflict(call: Call, stack: Stack) -> None:
    headers = {"Idempotency-Key": "order-1"}
    assert call("POST", "/jobs", body=job_body(), headers=headers)[0] == 202
    problem = assert_problem(*call("POST", "/jobs", body=job_body(prompt="Something else."), headers=headers), 409)
    assert problem["code"] == "idempotency_conflict"
    assert len(dispatch_messages(stack)) == 1


def test_keys_are_per_caller(call: Call, stack: Stack) -> None:
    headers = {"Idempotency-Key": "order-1"}
    mine = call("POST", "/jobs", body=job_body(), headers=headers)
    theirs = call("POST", "/jobs", body=job_body(), headers=headers, owner="other-key-id")
    assert mine[2]["job_id"] != theirs[2]["job_id"]
    assert len(dispatch_messages(stack)) == 2


def test_without_a_key_every_request_is_a_new_job(call: Call, stack: Stack) -> None:
    first, second = (call("POST", "/jobs", body=job_body())[2]["job_id"] for _ in range(2))
    assert first != second
    assert len(dispatch_messages(stack)) == 2


class BrokenQueue:
    def send(self, message: JobMessage) -> None:
        raise ConnectionError("SQS is unreachable")


def test_a_queue_outage_is_a_503_and_a_retry_with_the_key_queues_the_same_job(call: Call, stack: Stack) -> None:
    headers = {"Idempotency-Key": "order-7"}
    with composition.override(dispatch_queue=BrokenQueue()):
        problem = assert_problem(*call("POST", "/jobs", body=job_body(), headers=headers), 503)
        assert problem["code"] == "service_unavailable"
        assert dispatch_messages(stack) == []

        [listed] = composition.jobs_service().list_jobs(OWNER, status=JobStatus.ACCEPTED, limit=10, cursor=None).items
        unqueued = composition.jobs_service().get_job(OWNER, listed.job_id)
        assert unqueued.enqueue_failed_at is not None  # the failure is noted (a success writes nothing)

    status, _, body = call("POST", "/jobs", body=job_body(), headers=headers)
    assert status == 202
    assert dispatch_messages(stack) == [{"job_id": body["job_id"]}]
    assert composition.jobs_service().get_job(OWNER, body["job_id"]).enqueue_failed_at is None
    assert call("POST", "/jobs", body=job_body(), headers=headers)[2]["job_id"] == body["job_id"]
    assert dispatch_messages(stack) == []  # queued once, not again on a later replay


def test_a_new_job_is_stored_and_queued_with_two_calls(call: Call, stack: Stack) -> None:
    with calls_made() as calls:
        status, _, body = call("POST", "/jobs", body=job_body())
    assert status == 202
    assert calls == ["dynamodb.PutItem", "sqs.SendMessage"]  # no marker written after the send
    assert dispatch_messages(stack) == [{"job_id": body["job_id"]}]


def test_a_queue_outage_without_a_key_fails_the_job_rather_than_forgetting_it(call: Call, stack: Stack) -> None:
    with composition.override(dispatch_queue=BrokenQueue()):
        assert_problem(*call("POST", "/jobs", body=job_body()), 503)
        status, _, page = call("GET", "/jobs")
        assert status == 200
        [job] = page["items"]
        assert job["status"] == "FAILED"
        assert job["error"] == {
            "code": "ENQUEUE_FAILED",
            "message": "the job could not be queued",
            "retryable": True,
            "provider_code": None,
        }


# -- bad input ----------------------------------------------------------------------------------------------

BAD_BODIES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("missing field", job_body(prompt=None), ["#/prompt"]),
    ("missing model", {"provider": "fal", "image_url": FACE}, ["#/model"]),
    ("unknown model", job_body(model="fal-ai/ai-avatar") | {"model": "fal-ai/other"}, ["#/model"]),
    ("provider does not match the model", job_body(provider="mirako"), ["#/provider"]),
    ("bad enum", job_body(voice1="Bob", resolution="4k"), ["#/voice1", "#/resolution"]),
    ("num_frames under 81", job_body(num_frames=80), ["#/num_frames"]),
    ("num_frames over 129", job_body(num_frames=130), ["#/num_frames"]),
    ("num_frames not a number", job_body(num_frames="many"), ["#/num_frames"]),
    ("http URL", job_body(image_url="http://example.com/face.png"), ["#/image_url"]),
    ("malformed URL", job_body(image_url="https://"), ["#/image_url"]),
    ("URL with a bad port", job_body(image_url="https://example.com:99999/a.png"), ["#/image_url"]),
    ("not a URL", job_body(image_url="face.png"), ["#/image_url"]),
    ("bad base64 in a data URI", job_body(image_url="data:image/png;base64,@@@"), ["#/image_url"]),
    ("data URI that is not base64", job_body(image_url="data:image/png,rawbytes"), ["#/image_url"]),
    ("audio data URI for an image", job_body(image_url="data:audio/wav;base64,AAAA"), ["#/image_url"]),
    ("malformed s3 URI", job_body(image_url="s3://bucket-only"), ["#/image_url"]),
    ("metadata over 2 KB", job_body(metadata={"note": "x" * limits.METADATA_MAX_BYTES}), ["#/metadata"]),
    ("metadata not an object", job_body(metadata=["a"]), ["#/metadata"]),
    ("unknown field", job_body(colour="blue"), ["#/colour"]),
    ("deadline too short", job_body(deadline_seconds=1), ["#/deadline_seconds"]),
    ("empty text", job_body(first_text_input=""), ["#/first_text_input"]),
    ("mirako without speech", job_body("talking-avatar", audio_url=None), ["#/text"]),
    ("mirako with both", job_body("talking-avatar", text="Hi", voice_profile_id="v"), ["#/text"]),
    ("mirako text without voice", job_body("talking-avatar", audio_url=None, text="Hi"), ["#/voice_profile_id"]),
    (
        "multi without the second audio",
        job_body("fal-ai/ai-avatar/multi", second_audio_url=None),
        ["#/second_audio_url"],
    ),
    (
        "multi with use_only_first_audio false and no second audio",
        job_body("fal-ai/ai-avatar/multi", second_audio_url=None, use_only_first_audio=False),
        ["#/second_audio_url"],
    ),
    # JSON's types as documented, never coerced (issue 13)
    ("seed a boolean", job_body(seed=False), ["#/seed"]),
    ("num_frames a numeric string", job_body(num_frames="97"), ["#/num_frames"]),
    ("num_frames with a fraction", job_body(num_frames=97.5), ["#/num_frames"]),
    ("num_frames integral but out of range", job_body(num_frames=130.0), ["#/num_frames"]),
    (
        "a boolean as a string",
        job_body("fal-ai/ai-avatar/multi", use_only_first_audio="yes"),
        ["#/use_only_first_audio"],
    ),
    ("deadline a numeric string", job_body(deadline_seconds="600"), ["#/deadline_seconds"]),
    # refused at accept, before any provider call (issue 13)
    ("blank prompt", job_body(prompt="   "), ["#/prompt"]),
    ("blank speech text", job_body(first_text_input=" \n\t"), ["#/first_text_input"]),
    ("blank mirako text", job_body("talking-avatar", audio_url=None, text="  ", voice_profile_id="v"), ["#/text"]),
    ("URL on port 0", job_body(image_url="https://example.com:0/face.png"), ["#/image_url"]),
    ("URL with userinfo", job_body(image_url="https://user:pw@example.com/face.png"), ["#/image_url"]),
    ("URL over 2048 characters", job_body(image_url="https://example.com/" + "a" * 2048), ["#/image_url"]),
    ("URL of 500 KB", job_body(image_url="https://example.com/" + "a" * 500_000), ["#/image_url"]),
    ("data URI whose bytes are no image", job_body(image_url="data:image/png;base64,AAAA"), ["#/image_url"]),
    ("data URI of a JPEG named PNG", job_body(image_url="data:image/png;base64,/9j/4AAQ"), ["#/image_url"]),
    (
        "data URI whose bytes are no audio",
        job_body("talking-avatar", audio_url="data:audio/wav;base64,AAAA"),
        ["#/audio_url"],
    ),
    (
        "voice profile with spaces",
        job_body("talking-avatar", audio_url=None, text="Hi", voice_profile_id="a b"),
        ["#/voice_profile_id"],
    ),
]


def test_multi_takes_one_audio_when_told_to_use_only_the_first(call: Call, stack: Stack) -> None:
    body = job_body("fal-ai/ai-avatar/multi", second_audio_url=None, use_only_first_audio=True)
    status, _, _ = call("POST", "/jobs", body=body)
    assert status == 202
    assert len(dispatch_messages(stack)) == 1


@pytest.mark.parametrize(("body", "expected"), [case[1:] for case in BAD_BODIES], ids=[c[0] for c in BAD_BODIES])
def test_bad_input_is_a_422_naming_each_field(
    call: Call, stack: Stack, body: dict[str, Any], expected: list[str]
) -> None:
    problem = assert_problem(*call("POST", "/jobs", body=body), 422)
    assert problem["code"] == "validation_failed"
    assert sorted(pointers(problem)) == sorted(expected)
    assert all(error["location"] == "body" for error in problem["errors"])
    assert dispatch_messages(stack) == []


def raw_job_body(**raw_members: str) -> str:
    """A valid create-job body with members whose JSON text is given as is (what json.dumps cannot write)."""
    text = json.dumps(job_body())[:-1]
    return text + "".join(f", {json.dumps(name)}: {value}" for name, value in raw_members.items()) + "}"


@pytest.mark.parametrize(
    ("raw_body", "pointer", "detail"),
    [
        (raw_job_body(seed="NaN"), "#/seed", "NaN is not a JSON number"),
        (raw_job_body(seed="-Infinity"), "#/seed", "-Infinity is not a JSON number"),
        (raw_job_body(metadata='{"a": 1e400}'), "#/metadata/a", "beyond what a double holds"),
        (raw_job_body(metadata='{"a": 1000000000000000000000000000000}'), "#/metadata/a", "beyond +/-(2^53 - 1)"),
        (raw_job_body(metadata='{"n": [1, {"x~/y": 9007199254740992}]}'), "#/metadata/n/1/x~0~1y", "2^53"),
        # a double this large is an integer too, as the document's bound on metadata numbers says (issue 13)
        (raw_job_body(metadata='{"a": -1e20}'), "#/metadata/a", "beyond +/-(2^53 - 1)"),
        (raw_job_body(prompt='"A second prompt."'), "#/prompt", "appears more than once"),
    ],
)
def test_json_that_parsers_read_differently_is_refused_with_its_pointer(
    call: Call, stack: Stack, raw_body: str, pointer: str, detail: str
) -> None:
    problem = assert_problem(*call("POST", "/jobs", raw_body=raw_body), 422)
    [error] = problem["errors"]
    assert (error["pointer"], error["location"]) == (pointer, "body")
    assert detail in error["detail"]
    assert dispatch_messages(stack) == []


def test_json_nested_past_what_the_parser_takes_is_a_400_not_a_500(call: Call, stack: Stack) -> None:
    nested = "[" * 100_000 + "]" * 100_000
    problem = assert_problem(*call("POST", "/jobs", raw_body=raw_job_body(metadata=f'{{"deep": {nested}}}')), 400)
    assert problem["code"] == "malformed_json"
    assert dispatch_messages(stack) == []


def test_the_largest_valid_request_fits_the_job_record_with_room_to_spare(call: Call, stack: Stack) -> None:
    """Every field at its limit (URLs, texts, metadata): the stored item must stay far below DynamoDB's 400 KB."""
    url = "https://example.com/" + "a" * (limits.URL_MAX_CHARS - len("https://example.com/"))
    metadata_text = "x" * (limits.METADATA_MAX_BYTES - len('{"note":""}'))
    body = job_body(
        "fal-ai/ai-avatar/multi-text",
        image_url=url,
        first_text_input="w" * limits.SPEECH_TEXT_MAX_CHARS,
        second_text_input="w" * limits.SPEECH_TEXT_MAX_CHARS,
        prompt="p" * limits.PROMPT_MAX_CHARS,
        metadata={"note": metadata_text},
        deadline_seconds=limits.DEADLINE_SECONDS_MAX,
    )
    status, _, job = call(
        "POST", "/jobs", body=body, headers={"Idempotency-Key": "k" * limits.IDEMPOTENCY_KEY_MAX_CHARS}
    )
    assert status == 202, job
    table = moto_clients.dynamodb().describe_table(TableName=stack.refs["JobsTable"])["Table"]
    item = moto_clients.dynamodb().scan(TableName=table["TableName"])["Items"]
    [record] = [stored for stored in item if json.dumps(stored).count(metadata_text)]
    # DynamoDB counts names and values in UTF-8; the JSON text of the item over-counts it (quotes, type letters).
    assert len(json.dumps(record).encode()) < DYNAMODB_ITEM_MAX_BYTES // 4


DYNAMODB_ITEM_MAX_BYTES = 400 * 1024


def test_someone_elses_upload_is_refused(call: Call, stack: Stack) -> None:
    for uri in (
        f"s3://{stack.refs['InputsBucket']}/uploads/other-owner/01JD00000000000000000000AA/face.png",
        f"s3://{stack.refs['InputsBucket']}/inline/{OWNER}/x/image_url",
        f"s3://{stack.refs['OutputsBucket']}/uploads/{OWNER}/face.png",
    ):
        problem = assert_problem(*call("POST", "/jobs", body=job_body(image_url=uri)), 422)
        assert pointers(problem) == ["#/image_url"]


def test_invalid_json_is_a_400(call: Call) -> None:
    problem = assert_problem(*call("POST", "/jobs", raw_body='{"provider": "fal",'), 400)
    assert problem["code"] == "malformed_json"


def test_an_oversized_body_is_a_413(call: Call, stack: Stack) -> None:
    big = "data:image/png;base64," + "A" * (limits.REQUEST_BODY_MAX_BYTES + 10)
    problem = assert_problem(*call("POST", "/jobs", body=job_body(image_url=big)), 413)
    assert problem["code"] == "payload_too_large"
    assert dispatch_messages(stack) == []


# Lambda refuses a synchronous invoke whose payload (the whole event, body included) is 6,291,456 bytes or more:
# "Request must be smaller than 6291456 bytes for the InvokeFunction operation". API Gateway's request headers
# are at most 10,240 bytes (docs/decisions.md, "Request bodies of 6 to 10 MB").
LAMBDA_SYNC_PAYLOAD_MAX_BYTES = 6_291_456
API_GATEWAY_HEADERS_MAX_BYTES = 10_240


def largest_accepted_body() -> str:
    """A create-job body of exactly REQUEST_BODY_MAX_BYTES, nearly all of it one data URI (base64: no escapes)."""
    empty = json.dumps(job_body(image_url="data:image/png;base64,"))
    return json.dumps(job_body(image_url="data:image/png;base64," + "A" * (limits.REQUEST_BODY_MAX_BYTES - len(empty))))


def test_a_body_the_api_still_reads_fits_lambdas_invoke_payload_with_the_largest_headers() -> None:
    """So a body under our limit is never refused by Lambda before our code sees it (its 413 or its answer)."""
    body = largest_accepted_body()
    assert len(body.encode()) == limits.REQUEST_BODY_MAX_BYTES
    event = api_event("POST", "/jobs", raw_body=body, headers={"X-Padding": "p" * API_GATEWAY_HEADERS_MAX_BYTES})
    assert len(json.dumps(event, separators=(",", ":")).encode()) < LAMBDA_SYNC_PAYLOAD_MAX_BYTES


def test_a_body_one_byte_over_the_limit_is_a_413_problem(call: Call) -> None:
    body = largest_accepted_body().replace(
        '"image_url": "data:image/png;base64,', '"image_url": "data:image/png;base64,A'
    )
    status, headers, problem = call("POST", "/jobs", raw_body=body)
    assert (status, headers["Content-Type"], problem["code"]) == (413, "application/problem+json", "payload_too_large")


# Found by schemathesis (tests/e2e/test_hostile_input.py): the resolver parses form and multipart bodies too, and
# a multipart type without a boundary, or a body that is not UTF-8, was a 500.
@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/merge-patch+json",
    ],
)
def test_a_body_that_is_not_json_is_a_415(call: Call, stack: Stack, content_type: str) -> None:
    for path in ("/jobs", "/uploads"):
        raw = json.dumps(job_body())
        problem = assert_problem(*call("POST", path, raw_body=raw, headers={"Content-Type": content_type}), 415)
        assert problem["code"] == "unsupported_media_type"
    assert dispatch_messages(stack) == []


def test_json_with_a_charset_is_json(call: Call) -> None:
    raw = json.dumps(job_body())
    assert call("POST", "/jobs", raw_body=raw, headers={"Content-Type": "application/json; charset=utf-8"})[0] == 202


def test_a_body_that_is_not_utf_8_is_a_400(call: Call, stack: Stack) -> None:
    event = api_event("POST", "/jobs", raw_body=base64.b64encode(b'\xff\xfe{"provider": "fal"}').decode())
    event["isBase64Encoded"] = True
    problem = assert_problem(*call("POST", "/jobs", event=event), 400)
    assert problem["code"] == "malformed_json"
    assert dispatch_messages(stack) == []


def test_a_utf_8_body_in_base64_is_read(call: Call) -> None:
    event = api_event("POST", "/jobs", raw_body=base64.b64encode(json.dumps(job_body()).encode()).decode())
    event["isBase64Encoded"] = True
    assert call("POST", "/jobs", event=event)[0] == 202


@pytest.mark.parametrize("size", [limits.DATA_URI_MAX_BYTES + 1, limits.DATA_URI_MAX_BYTES + 4])
def test_a_data_uri_over_its_limit_is_a_422(call: Call, size: int) -> None:
    problem = assert_problem(*call("POST", "/jobs", body=job_body(image_url=png_data_uri(size))), 422)
    assert pointers(problem) == ["#/image_url"]
    assert "POST /uploads" in problem["errors"][0]["detail"]


def test_a_data_uri_at_its_limit_is_accepted(call: Call) -> None:
    assert call("POST", "/jobs", body=job_body(image_url=png_data_uri(limits.DATA_URI_MAX_BYTES)))[0] == 202


def test_a_bad_idempotency_key_header_is_named(call: Call) -> None:
    key = "k" * (limits.IDEMPOTENCY_KEY_MAX_CHARS + 1)
    problem = assert_problem(*call("POST", "/jobs", body=job_body(), headers={"Idempotency-Key": key}), 422)
    assert problem["errors"][0]["location"] == "header"


def test_a_request_without_an_api_key_identity_is_refused(call: Call) -> None:
    problem = assert_problem(*call("POST", "/jobs", body=job_body(), owner=None), 403)
    assert problem["code"] == "api_key_required"


def test_an_unexpected_failure_is_a_500_problem_without_internals(call: Call, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*_: Any, **__: Any) -> None:
        raise RuntimeError("secret internal detail in /var/task/app.py")

    monkeypatch.setattr(composition.jobs_service(), "create_job", explode)
    problem = assert_problem(*call("POST", "/jobs", body=job_body()), 500)
    assert "secret" not in json.dumps(problem)


# -- GET /jobs/{job_id} -------------------------------------------------------------------------------------


def test_a_job_is_described(call: Call) -> None:
    created = call("POST", "/jobs", body=job_body(metadata={"order": "9"}))[2]
    status, _, body = call("GET", f"/jobs/{created['job_id']}")
    assert status == 200
    assert body == created
    assert body["timeline"] == {"ACCEPTED": body["created_at"]}
    assert body["video_url"] is None


def test_a_succeeded_job_has_a_presigned_video_url(call: Call, stack: Stack) -> None:
    created = call("POST", "/jobs", body=job_body())[2]
    service = composition.jobs_service()
    output = JobOutput(
        bucket=stack.refs["OutputsBucket"],
        key=f"videos/{created['job_id']}.mp4",
        size=1234,
        sha256="a" * 64,
        content_type="video/mp4",
    )
    job = service.get_job(OWNER, created["job_id"])
    for target in (JobStatus.SUBMITTED, JobStatus.FINALIZING):
        job = move(composition.jobs_repository(), job, target, now=job.created_at)
    move(
        composition.jobs_repository(),
        job,
        JobStatus.SUCCEEDED,
        now=job.created_at,
        changes={"output": output.model_dump()},
    )

    status, _, body = call("GET", f"/jobs/{created['job_id']}")
    assert status == 200
    assert body["status"] == "SUCCEEDED"
    assert body["output"] == output.model_dump()
    url = urlsplit(body["video_url"])
    assert url.scheme == "https"
    assert url.hostname == f"{output.bucket}.s3.amazonaws.com"
    assert url.path == f"/{output.key}"
    assert parse_qs(url.query)["X-Amz-Expires"] == [str(limits.DOWNLOAD_URL_EXPIRY_SECONDS)]


@pytest.mark.parametrize("job_id", ["01JD0000000000000000000000", "not-a-job-id", "%2e%2e"])
def test_an_unknown_job_is_a_404(call: Call, job_id: str) -> None:
    problem = assert_problem(*call("GET", f"/jobs/{job_id}"), 404)
    assert problem["code"] == "job_not_found"


def test_the_job_view_shows_the_providers_request_id_once_submitted(call: Call) -> None:
    created = call("POST", "/jobs", body=job_body())[2]
    assert created["provider_request_id"] is None
    job = composition.jobs_service().get_job(OWNER, created["job_id"])
    changes = {"provider_request_id": "764cabcf-b745-4b3e-ae38-1200304cf45b"}
    move(composition.jobs_repository(), job, JobStatus.SUBMITTED, now=job.created_at, changes=changes)
    status, _, view = call("GET", f"/jobs/{created['job_id']}")
    assert status == 200
    assert view["provider_request_id"] == "764cabcf-b745-4b3e-ae38-1200304cf45b"
    [listed] = call("GET", "/jobs")[2]["items"]
    assert listed["provider_request_id"] == "764cabcf-b745-4b3e-ae38-1200304cf45b"


def test_someone_elses_job_is_a_404(call: Call) -> None:
    job_id = call("POST", "/jobs", body=job_body())[2]["job_id"]
    problem = assert_problem(*call("GET", f"/jobs/{job_id}", owner="other-key-id"), 404)
    assert problem["code"] == "job_not_found"
    assert_problem(*call("POST", f"/jobs/{job_id}/cancel", owner="other-key-id"), 404)


def test_an_unknown_route_is_a_404_problem(call: Call) -> None:
    assert_problem(*call("GET", "/nothing-here"), 404)


# -- GET /jobs ----------------------------------------------------------------------------------------------


def test_listing_pages_through_only_the_callers_jobs_newest_first(call: Call) -> None:
    mine = [call("POST", "/jobs", body=job_body())[2]["job_id"] for _ in range(5)]
    call("POST", "/jobs", body=job_body(), owner="other-key-id")
    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        status, _, page = call("GET", "/jobs", query=query)
        assert status == 200
        pages += 1
        seen += [item["job_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == sorted(mine, reverse=True)


def test_listing_filters_by_status(call: Call) -> None:
    first, second = (call("POST", "/jobs", body=job_body())[2]["job_id"] for _ in range(2))
    call("POST", f"/jobs/{first}/cancel")
    status, _, page = call("GET", "/jobs", query={"status": "CANCELED"})
    assert status == 200
    assert [item["job_id"] for item in page["items"]] == [first]
    assert page["next_cursor"] is None
    accepted = call("GET", "/jobs", query={"status": "ACCEPTED"})[2]
    assert [item["job_id"] for item in accepted["items"]] == [second]


def test_listing_filters_by_model_and_created_time_with_the_status(call: Call) -> None:
    text = call("POST", "/jobs", body=job_body("fal-ai/ai-avatar/multi-text"))[2]
    audio = call("POST", "/jobs", body=job_body("fal-ai/ai-avatar"))[2]
    mirako = call("POST", "/jobs", body=job_body("talking-avatar"))[2]
    call("POST", f"/jobs/{mirako['job_id']}/cancel")

    def listed(**query: str) -> list[str]:
        status, _, page = call("GET", "/jobs", query=query)
        assert status == 200, page
        return [item["job_id"] for item in page["items"]]

    assert listed(model="fal-ai/ai-avatar") == [audio["job_id"]]
    assert listed(model="talking-avatar", status="CANCELED") == [mirako["job_id"]]
    assert listed(model="talking-avatar", status="ACCEPTED") == []
    assert listed(created_after=audio["created_at"]) == [mirako["job_id"], audio["job_id"]]
    assert listed(created_before=audio["created_at"]) == [text["job_id"]]
    window = {"created_after": text["created_at"], "created_before": mirako["created_at"]}
    assert listed(**window, model="fal-ai/ai-avatar/multi-text") == [text["job_id"]]
    assert listed(created_after="2999-01-01T00:00:00+02:00") == []


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "DONE"}, "status"),
        ({"model": ""}, "model"),
        ({"model": "m" * 65}, "model"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_after": "1700000000"}, "created_after"),  # a Unix time is not ISO 8601
        ({"created_after": "2025-06-01T10:00:00"}, "created_after"),  # no offset: which time zone?
        ({"created_before": "2025-06-01"}, "created_before"),
        ({"created_before": "2025-13-01T10:00:00Z"}, "created_before"),
    ],
)
def test_bad_list_parameters_are_named(call: Call, query: dict[str, str], name: str) -> None:
    problem = assert_problem(*call("GET", "/jobs", query=query), 422)
    assert problem["errors"] == [{"location": "query", "name": name, "detail": problem["errors"][0]["detail"]}]


@pytest.mark.parametrize(
    "window",
    [
        {"created_after": "2025-06-01T10:00:00Z", "created_before": "2025-06-01T10:00:00Z"},
        {"created_after": "2025-06-02T10:00:00Z", "created_before": "2025-06-01T10:00:00Z"},
    ],
)
def test_an_empty_created_window_is_an_empty_page_not_an_error(call: Call, window: dict[str, str]) -> None:
    # No JSON Schema relates two query parameters: a window that holds no instant is asked well, and holds no job.
    call("POST", "/jobs", body=job_body())
    status, _, page = call("GET", "/jobs", query=window)
    assert (status, page) == (200, {"items": [], "next_cursor": None})


@pytest.mark.parametrize(
    "cursor", ["!!!", "bm90LWEtdWxpZA", "A" * 64, "01arz3ndektsv4rrffq69g5fav", "01ARZ3NDEKTSV4RRFFQ69G5FAU"]
)
def test_a_cursor_that_is_no_job_id_is_a_422_naming_it(call: Call, cursor: str) -> None:
    problem = assert_problem(*call("GET", "/jobs", query={"cursor": cursor}), 422)
    assert pointers(problem) == ["cursor"]


def test_any_well_formed_cursor_is_a_place_to_continue_from(call: Call) -> None:
    # The document's pattern is the whole rule: a job id the caller never saw is still a place in the order.
    older, newer = (call("POST", "/jobs", body=job_body())[2]["job_id"] for _ in range(2))
    page = call("GET", "/jobs", query={"cursor": "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"})[2]  # after every job there is
    assert [item["job_id"] for item in page["items"]] == [newer, older]
    assert call("GET", "/jobs", query={"cursor": newer})[2]["items"][0]["job_id"] == older
    assert call("GET", "/jobs", query={"cursor": "00000000000000000000000000"})[2] == {"items": [], "next_cursor": None}


# -- POST /jobs/{job_id}/cancel -----------------------------------------------------------------------------


def test_an_accepted_job_is_canceled_at_once(call: Call) -> None:
    job_id = call("POST", "/jobs", body=job_body())[2]["job_id"]
    status, _, body = call("POST", f"/jobs/{job_id}/cancel")
    assert status == 200
    assert body["status"] == "CANCELED"
    assert set(body["timeline"]) == {"ACCEPTED", "CANCELED"}


def test_canceling_a_canceled_job_again_answers_its_state_not_a_conflict(call: Call) -> None:
    job_id = call("POST", "/jobs", body=job_body())[2]["job_id"]
    first = call("POST", f"/jobs/{job_id}/cancel")[2]
    status, _, again = call("POST", f"/jobs/{job_id}/cancel")
    assert (status, again) == (200, first)  # nothing written the second time: same version, same timeline


@pytest.mark.parametrize("ended", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.TIMED_OUT])
def test_only_a_job_that_ended_otherwise_cannot_be_canceled(call: Call, ended: JobStatus) -> None:
    job_id = call("POST", "/jobs", body=job_body())[2]["job_id"]
    job = composition.jobs_service().get_job(OWNER, job_id)
    move(composition.jobs_repository(), job, ended, now=job.created_at)
    problem = assert_problem(*call("POST", f"/jobs/{job_id}/cancel"), 409)
    assert problem["code"] == "job_not_cancelable"
    assert ended.value in problem["detail"]


def test_a_submitted_job_moves_to_cancel_requested(call: Call) -> None:
    job_id = call("POST", "/jobs", body=job_body())[2]["job_id"]
    service = composition.jobs_service()
    job = service.get_job(OWNER, job_id)
    move(composition.jobs_repository(), job, JobStatus.SUBMITTED, now=job.created_at)
    status, _, body = call("POST", f"/jobs/{job_id}/cancel")
    assert (status, body["status"]) == (202, "CANCEL_REQUESTED")
    status, _, body = call("POST", f"/jobs/{job_id}/cancel")  # asking again changes nothing
    assert (status, body["status"]) == (202, "CANCEL_REQUESTED")


# -- POST /uploads ------------------------------------------------------------------------------------------


def test_uploads_get_presigned_put_urls_in_the_callers_prefix(call: Call, stack: Stack) -> None:
    status, _, body = call("POST", "/uploads", event=load_event("api_create_uploads.json"))
    assert status == 201, body
    assert [upload["name"] for upload in body["uploads"]] == ["face.png", "speech.wav"]
    for upload, (content_type, size) in zip(
        body["uploads"], [("image/png", 123456), ("audio/wav", 654321)], strict=True
    ):
        assert upload["method"] == "PUT"
        assert upload["s3_uri"].startswith(f"s3://{stack.refs['InputsBucket']}/uploads/{OWNER}/")
        assert upload["headers"] == {"Content-Type": content_type, "Content-Length": str(size)}
        url = urlsplit(upload["url"])
        signed = parse_qs(url.query)["X-Amz-SignedHeaders"][0].split(";")
        assert {"content-type", "content-length"} <= set(signed)
        assert url.path.endswith(upload["name"])
    # Once uploaded, it is usable as a job input.
    job = job_body("fal-ai/ai-avatar", image_url=put_upload(body["uploads"][0]["s3_uri"]))
    assert call("POST", "/jobs", body=job)[0] == 202


@pytest.mark.parametrize(
    ("files", "pointer"),
    [
        ([], "#/files"),
        ([{"name": "f.png", "content_type": "image/gif", "size": 10}], "#/files/0/content_type"),
        ([{"name": "f.png", "content_type": "image/png", "size": 0}], "#/files/0/size"),
        (
            [{"name": "f.png", "content_type": "image/png", "size": limits.UPLOAD_MAX_BYTES["image"] + 1}],
            "#/files/0/size",
        ),
        ([{"name": "../etc/passwd", "content_type": "image/png", "size": 10}], "#/files/0/name"),
        ([{"name": "f.png", "content_type": "image/png", "size": True}], "#/files/0/size"),
        ([{"name": "f.png", "content_type": "image/png", "size": "10"}], "#/files/0/size"),
        ([{"name": "f.png", "content_type": "image/png", "size": 10.5}], "#/files/0/size"),
        ([{"name": "f.png\n", "content_type": "image/png", "size": 10}], "#/files/0/name"),
        ([{"name": "f.png", "content_type": "image/png", "size": 1}] * (limits.UPLOAD_MAX_FILES + 1), "#/files"),
    ],
)
def test_bad_uploads_are_named(call: Call, files: list[dict[str, Any]], pointer: str) -> None:
    problem = assert_problem(*call("POST", "/uploads", body={"files": files}), 422)
    assert pointers(problem) == [pointer]
