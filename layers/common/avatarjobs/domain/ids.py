"""Job ids are ULIDs: unique, and sorting them sorts by creation time."""

import re

from ulid import ULID

_ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


def new_job_id() -> str:
    return str(ULID())


def is_job_id(value: str) -> bool:
    return bool(_ULID.match(value))
