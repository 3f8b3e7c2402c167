"""How an emulator behaves: its delays and the failures it injects, from the environment or at run time.

Every field can be set at start from `<PREFIX><FIELD>` (e.g. FAL_EMULATOR_DELAY_SECONDS=5,
MIRAKO_EMULATOR_DROP_WEBHOOKS=-1) and changed while running with `POST /_emulator/settings` and a JSON
object of fields. Fields that count ("the next N submits") are used up one by one; -1 means every time.
Fields that end in `_fraction` hit an exact, evenly spread share of the jobs (devstack.faults.EvenSelection,
keyed by the job's webhook URL, its phase by `fault_seed`): 0.1 of 200 jobs is 20 of them, whatever the order.
"""

import dataclasses
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

EVERY_TIME = -1


@dataclass
class EmulatorSettings:
    queue_seconds: float = 0.5  # time IN_QUEUE before the run starts (a provider's queue and cold start)
    delay_seconds: float = 2.0  # time IN_PROGRESS before the video exists
    response_delay_seconds: float = 0.0  # "slow": every API answer waits this long (client timeouts)
    workers: int = 4  # runs at the same time; the others wait IN_QUEUE
    instant: bool = False  # no waits, and one shared sample video instead of a new one per run (throughput)
    media_ttl_seconds: float = 3600.0  # results are kept about an hour, then their URLs answer 404
    media_host: str = "127.0.0.2"  # the loopback address result files are served from (read at start)

    fail_runs: int = 0  # the next N runs fail
    error_message: str = "Could not detect a face in the image."
    error_type: str = "face_detection_error"  # fal: X-Fal-Error-Type of an injected failure
    failure_status: str = "FAILED"  # Mirako: the final status of an injected failure (FAILED, TIMED_OUT, CANCELED)
    # fal: the next N runs (or this share of them) end COMPLETED, but the model app answered 500 (not retried)
    app_error_runs: int = 0
    app_error_fraction: float = 0.0

    rate_limit_submits: int = 0  # the next N submits answer 429 with Retry-After
    retry_after_seconds: int = 2
    server_error_submits: int = 0  # the next N submits answer 503
    # This share of jobs has its FIRST submit answered 429 (with Retry-After) or 503; the retry goes through.
    # A job hit by both gets 503, then 429, then its run.
    rate_limit_submit_fraction: float = 0.0
    server_error_submit_fraction: float = 0.0
    # Accepted submits (the run exists and runs) whose answer is lost: the connection closes without a byte, or a
    # load balancer answers `gateway_error_status` (502 or 504) with its HTML page. The fractions hit only the
    # first accepted submit of a job: its resubmit is answered (and is a second run).
    submit_answer_drops: int = 0
    submit_answer_drop_fraction: float = 0.0
    submit_gateway_errors: int = 0
    submit_gateway_error_fraction: float = 0.0
    gateway_error_status: int = 502
    fault_seed: str = "devstack"  # which jobs the fractions pick (the same seed, the same picks in one order)

    drop_webhooks: int = 0  # the next N runs send no webhook: only polling finds out they ended
    drop_webhook_fraction: float = 0.0  # this share of runs sends no webhook (with drop_webhooks: either)
    webhook_copies: int = 1  # each webhook is delivered this many times (providers retry: duplicates happen)
    webhook_attempts: int = 3  # deliveries of one copy until the receiver answers 2xx
    webhook_payload_errors: int = 0  # fal: the next N success webhooks carry payload_error instead of payload

    media_error_runs: int = 0  # the next N runs with a video: it answers 503 on every download (its server fails)
    slow_media: int = 0  # the next N video downloads send half the file, then stall (a crash can hit mid-copy)
    slow_media_seconds: float = 20.0  # how long such a download stalls (it ends early if the client goes away)

    # Mirako: the callback body's `id`: "task_id" (the task's), "request_id" (a fresh id) or "absent"
    callback_id: str = "task_id"
    server_error_voice_listings: int = 0  # Mirako: the next N voice profile listings answer 503
    speech_format: str = "wav"  # Mirako: b64_audio_str as a WAV file, or "pcm" (raw s16le mono 16 kHz)
    result_content_type: str = "video/mp4"  # Mirako: the Content-Type the result video is served with

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_COUNTERS = frozenset(
    {
        "fail_runs",
        "rate_limit_submits",
        "server_error_submits",
        "drop_webhooks",
        "webhook_payload_errors",
        "media_error_runs",
        "slow_media",
        "submit_answer_drops",
        "submit_gateway_errors",
        "app_error_runs",
        "server_error_voice_listings",
    }
)
FRACTIONS = frozenset(
    {
        "rate_limit_submit_fraction",
        "server_error_submit_fraction",
        "drop_webhook_fraction",
        "submit_answer_drop_fraction",
        "submit_gateway_error_fraction",
        "app_error_fraction",
    }
)
# Fields that take one of a few values, and those values.
_CHOICES: dict[str, tuple[Any, ...]] = {
    "failure_status": ("FAILED", "TIMED_OUT", "CANCELED"),
    "gateway_error_status": (502, 504),
    "callback_id": ("task_id", "request_id", "absent"),
    "speech_format": ("wav", "pcm"),
}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def _converted(name: str, kind: type, value: Any) -> Any:
    """`value` (JSON or environment text) as the field's type; ValueError names the field."""
    if isinstance(value, str) and kind is not str:
        text = value.strip().lower()
        if kind is bool:
            if text not in _TRUE | _FALSE:
                raise ValueError(f"{name} must be true or false")
            return text in _TRUE
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"{name} must be a {kind.__name__}") from None
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind in (bool, str) and isinstance(value, kind):
        return value
    raise ValueError(f"{name} must be a {kind.__name__}")


def _field_types() -> dict[str, type]:
    types = {}
    for field in fields(EmulatorSettings):
        assert isinstance(field.type, type)  # the annotations are plain types (no `from __future__` here)
        types[field.name] = field.type
    return types


def _checked(settings: EmulatorSettings) -> EmulatorSettings:
    delays = (settings.queue_seconds, settings.delay_seconds, settings.response_delay_seconds)
    if min(*delays, settings.slow_media_seconds) < 0:
        raise ValueError("delays cannot be negative")
    for name in FRACTIONS:
        if not 0.0 <= getattr(settings, name) <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1")
    if settings.workers < 1 or settings.webhook_copies < 0 or settings.webhook_attempts < 1:
        raise ValueError("workers and webhook_attempts must be at least 1, webhook_copies at least 0")
    for name, choices in _CHOICES.items():
        if getattr(settings, name) not in choices:
            raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}")
    for name in _COUNTERS:
        if getattr(settings, name) < EVERY_TIME:
            raise ValueError(f"{name} must be a count, or -1 for every time")
    return settings


def settings_from(values: Mapping[str, Any], base: EmulatorSettings | None = None) -> EmulatorSettings:
    """`base` (or the defaults) with `values` applied; ValueError for an unknown field or a bad value."""
    types = _field_types()
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(unknown)}")
    changes = {name: _converted(name, types[name], value) for name, value in values.items()}
    return _checked(dataclasses.replace(base or EmulatorSettings(), **changes))


def settings_from_environment(prefix: str, environ: Mapping[str, str] | None = None) -> EmulatorSettings:
    environ = os.environ if environ is None else environ
    values = {name: environ[prefix + name.upper()] for name in _field_types() if prefix + name.upper() in environ}
    return settings_from(values)


class SettingsStore:
    """The emulator's current settings, shared by its request threads and its runs."""

    def __init__(self, settings: EmulatorSettings) -> None:
        self._settings = _checked(dataclasses.replace(settings))
        self._lock = threading.Lock()

    def current(self) -> EmulatorSettings:
        with self._lock:
            return dataclasses.replace(self._settings)

    def update(self, values: Mapping[str, Any]) -> EmulatorSettings:
        with self._lock:
            self._settings = settings_from(values, self._settings)
            return dataclasses.replace(self._settings)

    def take(self, counter: str) -> bool:
        """Uses up one of a counting field ("the next N ..."): True if this one is among them."""
        if counter not in _COUNTERS:
            raise ValueError(f"{counter} is not a counting setting")
        with self._lock:
            left = getattr(self._settings, counter)
            if left == EVERY_TIME:
                return True
            if left > 0:
                setattr(self._settings, counter, left - 1)
                return True
            return False
