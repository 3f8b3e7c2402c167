"""From the submit options to a POST /jobs body: local media uploaded, every other value as given."""

from collections.abc import Callable, Mapping
from typing import Any

from avatarjobs_cli.api import ApiClient
from avatarjobs_cli.errors import CliError
from avatarjobs_cli.media import LocalMedia, is_remote, local_media
from avatarjobs_cli.schemas import UploadFile
from avatarjobs_cli.transfers import Progress, TransferClient
from avatarjobs_cli.upload_memory import UploadMemory

UPLOAD_FILES_PER_REQUEST = 4  # CreateUploadsRequest.files maxItems

StartUpload = Callable[[LocalMedia], Progress]  # shows one upload; returns what to call as bytes go out


def media_values(image: str | None, audio: str | None, media: Mapping[str, Any]) -> dict[str, str]:
    """--image and --audio are short for --media image_url=... and --media audio_url=..."""
    values: dict[str, str] = {}
    for name, value in (("image_url", image), ("audio_url", audio), *media.items()):
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise CliError(f"--media {name}: give a local file or a URL.")
        if name in values:
            raise CliError(f"{name} is given twice (--image/--audio are --media image_url=/audio_url=).")
        values[name] = value
    return values


def job_request(
    *,
    provider: str,
    model: str,
    fields: Mapping[str, Any],
    media: Mapping[str, str],
    metadata: Mapping[str, Any],
    deadline_seconds: int | None,
) -> dict[str, Any]:
    request: dict[str, Any] = {"provider": provider, "model": model}
    extras: dict[str, Any] = {"metadata": dict(metadata) or None, "deadline_seconds": deadline_seconds}
    for name, value in (*fields.items(), *media.items(), *extras.items()):
        if value is None:
            continue
        if name in request:
            raise CliError(f"{name} is given twice (as --field and by its own option).")
        request[name] = value
    return request


def stage_media(
    values: Mapping[str, str],
    *,
    api: ApiClient,
    transfers: TransferClient,
    memory: UploadMemory,
    start_upload: StartUpload,
) -> dict[str, str]:
    """Each media field's value to send: URLs as given, local files uploaded and replaced by their s3:// URI."""
    staged = {name: value for name, value in values.items() if is_remote(value)}
    # Every file is checked before the first is uploaded: a typo in the second must not cost the first upload.
    local = [local_media(name, value) for name, value in values.items() if not is_remote(value)]
    pending: list[LocalMedia] = []
    for item in local:
        remembered = memory.recall(item)
        if remembered is None:
            pending.append(item)
        else:
            staged[item.field] = remembered
    for start in range(0, len(pending), UPLOAD_FILES_PER_REQUEST):
        batch = pending[start : start + UPLOAD_FILES_PER_REQUEST]
        files: list[UploadFile] = [
            {"name": item.upload_name, "content_type": item.content_type, "size": item.size} for item in batch
        ]
        for item, target in zip(batch, api.create_uploads(files), strict=True):
            transfers.upload(target, item.path, start_upload(item))
            memory.remember(item, target["s3_uri"])
            staged[item.field] = target["s3_uri"]
    return staged
