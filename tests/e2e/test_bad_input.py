"""Bad input is refused at accept, before money is spent: over HTTP on the local stack, each class of bad input of
issue 13 is a 4xx problem naming the field, and the provider emulators saw no call at all (counted there).
"""

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.pipeline import FACE, Pipeline, fal_body, quick_pipeline

FAL_TEXT = "fal-ai/ai-avatar/single-text"
GIF = b"GIF89a" + b"\0" * 64


def mirako_text(**fields: Any) -> dict[str, Any]:
    body = {"provider": "mirako", "model": "talking-avatar", "image_url": FACE, "text": "Hi.", "voice_profile_id": "v1"}
    return {**body, **fields}


def raw(body: dict[str, Any], **members: str) -> str:
    """`body` as JSON with members whose JSON text is given as is (what json.dumps cannot write)."""
    return json.dumps(body)[:-1] + "".join(f", {json.dumps(name)}: {text}" for name, text in members.items()) + "}"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with quick_pipeline(tmp_path_factory.mktemp("bad-input-logs"), "fal") as pipeline:
        yield pipeline


def provider_calls(pipeline: Pipeline) -> int:
    """Every submit an emulator took or refused: any of them may be a paid order."""
    total = 0
    for provider in ("fal", "mirako"):
        record = httpx.get(f"{pipeline.emulator_url(provider)}/_emulator/requests", timeout=10).json()
        total += len(record["requests"]) + len(record["rejected"])
    return total


def uploaded(pipeline: Pipeline, data: bytes | None, content_type: str = "image/png") -> str:
    """An s3:// URI of POST /uploads, with `data` PUT through its presigned URL (None: never uploaded)."""
    size = len(data) if data else 10
    response = pipeline.api.post(
        "/uploads", json={"files": [{"name": "f.png", "content_type": content_type, "size": size}]}
    )
    assert response.status_code == 201, response.text
    [target] = response.json()["uploads"]
    if data is not None:
        httpx.put(target["url"], content=data, headers=target["headers"], timeout=30).raise_for_status()
    uri: str = target["s3_uri"]
    return uri


# (what, body as JSON or JSON text, expected status, pointer)
BAD_INPUTS: list[tuple[str, Any, int, str]] = [
    ("a 500 KB image_url", fal_body(FAL_TEXT, image_url="https://example.com/" + "a" * 500_000), 422, "#/image_url"),
    ("a 390 KB image_url", fal_body(FAL_TEXT, image_url="https://example.com/" + "a" * 390_000), 422, "#/image_url"),
    ("seed false", fal_body(FAL_TEXT, seed=False), 422, "#/seed"),
    ("num_frames as a string", fal_body(FAL_TEXT, num_frames="97"), 422, "#/num_frames"),
    (
        "use_only_first_audio as a string",
        fal_body("fal-ai/ai-avatar/multi", use_only_first_audio="yes"),
        422,
        "#/use_only_first_audio",
    ),
    ("metadata 1e400", raw(fal_body(FAL_TEXT), metadata='{"a": 1e400}'), 422, "#/metadata/a"),
    ("NaN", raw(fal_body(FAL_TEXT), seed="NaN"), 422, "#/seed"),
    ("a data URI that is no image", fal_body(FAL_TEXT, image_url="data:image/png;base64,AAAA"), 422, "#/image_url"),
    ("blank text_input", fal_body(FAL_TEXT, text_input="   "), 422, "#/text_input"),
    ("blank prompt", fal_body(FAL_TEXT, prompt="   "), 422, "#/prompt"),
    ("blank mirako text", mirako_text(text=" "), 422, "#/text"),
    ("https on port 0", fal_body(FAL_TEXT, image_url="https://example.com:0/face.png"), 422, "#/image_url"),
    ("https with userinfo", fal_body(FAL_TEXT, image_url="https://u:p@example.com/f.png"), 422, "#/image_url"),
]


@pytest.mark.parametrize(
    ("body", "status", "pointer"), [case[1:] for case in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_is_a_problem_naming_the_field_and_no_provider_is_called(
    pipeline: Pipeline, body: Any, status: int, pointer: str
) -> None:
    before = provider_calls(pipeline)
    if isinstance(body, str):
        response = pipeline.api.post("/jobs", content=body, headers={"Content-Type": "application/json"})
    else:
        response = pipeline.api.post("/jobs", json=body)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert pointer in [error.get("pointer") for error in response.json()["errors"]]
    assert provider_calls(pipeline) == before


@pytest.mark.parametrize(
    ("data", "detail"),
    [(None, "does not exist"), (GIF, "is not an image of an accepted type")],
    ids=["an upload never made", "a GIF uploaded as a PNG"],
)
def test_an_unusable_upload_is_refused_at_accept_and_no_provider_is_called(
    pipeline: Pipeline, data: bytes | None, detail: str
) -> None:
    before = provider_calls(pipeline)
    response = pipeline.api.post("/jobs", json=fal_body(FAL_TEXT, image_url=uploaded(pipeline, data)))
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["pointer"] == "#/image_url"
    assert detail in error["detail"]
    assert provider_calls(pipeline) == before


def test_the_count_sees_a_good_job_so_its_silence_above_means_something(pipeline: Pipeline) -> None:
    before = provider_calls(pipeline)
    png = base64.b64decode(FACE.split(",", 1)[1])
    job_id = pipeline.order(fal_body(FAL_TEXT, image_url=uploaded(pipeline, png)))
    assert pipeline.wait(job_id)["status"] == "SUCCEEDED"
    assert provider_calls(pipeline) == before + 1
