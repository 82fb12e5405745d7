"""The lip-sync analyser: speech made by espeak-ng gives the right vowels and an openness that follows the
loudness, silence closes the mouth, every common format decodes from its bytes, bad input is refused with a
clear message.

Speech is made in the test session with espeak-ng and converted with ffmpeg (tests that need them skip
when they are missing); tests/data/lipsync holds two small clips so decoding is tested without them.
"""
from __future__ import annotations

import functools
import io
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from talkinghead import lipsync
from talkinghead.lipsync import VOWELS, AudioError
from conftest import need_tool, require
import synth
from synth import murmur, silence, vowel, wav_bytes

DATA = Path(__file__).parent / "data" / "lipsync"
# Skip without the tool; fail under CI=true, where the test setup must provide it (conftest.need_tool).
needs_espeak = pytest.mark.needs_tool("espeak-ng", hint="apt-get install espeak-ng")
needs_ffmpeg = pytest.mark.needs_tool("ffmpeg", hint="apt-get install ffmpeg")

SENTENCES = {
    "en": "The quick brown fox jumps over the lazy dog, and then it sleeps for a while.",
    "en+f3": "Would you like a cup of tea? I made it just the way you like it.",
    "de": "Guten Morgen! Heute ist ein schöner Tag, und wir gehen in den Park.",
    "es": "Buenos días. Hoy hace buen tiempo y vamos a caminar por el parque.",
}
# Sustained vowels as espeak-ng phonemes (the same mnemonics in these languages).
VOWEL_PHONEMES = {"aaa": "a:", "iii": "i:", "uuu": "u:", "eee": "e:", "ooo": "o:"}


@functools.lru_cache(maxsize=None)
def speak(voice: str, text: str, *args: str) -> bytes:
    """WAV bytes of espeak-ng saying `text` (cached for the session)."""
    return subprocess.run(["espeak-ng", "-v", voice, *args, "--stdout", text],
                          capture_output=True, check=True, timeout=30).stdout


def sustained(voice: str, vowel: str, *args: str) -> bytes:
    phoneme = VOWEL_PHONEMES[vowel]
    return speak(voice, f"[[{phoneme * 3}]]", "-s", "80", *args)  # ~1.5 s of one vowel


def rms_envelope(samples: np.ndarray, rate: int) -> np.ndarray:
    """Plain RMS over 20 ms centred on every 10 ms frame: the reference the openness must follow."""
    hop = rate // 100
    n = len(samples) // hop + 1
    padded = np.pad(samples.astype(np.float64), (hop, hop + n * hop))
    return np.array([math.sqrt(np.mean(padded[i * hop:i * hop + 2 * hop] ** 2)) for i in range(n)])


def sine(seconds: float, rate: int = 16000, freq: float = 220.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# --- The track ----------------------------------------------------------------------------------------------

def test_track_shape_and_ranges():
    track = lipsync.analyse_samples(sine(1.0), 16000)
    assert track.frame_ms == lipsync.FRAME_MS == 10
    assert track.duration_s == pytest.approx(1.0)
    assert track.open.shape == (101,) and track.open.dtype == np.float32
    assert track.vowels.shape == (101, 5) and track.vowels.dtype == np.float32
    assert 0 <= track.open.min() and track.open.max() <= 1
    sums = track.vowels.sum(axis=1)
    assert np.all((np.abs(sums - 1) < 1e-4) | (sums == 0))
    assert track.open[30:70].min() > 0.9  # a steady tone at the clip's loud level: wide open


def test_silence_is_a_closed_mouth():
    track = lipsync.analyse_samples(np.zeros(16000, np.float32), 16000)
    assert track.open.max() == 0 and track.vowels.max() == 0 and track.voiced_ratio == 0
    empty = lipsync.analyse_samples(np.zeros(0, np.float32), 16000)
    assert empty.open.shape == (0,) and empty.vowels.shape == (0, 5) and empty.duration_s == 0
    assert empty.at(0.0)[0] == 0


def test_at_interpolates_between_frames_and_is_closed_outside():
    n = 5
    track = lipsync.Track(np.linspace(0, 0.4, n, dtype=np.float32), np.tile(np.eye(5, dtype=np.float32)[0], (n, 1)),
                          duration_s=0.045, voiced_ratio=1.0)
    openness, vowels = track.at(0.015)
    assert openness == pytest.approx(0.15) and vowels.shape == (5,) and vowels[0] == pytest.approx(1)
    assert track.at(0.045)[0] == pytest.approx(0.4)  # past the last frame centre: the last frame
    for t in (-0.01, 0.05):
        openness, vowels = track.at(t)
        assert openness == 0 and not vowels.any()


def test_to_json():
    track = lipsync.analyse_samples(sine(0.5), 16000)
    short = track.to_json(with_track=False)
    assert set(short) == {"duration_s", "frame_ms", "voiced_ratio"}
    assert short["frame_ms"] == 10 and short["duration_s"] == 0.5
    full = track.to_json(with_track=True)
    assert list(full["track"]) == ["open", *VOWELS]
    assert all(len(v) == len(track.open) for v in full["track"].values())
    assert full["track"]["open"][25] == round(float(track.open[25]), 3)


def test_sample_rate_does_not_matter():
    x16 = sine(1.0, 16000)
    x44 = sine(1.0, 44100)
    a, b = lipsync.analyse_samples(x16, 16000), lipsync.analyse_samples(x44, 44100)
    assert len(a.open) == len(b.open)
    assert np.abs(a.open - b.open).max() < 0.02


# --- Speech ---------------------------------------------------------------------------------------------------

# Voices whose five sustained vowels are all read right: male, female and child-like, two languages.
# (espeak-ng's English /u:/ is a fronted [ʉː], so English voices are tested on the other four.)
GOOD_VOICES = [("de",), ("de+f4", "-p", "80"), ("es",), ("es+f2",)]


def vowel_accuracy(data: bytes, vowel: str) -> float:
    track = lipsync.analyse(data)
    sounding = track.open > 0.2
    assert sounding.sum() > 50
    return float(np.mean(track.vowels[sounding].argmax(axis=1) == VOWELS.index(vowel)))


@needs_espeak
@pytest.mark.parametrize("voice", GOOD_VOICES, ids=" ".join)
@pytest.mark.parametrize("vowel", VOWELS)
def test_sustained_vowels_read_right(voice, vowel):
    assert vowel_accuracy(sustained(*voice[:1], vowel, *voice[1:]), vowel) >= 0.8


@needs_espeak
@pytest.mark.parametrize("voice", ["en", "en+f3"])
@pytest.mark.parametrize("vowel", ["aaa", "iii", "eee", "ooo"])
def test_sustained_vowels_read_right_in_english(voice, vowel):
    assert vowel_accuracy(sustained(voice, vowel), vowel) >= 0.8


@needs_espeak
@pytest.mark.xfail(reason="known weak: espeak-ng's female German /e:/ (F1 440, F2 2640 Hz at F0 200 Hz) "
                          "sits nearer the /i/ prototype: 21 % of frames read /e/", strict=True)
def test_weak_case_female_german_e():
    assert vowel_accuracy(sustained("de+f3", "eee"), "eee") >= 0.8


@needs_espeak
@pytest.mark.xfail(reason="known weak: espeak-ng's English /u:/ is a fronted [ʉː] (F2 1500-1900 Hz), read as "
                          "/i/ or /e/: 10-18 % of frames read /u/", strict=True)
@pytest.mark.parametrize("voice", ["en", "en+f3"])
def test_weak_case_english_u(voice):
    assert vowel_accuracy(sustained(voice, "uuu"), "uuu") >= 0.8


@needs_espeak
@pytest.mark.parametrize("voice", list(SENTENCES))
def test_openness_follows_the_loudness(voice):
    samples, rate = lipsync.decode(speak(voice, SENTENCES[voice]))
    track = lipsync.analyse_samples(samples, rate)
    envelope = rms_envelope(samples, rate)
    n = min(len(envelope), len(track.open))
    assert np.corrcoef(track.open[:n], envelope[:n])[0, 1] >= 0.9
    assert 0.3 < track.voiced_ratio < 0.9


@needs_espeak
@pytest.mark.parametrize("voice", ["en", "en+f3"])
def test_silence_closes_the_mouth_within_60_ms(voice):
    samples, rate = lipsync.decode(speak(voice, SENTENCES[voice]))
    loud = np.flatnonzero(np.abs(samples) > 0.01 * np.abs(samples).max())
    speech = samples[:loud[-1] + 1]  # cut espeak's own trailing silence: speech stops at the clip's end
    track = lipsync.analyse_samples(np.concatenate([speech, np.zeros(rate, np.float32)]), rate)
    stop = len(speech) / rate
    assert track.open[int(stop * 100) - 5:int(stop * 100)].max() > 0.05  # open while speaking
    after = track.open[math.ceil((stop + 0.06) * 100):]
    assert after.max() < 0.05
    assert not track.vowels[math.ceil((stop + 0.1) * 100):].any()


@needs_espeak
def test_quiet_and_loud_speech_open_the_mouth_alike():
    samples, rate = lipsync.decode(speak("en", SENTENCES["en"]))
    loud = lipsync.analyse_samples(samples, rate)
    quiet = lipsync.analyse_samples(samples * 0.05, rate)
    assert np.abs(loud.open - quiet.open).max() < 0.02
    sounding = loud.open > 0.2
    assert np.mean(loud.vowels[sounding].argmax(axis=1) == quiet.vowels[sounding].argmax(axis=1)) > 0.98


def test_lips_shut_at_a_closure_between_vowels():
    """ "papa" (70 ms of silence) and "mama" (70 ms of nasal murmur, as loud as it is in speech, and as loud
    as the vowels): the mouth is wide open on the vowels and shut (0) at the closure, the smoothing does not
    round it away, and it opens again within 30 ms of the release."""
    for name, closure in (("papa", silence(0.07)), ("mama", murmur(0.07)), ("loud mama", murmur(0.07, level=0.3))):
        x = np.concatenate([silence(0.3), vowel(0.3), closure, vowel(0.3), silence(0.3)]).astype(np.float32)
        track = lipsync.analyse_samples(x, synth.RATE)
        vowels_open = min(track.open[35:57].min(), track.open[70:90].min())
        assert vowels_open > 0.5, name
        assert track.open[62:66].max() == 0.0, (name, track.open[58:72])  # 0.62-0.65 s: mid closure
        assert track.open[69:72].min() > 0.5 * vowels_open, (name, track.open[58:72])


# --- Festival: voices cut from recorded speakers, sentences labelled by the synthesiser ----------------------

# Festival's voices, per clip: the mouth track and Festival's phone segments. The vowel prototypes of the
# per-clip reading were fitted on the three Czech voices: the English and Finnish ones are held out.
FITTED = {"cs female (dita)", "cs male (machac)", "cs child (krb)"}


@pytest.fixture(scope="module")
def festival_tracks(tmp_path_factory) -> dict:
    """{voice: [(track, segments)] or the reason it could not be made}: synthesised once per test module."""
    need_tool("festival", hint="scripts/setup.sh --test installs it and its voices")
    directory = tmp_path_factory.mktemp("festival")
    out = {}
    for i, voice in enumerate(synth.FESTIVAL_VOICES):
        try:
            clips = synth.festival(voice, directory, stem=f"v{i}")
        except (subprocess.CalledProcessError, FileNotFoundError, subprocess.TimeoutExpired):
            out[voice] = f"Festival voice {synth.FESTIVAL_VOICES[voice][0]} not installed or failing"
            continue
        out[voice] = [(lipsync.analyse(wav), segments) for wav, segments in clips]
    return out


def _voice_clips(festival_tracks, voice):
    clips = festival_tracks[voice]
    require(not isinstance(clips, str), str(clips))
    return clips


def _vowel_votes(clips):
    return [vote for track, segments in clips for vote in synth.vowel_segment_votes(track, segments)]


def _closures(clips):
    return [synth.closure_ok(*c) for track, segments in clips for c in synth.closures(track, segments)]


FESTIVAL_IDS = {voice: voice.replace(" ", "-").replace("(", "").replace(")", "") +
                ("-fitted" if voice in FITTED else "-held-out") for voice in synth.FESTIVAL_VOICES}


@pytest.mark.parametrize("voice", list(synth.FESTIVAL_VOICES), ids=FESTIVAL_IDS.get)
def test_festival_vowel_segments_read_right_in_every_voice(festival_tracks, voice):
    """Each voice: >= 70 % of its vowel segments (>= 40 ms; the middle half votes) read as the right vowel
    (measured: 80-96 %)."""
    votes = _vowel_votes(_voice_clips(festival_tracks, voice))
    assert len(votes) >= 20
    accuracy = np.mean([expected == read for expected, read in votes])
    assert accuracy >= 0.7, f"{voice}: {accuracy:.0%} of {len(votes)} vowel segments"


def test_festival_vowel_segments_read_right_overall(festival_tracks):
    """All voices together: >= 85 % of the vowel segments; the held-out voices alone too (>= 80 %)."""
    for voice in synth.FESTIVAL_VOICES:
        _voice_clips(festival_tracks, voice)  # every voice is there, or the test skips saying which
    votes = {voice: _vowel_votes(festival_tracks[voice]) for voice in synth.FESTIVAL_VOICES}
    pooled = [e == r for v in votes.values() for e, r in v]
    held_out = [e == r for voice, v in votes.items() if voice not in FITTED for e, r in v]
    assert np.mean(pooled) >= 0.85, f"{np.mean(pooled):.1%} of {len(pooled)}"
    assert np.mean(held_out) >= 0.8, f"held-out voices: {np.mean(held_out):.1%} of {len(held_out)}"


@pytest.mark.parametrize("voice", list(synth.FESTIVAL_VOICES), ids=FESTIVAL_IDS.get)
def test_festival_lips_close_at_p_b_m(festival_tracks, voice):
    """/p b m/ between vowels: at most half as open as the vowels beside, and shut (<= 0.1) mid /p b/;
    >= 85 % of them in each voice (measured: 94-100 %)."""
    shut = _closures(_voice_clips(festival_tracks, voice))
    assert len(shut) >= 8
    assert np.mean(shut) >= 0.85, f"{voice}: {sum(shut)} of {len(shut)} closures"


# --- Formats ---------------------------------------------------------------------------------------------------

FORMATS = {  # file name suffix: ffmpeg encoder arguments
    "mp3": ["-c:a", "libmp3lame", "-b:a", "64k"],
    "ogg": ["-c:a", "libvorbis", "-q:a", "3"],
    "opus.ogg": ["-c:a", "libopus", "-b:a", "32k"],
    "flac": ["-c:a", "flac"],
    "m4a": ["-c:a", "aac", "-b:a", "64k"],
    "webm": ["-c:a", "libopus", "-b:a", "32k"],
    "wav": ["-c:a", "pcm_s16le", "-ar", "44100", "-ac", "2"],  # resampled and stereo
}


@needs_espeak
@needs_ffmpeg
@pytest.mark.parametrize("suffix", list(FORMATS))
def test_format_round_trips(suffix, tmp_path):
    source = tmp_path / "source.wav"
    source.write_bytes(speak("en+f3", SENTENCES["en+f3"]))
    target = tmp_path / f"speech.{suffix}"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), *FORMATS[suffix], str(target)],
                   check=True, timeout=60)
    reference = lipsync.analyse(source.read_bytes())
    track = lipsync.analyse(target.read_bytes())  # bytes only: no name, no content type
    assert abs(track.duration_s - reference.duration_s) < 0.05
    n = min(len(track.open), len(reference.open))
    assert np.corrcoef(track.open[:n], reference.open[:n])[0, 1] > 0.95
    sounding = reference.open[:n] > 0.2
    same_vowel = track.vowels[:n][sounding].argmax(axis=1) == reference.vowels[:n][sounding].argmax(axis=1)
    assert same_vowel.mean() > 0.7


@pytest.mark.parametrize("name", ["hello.mp3", "hello.opus.ogg"])
def test_stored_clips_decode(name):
    """Whatever type a server declares for them (SillyTavern calls every OpenAI-compatible answer audio/mpeg),
    the bytes say what they are."""
    samples, rate = lipsync.decode((DATA / name).read_bytes())
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert len(samples) / rate == pytest.approx(1.58, abs=0.05)
    track = lipsync.analyse((DATA / name).read_bytes())
    assert track.open.max() > 0.9 and 0.3 < track.voiced_ratio < 0.95


def test_decode_resamples_when_asked():
    samples, rate = lipsync.decode(wav_bytes(sine(1.0, 22050), 22050), 16000)
    assert rate == 16000 and abs(len(samples) - 16000) < 100


# --- Bad input -------------------------------------------------------------------------------------------------

def _png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (np.random.default_rng(1).bytes(20000), "not audio"),
    (_png(), "no audio"),
    (b"Hello, this is just text.\n" * 40, "not audio"),
    (b'{"error": {"message": "Rate limit exceeded", "type": "requests"}}', "not audio"),
    (wav_bytes(sine(1.0), 16000)[:30], None),  # a WAV header cut short
], ids=["empty", "random", "png", "text", "json-error", "truncated-header"])
def test_bad_input_is_refused_with_a_clear_message(data, message):
    with pytest.raises(AudioError) as caught:
        lipsync.analyse(data)
    text = str(caught.value)
    if message:
        assert message in text.lower()
    assert text.endswith(".") and "errno" not in text.lower() and "<" not in text  # for users, no internals


def test_truncated_audio_decodes_what_is_there():
    data = (DATA / "hello.mp3").read_bytes()
    samples, rate = lipsync.decode(data[:len(data) // 2])
    assert 0.4 < len(samples) / rate < 1.2


def test_audio_over_the_cap_is_refused(monkeypatch):
    monkeypatch.setattr(lipsync, "MAX_DURATION_S", 1.0)
    assert lipsync.decode(wav_bytes(sine(0.9), 16000))[0].size == 14400
    with pytest.raises(AudioError, match="longer than 1 s"):
        lipsync.decode(wav_bytes(sine(2.0), 16000))


@needs_ffmpeg
def test_audio_over_the_cap_is_refused_without_a_declared_duration(monkeypatch):
    """A raw MP3 stream (no header with the length) is stopped while decoding, not after."""
    result = subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=300:duration=3",
                             "-c:a", "libmp3lame", "-f", "mp3", "-write_xing", "0", "pipe:1"],
                            capture_output=True, check=True, timeout=60)
    monkeypatch.setattr(lipsync, "MAX_DURATION_S", 1.0)
    with pytest.raises(AudioError, match="longer than"):
        lipsync.decode(result.stdout)
