"""GET /models and GET /voices over HTTP on the local stack: through API Gateway with the key, and Mirako's voice
profiles from its emulator with the key the functions are given."""

from collections.abc import Iterator

import pytest

from tests.support.pipeline import FACE, Pipeline, quick_pipeline


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with quick_pipeline(tmp_path_factory.mktemp("discovery-logs"), "mirako") as pipeline:
        yield pipeline


def test_models_lists_every_model_with_its_fields_and_billing(pipeline: Pipeline) -> None:
    response = pipeline.api.get("/models")
    assert response.status_code == 200, response.text
    models = {model["id"]: model for model in response.json()["models"]}
    assert set(models) == {
        "fal-ai/ai-avatar", "fal-ai/ai-avatar/single-text", "fal-ai/ai-avatar/multi", "fal-ai/ai-avatar/multi-text",
        "talking-avatar",
    }  # fmt: skip
    assert models["talking-avatar"]["provider"] == "mirako"
    assert "voice_profile_id" in {field["name"] for field in models["talking-avatar"]["fields"]}
    assert models["fal-ai/ai-avatar"]["billing"]["unit"] == "second of generated video"


def test_a_mirako_outage_is_a_503_problem_and_then_its_profiles_are_listed(pipeline: Pipeline) -> None:
    pipeline.emulator("mirako", server_error_voice_listings=1)
    failed = pipeline.api.get("/voices", params={"provider": "mirako"})
    assert failed.status_code == 503, failed.text
    assert failed.headers["Content-Type"] == "application/problem+json"
    assert failed.json()["code"] == "service_unavailable"

    listed = pipeline.api.get("/voices", params={"provider": "mirako"})
    assert listed.status_code == 200, listed.text
    voices = listed.json()["voices"]
    assert voices
    assert all(voice["premade"] for voice in voices)  # the emulator's account has no cloned voice


def test_a_listed_mirako_voice_speaks_a_text_job_to_the_end(pipeline: Pipeline) -> None:
    [voice, *_] = pipeline.api.get("/voices", params={"provider": "mirako"}).json()["voices"]
    body = {"provider": "mirako", "model": "talking-avatar", "image_url": FACE, "text": "Hello."}
    job_id = pipeline.order(body | {"voice_profile_id": voice["id"]})
    assert pipeline.wait(job_id)["status"] == "SUCCEEDED"


def test_an_unknown_voice_provider_is_a_422_naming_the_parameter(pipeline: Pipeline) -> None:
    response = pipeline.api.get("/voices", params={"provider": "nobody"})
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert (error["location"], error["name"]) == ("query", "provider")
