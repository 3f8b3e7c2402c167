"""Job ids are ULIDs: unique, and sorting them sorts by creation time. Webhook tokens are random and stored
only as their hash."""

import hashlib
import re
import secrets

from ulid import ULID

# Crockford's base32 without I, L, O and U, as the ulid library writes it (upper case).
JOB_ID_PATTERN = r"^[0-9A-HJKMNP-TV-Z]{26}$"
_ULID = re.compile(JOB_ID_PATTERN)


def new_job_id() -> str:
    return str(ULID())


def is_job_id(value: str) -> bool:
    return _ULID.fullmatch(value) is not None  # fullmatch: Python's $ also matches before a final newline


def new_webhook_token() -> tuple[str, str]:
    """A random token for one dispatch attempt's webhook, and its SHA-256 (hex): only the hash is stored."""
    token = secrets.token_urlsafe(32)
    return token, hashlib.sha256(token.encode()).hexdigest()
