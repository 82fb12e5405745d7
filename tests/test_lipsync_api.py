"""POST /api/talkinghead/lipsync on a fast fake poser: the answer, its options, bad audio, and the mouth in the
stream following the audio. (The analyser itself: test_lipsync.py; pixels on the real poser:
test_lipsync_stream.py.)"""
from __future__ import annotations

import io
import time

import numpy as np
import pytest

from server import Config, create_app
from talkinghead import pose as P
from talkinghead.settings import VOWEL_MORPHS
from synth import silence, vowel, wav_bytes

URL = "/api/talkinghead/lipsync"
VOWELS = [P.INDEX[name] for name in VOWEL_MORPHS]
SPEECH = wav_bytes(np.concatenate([silence(0.3), vowel(0.8), silence(0.7)]))  # 1.8 s: "aah" from 0.3 to 1.1


@pytest.fixture
def th(fake_engine):
    fake_engine.load_animator_settings({"blink_probability": 0.0, "sway_macro_strength": 0.0,
                                        "sway_micro_strength": 0.0})
    return fake_engine


@pytest.fixture
def client(th):
    return create_app(Config(modules=["talkinghead"]), engines={"talkinghead": th}).test_client()


def mouth(th) -> float:
    """How open the mouth is in the animator's pose now (sum of the vowel morphs)."""
    return float(th.animator.pose_at(time.monotonic())[VOWELS].sum())


def test_lipsync_answers_the_analysis_and_drives_the_mouth(client, th):
    response = client.post(URL, data=SPEECH, content_type="audio/wav")
    sent = time.monotonic()
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body) == {"duration_s", "frame_ms", "voiced_ratio"}  # no track unless asked
    assert body["duration_s"] == pytest.approx(1.8, abs=0.02) and body["frame_ms"] == 10
    assert 0.3 <= body["voiced_ratio"] <= 0.6
    assert th.stats()["talking"] and th.stats()["lipsync_tracks"] == 1
    time.sleep(max(0.0, sent + 0.6 - time.monotonic()))  # inside the vowel
    assert mouth(th) > 0.5
    time.sleep(max(0.0, sent + 1.6 - time.monotonic()))  # the silence after it
    assert mouth(th) < 0.05


def test_lipsync_track_option_returns_the_track_per_10_ms(client):
    body = client.post(URL + "?track=1", data=SPEECH, content_type="application/octet-stream").get_json()
    track = body["track"]
    assert set(track) == {"open", "aaa", "iii", "uuu", "eee", "ooo"}
    assert all(len(values) == len(track["open"]) for values in track.values())
    assert len(track["open"]) == pytest.approx(180, abs=2)
    opens = np.array(track["open"])
    assert opens[40:100].min() > 0.3 and opens[125:].max() < 0.05 and opens[:25].max() < 0.05
    aaa = np.array(track["aaa"])[40:100]
    others = np.array([track[v] for v in ("iii", "uuu", "eee", "ooo")])[:, 40:100]
    assert np.mean(aaa >= others.max(axis=0)) >= 0.8


def test_lipsync_as_multipart_file_with_options_in_the_form(client, th):
    response = client.post(URL, data={"file": (io.BytesIO(SPEECH), "speech.mp3", "audio/mpeg"),
                                      "analyze_only": "1"}, content_type="multipart/form-data")
    assert response.status_code == 200, response.get_json()
    assert "track" in response.get_json()  # analyze_only returns the track
    assert th.stats()["lipsync_tracks"] == 0 and not th.stats()["talking"]  # and drives nothing


def test_lipsync_offset_starts_the_track_in_the_past(client, th):
    """0.9 s already played of a clip whose vowel runs from 0.3 to 1.8 s: the mouth is open at once (without
    the offset: 0.3 s of silence first) and shut 0.9 s later (without it: still open)."""
    clip = wav_bytes(np.concatenate([silence(0.3), vowel(1.5), silence(0.7)]))
    asked = time.monotonic()
    response = client.post(URL + "?offset_ms=900", data=clip)
    sent = time.monotonic()
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["duration_s"] == pytest.approx(2.5, abs=0.02)
    assert th.stats()["lipsync_tracks"] == 1 and th.stats()["talking"]  # a track plays
    # The track's clock started when the request arrived (between `asked` and `sent`), 0.9 s in.
    assert sent - asked < 0.5, "the request took too long for the timing below"
    assert float(th.animator.pose_at(sent + 0.02)[VOWELS].sum()) > 0.5  # at 0.92-1.42 s: the vowel
    time.sleep(max(0.0, sent + 1.2 - time.monotonic()))  # at 2.1 s or later: the silence after it
    assert mouth(th) < 0.05


def test_lipsync_next_talking_waits_for_start_talking(client, th):
    assert client.post(URL + "?start=next_talking", data=SPEECH).status_code == 200
    time.sleep(0.6)
    assert mouth(th) == 0.0 and not th.stats()["talking"]
    client.get("/api/talkinghead/start_talking")
    time.sleep(0.6)
    assert mouth(th) > 0.5


def test_stop_talking_closes_a_playing_track(client, th):
    client.post(URL, data=SPEECH)
    time.sleep(0.5)
    client.get("/api/talkinghead/stop_talking")
    time.sleep(0.3)  # still within the track's vowel: only stop_talking closes the mouth
    assert mouth(th) < 0.5 * 1.0
    time.sleep(1.2)
    assert mouth(th) < 0.05 and not th.stats()["talking"]


@pytest.mark.parametrize("data, content_type, message", [
    (b"", "audio/wav", "no audio"),
    (b"\x89PNG\r\n\x1a\n" + bytes(200), "audio/mpeg", "audio"),
    (b"hello, this is text and not audio at all", "text/plain", "audio"),
    (bytes(range(256)) * 40, "audio/wav", "audio"),
])
def test_bad_audio_is_a_json_400_and_changes_nothing(client, th, data, content_type, message):
    before = th.renderer.frames_rendered
    response = client.post(URL, data=data, content_type=content_type)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert message in error.lower() and ".;" not in error
    assert th.stats()["lipsync_tracks"] == 0 and not th.stats()["talking"]
    time.sleep(0.2)
    assert th.renderer.frames_rendered > before  # the animation keeps running


def test_multipart_without_a_file_field_says_what_to_send(client):
    response = client.post(URL, data={"audio": (io.BytesIO(SPEECH), "a.wav")}, content_type="multipart/form-data")
    assert response.status_code == 400
    assert "'file'" in response.get_json()["error"] and "audio" in response.get_json()["error"]


@pytest.mark.parametrize("query, message", [
    ("start=later", "start must be"), ("offset_ms=-5", "offset_ms"), ("offset_ms=abc", "offset_ms"),
    ("offset_ms=nan", "offset_ms"), ("track=maybe", "track"), ("analyze_only=2", "analyze_only"),
    ("rate=0", "rate must be between 0.25 and 4"), ("rate=0.2", "rate must be"), ("rate=4.5", "rate must be"),
    ("rate=-1", "rate"), ("rate=fast", "rate"), ("rate=inf", "rate"), ("rate=nan", "rate"),
])
def test_bad_options_are_a_json_400(client, th, query, message):
    response = client.post(f"{URL}?{query}", data=SPEECH)
    assert response.status_code == 400 and message in response.get_json()["error"]
    assert th.stats()["lipsync_tracks"] == 0


def mouth_at(th, t: float) -> float:
    """How open the mouth is at wall-clock time t as things stand (the pose is a function of time)."""
    return float(th.animator.pose_at(t)[VOWELS].sum())


def wall_times(before: float, after: float, t0: float, t1: float, rate: float = 1.0, offset: float = 0.0):
    """Wall-clock times at which the track is t0-t1 s into the audio, wherever between `before` and `after`
    the request started it (played at `rate`, `offset` s of it already played then)."""
    lo, hi = after + (t0 - offset) / rate, before + (t1 - offset) / rate
    assert lo <= hi, f"the request took {after - before:.2f} s: too long to time the track"
    return np.linspace(lo, hi, 6)


@pytest.fixture(scope="module")
def warm_analyser():
    """The first analysis in a process imports PyAV (~0.5 s on a busy machine): not inside a timed request."""
    from talkinghead import lipsync

    lipsync.analyse(SPEECH)


@pytest.mark.parametrize("rate", [1.0, 1.5])
def test_rate_plays_the_track_that_much_faster(client, th, rate, warm_analyser):
    """The audio plays 1.5x as fast (SillyTavern's playback_rate): the vowel, 0.3-1.1 s into the clip, shows
    from 0.2 to 0.73 s after the request on the wall clock, shut after (at 1x it is open until 1.1 s)."""
    before = time.monotonic()
    response = client.post(f"{URL}?rate={rate:g}", data=SPEECH)
    after = time.monotonic()
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["duration_s"] == pytest.approx(1.8, abs=0.02)  # the clip's own length
    for t in wall_times(before, after, 0.38, 1.02, rate):  # in the vowel (less its 10 ms ramps and the attack)
        assert mouth_at(th, t) > 0.5, (rate, t - before)
    for t in [*wall_times(before, after, 0.0, 0.25, rate), *wall_times(before, after, 1.2, 1.78, rate)]:
        assert mouth_at(th, t) < 0.05, (rate, t - before)


def test_rate_as_a_multipart_form_field(client, th):
    response = client.post(URL, data={"file": (io.BytesIO(SPEECH), "speech.wav"), "rate": "9"},
                           content_type="multipart/form-data")
    assert response.status_code == 400 and "rate must be between 0.25 and 4" in response.get_json()["error"]
    assert th.stats()["lipsync_tracks"] == 0
    response = client.post(URL, data={"file": (io.BytesIO(SPEECH), "speech.wav"), "rate": "1.25"},
                           content_type="multipart/form-data")
    assert response.status_code == 200 and th.stats()["lipsync_tracks"] == 1


def test_rate_counts_the_offset_in_the_audio_s_time(client, th, warm_analyser):
    """offset_ms is where playback is in the audio: 600 ms at 1.5x began 0.4 s ago on the wall clock."""
    before = time.monotonic()
    client.post(URL + "?offset_ms=600&rate=1.5", data=SPEECH)
    after = time.monotonic()
    for t in wall_times(before, after, 0.7, 1.0, 1.5, offset=0.6):
        assert mouth_at(th, t) > 0.5, t - before
    for t in wall_times(before, after, 1.2, 1.78, 1.5, offset=0.6):
        assert mouth_at(th, t) < 0.05, t - before


def test_rate_applies_to_a_track_queued_for_start_talking(client, th, warm_analyser):
    client.post(URL + "?start=next_talking&rate=2", data=SPEECH)
    before = time.monotonic()
    client.get("/api/talkinghead/start_talking")
    after = time.monotonic()
    for t in wall_times(before, after, 0.4, 1.0, 2.0):
        assert mouth_at(th, t) > 0.5, t - before
    for t in wall_times(before, after, 1.2, 1.78, 2.0):
        assert mouth_at(th, t) < 0.05, t - before


def test_unload_ends_a_playing_track(client, th):
    client.post(URL, data=SPEECH)
    time.sleep(0.5)
    client.get("/api/talkinghead/unload")
    time.sleep(1.5)
    assert mouth(th) < 0.05 and not th.stats()["talking"]


def test_streamed_frames_follow_the_track(client, th):
    """The fake poser brightens the frame by the mouth's openness: frames published during the vowel are
    bright, frames in the silence after it are not, and each frame shows its own time's pose."""
    before = time.monotonic()
    client.post(URL, data=SPEECH)
    after = time.monotonic()
    frames, seq = [], th.slot.latest().seq
    while time.monotonic() < after + 1.6:
        frame = th.slot.wait_newer(seq, timeout=1.0)
        seq = frame.seq
        frames.append((frame.t, float(frame.rgba[256, 256, 0])))
    base = 200  # the fake character's red, mouth shut
    open_frames = [red for t, red in frames if before + 0.4 < t < after + 1.0]
    shut_frames = [red for t, red in frames if t > after + 1.3]
    assert open_frames and min(open_frames) > base + 30
    assert shut_frames and max(shut_frames) == base
