"""docs/openapi.json generates a typed client (openapi-python-client) that drives every route of the local stack.

The client is generated into pytest's tmp_path by the pinned generator (.venv-codegen: it pins a typer the CLI
cannot use) and imported from there; each answer must parse into the generated attrs classes, problems included.
The providers are devstack's emulators, so a job really runs and the views carry every field a job can have.
"""

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from devstack.media import SAMPLE_FACE
from devstack.processes import REPO_ROOT
from tests.support.pipeline import JOB_TIMEOUT_SECONDS, TERMINAL, Pipeline, quick_pipeline
from tests.support.polling import eventually

DOCUMENT = REPO_ROOT / "docs" / "openapi.json"
GENERATOR_BIN = REPO_ROOT / ".venv-codegen" / "bin"
PACKAGE = "avatarjobs_client"  # the generator's name for the document's title
FAL_TEXT_MODEL = "fal-ai/ai-avatar/single-text"
# What the tests use of the generated package, by the name they use it by.
MODULES = {
    "client": "client",
    "models": "models",
    **{operation: f"api.jobs.{operation}" for operation in ("create_job", "get_job", "list_jobs", "cancel_job")},
    "create_uploads": "api.uploads.create_uploads",
    **{operation: f"api.discovery.{operation}" for operation in ("list_models", "list_voices")},
}


@dataclass(frozen=True)
class Generation:
    returncode: int
    output: str  # the generator's stdout and stderr, interleaved as printed
    root: Path  # the folder holding the package


@pytest.fixture(scope="module")
def generation(tmp_path_factory: pytest.TempPathFactory) -> Generation:
    assert (GENERATOR_BIN / "openapi-python-client").exists(), "run `make e2e` (it installs .venv-codegen)"
    root = tmp_path_factory.mktemp("generated-client")
    command = [str(GENERATOR_BIN / "openapi-python-client"), "generate", "--path", str(DOCUMENT), "--meta", "none"]
    command += ["--output-path", str(root / PACKAGE), "--fail-on-warning"]
    # Its post hooks run the ruff it installed: found on PATH.
    environment = os.environ | {"PATH": f"{GENERATOR_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    completed = subprocess.run(  # noqa: S603 - the pinned generator on our own document
        command, cwd=root, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
    )
    return Generation(completed.returncode, completed.stdout, root)


@pytest.fixture(scope="module")
def generated(generation: Generation) -> Iterator[Any]:
    """The generated package's modules (see MODULES), imported from where it was generated."""
    assert generation.returncode == 0, generation.output
    sys.path.insert(0, str(generation.root))
    try:
        yield SimpleNamespace(**{name: importlib.import_module(f"{PACKAGE}.{path}") for name, path in MODULES.items()})
    finally:
        sys.path.remove(str(generation.root))
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with quick_pipeline(tmp_path_factory.mktemp("generated-client-logs"), "fal") as pipeline:
        yield pipeline


@pytest.fixture(scope="module")
def client(generated: Any, pipeline: Pipeline) -> Iterator[Any]:
    authenticated = generated.client.AuthenticatedClient(
        base_url=pipeline.local.api_url, token=pipeline.local.api_key, prefix="", auth_header_name="x-api-key"
    )
    with authenticated as opened:
        yield opened


def test_the_document_generates_a_client_without_a_warning(generation: Generation) -> None:
    assert generation.returncode == 0, generation.output
    assert [line for line in generation.output.splitlines() if "warning" in line.lower()] == []


def test_the_code_generated_from_the_document_type_checks_strictly(generation: Generation, tmp_path: Path) -> None:
    # The models and operations come from the document; client.py is the generator's own template, left out.
    # redundant-cast: the generator casts a list of Any to list[Any] (its template for `items: {}`), no typing hole.
    command = [sys.executable, "-m", "mypy", "--strict", "--disable-error-code=redundant-cast"]
    command += ["--follow-imports=silent", "--cache-dir", str(tmp_path)]
    command += ["-p", f"{PACKAGE}.models", "-p", f"{PACKAGE}.api"]
    checked = subprocess.run(command, cwd=generation.root, capture_output=True, text=True, check=False)  # noqa: S603
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _final(generated: Any, client: Any, job_id: str) -> Any:
    def ended() -> Any:
        job = generated.get_job.sync(job_id, client=client)
        return job if job.status.value in TERMINAL else None

    return eventually(ended, timeout=JOB_TIMEOUT_SECONDS, every=0.5, waiting_for=f"job {job_id} to end")


def _face_upload(generated: Any, client: Any) -> str:
    """The sample face, uploaded through POST /uploads: its s3:// URI."""
    models = generated.models
    face = SAMPLE_FACE.read_bytes()
    request = models.CreateUploadsRequest(
        files=[models.UploadFile(name="face.png", content_type=models.UploadFileContentType.IMAGEPNG, size=len(face))]
    )
    answer = generated.create_uploads.sync_detailed(client=client, body=request)
    assert answer.status_code == 201, answer.content
    assert isinstance(answer.parsed, models.UploadsView)
    [upload] = answer.parsed.uploads
    assert isinstance(upload, models.UploadTarget)
    assert isinstance(upload.expires_at, datetime)
    put = httpx.put(upload.url, content=face, headers=upload.headers.to_dict(), timeout=30)
    assert put.status_code == 200, put.text
    s3_uri: str = upload.s3_uri
    return s3_uri


def _text_job(generated: Any, image_url: str, **fields: Any) -> Any:
    models = generated.models
    return models.FalSingleTextRequest(
        provider="fal",
        model=FAL_TEXT_MODEL,
        image_url=image_url,
        text_input="Hello from a generated client.",
        voice=models.Voice.ARIA,
        prompt="A person talking.",
        **fields,
    )


def test_an_uploaded_face_ordered_read_and_listed_parses_into_the_generated_classes(
    generated: Any, client: Any
) -> None:
    models = generated.models
    ordered_after = datetime.now(UTC) - timedelta(seconds=1)
    request = _text_job(
        generated,
        _face_upload(generated, client),
        metadata=models.Metadata.from_dict({"order": "generated-1"}),
        resolution=models.Resolution.P480,
    )

    answer = generated.create_job.sync_detailed(client=client, body=request, idempotency_key="generated-client-1")

    assert answer.status_code == 202, answer.content
    accepted = answer.parsed
    assert isinstance(accepted, models.JobView)
    assert (accepted.status, accepted.provider, accepted.model) == (
        models.JobStatus.ACCEPTED,
        models.ProviderId.FAL,
        models.ModelId.FAL_AI_AVATAR_SINGLE_TEXT,
    )
    assert answer.headers["Location"].endswith(f"/jobs/{accepted.job_id}")
    assert answer.headers["Idempotent-Replayed"] == "false"
    assert isinstance(accepted.created_at, datetime)
    assert (accepted.error, accepted.output, accepted.video_url) == (None, None, None)
    assert isinstance(accepted.metadata, models.Metadata)

    job = _final(generated, client, accepted.job_id)
    assert isinstance(job, models.JobView)
    assert job.status == models.JobStatus.SUCCEEDED
    assert isinstance(job.output, models.JobOutput)
    assert job.output.key == f"videos/{job.job_id}.mp4"
    assert httpx.get(job.video_url, timeout=30).content[4:8] == b"ftyp"
    assert isinstance(job.timeline.additional_properties["SUCCEEDED"], datetime)

    page = generated.list_jobs.sync(
        client=client,
        status=models.JobStatus.SUCCEEDED,
        model=FAL_TEXT_MODEL,
        created_after=ordered_after,
        created_before=datetime.now(UTC),
        limit=10,
    )
    assert isinstance(page, models.JobPage)
    assert [listed.job_id for listed in page.items] == [job.job_id]
    assert all(isinstance(listed, models.JobView) for listed in page.items)
    assert page.next_cursor is None


def test_a_cancel_answers_the_job_and_a_cancel_of_a_succeeded_job_a_parsed_problem(
    generated: Any, client: Any, pipeline: Pipeline
) -> None:
    models = generated.models
    image = _face_upload(generated, client)
    with pipeline.emulating("fal", queue_seconds=30):
        queued = generated.create_job.sync(client=client, body=_text_job(generated, image))
        canceled = generated.cancel_job.sync_detailed(queued.job_id, client=client)
        assert canceled.status_code in (200, 202), canceled.content
        assert isinstance(canceled.parsed, models.JobView)
        assert canceled.parsed.status in (models.JobStatus.CANCELED, models.JobStatus.CANCEL_REQUESTED)
        assert _final(generated, client, queued.job_id).status == models.JobStatus.CANCELED
    ordered = generated.create_job.sync(client=client, body=_text_job(generated, image))
    succeeded = _final(generated, client, ordered.job_id)
    assert succeeded.status == models.JobStatus.SUCCEEDED

    refused = generated.cancel_job.sync_detailed(succeeded.job_id, client=client)

    assert refused.status_code == 409
    assert isinstance(refused.parsed, models.Problem)
    assert refused.parsed.code == models.ProblemCode.JOB_NOT_CANCELABLE


def test_a_bad_request_answers_a_parsed_problem_naming_the_field(generated: Any, client: Any) -> None:
    models = generated.models

    answer = generated.create_job.sync_detailed(client=client, body=_text_job(generated, "http://example.com/face.png"))

    assert answer.status_code == 422
    problem = answer.parsed
    assert isinstance(problem, models.Problem)
    assert (problem.status, problem.code) == (422, models.ProblemCode.VALIDATION_FAILED)
    [field] = problem.errors
    assert isinstance(field, models.FieldProblem)
    assert (field.location, field.pointer) == (models.FieldProblemLocation.BODY, "#/image_url")


def test_an_unknown_job_and_a_forged_cursor_answer_parsed_problems(generated: Any, client: Any) -> None:
    models = generated.models

    missing = generated.get_job.sync("01JNOSUCHJOB00000000000000", client=client)
    forged = generated.list_jobs.sync(client=client, cursor="not-a-cursor")

    assert isinstance(missing, models.Problem)
    assert missing.code == models.ProblemCode.JOB_NOT_FOUND
    assert isinstance(forged, models.Problem)
    assert forged.code == models.ProblemCode.VALIDATION_FAILED  # a cursor is a job id: one that is not is invalid
    assert [(error.location, error.name) for error in forged.errors] == [(models.FieldProblemLocation.QUERY, "cursor")]


def test_the_models_and_the_voices_parse_into_the_generated_classes(generated: Any, client: Any) -> None:
    models = generated.models

    listed = generated.list_models.sync(client=client)
    fal_voices = generated.list_voices.sync(client=client, provider=models.ProviderId.FAL)
    mirako_voices = generated.list_voices.sync(client=client, provider=models.ProviderId.MIRAKO)

    assert isinstance(listed, models.ModelList)
    [single_text] = [model for model in listed.models if model.id == FAL_TEXT_MODEL]
    assert isinstance(single_text, models.ModelView)
    assert single_text.provider == models.ProviderId.FAL
    assert {field.name for field in single_text.fields if field.required} >= {"image_url", "text_input", "prompt"}
    assert isinstance(fal_voices, models.VoiceList)
    assert "Aria" in [voice.id for voice in fal_voices.voices]
    assert isinstance(mirako_voices, models.VoiceList)
    assert mirako_voices.voices  # the emulator's premade profiles, through Mirako's listing endpoints
    assert all(isinstance(voice, models.VoiceView) for voice in mirako_voices.voices)
