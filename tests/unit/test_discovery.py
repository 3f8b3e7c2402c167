"""GET /models and GET /voices: the real handler under moto, Mirako's voice profile listings under respx."""

import json
from collections.abc import Iterator
from typing import Any, get_args

import boto3
import httpx
import pytest
import respx
from pydantic import TypeAdapter

from avatarjobs import composition
from avatarjobs.domain import limits
from avatarjobs.domain.job import ProviderId
from avatarjobs.domain.providers import VoiceProfile
from avatarjobs.domain.requests import MODEL_CLASSES, MODEL_NAMES, JobRequest
from avatarjobs.providers.catalog import FAL_VOICES, Discovery
from devstack.cloudformation import REGION, Stack
from functions.api.app import lambda_handler
from tests.api_events import api_event
from tests.lambda_context import LambdaContext

MIRAKO = "https://mirako.co"  # template.yaml's MirakoBaseUrl default, as the stack fixture gives the API
MIRAKO_KEY = "mirako-key-from-secrets-manager"
PREMADE = {
    "id": "a1b2c3d4-e5f6-7890-1234-567890abcdef",
    "name": "Mira Korner",
    "description": "A friendly and professional voice for customer support.",
    "languages": ["en", "yue"],
    "is_premade": True,
    "sample_clip": "https://example.com/sample.mp3",
    "status": "READY",
    "user_id": "f47ac10b-58cc-4372-a567-0e02b2c3d479",
    "created_at": "2023-10-01T12:00:00Z",
}


def provider_of(model_id: str) -> str:
    [provider] = get_args(MODEL_CLASSES[model_id].model_fields["provider"].annotation)
    return str(provider)


def call(path: str, query: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    response = lambda_handler(api_event("GET", path, query=query), LambdaContext("ApiFunction"))
    headers = {name: values[-1] for name, values in response.get("multiValueHeaders", {}).items()}
    headers.update(response.get("headers") or {})
    return response["statusCode"], headers, json.loads(response["body"])


def models() -> dict[str, dict[str, Any]]:
    status, _, body = call("/models")
    assert status == 200, body
    return {model["id"]: model for model in body["models"]}


def fields_of(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {field["name"]: field for field in model["fields"]}


@pytest.fixture
def mirako(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[respx.MockRouter]:
    """Mirako's API under respx; its key only in the secret the template gives the functions' MIRAKO_KEY_SECRET_ARN."""
    secret = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="avatarjobs/mirako", SecretString=MIRAKO_KEY
    )
    monkeypatch.delenv("MIRAKO_API_KEY", raising=False)
    monkeypatch.setenv("MIRAKO_KEY_SECRET_ARN", secret["ARN"])
    composition.reset()
    with respx.mock(base_url=MIRAKO, assert_all_called=False) as router:
        router.get("/v1/voice/premade_profiles", name="premade").respond(200, json={"data": [PREMADE]})
        router.get("/v1/voice/profiles", name="custom").respond(200, json={"data": None})
        yield router


# -- GET /models -----------------------------------------------------------------------------------------------


def test_models_lists_every_model_post_jobs_takes_with_its_provider(stack: Stack) -> None:
    listed = models()
    assert set(listed) == MODEL_NAMES
    for model_id, model in listed.items():
        assert model["provider"] == provider_of(model_id)
        assert model["description"]


def test_each_models_fields_are_its_request_fields_with_the_required_ones_marked(stack: Stack) -> None:
    for model_id, model in models().items():
        request_fields = MODEL_CLASSES[model_id].model_fields
        fields = fields_of(model)
        assert set(fields) == set(request_fields) - {"provider", "model"}
        for name, field in fields.items():
            assert field["required"] is request_fields[name].is_required(), (model_id, name)


def test_a_body_of_the_required_fields_with_example_values_is_what_post_jobs_validates(stack: Stack) -> None:
    listed = models()
    single_text = fields_of(listed["fal-ai/ai-avatar/single-text"])
    assert [name for name, field in single_text.items() if field["required"]] == [
        "image_url", "text_input", "voice", "prompt"
    ]  # fmt: skip
    body = {"provider": "fal", "model": "fal-ai/ai-avatar/single-text", "image_url": "https://example.com/face.png",
            "text_input": "Hello.", "voice": single_text["voice"]["enum"][0], "prompt": "Someone talking."}  # fmt: skip
    TypeAdapter(JobRequest).validate_python(body)


def test_fields_carry_their_json_types_bounds_enums_and_defaults(stack: Stack) -> None:
    listed = models()
    multi_text = fields_of(listed["fal-ai/ai-avatar/multi-text"])
    assert multi_text["num_frames"] | {"description": None} == {
        "name": "num_frames", "type": "integer", "required": False, "default": None, "description": None,
        "minimum": limits.NUM_FRAMES_MIN, "maximum": limits.NUM_FRAMES_MAX, "enum": None,
        "min_length": None, "max_length": None, "pattern": None, "any_of": None,
    }  # fmt: skip
    assert (multi_text["voice1"]["default"], multi_text["voice2"]["default"]) == ("Sarah", "Roger")
    assert multi_text["voice1"]["enum"] == list(FAL_VOICES)
    assert multi_text["resolution"]["enum"] == ["480p", "720p"]
    assert multi_text["prompt"]["type"] == "string"
    assert (multi_text["prompt"]["min_length"], multi_text["prompt"]["max_length"]) == (1, limits.PROMPT_MAX_CHARS)
    assert multi_text["metadata"]["type"] == "object"
    mirako = fields_of(listed["talking-avatar"])
    assert mirako["voice_profile_id"]["max_length"] == limits.VOICE_PROFILE_ID_MAX_CHARS
    assert mirako["voice_profile_id"]["pattern"] == "^[!-~]+$"
    assert mirako["text"]["max_length"] == limits.SPEECH_TEXT_MAX_CHARS


def test_a_media_field_lists_each_form_it_takes_with_its_own_pattern(stack: Stack) -> None:
    image = fields_of(models()["fal-ai/ai-avatar"])["image_url"]
    assert image["type"] == "string"
    forms = image["any_of"]
    assert [form["pattern"][:8] for form in forms] == ["^https:/", "^s3://[a", "^data:(?"]
    assert forms[0]["max_length"] == limits.URL_MAX_CHARS


def test_fal_text_models_list_fals_voices_and_the_others_none(stack: Stack) -> None:
    voices = {model_id: model["voices"] for model_id, model in models().items()}
    assert voices == {
        "fal-ai/ai-avatar": [],
        "fal-ai/ai-avatar/single-text": list(FAL_VOICES),
        "fal-ai/ai-avatar/multi": [],
        "fal-ai/ai-avatar/multi-text": list(FAL_VOICES),
        "talking-avatar": [],  # its voice profiles are the account's: GET /voices?provider=mirako
    }


def test_fal_bills_per_second_of_video_and_more_past_81_frames_while_mirako_states_no_unit(stack: Stack) -> None:
    listed = models()
    fal = listed["fal-ai/ai-avatar"]["billing"]
    assert fal["unit"] == "second of generated video"
    [multiplier] = fal["multipliers"]
    assert (multiplier["field"], multiplier["above"], multiplier["factor"]) == ("num_frames", 81, 1.25)
    assert any(source.startswith("https://fal.ai/") for source in fal["sources"])
    mirako = listed["talking-avatar"]["billing"]
    assert (mirako["unit"], mirako["multipliers"]) == (None, [])
    assert "credits" in mirako["notes"]
    assert mirako["sources"]


# -- GET /voices -----------------------------------------------------------------------------------------------


def test_fal_voices_are_its_fixed_names(stack: Stack) -> None:
    status, _, body = call("/voices", {"provider": "fal"})
    assert status == 200, body
    assert body["provider"] == "fal"
    assert [voice["id"] for voice in body["voices"]] == list(FAL_VOICES)
    assert all(voice["premade"] for voice in body["voices"])


def test_mirako_voices_are_its_premade_then_custom_profiles_read_with_the_dispatchers_key(
    mirako: respx.MockRouter,
) -> None:
    mirako["custom"].respond(200, json={"data": [{"id": "cloned-1", "name": "Our voice", "status": "READY"}]})
    status, _, body = call("/voices", {"provider": "mirako"})
    assert status == 200, body
    assert body == {
        "provider": "mirako",
        "voices": [
            {"id": PREMADE["id"], "name": "Mira Korner", "description": PREMADE["description"],
             "languages": ["en", "yue"], "premade": True, "status": "READY",
             "sample_clip_url": "https://example.com/sample.mp3"},
            {"id": "cloned-1", "name": "Our voice", "description": None, "languages": [], "premade": False,
             "status": "READY", "sample_clip_url": None},
        ],
    }  # fmt: skip
    for route in ("premade", "custom"):
        assert mirako[route].calls.last.request.headers["Authorization"] == f"Bearer {MIRAKO_KEY}"


def test_mirako_voices_are_kept_in_the_container_so_mirako_is_asked_once(mirako: respx.MockRouter) -> None:
    first = call("/voices", {"provider": "mirako"})
    second = call("/voices", {"provider": "mirako"})
    assert first == second
    assert (mirako["premade"].call_count, mirako["custom"].call_count) == (1, 1)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(503, json={"title": "Service Unavailable", "status": 503, "detail": "busy"}),
        httpx.Response(200, json={"data": "not a list"}),
        httpx.Response(200, text="<html>gateway</html>"),
    ],
    ids=["mirako-5xx", "not-its-schema", "not-json"],
)
def test_mirako_failing_is_a_503_problem_and_is_asked_again_next_time(
    mirako: respx.MockRouter, answer: httpx.Response
) -> None:
    mirako["premade"].mock(return_value=answer)
    status, headers, body = call("/voices", {"provider": "mirako"})
    assert status == 503, body
    assert headers["Content-Type"] == "application/problem+json"
    assert body["code"] == "service_unavailable"
    assert "Mirako" in body["detail"]
    assert MIRAKO_KEY not in json.dumps(body)
    mirako["premade"].respond(200, json={"data": [PREMADE]})
    assert call("/voices", {"provider": "mirako"})[0] == 200


def test_mirako_unreachable_is_a_503_problem(mirako: respx.MockRouter) -> None:
    mirako["premade"].mock(side_effect=httpx.ConnectError("connection refused"))
    status, _, body = call("/voices", {"provider": "mirako"})
    assert status == 503, body
    assert body["code"] == "service_unavailable"


@pytest.mark.parametrize("query", [{"provider": "elevenlabs"}, None], ids=["unknown", "missing"])
def test_a_provider_we_do_not_have_is_a_422_naming_the_parameter(stack: Stack, query: dict[str, str] | None) -> None:
    status, headers, body = call("/voices", query)
    assert status == 422, body
    assert headers["Content-Type"] == "application/problem+json"
    [error] = body["errors"]
    assert (error["location"], error["name"]) == ("query", "provider")


def test_the_voice_providers_are_the_providers_of_the_models() -> None:
    assert set(get_args(ProviderId.__value__)) == {provider_of(model_id) for model_id in MODEL_CLASSES}


# -- the cache, by its clock -----------------------------------------------------------------------------------


class CountingProfiles:
    def __init__(self) -> None:
        self.calls = 0

    def voice_profiles(self) -> list[VoiceProfile]:
        self.calls += 1
        return [VoiceProfile(id=f"voice-{self.calls}")]


def test_mirako_voices_are_asked_again_once_the_cached_listing_is_older_than_its_lifetime() -> None:
    now = [1000.0]
    source = CountingProfiles()
    discovery = Discovery(lambda: source, cache_seconds=300, clock=lambda: now[0])
    assert discovery.voices("mirako").voices[0].id == "voice-1"
    now[0] += 299
    assert discovery.voices("mirako").voices[0].id == "voice-1"
    now[0] += 1
    assert discovery.voices("mirako").voices[0].id == "voice-2"
    assert source.calls == 2
