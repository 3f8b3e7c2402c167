"""The s3:// URIs of the files uploaded for an Idempotency-Key, so that repeating a submit sends the same body.

The API gives back the earlier job only for the same key *and* the same body, and each upload gets a new
s3:// key. Without this record, repeating `submit --idempotency-key K` with local files (after a lost
answer, say) would upload again, send other URIs and be refused with 409 although nothing changed.
Best effort: a record that cannot be read or written only costs a new upload.
"""

import hashlib
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from avatarjobs_cli.media import LocalMedia
from avatarjobs_cli.settings import Connection

# The API's idempotency window: past it the same key orders a new job, which may as well have new uploads.
IDEMPOTENCY_WINDOW = timedelta(hours=24)


class UploadMemory:
    def __init__(self, directory: Path | None, scope: str) -> None:
        name = hashlib.sha256(scope.encode()).hexdigest()  # the scope holds the API key: only its hash is stored
        self._directory = directory
        self._path = directory / f"{name}.json" if directory else None

    @classmethod
    def for_submission(cls, connection: Connection, idempotency_key: str) -> "UploadMemory":
        scope = "\n".join((connection.base_url, connection.api_key, idempotency_key))
        return cls(cache_directory(), scope)

    def recall(self, media: LocalMedia) -> str | None:
        entry = self._load().get(media.field)
        if not isinstance(entry, dict) or not isinstance(entry.get("s3_uri"), str):
            return None
        same_file = entry.get("sha256") == media.sha256 and entry.get("size") == media.size
        return entry["s3_uri"] if same_file and _fresh(entry.get("uploaded_at")) else None

    def remember(self, media: LocalMedia, s3_uri: str) -> None:
        if self._path is None or self._directory is None:
            return
        entries = self._load()
        entries[media.field] = {
            "s3_uri": s3_uri,
            "sha256": media.sha256,
            "size": media.size,
            "uploaded_at": datetime.now(UTC).isoformat(),
        }
        try:
            self._directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            written = self._path.with_suffix(".tmp")
            written.write_text(json.dumps(entries))
            written.replace(self._path)  # whole or not at all, even if two submits race
            self._forget_expired()
        except OSError:
            pass

    def _load(self) -> dict[str, Any]:
        if self._path is None:
            return {}
        try:
            entries = json.loads(self._path.read_text())
        except (OSError, ValueError):
            return {}
        return entries if isinstance(entries, dict) else {}

    def _forget_expired(self) -> None:
        if self._directory is None:
            return
        oldest = time.time() - IDEMPOTENCY_WINDOW.total_seconds()
        for record in self._directory.glob("*.json"):
            if record.stat().st_mtime < oldest:
                record.unlink(missing_ok=True)


def cache_directory() -> Path | None:
    try:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    except RuntimeError:  # no home directory to put it in: go without
        return None
    return base / "avatarjobs" / "uploads"


def _fresh(uploaded_at: object) -> bool:
    if not isinstance(uploaded_at, str):
        return False
    try:
        moment = datetime.fromisoformat(uploaded_at)
    except ValueError:
        return False
    return datetime.now(UTC) - moment < IDEMPOTENCY_WINDOW
