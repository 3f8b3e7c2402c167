"""devstack.media: speech through espeak-ng's library (ctypes) and MP4s through imageio-ffmpeg's ffmpeg."""

import io
import subprocess
import time
import wave

import pytest

from devstack import media
from devstack.assets import make_face

SENTENCE = "Do you know what we are eating today? I think it is something called milky pie."
FIRST_LINE = "Do you know what we are eating?"
SECOND_LINE = "I do not know, our mother gave it to us."


@pytest.fixture(scope="module")
def face() -> bytes:
    return media.SAMPLE_FACE.read_bytes()


def test_speak_gives_a_wav_of_plausible_length() -> None:
    wav = media.speak(SENTENCE, "Aria")

    with wave.open(io.BytesIO(wav), "rb") as reader:
        assert reader.getnchannels() == 1
        assert reader.getsampwidth() == 2
        assert reader.getframerate() > 8_000
        seconds = reader.getnframes() / reader.getframerate()
    # 15 words at espeak's default 175 words per minute, plus its pauses
    assert 3.0 < seconds < 9.0
    assert media.wav_duration(wav) == pytest.approx(seconds)


def test_two_voices_sound_different() -> None:
    sarah = media.speak(FIRST_LINE, "Sarah")
    roger = media.speak(FIRST_LINE, "Roger")

    assert media.espeak_voice("Sarah") != media.espeak_voice("Roger")
    assert sarah != roger


def test_every_fal_voice_and_any_other_name_can_speak() -> None:
    for voice in [*media.FAL_VOICES, "a1b2c3d4-e5f6-7890-1234-567890abcdef", None]:
        assert media.wav_duration(media.speak("Hi.", voice)) > 0.1, voice
    assert media.espeak_voice("a1b2c3d4") == media.espeak_voice("a1b2c3d4")  # stable for one id


def test_speak_refuses_empty_text() -> None:
    with pytest.raises(media.MediaError, match="no text"):
        media.speak("   ", "Sarah")


def test_make_video_plays_the_tracks_one_after_another(face: bytes) -> None:
    tracks = [media.speak(FIRST_LINE, "Sarah"), media.speak(SECOND_LINE, "Roger")]
    expected = sum(media.wav_duration(track) for track in tracks)

    started = time.perf_counter()
    video = media.make_video(face, tracks)
    elapsed = time.perf_counter() - started
    print(f"make_video: {expected:.2f} s of video at 480p in {elapsed:.2f} s, {len(video)} bytes")

    found = media.probe(video)
    assert found.has_video
    assert found.has_audio
    assert found.duration_seconds == pytest.approx(expected, abs=0.5)
    assert video[4:8] == b"ftyp"
    # +faststart: the index (moov) comes before the media data (mdat), so a player can start at once
    assert video.index(b"moov") < video.index(b"mdat")


def test_make_video_takes_other_audio_formats_and_the_720p_height(face: bytes) -> None:
    wav = media.speak(FIRST_LINE, "Lily")
    mp3 = subprocess.run(  # noqa: S603  # the bundled ffmpeg, our own arguments
        [media.ffmpeg_executable(), "-hide_banner", "-loglevel", "error", "-i", "-", "-f", "mp3", "-"],
        input=wav,
        capture_output=True,
        timeout=30,
        check=True,
    ).stdout

    started = time.perf_counter()
    video = media.make_video(face, [mp3], height=720)
    print(f"make_video: 720p from an MP3 in {time.perf_counter() - started:.2f} s, {len(video)} bytes")

    found = media.probe(video)
    assert (found.has_video, found.has_audio) == (True, True)
    assert found.duration_seconds == pytest.approx(media.wav_duration(wav), abs=0.5)


def test_make_video_refuses_what_is_not_an_image_or_has_no_audio(face: bytes) -> None:
    with pytest.raises(media.MediaError, match="not a PNG"):
        media.make_video(b"plain text, not a picture", [media.speak("Hi.")])
    with pytest.raises(media.MediaError, match="at least one audio track"):
        media.make_video(face, [])
    with pytest.raises(media.MediaError, match="could not make the video"):
        media.make_video(face, [b"not audio at all"])


def test_probe_refuses_what_is_not_media() -> None:
    with pytest.raises(media.MediaError):
        media.probe(b"definitely not an mp4")


def test_the_bundled_face_is_a_small_png_that_its_script_draws() -> None:
    face = media.SAMPLE_FACE.read_bytes()

    assert face.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(face) < 50_000
    assert make_face.png(make_face.render(make_face.face_layers()), make_face.SIZE, make_face.SIZE) == face
