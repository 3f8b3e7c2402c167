"""Media field values: which are local files to upload, and what the API needs to know about those files."""

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from avatarjobs_cli.errors import CliError

# Values the API takes as they are (docs/openapi.json: an https:// URL, a data: URI or an s3:// URI).
# http:// is passed on too, for the API to refuse with its own explanation.
REMOTE_PREFIXES = ("https://", "http://", "s3://", "data:")

# The content types POST /uploads accepts (UploadFile.content_type), by file extension.
CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".mp3": "audio/mpeg",
    ".mpeg": "audio/mpeg",
    ".wav": "audio/wav",
    ".m4a": "audio/mp4",
    ".mp4": "audio/mp4",
    ".aac": "audio/aac",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".flac": "audio/flac",
}
UPLOAD_NAME_MAX_CHARS = 128
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class LocalMedia:
    """A local file given for a media field: uploaded, then the field's value becomes its s3:// URI."""

    field: str
    path: Path
    content_type: str
    size: int
    sha256: str

    @property
    def upload_name(self) -> str:
        return upload_name(self.path)


def is_remote(value: str) -> bool:
    return value.lower().startswith(REMOTE_PREFIXES)


def local_media(field: str, value: str) -> LocalMedia:
    path = Path(value).expanduser()
    content_type = CONTENT_TYPES.get(path.suffix.lower())
    if content_type is None:
        known = ", ".join(sorted(CONTENT_TYPES))
        raise CliError(f"{field}: cannot tell the type of {path} from its extension (known: {known}).")
    kind = content_type.split("/")[0]
    expected_kind = _kind_of(field)
    if expected_kind is not None and kind != expected_kind:
        raise CliError(f"{field} takes {expected_kind}, and {path} is {content_type}.")
    try:
        size, sha256 = _size_and_sha256(path)
    except FileNotFoundError:
        raise CliError(f"{field}: no such file {path} (give a local file or an https:// URL).") from None
    except OSError as error:
        raise CliError(f"{field}: cannot read {path}: {error.strerror or error}.") from None
    if size == 0:
        raise CliError(f"{field}: {path} is empty.")
    return LocalMedia(field=field, path=path, content_type=content_type, size=size, sha256=sha256)


def upload_name(path: Path) -> str:
    """A name POST /uploads accepts: letters, digits, '.', '_' and '-', starting with a letter or digit."""
    suffix = _UNSAFE_NAME_CHARS.sub("_", path.suffix)
    stem = _UNSAFE_NAME_CHARS.sub("_", path.stem).lstrip("._-") or "upload"
    return stem[: UPLOAD_NAME_MAX_CHARS - len(suffix)] + suffix


def _kind_of(field: str) -> str | None:
    """image_url takes an image; audio_url, first_audio_url, ... take audio; unknown fields are left to the API."""
    if "image" in field:
        return "image"
    if "audio" in field:
        return "audio"
    return None


def _size_and_sha256(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as file:
        while chunk := file.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
