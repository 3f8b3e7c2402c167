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
    finalize_queue_url: str | None  # the functions that record completions (webhook, reconcile)
    job_events_topic_arn: str | None  # notify
    job_event_bus_name: str | None  # notify, ingest

    @classmethod
    def from_environment(cls) -> "Settings":
        return cls(
            jobs_table_name=_required("JOBS_TABLE_NAME"),
            idempotency_table_name=_required("IDEMPOTENCY_TABLE_NAME"),
            dispatch_queue_url=_required("DISPATCH_QUEUE_URL"),
            inputs_bucket_name=_required("INPUTS_BUCKET_NAME"),
            outputs_bucket_name=_required("OUTPUTS_BUCKET_NAME"),
            finalize_queue_url=os.environ.get("FINALIZE_QUEUE_URL") or None,
            job_events_topic_arn=os.environ.get("JOB_EVENTS_TOPIC_ARN") or None,
            job_event_bus_name=os.environ.get("JOB_EVENT_BUS_NAME") or None,
        )


def _host_list(name: str, default: str) -> tuple[str, ...]:
    return tuple(host.strip().lower() for host in (os.environ.get(name) or default).split(",") if host.strip())


def cors_allowed_origins() -> frozenset[str]:
    """The origins whose web pages may call the API (CorsAllowedOrigins); none: no CORS at all."""
    return frozenset(
        origin.strip() for origin in os.environ.get("CORS_ALLOWED_ORIGINS", "").split(",") if origin.strip()
    )


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes"}


# Where the providers serve results (docs/decisions.md, "Media hosts"): fal's CDN (v3.fal.media, v3b.fal.media,
# fal.media) and its falserverless bucket on Google Cloud Storage; Mirako's own hosts and S3 (its spec's s3_info).
# The template's FalMediaHosts/MirakoMediaHosts defaults are these same lists.
FAL_MEDIA_HOSTS_DEFAULT = "fal.media,fal.run,storage.googleapis.com/falserverless"
MIRAKO_MEDIA_HOSTS_DEFAULT = "mirako.co,mirako.ai,amazonaws.com"
MIB = 1024 * 1024
# DESIGN.md: the video is uploaded in parts of 8-16 MiB.
FINALIZE_PART_BYTES_DEFAULT = 8 * MIB
FINALIZE_PART_BYTES_RANGE = (8 * MIB, 16 * MIB)
# The local stack's videos are ~100 kB: tests that need several parts (part failures) set smaller ones. Its moto
# must then accept them: S3_UPLOAD_PART_MIN_SIZE in moto's environment, at most this size.
FINALIZE_PART_BYTES_LOCAL_RANGE = (1024, 16 * MIB)


class InvalidSetting(ValueError):
    pass


def _finalize_part_bytes(local_stack: bool) -> int:
    raw = (os.environ.get("FINALIZE_PART_BYTES") or "").strip()
    if not raw:
        return FINALIZE_PART_BYTES_DEFAULT
    low, high = FINALIZE_PART_BYTES_LOCAL_RANGE if local_stack else FINALIZE_PART_BYTES_RANGE
    if not raw.isdigit() or not low <= int(raw) <= high:
        where = "on the local stack (AVATARJOBS_ALLOW_LOOPBACK_HTTP)" if local_stack else "outside the local stack"
        raise InvalidSetting(f"FINALIZE_PART_BYTES must be a number of bytes from {low} to {high} {where}: {raw!r}")
    return int(raw)


@dataclass(frozen=True)
class ProviderSettings:
    """Where the providers are and how they reach us (DESIGN.md, "Providers")."""

    fal_queue_base_url: str
    fal_jwks_url: str
    mirako_base_url: str
    public_base_url: str | None  # our webhook base: the dispatcher's (functions behind the API cannot have it)
    fal_key_secret_arn: str | None
    mirako_key_secret_arn: str | None
    # Only the local stack sets AVATARJOBS_ALLOW_LOOPBACK_HTTP, so its emulators on http://127.0.0.1 are
    # reachable; template.yaml never sets it, so a deployed stack refuses loopback and plain http.
    allow_loopback_http: bool
    # Where each provider's videos may be downloaded from (a name matches itself and its subdomains).
    media_hosts: dict[str, tuple[str, ...]]
    webhook_overdue_seconds: int
    # fal must start a job within this (X-Fal-Request-Start-Timeout) or drop it unbilled; and how long a job whose
    # submit answer was lost waits for the provider's webhook before it fails as SUBMISSION_UNCONFIRMED.
    fal_start_timeout_seconds: int
    unconfirmed_submit_seconds: int
    # The role whose sessions sign fal's input URLs (the dispatcher's only: adapters/input_urls.py).
    input_reader_role_arn: str | None
    # The size of the parts finalize uploads a video in (and the largest video sent as one PutObject): 8 MiB
    # unless FINALIZE_PART_BYTES says otherwise; below 8 MiB only on the local stack, whose moto is told to accept it.
    finalize_part_bytes: int

    @classmethod
    def from_environment(cls) -> "ProviderSettings":
        allow_loopback_http = _flag("AVATARJOBS_ALLOW_LOOPBACK_HTTP")
        return cls(
            fal_queue_base_url=os.environ.get("FAL_QUEUE_BASE_URL") or "https://queue.fal.run",
            fal_jwks_url=os.environ.get("FAL_JWKS_URL") or "https://rest.alpha.fal.ai/.well-known/jwks.json",
            mirako_base_url=os.environ.get("MIRAKO_BASE_URL") or "https://mirako.co",
            public_base_url=(os.environ.get("PUBLIC_BASE_URL") or "").rstrip("/") or None,
            fal_key_secret_arn=os.environ.get("FAL_KEY_SECRET_ARN") or None,
            mirako_key_secret_arn=os.environ.get("MIRAKO_KEY_SECRET_ARN") or None,
            allow_loopback_http=allow_loopback_http,
            media_hosts={
                "fal": _host_list("FAL_MEDIA_HOSTS", FAL_MEDIA_HOSTS_DEFAULT),
                "mirako": _host_list("MIRAKO_MEDIA_HOSTS", MIRAKO_MEDIA_HOSTS_DEFAULT),
            },
            webhook_overdue_seconds=int(os.environ.get("WEBHOOK_OVERDUE_SECONDS") or 600),
            fal_start_timeout_seconds=int(os.environ.get("FAL_START_TIMEOUT_SECONDS") or 1800),
            unconfirmed_submit_seconds=int(os.environ.get("UNCONFIRMED_SUBMIT_SECONDS") or 3600),
            input_reader_role_arn=os.environ.get("INPUT_READER_ROLE_ARN") or None,
            finalize_part_bytes=_finalize_part_bytes(local_stack=allow_loopback_http),
        )
