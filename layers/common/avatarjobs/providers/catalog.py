"""What a caller can ask for before ordering: each model with its fields, how its provider bills, and the voices.

It lives beside the provider plugins, not in the domain: it is a table of what each provider is (its voices,
what it bills per), facts the domain keeps out of itself.

A model's fields are read from the JSON schema pydantic makes of its request model (domain/requests.py), the very
schema POST /jobs validates with, so the listing cannot disagree with what is accepted. fal's voices are the
requests' `Voice` enum; Mirako's voice profiles belong to our Mirako account and are read from Mirako's API.
"""

import time
from collections.abc import Callable
from functools import cache
from typing import Any, get_args

from pydantic import BaseModel, Field, JsonValue

from avatarjobs.domain.errors import ServiceUnavailable
from avatarjobs.domain.job import ProviderId
from avatarjobs.domain.ports import VoiceProfileSource
from avatarjobs.domain.providers import ProviderError, VoiceProfile
from avatarjobs.domain.requests import MODEL_CLASSES, Voice

# A listing lives this long in the container's memory: Mirako is asked at most once per five minutes per container,
# and a voice cloned meanwhile shows within that time (docs/decisions.md, "Discovery (issue 13)").
VOICE_CACHE_SECONDS = 300.0

VoiceProvider = ProviderId  # every provider answers GET /voices
FAL_VOICES: tuple[str, ...] = get_args(Voice.__value__)
# Not fields of a model: they name it.
_IDENTITY_FIELDS = frozenset({"provider", "model"})
_BOUNDS_KEYWORDS = {
    "minimum": "minimum",
    "maximum": "maximum",
    "minLength": "min_length",
    "maxLength": "max_length",
    "pattern": "pattern",
}


class FieldBounds(BaseModel):
    type: str | None = Field(default=None, description="The JSON type: string, integer, number, boolean or object")
    enum: list[JsonValue] | None = Field(default=None, description="The only values taken, when there are few")
    minimum: int | float | None = None
    maximum: int | float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = Field(default=None, description="A regular expression (ECMA 262) the value must match")


class FieldView(FieldBounds):
    name: str
    required: bool
    default: JsonValue = Field(default=None, description="The value used when the field is left out; null: none")
    description: str | None = None
    any_of: list[FieldBounds] | None = Field(
        default=None,
        description="The forms the value may take, each with its own bounds (media: https://, s3:// or data:)",
    )


class BillingMultiplier(BaseModel):
    field: str
    above: int = Field(description="A value of the field over this one multiplies the billed units by `factor`")
    factor: float
    description: str


class BillingBasis(BaseModel):
    unit: str | None = Field(description="What the provider bills per; null when its documents do not say")
    multipliers: list[BillingMultiplier]
    notes: str
    sources: list[str] = Field(description="Where this is documented")


class ModelView(BaseModel):
    id: str = Field(description="The `model` of POST /jobs")
    provider: ProviderId = Field(description="The `provider` of POST /jobs")
    description: str
    fields: list[FieldView] = Field(description="The fields POST /jobs takes for this model besides provider and model")
    voices: list[str] = Field(
        description="The voices the model's voice fields take (fal's fixed names). Mirako's voice_profile_id takes "
        "the id of a profile of GET /voices?provider=mirako."
    )
    billing: BillingBasis


class ModelList(BaseModel):
    models: list[ModelView]


class VoiceView(BaseModel):
    id: str = Field(description="What a voice field takes: a fal voice name, or a Mirako voice_profile_id")
    name: str | None = None
    description: str | None = None
    languages: list[str] = Field(description="Language codes the voice speaks; empty when the provider does not say")
    premade: bool = Field(description="One of the provider's own voices (false: cloned for this service's account)")
    status: str | None = Field(default=None, description="The provider's status of the voice, e.g. READY")
    sample_clip_url: str | None = Field(default=None, description="A sample of the voice; may stop working later")

    @classmethod
    def of(cls, profile: VoiceProfile) -> "VoiceView":
        return cls(
            id=profile.id,
            name=profile.name,
            description=profile.description,
            languages=list(profile.languages),
            premade=profile.premade,
            status=profile.status,
            sample_clip_url=profile.sample_clip_url,
        )


class VoiceList(BaseModel):
    provider: VoiceProvider
    voices: list[VoiceView]


_FAL_BILLING = BillingBasis(
    unit="second of generated video",
    multipliers=[
        BillingMultiplier(
            field="num_frames",
            above=81,
            factor=1.25,
            description="fal bills 1.25x the units when num_frames is over 81. Left out, fal applies its own default "
            "(136 to 191 frames by model), which is over 81.",
        )
    ],
    notes="fal bills successful outputs only; nothing for server errors or time in its queue.",
    sources=[
        "https://fal.ai/models/fal-ai/ai-avatar/llms.txt",
        "https://docs.fal.ai/documentation/model-apis/pricing",
        "seeds/fal-ai-avatar-multitalk.txt (num_frames)",
    ],
)
_MIRAKO_BILLING = BillingBasis(
    unit=None,
    multipliers=[],
    notes="Mirako bills from prepaid credits (its spec's is_delinquent: 'negative credits, unpaid bills') and "
    "documents no unit or rate for talking-avatar. A job with `text` also calls Mirako's text-to-speech, and speech "
    "with a custom voice 'may induce a slightly higher charge' than with a premade one.",
    sources=["specs/mirako-openapi.yaml (ApiTokenRecord.is_delinquent)", "https://docs.mirako.ai/docs/voice"],
)
_BILLING = {"fal": _FAL_BILLING, "mirako": _MIRAKO_BILLING}


def _bounds(schema: dict[str, Any]) -> dict[str, Any]:
    bounds = {ours: schema[theirs] for theirs, ours in _BOUNDS_KEYWORDS.items() if theirs in schema}
    if "const" in schema:
        bounds["enum"] = [schema["const"]]
    elif "enum" in schema:
        bounds["enum"] = list(schema["enum"])
    if "type" in schema:
        bounds["type"] = schema["type"]
    return bounds


def _resolved(schema: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """The schema with its own `$ref` (a named type: Voice, Metadata, ...) replaced by what it names; one level
    only, as the listing shows a field's own bounds, not those of the values nested in it (JsonValue is recursive)."""
    reference = schema.get("$ref")
    if not isinstance(reference, str):
        return schema
    named = definitions[reference.rsplit("/", 1)[-1]]
    return {**named, **{key: value for key, value in schema.items() if key != "$ref"}}


def _field(name: str, schema: dict[str, Any], required: bool, definitions: dict[str, Any]) -> FieldView:
    schema = _resolved(schema, definitions)
    # An optional field is `X | None`: null only means "left out", so the null branch is no form of its own.
    forms = [_resolved(form, definitions) for form in schema.get("anyOf", [schema])]
    forms = [form for form in forms if form.get("type") != "null"]
    described = {"name": name, "required": required, "default": schema.get("default"),
                 "description": schema.get("description") or forms[0].get("description")}  # fmt: skip
    if len(forms) == 1:
        return FieldView(**_bounds(schema) | _bounds(forms[0]) | described)
    types = {form.get("type") for form in forms}
    return FieldView(
        **described,
        type=types.pop() if len(types) == 1 else schema.get("type"),
        any_of=[FieldBounds(**_bounds(form)) for form in forms],
    )


def _model(model_id: str, request_model: type[BaseModel]) -> ModelView:
    schema = request_model.model_json_schema()
    required = set(schema.get("required", []))
    provider = schema["properties"]["provider"]["const"]
    speaks_fal_voices = any(
        Voice in (field.annotation, *get_args(field.annotation)) for field in request_model.model_fields.values()
    )
    return ModelView(
        id=model_id,
        provider=provider,
        description=schema.get("description", ""),
        fields=sorted(
            (
                _field(name, property_schema, name in required, schema.get("$defs", {}))
                for name, property_schema in schema["properties"].items()
                if name not in _IDENTITY_FIELDS
            ),
            key=lambda field: not field.required,  # what must be given first, otherwise in the schema's order
        ),
        voices=list(FAL_VOICES) if speaks_fal_voices else [],
        billing=_BILLING[provider],
    )


@cache
def model_catalog() -> ModelList:
    return ModelList(models=[_model(model_id, model) for model_id, model in MODEL_CLASSES.items()])


class Discovery:
    """GET /models and GET /voices: the catalog, fal's voices, and Mirako's voice profiles cached for a while."""

    def __init__(
        self,
        mirako: Callable[[], VoiceProfileSource],
        *,
        cache_seconds: float = VOICE_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._mirako = mirako  # built on first use: GET /models never pays for the provider's HTTP client
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._mirako_voices: tuple[float, VoiceList] | None = None  # (valid until, the listing)

    def models(self) -> ModelList:
        return model_catalog()

    def voices(self, provider: VoiceProvider) -> VoiceList:
        if provider == "fal":
            return VoiceList(provider="fal", voices=[VoiceView(id=name, name=name, languages=[], premade=True)
                                                     for name in FAL_VOICES])  # fmt: skip
        now = self._clock()
        if self._mirako_voices is not None and now < self._mirako_voices[0]:
            return self._mirako_voices[1]
        try:
            profiles = self._mirako().voice_profiles()
        except ProviderError as error:
            raise ServiceUnavailable(f"Mirako's voice profiles could not be read now ({error.code})") from None
        listing = VoiceList(provider="mirako", voices=[VoiceView.of(profile) for profile in profiles])
        self._mirako_voices = (now + self._cache_seconds, listing)
        return listing
