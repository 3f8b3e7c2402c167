"""The `avatarjobs` CLI against the HTTP API of docs/openapi.json, mocked with respx.

Request bodies are checked with the API's own models (the ones docs/openapi.json is generated from), and
answers are built with them, so the client and the API cannot drift apart unnoticed.
"""

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from pydantic import TypeAdapter
from typer.testing import CliRunner, Result

from avatarjobs.domain import views as api_views
from avatarjobs.domain.job import JobError, JobOutput
from avatarjobs.domain.requests import JobRequest
from avatarjobs.http.problems import PROBLEM_JSON, FieldProblem, ProblemCode, problem_body
from avatarjobs.providers.catalog import FAL_VOICES, VoiceList, VoiceView, model_catalog
from avatarjobs_cli.main import app
from avatarjobs_cli.retries import RetryPolicy

BASE_URL = "https://abc123.execute-api.eu-west-1.amazonaws.com/v1"
LOCAL_URL = "http://127.0.0.1:8321/v1"
API_KEY = "k3y-that-must-never-be-printed-0123456789"
JOB_ID = "01JZ8Q4M6V3W2X1Y0ABCDEFGHJ"
OTHER_JOB_ID = "01JZ8Q4M6V3W2X1Y0ABCDEFGHK"
MULTI_TEXT = "fal-ai/ai-avatar/multi-text"
INPUTS = "https://inputs-bucket.s3.eu-west-1.amazonaws.com"
VIDEO_URL = f"https://outputs-bucket.s3.eu-west-1.amazonaws.com/videos/{JOB_ID}.mp4?X-Amz-Signature=abc"
PROGRESS = ["ACCEPTED", "SUBMITTED", "RUNNING", "FINALIZING"]

Invoke = Callable[..., Result]


# -- fixtures and builders ------------------------------------------------------------------------------------


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    # assert_all_mocked: a request the test did not expect fails instead of going out.
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        # What submit checks its fields against, as the API's own catalog answers it.
        router.get(f"{BASE_URL}/models", name="models").respond(200, json=model_catalog().model_dump(mode="json"))
        yield router


def sent(api: respx.MockRouter) -> list[str]:
    """What the CLI sent besides reading GET /models."""
    return [f"{call.request.method} {call.request.url.path}" for call in api.calls if call.request.method != "GET"]


@pytest.fixture
def cli(tmp_path: Path) -> Invoke:
    """Runs `avatarjobs ARGS` against BASE_URL with API_KEY from the environment, and checks the key stays unseen."""
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str | None] | None = None) -> Result:
        environment: dict[str, str | None] = {
            "AVATARJOBS_BASE_URL": BASE_URL,
            "AVATARJOBS_API_KEY": API_KEY,
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "COLUMNS": "200",
        }
        result = runner.invoke(app, list(args), env=environment | (env or {}))
        assert API_KEY not in result.stdout
        assert API_KEY not in result.stderr
        assert "Traceback" not in result.output
        return result

    return invoke


def job_json(status: str = "ACCEPTED", **fields: Any) -> dict[str, Any]:
    """A GET /jobs/{job_id} answer, as the API's own JobView serializes it."""
    path = PROGRESS[: PROGRESS.index(status) + 1] if status in PROGRESS else [*PROGRESS[:3], status]
    timeline = {name: f"2025-06-01T10:0{minute}:00.000Z" for minute, name in enumerate(path)}
    defaults: dict[str, Any] = {
        "job_id": JOB_ID,
        "status": status,
        "provider": "fal",
        "model": MULTI_TEXT,
        "created_at": timeline["ACCEPTED"],
        "updated_at": timeline[status],
        "deadline_at": "2025-06-01T12:00:00.000Z",
        "timeline": timeline,
    }
    return api_views.JobView(**(defaults | fields)).model_dump(mode="json")


def problem(status: int, detail: str, code: ProblemCode, errors: list[dict[str, str]] | None = None) -> httpx.Response:
    """An error answer, serialized by the API's own problem details code."""
    fields = [FieldProblem(**error) for error in errors] if errors else None
    body = problem_body(HTTPStatus(status), code, detail, fields)
    return httpx.Response(status, content=body, headers={"content-type": PROBLEM_JSON})


def accepted(job: dict[str, Any], *, replayed: bool = False) -> httpx.Response:
    headers = {"Location": f"/v1/jobs/{job['job_id']}", "Idempotent-Replayed": str(replayed).lower()}
    return httpx.Response(202, json=job, headers=headers)


def uploads_answer(request: httpx.Request) -> httpx.Response:
    """POST /uploads as the API answers it: a presigned PUT per file, signed for its type and size."""
    files = api_views.CreateUploadsRequest.model_validate_json(request.content).files
    targets = [
        api_views.UploadTarget(
            name=file.name,
            s3_uri=f"s3://inputs-bucket/uploads/key-id/{index}/{file.name}",
            url=f"{INPUTS}/uploads/key-id/{index}/{file.name}?X-Amz-Signature=sig{index}",
            headers={"Content-Type": file.content_type, "Content-Length": str(file.size)},
            expires_at="2025-06-01T10:15:00.000Z",
        )
        for index, file in enumerate(files)
    ]
    return httpx.Response(201, json=api_views.UploadsView(uploads=targets).model_dump(mode="json"))


def sent_json(request: httpx.Request) -> Any:
    return json.loads(request.content)


def valid_job_request(body: dict[str, Any]) -> None:
    TypeAdapter(JobRequest).validate_python(body)  # the API's own model of POST /jobs


@pytest.fixture
def face(tmp_path: Path) -> Path:
    path = tmp_path / "face.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"f" * 300)
    return path


@pytest.fixture
def speech(tmp_path: Path) -> Path:
    path = tmp_path / "speech.wav"
    path.write_bytes(b"RIFF" + b"s" * 500)
    return path


# -- submit ---------------------------------------------------------------------------------------------------


def test_submit_uploads_local_files_and_orders_the_job_with_their_s3_uris(
    cli: Invoke, api: respx.MockRouter, face: Path, speech: Path
) -> None:
    uploads = api.post(f"{BASE_URL}/uploads").mock(side_effect=uploads_answer)
    put_face = api.put(f"{INPUTS}/uploads/key-id/0/face.png").mock(return_value=httpx.Response(200))
    put_speech = api.put(f"{INPUTS}/uploads/key-id/1/speech.wav").mock(return_value=httpx.Response(200))
    create = api.post(f"{BASE_URL}/jobs").mock(return_value=accepted(job_json(model="fal-ai/ai-avatar")))

    result = cli(
        "submit", "--provider", "fal", "--model", "fal-ai/ai-avatar", "--image", str(face), "--audio", str(speech),
        "--field", "prompt=A woman talking", "--metadata", "order=1234", "--deadline-seconds", "900",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert result.stdout == f"{JOB_ID}\n"
    request = uploads.calls.last.request
    assert request.headers["x-api-key"] == API_KEY
    assert sent_json(request) == {
        "files": [
            {"name": "face.png", "content_type": "image/png", "size": face.stat().st_size},
            {"name": "speech.wav", "content_type": "audio/wav", "size": speech.stat().st_size},
        ]
    }
    for route, path, content_type in ((put_face, face, "image/png"), (put_speech, speech, "audio/wav")):
        put = route.calls.last.request
        assert put.url.params["X-Amz-Signature"].startswith("sig")
        assert put.headers["Content-Type"] == content_type
        assert put.headers["Content-Length"] == str(path.stat().st_size)
        assert "transfer-encoding" not in put.headers
        assert "x-api-key" not in put.headers  # the key never travels to S3
        assert put.read() == path.read_bytes()
    order = create.calls.last.request
    body = sent_json(order)
    assert body == {
        "provider": "fal",
        "model": "fal-ai/ai-avatar",
        "image_url": "s3://inputs-bucket/uploads/key-id/0/face.png",
        "audio_url": "s3://inputs-bucket/uploads/key-id/1/speech.wav",
        "prompt": "A woman talking",
        "metadata": {"order": "1234"},
        "deadline_seconds": 900,
    }
    valid_job_request(body)
    key = order.headers["Idempotency-Key"]
    assert uuid.UUID(key).version == 4
    assert f"Idempotency-Key: {key}" in result.stderr
    assert order.headers["x-api-key"] == API_KEY


def test_submit_passes_https_urls_through_and_prints_the_json(cli: Invoke, api: respx.MockRouter) -> None:
    uploads = api.post(f"{BASE_URL}/uploads")
    create = api.post(f"{BASE_URL}/jobs").mock(return_value=accepted(job_json()))

    result = cli(
        "submit", "--provider", "fal", "--model", MULTI_TEXT, "--image", "https://example.com/face.png",
        "--field", "first_text_input=Hi", "--field", "second_text_input=Hello", "--field", "prompt=Two people",
        "--field", "num_frames:=97", "--idempotency-key", "order-1234", "--json",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == job_json()
    assert not uploads.called
    order = create.calls.last.request
    assert order.headers["Idempotency-Key"] == "order-1234"
    body = sent_json(order)
    assert body == {
        "provider": "fal",
        "model": MULTI_TEXT,
        "image_url": "https://example.com/face.png",
        "first_text_input": "Hi",
        "second_text_input": "Hello",
        "prompt": "Two people",
        "num_frames": 97,
    }
    valid_job_request(body)


def test_submit_uploads_any_media_field_given_with_media(
    cli: Invoke, api: respx.MockRouter, face: Path, speech: Path
) -> None:
    api.post(f"{BASE_URL}/uploads").mock(side_effect=uploads_answer)
    api.put(url__startswith=f"{INPUTS}/uploads/").mock(return_value=httpx.Response(200))
    create = api.post(f"{BASE_URL}/jobs").mock(return_value=accepted(job_json(model="fal-ai/ai-avatar/multi")))

    result = cli(
        "submit", "--provider", "fal", "--model", "fal-ai/ai-avatar/multi", "--image", str(face),
        "--media", f"first_audio_url={speech}", "--media", "second_audio_url=https://example.com/b.mp3",
        "--field", "prompt=Two people",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    body = sent_json(create.calls.last.request)
    assert body["first_audio_url"] == "s3://inputs-bucket/uploads/key-id/1/speech.wav"
    assert body["second_audio_url"] == "https://example.com/b.mp3"
    valid_job_request(body)


def test_repeating_a_submit_with_its_key_sends_the_same_body_without_uploading_again(
    cli: Invoke, api: respx.MockRouter, face: Path
) -> None:
    uploads = api.post(f"{BASE_URL}/uploads").mock(side_effect=uploads_answer)
    api.put(url__startswith=f"{INPUTS}/uploads/").mock(return_value=httpx.Response(200))
    create = api.post(f"{BASE_URL}/jobs").mock(
        side_effect=[httpx.ConnectTimeout("lost"), accepted(job_json(), replayed=True)]
    )
    submit = (
        "submit", "--provider", "fal", "--model", MULTI_TEXT, "--image", str(face),
        "--field", "first_text_input=Hi", "--field", "second_text_input=Hello", "--field", "prompt=Two",
    )  # fmt: skip

    first = cli(*submit)
    key = first.stderr.split("Idempotency-Key: ")[1].split()[0]
    again = cli(*submit, "--idempotency-key", key)

    assert first.exit_code == 1
    assert f"--idempotency-key {key}" in first.stderr  # told how to repeat it safely
    assert again.exit_code == 0, again.output
    assert uploads.call_count == 1
    first_body, second_body = (sent_json(call.request) for call in create.calls)
    assert first_body == second_body  # so the API replays the job instead of refusing the key with 409
    assert "already ordered" in again.stderr


def test_submit_then_wait_ends_with_the_jobs_exit_code(cli: Invoke, api: respx.MockRouter) -> None:
    api.post(f"{BASE_URL}/jobs").mock(return_value=accepted(job_json()))
    failed = job_json("FAILED", error=JobError(code="GENERATION_FAILED", message="fal refused the image"))
    api.get(f"{BASE_URL}/jobs/{JOB_ID}").mock(return_value=httpx.Response(200, json=failed))

    result = cli(
        "submit", "--provider", "fal", "--model", MULTI_TEXT, "--image", "https://example.com/face.png",
        "--field", "first_text_input=Hi", "--field", "second_text_input=Hello", "--field", "prompt=Two",
        "--wait", "--interval", "0",
    )  # fmt: skip

    assert result.exit_code == 2
    assert result.stdout == f"{JOB_ID}\n"
    assert "GENERATION_FAILED: fal refused the image" in result.stderr


def test_a_missing_local_file_is_refused_before_anything_is_sent(cli: Invoke, api: respx.MockRouter) -> None:
    result = cli(
        "submit", "--provider", "fal", "--model", MULTI_TEXT, "--image", "nowhere/face.png",
        "-f", "first_text_input=Hi", "-f", "second_text_input=Hello", "-f", "prompt=Two people",
    )  # fmt: skip

    assert result.exit_code == 1
    assert "image_url: no such file nowhere/face.png" in result.stderr
    assert sent(api) == []


def test_submit_with_an_unknown_provider_lists_the_valid_ones_before_any_upload(
    cli: Invoke, api: respx.MockRouter, face: Path
) -> None:
    result = cli("submit", "--provider", "faal", "--model", MULTI_TEXT, "--image", str(face))

    assert result.exit_code == 1
    assert "--provider 'faal' is not one the API has: fal, mirako." in result.stderr
    assert sent(api) == []


def test_submit_with_another_providers_model_lists_this_providers_and_names_the_right_one(
    cli: Invoke, api: respx.MockRouter, face: Path
) -> None:
    result = cli("submit", "--provider", "fal", "--model", "talking-avatar", "--image", str(face))

    assert result.exit_code == 1
    assert "--model 'talking-avatar' is not a model of fal: fal-ai/ai-avatar, fal-ai/ai-avatar/single-text" in (
        result.stderr
    )
    assert "talking-avatar is a model of mirako: --provider mirako." in result.stderr
    assert sent(api) == []


def test_submit_names_every_unknown_missing_or_misspelt_field_before_any_upload(
    cli: Invoke, api: respx.MockRouter, face: Path
) -> None:
    result = cli(
        "submit", "--provider", "fal", "--model", "fal-ai/ai-avatar/single-text", "--image", str(face),
        "-f", "text_input=Hello", "-f", "voice=Nobody", "-f", "colour=red",
    )  # fmt: skip

    assert result.exit_code == 1
    assert "fal-ai/ai-avatar/single-text would refuse this request (nothing was uploaded or ordered):" in result.stderr
    assert "voice: 'Nobody' is not one of: Aria, Roger, Sarah" in result.stderr
    assert "colour: fal-ai/ai-avatar/single-text has no such field" in result.stderr
    assert "prompt: is required" in result.stderr
    assert "image_url" not in result.stderr.split("fields ('?': optional)")[0]  # given, as a local file
    assert sent(api) == []


def test_submit_says_how_to_give_a_number_that_came_as_text(cli: Invoke, api: respx.MockRouter) -> None:
    result = cli(
        "submit", "--provider", "fal", "--model", MULTI_TEXT, "--image", "https://example.com/face.png",
        "-f", "first_text_input=Hi", "-f", "second_text_input=Hello", "-f", "prompt=Two", "-f", "num_frames=97",
    )  # fmt: skip

    assert result.exit_code == 1
    assert "num_frames: takes a JSON integer, not str '97' (give it as --field num_frames:=<JSON>)" in result.stderr
    assert sent(api) == []


# -- models and voices ----------------------------------------------------------------------------------------


def test_models_shows_each_model_with_its_fields_and_what_it_is_billed_per(cli: Invoke, api: respx.MockRouter) -> None:
    result = cli("models")

    assert result.exit_code == 0, result.output
    for model in model_catalog().models:
        assert model.id in result.stdout
    assert "voice1?" in result.stdout
    assert "second of generated video" in result.stdout
    assert "not documented" in result.stdout  # Mirako's unit


def test_models_json_prints_the_apis_answer(cli: Invoke, api: respx.MockRouter) -> None:
    result = cli("models", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == model_catalog().model_dump(mode="json")


def test_voices_lists_fals_names_unless_asked_for_mirakos_profiles(cli: Invoke, api: respx.MockRouter) -> None:
    fal = VoiceList(provider="fal", voices=[VoiceView(id=name, name=name, languages=[], premade=True)
                                            for name in FAL_VOICES])  # fmt: skip
    mirako = VoiceList(
        provider="mirako",
        voices=[
            VoiceView(id="a1b2-premade", name="Mira Korner", languages=["en", "yue"], premade=True, status="READY"),
            VoiceView(id="c3d4-cloned", name="Our voice", languages=[], premade=False, status="READY"),
        ],
    )
    route = api.get(f"{BASE_URL}/voices").mock(
        side_effect=lambda request: httpx.Response(
            200, json=(mirako if request.url.params["provider"] == "mirako" else fal).model_dump(mode="json")
        )
    )

    default = cli("voices")
    asked = cli("voices", "--provider", "mirako")

    assert (default.exit_code, asked.exit_code) == (0, 0), default.output + asked.output
    assert [call.request.url.params["provider"] for call in route.calls] == ["fal", "mirako"]
    assert "Aria" in default.stdout
    assert "Bill" in default.stdout
    assert "a1b2-premade" in asked.stdout
    assert "en, yue" in asked.stdout
    assert "custom" in asked.stdout


def test_voices_when_mirako_cannot_be_reached_shows_the_apis_problem(cli: Invoke, api: respx.MockRouter) -> None:
    detail = "Mirako's voice profiles could not be read now (PROVIDER_UNREACHABLE)"
    unavailable = problem(503, detail, "service_unavailable")
    unavailable.headers["Retry-After"] = "0"
    route = api.get(f"{BASE_URL}/voices").mock(return_value=unavailable)

    result = cli("voices", "--provider", "mirako")

    assert result.exit_code == 1
    assert route.call_count == RetryPolicy().max_attempts  # a read: asked again, as its Retry-After says
    assert "GET /voices failed with 503" in result.stderr
    assert detail in result.stderr


# -- status, list, cancel -------------------------------------------------------------------------------------


def test_status_shows_the_job_and_its_timeline(cli: Invoke, api: respx.MockRouter) -> None:
    route = api.get(f"{BASE_URL}/jobs/{JOB_ID}").mock(return_value=httpx.Response(200, json=job_json("RUNNING")))

    result = cli("status", JOB_ID)

    assert result.exit_code == 0, result.output
    assert route.calls.last.request.headers["x-api-key"] == API_KEY
    for shown in (JOB_ID, "RUNNING", MULTI_TEXT, "SUBMITTED", "2025-06-01T10:01:00.000Z", "so far"):
        assert shown in result.stdout


def test_status_json_prints_the_apis_answer(cli: Invoke, api: respx.MockRouter) -> None:
    api.get(f"{BASE_URL}/jobs/{JOB_ID}").mock(return_value=httpx.Response(200, json=job_json("SUBMITTED")))

    result = cli("status", JOB_ID, "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == job_json("SUBMITTED")


def test_list_all_follows_next_cursor_through_every_page(cli: Invoke, api: respx.MockRouter) -> None:
    pages = [
        api_views.JobPage(items=[api_views.JobView(**job_json("RUNNING"))], next_cursor="cursor-2"),
        api_views.JobPage(items=[api_views.JobView(**job_json("RUNNING", job_id=OTHER_JOB_ID))], next_cursor=None),
    ]
    route = api.get(f"{BASE_URL}/jobs").mock(
        side_effect=[httpx.Response(200, json=page.model_dump(mode="json")) for page in pages]
    )

    result = cli("list", "--status", "RUNNING", "--limit", "1", "--all")

    assert result.exit_code == 0, result.output
    first, second = (dict(call.request.url.params) for call in route.calls)
    assert first == {"status": "RUNNING", "limit": "1"}
    assert second == {"status": "RUNNING", "limit": "1", "cursor": "cursor-2"}
    assert JOB_ID in result.stdout
    assert OTHER_JOB_ID in result.stdout


@pytest.mark.parametrize("given", ["succeeded", "Succeeded", "SUCCEEDED"])
def test_list_status_takes_any_case_and_asks_the_api_in_its_own(cli: Invoke, api: respx.MockRouter, given: str) -> None:
    page = api_views.JobPage(items=[], next_cursor=None)
    route = api.get(f"{BASE_URL}/jobs").mock(return_value=httpx.Response(200, json=page.model_dump(mode="json")))

    result = cli("list", "--status", given)

    assert result.exit_code == 0, result.output
    assert route.calls.last.request.url.params["status"] == "SUCCEEDED"


def test_list_status_names_the_statuses_as_the_api_writes_them(cli: Invoke) -> None:
    result = cli("list", "--status", "done")

    assert result.exit_code == 2
    assert "SUCCEEDED" in result.stderr
    assert "succeeded" not in result.stderr


def test_list_without_all_shows_one_page_and_how_to_get_the_next(cli: Invoke, api: respx.MockRouter) -> None:
    page = api_views.JobPage(items=[api_views.JobView(**job_json("SUCCEEDED"))], next_cursor="cursor-2")
    route = api.get(f"{BASE_URL}/jobs").mock(return_value=httpx.Response(200, json=page.model_dump(mode="json")))

    result = cli("list")

    assert result.exit_code == 0, result.output
    assert route.call_count == 1
    assert JOB_ID in result.stdout
    assert "avatarjobs list --cursor cursor-2" in result.stderr


@pytest.mark.parametrize(("code", "status"), [(200, "CANCELED"), (202, "CANCEL_REQUESTED")])
def test_cancel_prints_the_new_status(cli: Invoke, api: respx.MockRouter, code: int, status: str) -> None:
    route = api.post(f"{BASE_URL}/jobs/{JOB_ID}/cancel").mock(return_value=httpx.Response(code, json=job_json(status)))

    result = cli("cancel", JOB_ID)

    assert result.exit_code == 0, result.output
    assert result.stdout == f"{status}\n"
    assert route.calls.last.request.headers["x-api-key"] == API_KEY


# -- wait -----------------------------------------------------------------------------------------------------


def test_wait_follows_the_job_until_it_succeeds(cli: Invoke, api: respx.MockRouter) -> None:
    answers = [job_json(status) for status in ("SUBMITTED", "RUNNING", "RUNNING", "FINALIZING", "SUCCEEDED")]
    route = api.get(f"{BASE_URL}/jobs/{JOB_ID}").mock(
        side_effect=[httpx.Response(200, json=answer) for answer in answers]
    )

    result = cli("wait", JOB_ID, "--interval", "0")

    assert result.exit_code == 0, result.output
    assert route.call_count == 5
    lines = [line for line in result.stderr.splitlines() if JOB_ID in line]
    assert [line.split()[-1] for line in lines[:4]] == ["SUBMITTED", "RUNNING", "FINALIZING", "SUCCEEDED"]
    assert f"avatarjobs download {JOB_ID}" in result.stderr


@pytest.mark.parametrize("status", ["FAILED", "CANCELED", "TIMED_OUT"])
def test_wait_exits_2_when_the_job_ends_otherwise(cli: Invoke, api: respx.MockRouter, status: str) -> None:
    error = JobError(code="GENERATION_FAILED", message="no face found") if status == "FAILED" else None
    api.get(f"{BASE_URL}/jobs/{JOB_ID}").mock(
        side_effect=[
            httpx.Response(200, json=job_json("RUNNING")),
            httpx.Response(200, json=job_json(status, error=error)),
        ]
    )

    result = cli("wait", JOB_ID, "--interval", "0")

    assert result.exit_code == 2
    assert f"ended {status}" in result.stderr
    if error:
        assert "GENERATION_FAILED: no face found" in result.stderr


def test_wait_exits_3_when_its_timeout_passes_first(cli: Invoke, api: respx.MockRouter) -> None:
    route = api.get(f"{BASE_URL}/jobs/{JOB_ID}").mock(return_value=httpx.Response(200, json=job_json("RUNNING")))

    result = cli("wait", JOB_ID, "--timeout", "0.05", "--interval", "0.01", "--json")

    assert result.exit_code == 3
    assert route.call_count >= 2
    assert json.loads(result.stdout)["status"] == "RUNNING"
    assert "still RUNNING" in result.stderr


def test_wait_retries_a_503_after_its_retry_after(cli: Invoke, api: respx.MockRouter) -> None:
    unavailable = problem(503, "The jobs table is unavailable", "service_unavailable")
    unavailable.headers["Retry-After"] = "0"
    route = api.get(f"{BASE_URL}/jobs/{JOB_ID}").mock(
        side_effect=[unavailable, httpx.Response(200, json=job_json("SUCCEEDED"))]
    )

    result = cli("wait", JOB_ID)

    assert result.exit_code == 0, result.output
    assert route.call_count == 2


def test_cancel_is_repeated_on_503_since_the_api_answers_a_repeat_with_the_jobs_state(
    cli: Invoke, api: respx.MockRouter
) -> None:
    unavailable = problem(503, "The jobs table is unavailable", "service_unavailable")
    unavailable.headers["Retry-After"] = "0"
    route = api.post(f"{BASE_URL}/jobs/{JOB_ID}/cancel").mock(
        side_effect=[unavailable, httpx.Response(200, json=job_json("CANCELED"))]
    )

    result = cli("cancel", JOB_ID)

    assert result.exit_code == 0, result.output
    assert route.call_count == 2
    assert result.stdout == "CANCELED\n"


# -- download -------------------------------------------------------------------------------------------------

VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40


def succeeded_with(video: bytes) -> dict[str, Any]:
    output = JobOutput(
        bucket="outputs-bucket",
        key=f"videos/{JOB_ID}.mp4",
        size=len(video),
        sha256=hashlib.sha256(video).hexdigest(),
        content_type="video/mp4",
    )
    return job_json("SUCCEEDED", output=output, video_url=VIDEO_URL)


def test_download_streams_the_video_and_checks_size_and_sha256(
    cli: Invoke, api: respx.MockRouter, tmp_path: Path
) -> None:
    api.get(f"{BASE_URL}/jobs/{JOB_ID}").mock(return_value=httpx.Response(200, json=succeeded_with(VIDEO)))
    video = api.get(VIDEO_URL).mock(return_value=httpx.Response(200, content=VIDEO))
    destination = tmp_path / "out.mp4"

    result = cli("download", JOB_ID, "-o", str(destination))

    assert result.exit_code == 0, result.output
    assert destination.read_bytes() == VIDEO
    assert result.stdout == f"{destination}\n"
    assert "SHA-256 verified" in result.stderr
    assert "x-api-key" not in video.calls.last.request.headers  # presigned: the key stays with the API


@pytest.mark.parametrize(
    ("output", "written"),
    [
        ("out/", f"out/{JOB_ID}.mp4"),
        ("nested/a/b.mp4", "nested/a/b.mp4"),
        ("existing", f"existing/{JOB_ID}.mp4"),
    ],
    ids=["a folder that does not exist yet", "a file in folders that do not exist yet", "an existing folder"],
)
def test_download_makes_the_folders_it_is_told_of(
    cli: Invoke, api: respx.MockRouter, tmp_path: Path, *, monkeypatch: pytest.MonkeyPatch, output: str, written: str
) -> None:
    api.get(f"{BASE_URL}/jobs/{JOB_ID}").mock(return_value=httpx.Response(200, json=succeeded_with(VIDEO)))
    api.get(VIDEO_URL).mock(return_value=httpx.Response(200, content=VIDEO))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "existing").mkdir()

    result = cli("download", JOB_ID, "-o", output)

    assert result.exit_code == 0, result.output
    assert (tmp_path / written).read_bytes() == VIDEO
    assert result.stdout == f"{written}\n"


def test_download_into_a_path_under_a_file_fails_before_fetching_the_video(
    cli: Invoke, api: respx.MockRouter, tmp_path: Path
) -> None:
    api.get(f"{BASE_URL}/jobs/{JOB_ID}").mock(return_value=httpx.Response(200, json=succeeded_with(VIDEO)))
    video = api.get(VIDEO_URL).mock(return_value=httpx.Response(200, content=VIDEO))
    (tmp_path / "a-file").write_bytes(b"")

    result = cli("download", JOB_ID, "-o", str(tmp_path / "a-file" / "b.mp4"))

    assert result.exit_code == 1
    assert "Cannot make the folder" in result.stderr
    assert video.call_count == 0


@pytest.mark.parametrize("served", [VIDEO[:-1] + b"!", VIDEO[:-10], VIDEO + b"extra"])
def test_download_refuses_a_video_that_is_not_the_jobs(
    cli: Invoke, api: respx.MockRouter, tmp_path: Path, served: bytes
) -> None:
    api.get(f"{BASE_URL}/jobs/{JOB_ID}").mock(return_value=httpx.Response(200, json=succeeded_with(VIDEO)))
    api.get(VIDEO_URL).mock(return_value=httpx.Response(200, content=served))
    destination = tmp_path / "out.mp4"

    result = cli("download", JOB_ID, "-o", str(destination))

    assert result.exit_code == 1
    assert "SHA-256" in result.stderr or "bytes" in result.stderr
    assert list(tmp_path.glob("out.mp4*")) == []  # neither the file nor its partial download is left


def test_download_refuses_a_job_that_has_not_succeeded(cli: Invoke, api: respx.MockRouter, tmp_path: Path) -> None:
    api.get(f"{BASE_URL}/jobs/{JOB_ID}").mock(return_value=httpx.Response(200, json=job_json("RUNNING")))

    result = cli("download", JOB_ID, "-o", str(tmp_path / "out.mp4"))

    assert result.exit_code == 1
    assert f"Job {JOB_ID} is RUNNING: only a SUCCEEDED job has a video." in result.stderr
    assert api.calls.call_count == 1


# -- errors, settings and the key -----------------------------------------------------------------------------


def test_a_422_problem_names_each_field(cli: Invoke, api: respx.MockRouter) -> None:
    errors = [
        {"location": "body", "pointer": "#/num_frames", "detail": "Input should be less than or equal to 129"},
        {"location": "body", "pointer": "#/second_text_input", "detail": "must not be blank"},
    ]
    api.post(f"{BASE_URL}/jobs").mock(return_value=problem(422, "2 fields are invalid", "validation_failed", errors))

    result = cli(
        "submit", "--provider", "fal", "--model", MULTI_TEXT, "--image", "https://example.com/face.png",
        "--field", "first_text_input=Hi", "--field", "second_text_input= ", "--field", "prompt=Two",
        "--field", "num_frames:=200",
    )  # fmt: skip

    assert result.exit_code == 1
    assert "POST /jobs failed with 422 Unprocessable Content: 2 fields are invalid (validation_failed)" in result.stderr
    assert "#/num_frames: Input should be less than or equal to 129" in result.stderr
    assert "#/second_text_input: must not be blank" in result.stderr
    assert result.stdout == ""


def test_a_problem_with_a_query_parameter_names_it(cli: Invoke, api: respx.MockRouter) -> None:
    errors = [{"location": "query", "name": "cursor", "detail": "is not a cursor of this listing"}]
    api.get(f"{BASE_URL}/jobs").mock(return_value=problem(400, "The cursor is invalid", "invalid_cursor", errors))

    result = cli("list", "--cursor", "bogus")

    assert result.exit_code == 1
    assert "query cursor: is not a cursor of this listing" in result.stderr


def test_a_missing_api_key_is_explained(cli: Invoke, api: respx.MockRouter) -> None:
    result = cli("status", JOB_ID, env={"AVATARJOBS_API_KEY": None})

    assert result.exit_code == 1
    assert "No API key: pass --api-key or set AVATARJOBS_API_KEY" in result.stderr
    assert "make up" in result.stderr
    assert not api.calls


def test_options_and_environment_both_give_the_url_and_key(cli: Invoke, api: respx.MockRouter) -> None:
    other_url = "https://xyz789.execute-api.us-east-1.amazonaws.com/prod"
    from_env = api.get(f"{BASE_URL}/jobs/{JOB_ID}").mock(return_value=httpx.Response(200, json=job_json()))
    from_options = api.get(f"{other_url}/jobs/{JOB_ID}").mock(return_value=httpx.Response(200, json=job_json()))

    by_env = cli("status", JOB_ID)
    by_options = cli(
        "status", JOB_ID, "--base-url", other_url, "--api-key", "another-key",
        env={"AVATARJOBS_BASE_URL": None, "AVATARJOBS_API_KEY": None},
    )  # fmt: skip

    assert by_env.exit_code == 0, by_env.output
    assert by_options.exit_code == 0, by_options.output
    assert from_env.calls.last.request.headers["x-api-key"] == API_KEY
    assert from_options.calls.last.request.headers["x-api-key"] == "another-key"


def test_a_stopped_local_stack_is_explained(cli: Invoke, api: respx.MockRouter) -> None:
    api.get(f"{LOCAL_URL}/jobs/{JOB_ID}").mock(side_effect=httpx.ConnectError("[Errno 111] Connection refused"))

    result = cli("status", JOB_ID, env={"AVATARJOBS_BASE_URL": LOCAL_URL})

    assert result.exit_code == 1
    assert f"Cannot connect to {LOCAL_URL}" in result.stderr
    assert "Is the local stack running? Start it with `make up`" in result.stderr


def test_an_answer_that_is_not_the_apis_is_explained(cli: Invoke, api: respx.MockRouter) -> None:
    api.get(f"{BASE_URL}/jobs/{JOB_ID}").mock(return_value=httpx.Response(200, text="<html>hello</html>"))

    result = cli("status", JOB_ID)

    assert result.exit_code == 1
    assert "not JSON" in result.stderr


def test_a_refused_key_points_at_the_key(cli: Invoke, api: respx.MockRouter) -> None:
    api.get(f"{BASE_URL}/jobs/{JOB_ID}").mock(return_value=httpx.Response(403, json={"message": "Forbidden"}))

    result = cli("status", JOB_ID)

    assert result.exit_code == 1
    assert "403 Forbidden" in result.stderr
    assert "Check the API key" in result.stderr


def test_the_key_is_not_sent_over_plain_http_to_another_host(cli: Invoke, api: respx.MockRouter) -> None:
    result = cli("status", JOB_ID, env={"AVATARJOBS_BASE_URL": "http://api.example.com/v1"})

    assert result.exit_code == 1
    assert "plain http" in result.stderr
    assert not api.calls


def test_help_does_not_show_the_key(cli: Invoke) -> None:
    result = cli("submit", "--help")

    assert result.exit_code == 0
    assert "AVATARJOBS_API_KEY" in result.stdout
