"""Resource names and settings from the environment that template.yaml gives each function."""

import os
from dataclasses import dataclass


class MissingSetting(RuntimeError):
    def __init__(self, name: str) -> None:
        super().__init__(f"environment variable {name} is not set (template.yaml sets it for every function)")


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise MissingSetting(name)
    return value


@dataclass(frozen=True)
class Settings:
    jobs_table_name: str
    idempotency_table_name: str
    dispatch_queue_url: str
    inputs_bucket_name: str
    outputs_bucket_name: str

    @classmethod
    def from_environment(cls) -> "Settings":
        return cls(
            jobs_table_name=_required("JOBS_TABLE_NAME"),
            idempotency_table_name=_required("IDEMPOTENCY_TABLE_NAME"),
            dispatch_queue_url=_required("DISPATCH_QUEUE_URL"),
            inputs_bucket_name=_required("INPUTS_BUCKET_NAME"),
            outputs_bucket_name=_required("OUTPUTS_BUCKET_NAME"),
        )
