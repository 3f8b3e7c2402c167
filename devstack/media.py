"""Real media for the provider emulators: speech from text, and an MP4 of a still face speaking it.

Speech: espeak-ng's C library and voice data ship in the PyPI package `espeakng-loader`; we call the library
through ctypes in its synchronous mode, where a callback receives the 16-bit mono samples as they are made.
Video: the ffmpeg binary that ships in `imageio-ffmpeg`, run as a subprocess on files in a temporary folder.
Neither needs a system package or the network. The videos are made to be cheap (few frames per second,
x264's fastest preset): the local stack and its tests make many of them, and nobody watches them closely.
"""

import ctypes
import hashlib
import io
import re
import subprocess
import tempfile
import threading
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import espeakng_loader  # type: ignore[import-untyped]  # no type information in either package
import imageio_ffmpeg  # type: ignore[import-untyped]

# espeak-ng's speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_INITIALIZE_DONT_EXIT = 0x8000  # on a data error, return an error instead of exiting the process
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_EE_OK = 0
_SAMPLE_BYTES = 2  # espeak makes signed 16-bit mono samples

SAMPLE_FACE = Path(__file__).resolve().parent / "assets" / "face.png"  # drawn by assets/make_face.py
FFMPEG_TIMEOUT_SECONDS = 60.0
FRAMES_PER_SECOND = 10
VIDEO_HEIGHT = 480
VIDEO_MAX_WIDTH = 854  # 16:9 at 480 lines; a wider image is scaled down to fit
AUDIO_SAMPLE_RATE = 24_000
TEXT_MAX_CHARS = 5_000  # the emulators speak short demo sentences; this bounds a runaway input

# fal's ElevenLabs voice names -> an espeak voice with a variant: women's and men's variants, and accents,
# so that the two speakers of a multi-text conversation sound different.
FAL_VOICES: dict[str, str] = {
    "Aria": "en-us+f3",
    "Sarah": "en-us+f2",
    "Laura": "en-us+f4",
    "Charlotte": "en-gb-x-rp+f3",
    "Alice": "en-gb-x-rp+f2",
    "Matilda": "en-gb-x-rp+f4",
    "Jessica": "en-us+f5",
    "Lily": "en-gb-x-rp+f5",
    "Roger": "en-us+m3",
    "Charlie": "en-gb-x-rp+m2",
    "George": "en-gb-x-rp+m3",
    "Callum": "en-gb-scotland+m4",
    "River": "en-us+m5",
    "Liam": "en-us+m2",
    "Will": "en-us+m4",
    "Eric": "en-us+m6",
    "Chris": "en-us+m7",
    "Brian": "en-us+m1",
    "Daniel": "en-gb-x-rp+m1",
    "Bill": "en-us+m8",
}
DEFAULT_VOICE = "en-us+m3"
# Any other voice name (Mirako's voice_profile_id is a UUID) gets one of these, always the same for one name.
_VOICES_BY_HASH = tuple(sorted(set(FAL_VOICES.values())))

_DURATION = re.compile(rb"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")


class MediaError(Exception):
    """Speech or video could not be made (bad input, or the tool failed); the message says which and why."""


# -- speech ---------------------------------------------------------------------------------------------------

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _Espeak:
    """The process's one espeak-ng engine. The library keeps global state, so every use holds the lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._library = ctypes.CDLL(str(espeakng_loader.get_library_path()))
        self._library.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self._library.espeak_Initialize.restype = ctypes.c_int
        self._library.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._library.espeak_SetVoiceByName.restype = ctypes.c_int
        self._library.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        self._library.espeak_SetSynthCallback.restype = None
        self._library.espeak_Synth.argtypes = [
            ctypes.c_char_p,  # text
            ctypes.c_size_t,  # its size in bytes, with the terminating zero
            ctypes.c_uint,  # position
            ctypes.c_int,  # position type
            ctypes.c_uint,  # end position (0: none)
            ctypes.c_uint,  # flags
            ctypes.c_void_p,  # unique identifier (out)
            ctypes.c_void_p,  # user data
        ]
        self._library.espeak_Synth.restype = ctypes.c_int
        data_path = str(espeakng_loader.get_data_path()).encode()
        self.sample_rate = self._library.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, _ESPEAK_INITIALIZE_DONT_EXIT
        )
        if self.sample_rate <= 0:
            raise MediaError(f"espeak-ng could not start with its data at {data_path.decode()}")
        self._samples: list[bytes] = []
        # Kept on the instance: ctypes does not keep a callback alive, and espeak calls it until the end.
        self._callback = _SynthCallback(self._collect)
        self._library.espeak_SetSynthCallback(self._callback)

    def _collect(self, samples: "ctypes._Pointer[ctypes.c_short]", count: int, _events: int | None) -> int:
        if samples and count > 0:
            self._samples.append(ctypes.string_at(samples, count * _SAMPLE_BYTES))
        return 0  # go on

    def synthesize(self, text: str, voice: str) -> bytes:
        """16-bit mono PCM at `sample_rate`; the caller holds the lock."""
        if self._library.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise MediaError(f"espeak-ng has no voice {voice!r}")
        encoded = text.encode()
        self._samples = []
        status = self._library.espeak_Synth(
            encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None
        )
        if status != _EE_OK:
            raise MediaError(f"espeak-ng could not speak the text (error {status})")
        return b"".join(self._samples)


_engine: _Espeak | None = None
_engine_lock = threading.Lock()


def _espeak() -> _Espeak:
    global _engine  # noqa: PLW0603  # one engine per process: the library itself is a singleton
    with _engine_lock:
        if _engine is None:
            _engine = _Espeak()
        return _engine


def espeak_voice(voice: str | None) -> str:
    """The espeak voice for a fal voice name, or a stable pick among ours for any other name (Mirako's ids)."""
    if not voice:
        return DEFAULT_VOICE
    if voice in FAL_VOICES:
        return FAL_VOICES[voice]
    index = int.from_bytes(hashlib.sha256(voice.encode()).digest()[:4], "big") % len(_VOICES_BY_HASH)
    return _VOICES_BY_HASH[index]


def speak(text: str, voice: str | None = None) -> bytes:
    """A WAV file (16-bit mono) of `text` spoken by `voice` (a fal voice name, or any id: see espeak_voice)."""
    if not text.strip():
        raise MediaError("there is no text to speak")
    if len(text) > TEXT_MAX_CHARS:
        raise MediaError(f"the text is longer than {TEXT_MAX_CHARS} characters")
    engine = _espeak()
    with engine.lock:
        pcm = engine.synthesize(text, espeak_voice(voice))
    if not pcm:
        raise MediaError("espeak-ng made no sound for the text")
    return wav_bytes(pcm, engine.sample_rate)


def wav_bytes(pcm: bytes, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(_SAMPLE_BYTES)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm)
    return buffer.getvalue()


def pcm_s16le(wav: bytes, sample_rate: int) -> bytes:
    """The raw samples of a WAV file (no header) as signed 16-bit little-endian mono at `sample_rate`."""
    with tempfile.TemporaryDirectory(prefix="avatar-pcm-") as folder:
        source, output = Path(folder) / "speech.wav", Path(folder) / "speech.raw"
        source.write_bytes(wav)
        arguments = ["-i", str(source), "-ac", "1", "-ar", str(sample_rate), "-f", "s16le", "-c:a", "pcm_s16le"]
        finished = _ffmpeg([*arguments, "-y", str(output)], "resample the speech")
        if finished.returncode != 0 or not output.exists():
            raise MediaError(f"ffmpeg could not resample the speech: {_last_lines(finished.stderr)}")
        return output.read_bytes()


# How audio files begin (their container's signature): raw samples have none of these.
_AUDIO_SIGNATURES: tuple[tuple[str, Callable[[bytes], bool]], ...] = (
    ("wav", lambda data: data[:4] == b"RIFF" and data[8:12] == b"WAVE"),
    ("mp3", lambda data: data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0)),
    ("ogg", lambda data: data[:4] == b"OggS"),
    ("flac", lambda data: data[:4] == b"fLaC"),
    ("mp4", lambda data: data[4:8] == b"ftyp"),
    ("webm", lambda data: data[:4] == b"\x1a\x45\xdf\xa3"),
)


def audio_file_format(data: bytes) -> str | None:
    """The container of an audio file ("wav", "mp3", ...) by its signature; None for anything else (raw PCM)."""
    return next((name for name, matches in _AUDIO_SIGNATURES if matches(data)), None)


def wav_duration(wav: bytes) -> float:
    """Seconds of audio in a WAV file."""
    try:
        with wave.open(io.BytesIO(wav), "rb") as reader:
            return reader.getnframes() / reader.getframerate()
    except (wave.Error, EOFError) as error:
        raise MediaError(f"not a WAV file: {error}") from None


# -- video ----------------------------------------------------------------------------------------------------


def ffmpeg_executable() -> str:
    """The ffmpeg binary inside the imageio-ffmpeg wheel (no system ffmpeg needed)."""
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def _ffmpeg(arguments: list[str], what: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(  # noqa: S603  # our own arguments, no shell
            [ffmpeg_executable(), "-hide_banner", "-nostdin", *arguments],
            capture_output=True,
            timeout=FFMPEG_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise MediaError(f"ffmpeg took more than {FFMPEG_TIMEOUT_SECONDS:.0f} s to {what}") from None


def image_suffix(image: bytes) -> str:
    """The file name suffix ffmpeg needs to read a still image (its image reader goes by the name)."""
    if image.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if image.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if image[:4] == b"RIFF" and image[8:12] == b"WEBP":
        return ".webp"
    if image[:6] in (b"GIF87a", b"GIF89a"):
        return ".gif"
    if image.startswith(b"BM"):
        return ".bmp"
    raise MediaError("the image is not a PNG, JPEG, WebP, GIF or BMP file")


def _video_arguments(image_file: Path, audio_files: list[Path], output: Path, height: int) -> list[str]:
    inputs = ["-loop", "1", "-framerate", str(FRAMES_PER_SECOND), "-i", str(image_file)]
    for audio_file in audio_files:
        inputs += ["-i", str(audio_file)]
    # Every track to one sample rate and layout first: concat needs identical formats, and the speakers'
    # audio may come from anywhere (an MP3 upload, espeak's 22 kHz WAV).
    audio_format = f"aformat=sample_fmts=fltp:sample_rates={AUDIO_SAMPLE_RATE}:channel_layouts=mono"
    filters = [f"[{index + 1}:a]{audio_format}[a{index}]" for index in range(len(audio_files))]
    joined = "".join(f"[a{index}]" for index in range(len(audio_files)))
    filters.append(f"{joined}concat=n={len(audio_files)}:v=0:a=1[audio]")
    max_width = VIDEO_MAX_WIDTH * height // VIDEO_HEIGHT
    filters.append(
        f"[0:v]scale={max_width}:{height}:force_original_aspect_ratio=decrease:force_divisible_by=2,"
        "setsar=1,format=yuv420p[video]"
    )
    return [
        *inputs,
        "-filter_complex",
        ";".join(filters),
        "-map",
        "[video]",
        "-map",
        "[audio]",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "stillimage",
        "-r",
        str(FRAMES_PER_SECOND),
        "-c:a",
        "aac",
        "-b:a",
        "64k",
        # The image loops forever: the audio sets the length.
        "-shortest",
        "-movflags",
        "+faststart",
        "-y",
        str(output),
    ]


def make_video(image: bytes, audio_tracks: list[bytes], *, height: int = VIDEO_HEIGHT) -> bytes:
    """An MP4 (H.264 yuv420p + AAC) of the still `image` while the audio tracks play one after another.

    The picture keeps the image's aspect, `height` lines high (even sizes, as H.264 in yuv420p needs);
    the video lasts as long as the audio. Audio may be in any format ffmpeg reads (WAV, MP3, ...).
    """
    if not audio_tracks:
        raise MediaError("a video needs at least one audio track")
    if any(not track for track in audio_tracks):
        raise MediaError("an audio track is empty")
    with tempfile.TemporaryDirectory(prefix="avatar-video-") as folder:
        work = Path(folder)
        image_file = work / f"face{image_suffix(image)}"
        image_file.write_bytes(image)
        audio_files = []
        for index, track in enumerate(audio_tracks):
            audio_file = work / f"speech{index}"
            audio_file.write_bytes(track)
            audio_files.append(audio_file)
        output = work / "video.mp4"
        finished = _ffmpeg(_video_arguments(image_file, audio_files, output, height), "make the video")
        if finished.returncode != 0 or not output.exists():
            raise MediaError(f"ffmpeg could not make the video: {_last_lines(finished.stderr)}")
        return output.read_bytes()


# -- probe ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    has_video: bool
    has_audio: bool
    duration_seconds: float


def probe(mp4: bytes) -> Probe:
    """What ffmpeg reads in a media file: its streams and duration (`ffmpeg -i` lists them on stderr)."""
    with tempfile.TemporaryDirectory(prefix="avatar-probe-") as folder:
        media_file = Path(folder) / "media.mp4"
        media_file.write_bytes(mp4)
        # With no output file ffmpeg exits 1 after describing the input; the description is all we want.
        finished = _ffmpeg(["-i", str(media_file)], "read the file")
    streams = [line for line in finished.stderr.splitlines() if line.strip().startswith(b"Stream #")]
    duration = _DURATION.search(finished.stderr)
    if duration is None:
        raise MediaError(f"ffmpeg does not read the file as media: {_last_lines(finished.stderr)}")
    hours, minutes, seconds = duration.groups()
    return Probe(
        has_video=any(b": Video: " in line for line in streams),
        has_audio=any(b": Audio: " in line for line in streams),
        duration_seconds=int(hours) * 3600 + int(minutes) * 60 + float(seconds),
    )


def _last_lines(stderr: bytes, count: int = 3) -> str:
    lines = [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    return " | ".join(lines[-count:]) or "no message"
