"""Every bound the service enforces, kept in one place so the API, the docs and the tests agree."""

from typing import Final

KIB: Final = 1024
MIB: Final = 1024 * KIB

# fal's ai-avatar documentation says num_frames "must be between 81 to 129 (inclusive)" while its listed
# defaults are 136..191: we check the documented range only when a caller gives a value, and otherwise
# leave the field out so fal applies its own default.
NUM_FRAMES_MIN: Final = 81
NUM_FRAMES_MAX: Final = 129
SEED_MIN: Final = 0
SEED_MAX: Final = 2**32 - 1

PROMPT_MAX_CHARS: Final = 2_000
SPEECH_TEXT_MAX_CHARS: Final = 5_000  # Mirako's TTS takes up to 10,000; fal does not say, so stay well inside
URL_MAX_CHARS: Final = 2_048
VOICE_PROFILE_ID_MAX_CHARS: Final = 128

METADATA_MAX_BYTES: Final = 2 * KIB  # compact JSON encoding
REQUEST_BODY_MAX_BYTES: Final = 5 * MIB  # under Lambda's 6 MB synchronous payload limit
DATA_URI_MAX_BYTES: Final = 3 * MIB  # decoded size of one data: input
WEBHOOK_BODY_MAX_BYTES: Final = 1 * MIB  # a completion notice carries URLs, never media

DEADLINE_SECONDS_MIN: Final = 300
DEADLINE_SECONDS_MAX: Final = 24 * 3600
DEADLINE_SECONDS_DEFAULT: Final = 2 * 3600

JOB_RECORD_RETENTION_DAYS: Final = 90  # the Jobs table TTL
IDEMPOTENCY_KEY_MAX_CHARS: Final = 255
IDEMPOTENCY_WINDOW_SECONDS: Final = 24 * 3600

LIST_LIMIT_DEFAULT: Final = 20
LIST_LIMIT_MAX: Final = 100
MODEL_FILTER_MAX_CHARS: Final = 64  # GET /jobs?model=: longer than any model id

IMAGE_CONTENT_TYPES: Final = frozenset({"image/png", "image/jpeg", "image/webp"})
AUDIO_CONTENT_TYPES: Final = frozenset(
    {"audio/mpeg", "audio/wav", "audio/x-wav", "audio/wave", "audio/mp4", "audio/aac", "audio/ogg", "audio/flac"}
)
UPLOAD_MAX_BYTES: Final = {"image": 10 * MIB, "audio": 50 * MIB}
UPLOAD_MAX_FILES: Final = 4
UPLOAD_FILENAME_MAX_CHARS: Final = 128
UPLOAD_URL_EXPIRY_SECONDS: Final = 900
DOWNLOAD_URL_EXPIRY_SECONDS: Final = 3600
