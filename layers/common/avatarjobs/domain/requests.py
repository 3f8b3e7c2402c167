"""What a caller may ask for: one model per provider model, with the exact fields, enums and defaults.

fal's four ai-avatar models come from seeds/fal-ai-avatar-multitalk.txt; Mirako's talking avatar from
specs/mirako-openapi.yaml (image + audio, or text that Mirako's TTS turns into speech first).
Bounds come from `limits` only.
"""

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

from avatarjobs.domain import limits
from avatarjobs.domain.job import Metadata
from avatarjobs.domain.media import AudioInput, ImageInput

# `type` aliases: pydantic names each one's schema, so the document has one Voice (Resolution, ...) component that
# every field refers to, rather than a copy per field that a generated client turns into a class per field.
type Voice = Literal[
    "Aria", "Roger", "Sarah", "Laura", "Charlie", "George", "Callum", "River", "Liam", "Charlotte",
    "Alice", "Matilda", "Will", "Jessica", "Eric", "Chris", "Brian", "Daniel", "Lily", "Bill",
]  # fmt: skip
type Resolution = Annotated[Literal["480p", "720p"], Field(json_schema_extra={"x-enum-varnames": ["P480", "P720"]})]
type Acceleration = Literal["none", "regular", "high"]

_NOT_BLANK = r"\S"  # JSON Schema's pattern is a search: somewhere in it, a character that is not white space


def _not_blank(value: str) -> str:
    if re.search(_NOT_BLANK, value) is None:
        raise ValueError("must not be blank (it holds only white space)")
    return value


def _text(max_chars: int, description: str) -> Any:
    return Field(min_length=1, max_length=max_chars, description=description, json_schema_extra={"pattern": _NOT_BLANK})


Prompt = Annotated[
    str, _text(limits.PROMPT_MAX_CHARS, "The text prompt to guide generation."), AfterValidator(_not_blank)
]
SpeechText = Annotated[str, _text(limits.SPEECH_TEXT_MAX_CHARS, "The words to speak."), AfterValidator(_not_blank)]


def _integral_number(value: Any) -> Any:
    # JSON Schema's integer is any number without a fractional part (2020-12 core, section 4.2.2.1): 97.0 is 97, as
    # the document (and every validator of it) says; strict mode would refuse it as a float.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


_WHOLE_NUMBER = BeforeValidator(_integral_number)
# An integer field of a strict model: an int, or a float with nothing after the point; never a string or a boolean.
Integer = Annotated[int, _WHOLE_NUMBER]
# Bounds before the validator, so that pydantic applies them to the int (and the document says minimum and maximum).
DeadlineSeconds = Annotated[int, Field(ge=limits.DEADLINE_SECONDS_MIN, le=limits.DEADLINE_SECONDS_MAX), _WHOLE_NUMBER]
NumFrames = Annotated[int, Field(ge=limits.NUM_FRAMES_MIN, le=limits.NUM_FRAMES_MAX), _WHOLE_NUMBER]
Seed = Annotated[int, Field(ge=limits.SEED_MIN, le=limits.SEED_MAX), _WHOLE_NUMBER]


class _JobRequestBase(BaseModel):
    """Fields every job request has besides the model's own input."""

    # strict: JSON's types as the document gives them ("97" is no integer, "yes" no boolean; see Integer for 97.0)
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=False)

    metadata: Metadata | None = None
    deadline_seconds: DeadlineSeconds | None = Field(
        default=None,
        description=f"Give up (TIMED_OUT) when the job has not finished this many seconds after it was accepted. "
        f"Default {limits.DEADLINE_SECONDS_DEFAULT}.",
    )

    def provider_input(self) -> dict[str, Any]:
        """The model's own input fields, as the provider adapter receives them (unset options left out)."""
        return self.model_dump(mode="json", exclude_none=True, exclude={"provider", "model", "metadata",
                                                                         "deadline_seconds"})  # fmt: skip


class _FalRequestBase(_JobRequestBase):
    provider: Literal["fal"]
    num_frames: NumFrames | None = Field(
        default=None,
        description="Frames to generate. Left out, fal applies its default. Over 81 costs 1.25x.",
    )
    resolution: Resolution | None = None
    seed: Seed | None = None
    acceleration: Acceleration | None = None


class FalSingleAudioRequest(_FalRequestBase):
    """fal-ai/ai-avatar: one face speaking the given audio."""

    model: Literal["fal-ai/ai-avatar"]
    image_url: ImageInput
    audio_url: AudioInput
    prompt: Prompt


class FalSingleTextRequest(_FalRequestBase):
    """fal-ai/ai-avatar/single-text: one face speaking the given text in one of fal's voices."""

    model: Literal["fal-ai/ai-avatar/single-text"]
    image_url: ImageInput
    text_input: SpeechText
    voice: Voice
    prompt: Prompt


class FalMultiAudioRequest(_FalRequestBase):
    """fal-ai/ai-avatar/multi: two people in one image, each speaking their audio."""

    # The rule of _second_audio_unless_only_the_first, in the document.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["second_audio_url"], "properties": {"second_audio_url": {"type": "string"}}},
                {"required": ["use_only_first_audio"], "properties": {"use_only_first_audio": {"const": True}}},
            ]
        }
    )

    model: Literal["fal-ai/ai-avatar/multi"]
    image_url: ImageInput
    first_audio_url: AudioInput
    use_only_first_audio: bool | None = None
    second_audio_url: AudioInput | None = Field(
        default=None,
        validate_default=True,
        description="Person 2's audio: required (the seed marks it so) unless use_only_first_audio is true.",
    )
    prompt: Prompt

    @field_validator("second_audio_url")
    @classmethod
    def _second_audio_unless_only_the_first(cls, second: str | None, info: ValidationInfo) -> str | None:
        if second is None and not info.data.get("use_only_first_audio"):
            raise ValueError("is required unless use_only_first_audio is true")
        return second


class FalMultiTextRequest(_FalRequestBase):
    """fal-ai/ai-avatar/multi-text: a two-person conversation from two texts."""

    model: Literal["fal-ai/ai-avatar/multi-text"]
    image_url: ImageInput
    first_text_input: SpeechText
    second_text_input: SpeechText
    prompt: Prompt
    voice1: Voice = "Sarah"
    voice2: Voice = "Roger"


class MirakoTalkingAvatarRequest(_JobRequestBase):
    """Mirako talking-avatar: a face speaking either the given audio, or text spoken by a Mirako voice profile."""

    # The rules of the validators below, in the document: audio_url or text (with its voice), not both.
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {
                    "required": ["audio_url"],
                    "properties": {"audio_url": {"type": "string"}, "text": {"type": "null"}},
                },
                {
                    "required": ["text", "voice_profile_id"],
                    "properties": {
                        "text": {"type": "string"},
                        "voice_profile_id": {"type": "string"},
                        "audio_url": {"type": "null"},
                    },
                },
            ]
        }
    )

    provider: Literal["mirako"]
    model: Literal["talking-avatar"]
    image_url: ImageInput
    audio_url: AudioInput | None = None
    text: SpeechText | None = Field(default=None, validate_default=True)
    voice_profile_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=limits.VOICE_PROFILE_ID_MAX_CHARS,
        pattern=r"^[!-~]+$",  # printable ASCII without spaces, as Mirako's ids (a UUID in its spec's example)
        validate_default=True,
        description="Mirako voice profile that speaks `text` (required with `text`).",
    )

    # Field validators (not a model validator) so that an error names the field it is about.
    @field_validator("text")
    @classmethod
    def _exactly_one_speech_source(cls, text: str | None, info: ValidationInfo) -> str | None:
        if "audio_url" not in info.data:
            return text  # audio_url was given but is invalid: its own error says so
        has_audio = info.data["audio_url"] is not None
        if text is None and not has_audio:
            raise ValueError("either text or audio_url is required")
        if text is not None and has_audio:
            raise ValueError("give either text or audio_url, not both")
        return text

    @field_validator("voice_profile_id")
    @classmethod
    def _voice_needed_for_text(cls, voice_profile_id: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("text") is not None and voice_profile_id is None:
            raise ValueError("is required when text is given")
        return voice_profile_id


JobRequestModel = (
    FalSingleAudioRequest | FalSingleTextRequest | FalMultiAudioRequest | FalMultiTextRequest
    | MirakoTalkingAvatarRequest
)  # fmt: skip
type JobRequest = Annotated[JobRequestModel, Field(discriminator="model")]

MODEL_CLASSES: dict[str, type[_JobRequestBase]] = {
    model.model_fields["model"].annotation.__args__[0]: model for model in JobRequestModel.__args__
}
MODEL_NAMES: frozenset[str] = frozenset(MODEL_CLASSES)
