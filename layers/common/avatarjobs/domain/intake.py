"""Intake: jobs from S3 manifests and from bus events, created through the same `JobsService.create_job` as the API.

A manifest is the body of POST /jobs as a JSON object in `incoming/<folder>/<name>.json` of the inputs bucket.
Its media fields may name files beside it by a relative path ("face.png", "media/voice.wav"); those become
`s3://<inputs bucket>/<folder>/<path>`, and every s3:// input must stay inside the manifest's folder. A bad
manifest gets `<name>.error.json` beside it; a good one `<name>.job.json` with its job's id.

A bus event "Avatar Video Requested" carries the body of POST /jobs (plus an optional `idempotency_key`) as its
detail; its s3:// inputs must be under `incoming/`. A bad one is answered with "Avatar Video Request Rejected".

Errors name fields with the JSON pointers the API's problems use. Anything else that goes wrong (AWS, the
queue) is raised, so the trigger retries: jobs are created idempotently, so a retry never makes a second one.
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import TypeAdapter, ValidationError

from avatarjobs.domain import limits, strict_json
from avatarjobs.domain.errors import IdempotencyConflict, InvalidInput
from avatarjobs.domain.jobs_service import JobsService
from avatarjobs.domain.media import media_field_names, parse_s3_uri
from avatarjobs.domain.ports import IntakeStore, RejectionPublisher
from avatarjobs.domain.requests import MODEL_CLASSES, JobRequest, JobRequestModel
from avatarjobs.domain.validation import FieldError, field_errors, json_pointer
from avatarjobs.observability import logger

MANIFEST_PREFIX = "incoming/"
MANIFEST_SUFFIX = ".json"
ERROR_REPORT_SUFFIX = ".error.json"
JOB_REPORT_SUFFIX = ".job.json"
MANIFEST_MAX_BYTES = 256 * limits.KIB
S3_KEY_MAX_BYTES = 1024
MAX_REPORTED_ERRORS = 50  # a rejection event must stay far below EventBridge's 256 KB

S3_OWNER = "intake:s3"
EVENTS_OWNER = "intake:events"
EVENTS_S3_PREFIX = MANIFEST_PREFIX  # where the s3:// inputs of bus events must be
REQUESTED_DETAIL_TYPE = "Avatar Video Requested"
REJECTED_DETAIL_TYPE = "Avatar Video Request Rejected"

_REQUEST_ADAPTER: TypeAdapter[JobRequestModel] = TypeAdapter(JobRequest)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # RFC 3986: a relative reference has no scheme


class Outcome(StrEnum):
    CREATED = "created"
    REPLAYED = "replayed"  # a repeated notification or event: the job made the first time
    REJECTED = "rejected"
    IGNORED = "ignored"  # not a manifest, a report of ours, or a manifest version that is gone


@dataclass(frozen=True)
class IntakeResult:
    outcome: Outcome
    job_id: str | None = None
    errors: tuple[FieldError, ...] = ()
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"outcome": self.outcome.value}
        if self.job_id is not None:
            result["job_id"] = self.job_id
        if self.errors:
            result["errors"] = [error.model_dump() for error in self.errors]
        if self.reason is not None:
            result["reason"] = self.reason
        return result


class ManifestTooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(f"the manifest is {size} bytes; at most {MANIFEST_MAX_BYTES} bytes are read")


class _Rejected(Exception):
    def __init__(self, errors: Iterable[FieldError]) -> None:
        self.errors = tuple(errors)[:MAX_REPORTED_ERRORS]
        super().__init__("; ".join(f"{error.pointer}: {error.detail}" for error in self.errors))


def _rejected(pointer: str, detail: str) -> _Rejected:
    return _Rejected([FieldError(pointer=pointer, detail=detail)])


# -- validation errors as JSON pointers (the mapping http/problems.py applies to API bodies) -------------------


# -- the use cases ---------------------------------------------------------------------------------------------


@dataclass
class Intake:
    jobs: JobsService
    store: IntakeStore
    rejections: RejectionPublisher
    inputs_bucket: str
    _media_fields: dict[str, list[str]] = field(default_factory=dict, init=False, repr=False)

    # -- S3 manifests -----------------------------------------------------------------------------------------

    def from_manifest(self, bucket: str, key: str, version_or_etag: str, *, versioned: bool = False) -> IntakeResult:
        """`version_or_etag`: the notification's version id (`versioned`) or, in an unversioned bucket, its eTag."""
        reason = self._not_a_manifest(bucket, key)
        if reason is not None:
            logger.info("object ignored", extra={"bucket": bucket, "key": key, "reason": reason})
            return IntakeResult(Outcome.IGNORED, reason=reason)
        folder = key.rpartition("/")[0] + "/"
        try:
            raw = self.store.read_manifest(bucket, key, version_or_etag, versioned=versioned)
        except ManifestTooLarge as error:
            return self._reject_manifest(bucket, key, version_or_etag, _rejected("#", str(error)))
        if raw is None:
            logger.info("manifest gone or replaced since its notification", extra={"key": key})
            return IntakeResult(Outcome.IGNORED, reason="the manifest version is gone or was replaced")
        try:
            request = self._manifest_request(raw, folder)
            created = self._create(
                S3_OWNER, request, f"{key}#{version_or_etag}", s3_prefix=folder, where="the manifest's folder"
            )
        except _Rejected as rejection:
            return self._reject_manifest(bucket, key, version_or_etag, rejection)

        report = {"manifest": key, "version": version_or_etag, "job_id": created.job_id}
        self.store.write_report(bucket, _report_key(key, JOB_REPORT_SUFFIX), report)
        # An error report of an earlier version of this manifest no longer says anything true.
        self.store.delete_report(bucket, _report_key(key, ERROR_REPORT_SUFFIX))
        return created

    def _not_a_manifest(self, bucket: str, key: str) -> str | None:
        if bucket != self.inputs_bucket:
            return f"not the inputs bucket ({self.inputs_bucket})"
        if not key.startswith(MANIFEST_PREFIX) or not key.endswith(MANIFEST_SUFFIX):
            return f"not a manifest ({MANIFEST_PREFIX}*{MANIFEST_SUFFIX})"
        if key.endswith((ERROR_REPORT_SUFFIX, JOB_REPORT_SUFFIX)):
            return "a report written by intake"
        return None

    def _manifest_request(self, raw: bytes, folder: str) -> JobRequestModel:
        body = _parse_json_object(raw)
        ref_errors = self._resolve_relative_refs(body, folder)
        try:
            request = _REQUEST_ADAPTER.validate_python(body)
        except ValidationError as error:
            # A field whose reference was refused is reported once, with the reason it was refused.
            refused = {ref_error.pointer for ref_error in ref_errors}
            raise _Rejected([*ref_errors, *(e for e in field_errors(error) if e.pointer not in refused)]) from None
        if ref_errors:  # every refused value has a scheme-less form the models refuse too; kept for safety
            raise _Rejected(ref_errors)
        return request

    def _resolve_relative_refs(self, body: dict[str, Any], folder: str) -> list[FieldError]:
        """Media fields that hold a path relative to the manifest become s3:// URIs beside it (in place)."""
        model = body.get("model")
        if not isinstance(model, str) or model not in MODEL_CLASSES:
            return []
        errors = []
        for name in self._media_field_names(model):
            value = body.get(name)
            if not isinstance(value, str) or not value or _SCHEME.match(value):
                continue  # https, data and s3 values (and anything else with a scheme) are the models' to check
            try:
                body[name] = f"s3://{self.inputs_bucket}/{_beside(folder, value)}"
            except ValueError as error:
                errors.append(FieldError(pointer=f"#/{name}", detail=str(error)))
        return errors

    def _reject_manifest(self, bucket: str, key: str, version: str, rejection: _Rejected) -> IntakeResult:
        errors = [error.model_dump() for error in rejection.errors]
        logger.warning("manifest rejected", extra={"key": key, "version": version, "errors": errors})
        report = {"manifest": key, "version": version, "errors": errors}
        self.store.write_report(bucket, _report_key(key, ERROR_REPORT_SUFFIX), report)
        return IntakeResult(Outcome.REJECTED, errors=rejection.errors)

    # -- bus events -------------------------------------------------------------------------------------------

    def from_event(self, detail: Any, event_id: str, source: str) -> IntakeResult:
        """An "Avatar Video Requested" event: its detail is a POST /jobs body plus an optional idempotency_key."""
        try:
            if not isinstance(detail, dict):
                raise _rejected("#", "the event detail must be a JSON object (the body of POST /jobs)")
            body = dict(detail)
            key = _idempotency_key(body.pop("idempotency_key", None), event_id)
            try:
                request = _REQUEST_ADAPTER.validate_python(body)
            except ValidationError as error:
                raise _Rejected(field_errors(error)) from None
            where = f"s3://{self.inputs_bucket}/{EVENTS_S3_PREFIX}"
            return self._create(EVENTS_OWNER, request, key, s3_prefix=EVENTS_S3_PREFIX, where=where)
        except _Rejected as rejection:
            errors = [error.model_dump() for error in rejection.errors]
            logger.warning("bus request rejected", extra={"event_id": event_id, "source": source, "errors": errors})
            self.rejections.publish({"request_event_id": event_id, "request_source": source, "errors": errors})
            return IntakeResult(Outcome.REJECTED, errors=rejection.errors)

    # -- shared -----------------------------------------------------------------------------------------------

    def _create(
        self, owner: str, request: JobRequestModel, idempotency_key: str, *, s3_prefix: str, where: str
    ) -> IntakeResult:
        self._check_s3_inputs(request, s3_prefix, where)
        try:
            created = self.jobs.create_job(owner, request, idempotency_key, s3_input_prefix=s3_prefix)
        except InvalidInput as error:
            fields = [FieldError(pointer="#" + pointer, detail=message) for pointer, message in error.fields]
            raise _Rejected(fields) from None
        except IdempotencyConflict:
            raise _rejected(
                "#/idempotency_key" if owner == EVENTS_OWNER else "#",
                "was already used with a different request",
            ) from None
        outcome = Outcome.REPLAYED if created.replayed else Outcome.CREATED
        logger.info("intake job", extra={"owner": owner, "job_id": created.job.job_id, "outcome": outcome.value})
        return IntakeResult(outcome, job_id=created.job.job_id)

    def _check_s3_inputs(self, request: JobRequestModel, prefix: str, where: str) -> None:
        """Every s3:// input is in the inputs bucket under `prefix`, named without `..` (that it exists and is
        media of its kind, JobsService checks for every caller)."""
        errors = []
        for name in self._media_field_names(request.model):
            value = getattr(request, name)
            if not isinstance(value, str) or not value.startswith("s3://"):
                continue
            uri = parse_s3_uri(value)
            pointer = f"#/{name}"
            if uri.bucket != self.inputs_bucket or not uri.key.startswith(prefix) or ".." in uri.key.split("/"):
                errors.append(FieldError(pointer=pointer, detail=f"must be an object under {where}"))
        if errors:
            raise _Rejected(errors)

    def _media_field_names(self, model: str) -> list[str]:
        if model not in self._media_fields:
            self._media_fields[model] = media_field_names(MODEL_CLASSES[model])
        return self._media_fields[model]


def _report_key(manifest_key: str, suffix: str) -> str:
    return manifest_key.removesuffix(MANIFEST_SUFFIX) + suffix


def _parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = strict_json.loads(raw)  # json.loads handles UTF-8 with or without a BOM
    except strict_json.JsonRefused as refused:
        raise _rejected(json_pointer(refused.path), refused.detail) from None
    except ValueError as error:
        raise _rejected("#", f"the manifest is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise _rejected("#", "the manifest must be a JSON object (the body of POST /jobs)")
    return body


def _beside(folder: str, ref: str) -> str:
    """The key of `ref`, a path relative to `folder`; ValueError when it is not one or would leave the folder."""
    if "\\" in ref:
        raise ValueError("a relative path uses / between folders, never a backslash")
    if ref.startswith("/"):
        raise ValueError("must be a path relative to the manifest's folder, not an absolute path")
    segments: Sequence[str] = [segment for segment in ref.split("/") if segment != "."]
    if ".." in segments:
        raise ValueError("must not leave the manifest's folder (no '..')")
    if not segments or "" in segments:
        raise ValueError("is not a file path (empty path segment)")
    key = folder + "/".join(segments)
    if len(key.encode()) > S3_KEY_MAX_BYTES:
        raise ValueError(f"names a key longer than S3's {S3_KEY_MAX_BYTES} bytes")
    return key


def _idempotency_key(value: Any, event_id: str) -> str:
    if value is None:
        return event_id
    if not isinstance(value, str) or not 1 <= len(value) <= limits.IDEMPOTENCY_KEY_MAX_CHARS:
        detail = f"must be a string of 1 to {limits.IDEMPOTENCY_KEY_MAX_CHARS} characters"
        raise _rejected("#/idempotency_key", detail)
    return value
