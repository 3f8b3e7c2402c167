"""Media inputs: every image or audio field takes an https URL, a base64 data URI or an s3:// URI.

The checks here are the ones that need no context. Whether an s3:// URI points into the caller's own
uploads is checked by the jobs service, which knows the caller and the bucket.
"""

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Annotated, Literal, get_args
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, JsonValue, WithJsonSchema

from avatarjobs.domain import limits

MediaKind = Literal["image", "audio"]

CONTENT_TYPES: dict[MediaKind, frozenset[str]] = {
    "image": limits.IMAGE_CONTENT_TYPES,
    "audio": limits.AUDIO_CONTENT_TYPES,
}
_SCHEMES_HINT = "an https:// URL, a data: URI (base64) or an s3:// URI from POST /uploads"
_BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@dataclass(frozen=True)
class Magic:
    """The first bytes of a file type: `mask` 0x00 where a byte may be anything (a length field, say)."""

    value: bytes
    mask: bytes

    @classmethod
    def of(cls, spec: str) -> "Magic":
        """`spec`: hex bytes, `??` for any byte, `xx/mm` for the bits `mm` of the byte being those of `xx`."""
        values, masks = bytearray(), bytearray()
        for item in spec.split():
            value, _, mask = item.partition("/")
            values.append(0 if value == "??" else int(value, 16))
            masks.append(0 if value == "??" else int(mask or "ff", 16))
        return cls(bytes(values), bytes(masks))

    @classmethod
    def text(cls, prefix: bytes, at: int = 0) -> "Magic":
        return cls(bytes(at) + prefix, bytes(at) + b"\xff" * len(prefix))

    def matches(self, data: bytes) -> bool:
        return len(data) >= len(self.value) and all(
            byte & mask == value & mask for byte, value, mask in zip(data, self.value, self.mask, strict=False)
        )

    def base64_pattern(self) -> str:
        """A regular expression of the base64 text of data that starts with these bytes: the groups of four
        characters that encode them (the bytes padded with any-bytes to a multiple of three)."""
        size = -(-len(self.value) // 3) * 3
        value = int.from_bytes(self.value.ljust(size, b"\0"), "big")
        mask = int.from_bytes(self.mask.ljust(size, b"\0"), "big")
        pattern = []
        for shift in range(size * 8 - 6, -1, -6):
            bits, care = value >> shift & 63, mask >> shift & 63
            chars = "".join(char for index, char in enumerate(_BASE64) if index & care == bits & care)
            pattern.append(_char_class(chars))
        return "".join(pattern)


def _char_class(chars: str) -> str:
    if len(chars) == len(_BASE64):
        return "[A-Za-z0-9+/]"
    if len(chars) == 1:
        return re.escape(chars)
    return "[" + "".join("\\" + char if char in "+/" else char for char in chars) + "]"


# What each accepted type starts with (for WAV, WebP: a RIFF header; for MP4/M4A: an ftyp box). A type may
# have several; a data URI's bytes must start as its declared type does, an upload's as some type of its kind.
MAGIC: dict[str, tuple[Magic, ...]] = {
    "image/png": (Magic.of("89 50 4e 47 0d 0a 1a 0a"),),
    "image/jpeg": (Magic.of("ff d8 ff"),),
    "image/webp": (Magic.of("52 49 46 46 ?? ?? ?? ?? 57 45 42 50"),),
    **dict.fromkeys(("audio/wav", "audio/x-wav", "audio/wave"), (Magic.of("52 49 46 46 ?? ?? ?? ?? 57 41 56 45"),)),
    "audio/mpeg": (Magic.text(b"ID3"), Magic.of("ff e0/e0")),  # an ID3 tag, or an MPEG audio frame's sync
    "audio/mp4": (Magic.text(b"ftyp", at=4),),
    "audio/aac": (Magic.of("ff f0/f6"), Magic.text(b"ftyp", at=4)),  # ADTS frames, or AAC in an MP4 box
    "audio/ogg": (Magic.text(b"OggS"),),
    "audio/flac": (Magic.text(b"fLaC"),),
}


# How many leading bytes `sniff` needs to tell every accepted type.
MAGIC_BYTES = max(len(magic.value) for magics in MAGIC.values() for magic in magics)


def sniff(data: bytes, kind: MediaKind) -> str | None:
    """The first accepted type of `kind` that the bytes start as; None when they start as none of them."""
    return next(
        (name for name in sorted(CONTENT_TYPES[kind]) if any(magic.matches(data) for magic in MAGIC[name])), None
    )


@dataclass(frozen=True)
class MediaForm:
    """One way to give a media input: the exact strings accepted (a regular expression JSON Schema and
    Python agree on) and their greatest length."""

    scheme: str
    pattern: str
    max_length: int

    def schema(self) -> dict[str, JsonValue]:
        return {"type": "string", "pattern": self.pattern, "maxLength": self.max_length}


_LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PORT = "(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_REST = "(?:[/?#][!-~]*)?"  # printable ASCII without spaces: what a URL sends (anything else percent-encoded)
# A host is a DNS name (or IPv4 address) or a bracketed IPv6 literal; which addresses may be fetched is the SSRF
# guard's decision at fetch time (net/safe_fetch.py), as a name's address can change after accept.
_HOST = f"(?:{_LABEL}(?:\\.{_LABEL})*|\\[[0-9A-Fa-f:.]{{2,45}}\\])"
_HTTPS = f"^https://{_HOST}(?::{_PORT})?{_REST}$"
# An S3 key is any UTF-8 text (spaces included); control characters are refused, as nothing legitimate sends them.
_S3 = "^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^\\x00-\\x1f\\x7f]+$"
_BASE64_REST = "(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
_DATA_PREFIX = "data:{content_type};base64,"
DATA_URI_MAX_CHARS = len(_DATA_PREFIX.format(content_type=max(MAGIC, key=len))) + 4 * -(-limits.DATA_URI_MAX_BYTES // 3)


def _data_pattern(kind: MediaKind) -> str:
    forms = [
        re.escape(_DATA_PREFIX.format(content_type=content_type)) + magic.base64_pattern()
        for content_type in sorted(CONTENT_TYPES[kind])
        for magic in MAGIC[content_type]
    ]
    return f"^data:(?:{'|'.join(form.removeprefix('data:') for form in forms)}){_BASE64_REST}$"


def media_forms(kind: MediaKind) -> tuple[MediaForm, ...]:
    return (
        MediaForm("https", _HTTPS, limits.URL_MAX_CHARS),
        MediaForm("s3", _S3, limits.URL_MAX_CHARS),
        MediaForm("data", _data_pattern(kind), DATA_URI_MAX_CHARS),
    )


@dataclass(frozen=True)
class MediaField:
    """Marks a request field as a media input, so staging can find such fields by type, not by value."""

    kind: MediaKind


@dataclass(frozen=True)
class DataUri:
    content_type: str
    data: bytes


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_data_uri(value: str) -> DataUri:
    """A data URI that passed its field's validation, decoded."""
    header, _, encoded = value.partition(",")
    return DataUri(content_type=header.removeprefix("data:").removesuffix(";base64"), data=base64.b64decode(encoded))


def parse_s3_uri(value: str) -> S3Uri:
    bucket, _, key = value.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise ValueError("is not an s3:// URI of the form s3://<bucket>/<key>")
    return S3Uri(bucket=bucket, key=key)


def _https_problem(value: str) -> str:
    """Why an https URL is not one of the accepted form, in the caller's terms."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return "is not a well-formed URL (its host or port)"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials (user:password@)"
    if port == 0:
        return "must not use port 0"
    if any(char.isspace() for char in value):
        return "must not contain white space (percent-encode it)"
    if not value.isascii():
        return "must be ASCII (percent-encode other characters; an IDN host in its xn-- form)"
    return "is not a well-formed https URL (host name, optional port 1-65535, then /, ? or #)"


def _data_problem(value: str, kind: MediaKind) -> str:
    header, comma, encoded = value.partition(",")
    content_type = header.removeprefix("data:").removesuffix(";base64")
    if not comma or not header.endswith(";base64") or ";" in content_type:
        return "is not a base64 data URI (expected data:<type>;base64,<data>, without other parameters)"
    if content_type not in CONTENT_TYPES[kind]:
        return f"data URI type {content_type} is not an accepted {kind} type ({', '.join(sorted(CONTENT_TYPES[kind]))})"
    try:
        data = base64.b64decode(encoded[:4096], validate=True)
    except binascii.Error:
        return "data URI is not valid base64"
    if not data:
        return "data URI is empty"
    return f"data URI's bytes are not a {content_type} file (they do not start as one does)"


def _media_validator(kind: MediaKind) -> AfterValidator:
    forms = {form.scheme: (form, re.compile(form.pattern)) for form in media_forms(kind)}

    def validate(value: str) -> str:
        scheme = value.split(":", 1)[0].lower() if ":" in value else ""
        if scheme == "http":
            raise ValueError("must use https:// (plain http is not accepted)")
        if scheme not in forms or not value.startswith(f"{scheme}:"):
            raise ValueError(f"must be {_SCHEMES_HINT}")
        form, pattern = forms[scheme]
        if len(value) > form.max_length:
            if scheme == "data":
                raise ValueError(f"data URI is larger than {limits.DATA_URI_MAX_BYTES} bytes; upload it with "
                                 "POST /uploads")  # fmt: skip
            raise ValueError(f"is longer than {form.max_length} characters")
        if pattern.fullmatch(value) is None:
            if scheme == "https":
                raise ValueError(_https_problem(value))
            if scheme == "data":
                raise ValueError(_data_problem(value, kind))
            raise ValueError("is not an s3:// URI of the form s3://<bucket>/<key> (a key without control characters)")
        return value

    return AfterValidator(validate)


def _media_schema(kind: MediaKind, what: str) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "type": "string",
            "description": f"{what}: {_SCHEMES_HINT}. A data URI holds at most {limits.DATA_URI_MAX_BYTES} bytes "
            f"of one of {', '.join(sorted(CONTENT_TYPES[kind]))}, and its bytes must be of that type.",
            "anyOf": [form.schema() for form in media_forms(kind)],
        }
    )


ImageInput = Annotated[str, _media_validator("image"), _media_schema("image", "The face image"), MediaField("image")]
AudioInput = Annotated[str, _media_validator("audio"), _media_schema("audio", "Speech audio"), MediaField("audio")]


def media_fields(model: type[BaseModel]) -> dict[str, MediaKind]:
    """A request model's media fields (optional ones included) and the kind of media each takes."""

    def marker(annotation: object) -> MediaField | None:
        for item in getattr(annotation, "__metadata__", ()):
            if isinstance(item, MediaField):
                return item
        return next((found for arg in get_args(annotation) if (found := marker(arg)) is not None), None)

    fields: dict[str, MediaKind] = {}
    for name, field in model.model_fields.items():
        found = next((item for item in field.metadata if isinstance(item, MediaField)), None) or marker(
            field.annotation
        )
        if found is not None:
            fields[name] = found.kind
    return fields


def media_field_names(model: type[BaseModel]) -> list[str]:
    """The names of a request model's media fields (optional ones included)."""
    return list(media_fields(model))
