"""Lip-sync on the real poser, in the smooth stream a CPU server runs: after POST /lipsync with start=now,
frames a viewer receives over HTTP (result_feed) during the vowel show an open mouth and frames in the
silence a shut one (pixels of the mouth region), and each frame's mouth is that of its own time's pose: the
stream lags the audio by at most a frame; the lips shut at /m/ and /p/ between vowels. (The pose follows the
track in sync: test_animator.py.)"""
from __future__ import annotations

import io
import threading
import time

import numpy as np
import requests
from PIL import Image
import pytest

from server import Config, create_app
from synth import murmur, silence, vowel, wav_bytes
from talkinghead import pose as P, weights
from talkinghead.image import load_character
from talkinghead.settings import VOWEL_MORPHS
from talkinghead.stream import PartReader

pytestmark = pytest.mark.slow
MOUTH = (slice(155, 195), slice(232, 282))  # lambda_00's mouth (diff of mouth_aaa 1 vs 0 renders)
VOWELS = [P.INDEX[name] for name in VOWEL_MORPHS]
QUIET = {"blink_probability": 0.0, "sway_macro_strength": 0.0, "sway_micro_strength": 0.0,
         "breathing_cycle_duration": 60.0}
FRAME = 1 / 25
# "aah" from 0.4 s to 2.0 s of the clip, silence around it.
AAH = wav_bytes(np.concatenate([silence(0.4), vowel(1.6), silence(1.2)]))
VOWEL_FROM, VOWEL_TO = 0.4, 2.0


@pytest.fixture(scope="module")
def smooth_engine(require_weights):
    """The engine as the server runs it on a CPU: smooth mode, the networks on the CPU backend."""
    from talkinghead import smooth
    from talkinghead.engine import TalkingHead
    from talkinghead.tha3.poser import Poser

    poser = Poser.load(weights.MODELS_DIR, "separable_float", "cpu")
    smooth.apply_backend(poser, "auto")
    th = TalkingHead(poser, smooth=True, seed=5)
    th.load_animator_settings(QUIET)
    th.start(load_character(weights.DEFAULT_CHARACTER.read_bytes()))
    yield th
    th.close()


def mouth_faces_ready(th) -> bool:
    """The speech warm-up has made the open "aaa" shapes for the face showing now."""
    from talkinghead.smooth import face_key

    base = th._pose_at(time.monotonic())
    for level in (0.25, 0.5, 0.75, 1.0):
        pose = base.copy()
        pose[VOWELS] = 0.0
        pose[P.INDEX["mouth_aaa_index"]] = level
        if face_key(pose) not in th.source.faces:
            return False
    return True


def mouth_change(rgba: np.ndarray, shut: np.ndarray) -> float:
    return float(np.abs(rgba[MOUTH].astype(np.int16) - shut[MOUTH].astype(np.int16)).mean())


def lipsync_frames(client, th, clip: bytes, seconds: float, shut: np.ndarray):
    """POST the clip to /lipsync with start=now, then record every frame the slot gets until `seconds` after
    the answer: before, after (the clock around the request) and frames, (t, the pose's vowels, mouth_change
    from `shut`) each."""
    before = time.monotonic()
    response = client.post("/api/talkinghead/lipsync?start=now", data=clip, content_type="audio/wav")
    after = time.monotonic()
    assert response.status_code == 200, response.get_json()
    frames, seq = [], th.slot.latest().seq
    while time.monotonic() < after + seconds:
        frame = th.slot.wait_newer(seq, timeout=2.0)
        seq = frame.seq
        frames.append((frame.t, float(frame.meta["pose"][VOWELS].sum()), mouth_change(frame.rgba, shut)))
    return before, after, frames


class Viewer(threading.Thread):
    """A result_feed (PNG) viewer: (arrival time, mouth region as received) of every part."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.response = requests.get(url, stream=True, timeout=60)
        self.parts: list[tuple[float, np.ndarray]] = []
        self.start()

    def run(self):
        reader = PartReader(self.response.iter_content(chunk_size=None))
        try:
            while parts := reader.read(1):
                rgba = np.asarray(Image.open(io.BytesIO(parts[0][1])).convert("RGBA"))
                self.parts.append((time.monotonic(), rgba[MOUTH].copy()))
        except (requests.RequestException, AttributeError, ValueError):
            return


def test_lipsynced_stream_opens_the_mouth_on_the_vowel_and_shuts_it_in_silence(smooth_engine,
                                                                               live_server_factory):
    th = smooth_engine
    app = create_app(Config(modules=["talkinghead"]), engines={"talkinghead": th})
    client = app.test_client()
    deadline = time.monotonic() + 240
    while not mouth_faces_ready(th) and time.monotonic() < deadline:
        time.sleep(0.5)
    viewer = Viewer(live_server_factory(app).url + "/api/talkinghead/result_feed")
    while not viewer.parts and time.monotonic() < deadline:
        time.sleep(0.05)
    shut = th.slot.latest().rgba.copy()

    before, after, frames = lipsync_frames(client, th, AAH, 3.4, shut)

    received = list(viewer.parts)
    viewer.response.close()

    # Over HTTP, by arrival time (a frame arrives after the time it shows; 0.1 s allowed for the way): the
    # mouth region moves ~2.4 levels on average when "aaa" opens fully, ~0.7 at its first lattice step;
    # breathing moves it ~0.3.
    def change(mouth_region):
        return float(np.abs(mouth_region.astype(np.int16) - shut[MOUTH].astype(np.int16)).mean())

    in_vowel = [change(m) for t, m in received if after + VOWEL_FROM + 0.25 < t < before + VOWEL_TO - 0.15]
    in_silence = [change(m) for t, m in received if t > after + VOWEL_TO + 0.6]
    assert len(in_vowel) >= 3 and len(in_silence) >= 3, (len(in_vowel), len(in_silence))  # ~30 and ~20 at 25 FPS
    assert min(in_vowel) > 1.5, f"mouth region received during the vowel moved only {min(in_vowel):.2f} levels"
    assert max(in_silence) < 0.5, f"mouth region received in the silence after it: {max(in_silence):.2f} levels"

    # In process (the frame slot: each frame's pose is known there): each frame shows its own pose's mouth
    # (open at least half way, or shut), but for at most one frame at each of the two changes (the face of the frame before it, while its own is being made).
    mismatched = [round(t - before, 2) for t, vowels, change in frames
                  if (vowels >= 0.5 and change < 1.0) or (vowels == 0.0 and change > 0.6)]
    assert len(mismatched) <= 2, f"frames whose mouth is not their pose's (s after the request): {mismatched}"
    assert sum(vowels >= 0.5 for _, vowels, _ in frames) >= 0.8 * (VOWEL_TO - VOWEL_FROM) / FRAME


# "a-ma-pa": vowels with an /m/ (nasal murmur) and a /p/ (silence) of 80 ms between them.
CLOSURE_S = 0.08
AMAPA_PARTS = [silence(0.4), vowel(0.4), murmur(CLOSURE_S), vowel(0.4), silence(CLOSURE_S), vowel(0.4), silence(1.0)]
AMAPA = wav_bytes(np.concatenate(AMAPA_PARTS))
CLOSURES = [(0.8, 0.8 + CLOSURE_S), (1.2 + CLOSURE_S, 1.2 + 2 * CLOSURE_S)]  # s into the clip: /m/, /p/


def test_lipsynced_stream_shuts_the_mouth_at_m_and_p(smooth_engine):
    """At each 80 ms closure a frame shows a shut mouth (pose and pixels), between open vowels."""
    th = smooth_engine
    client = create_app(Config(modules=["talkinghead"]), engines={"talkinghead": th}).test_client()
    deadline = time.monotonic() + 240
    while not mouth_faces_ready(th) and time.monotonic() < deadline:
        time.sleep(0.5)
    shut = th.slot.latest().rgba.copy()

    before, after, frames = lipsync_frames(client, th, AMAPA, 2.6, shut)

    # What a viewer sees, frame by frame: open (the mouth region moved > 1.5 levels: a vowel), shut (< 0.6 and
    # the pose's mouth shut too) or between. Runs of the same state, transitions left out, must read
    # shut - a - shut (/m/) - a - shut (/p/) - a - shut: each 80 ms closure reached the stream.
    states = []
    for t, vowels, change in frames:
        state = "open" if change > 1.5 else "shut" if change < 0.6 and vowels < 0.05 else None
        if state and (not states or states[-1][0] != state):
            states.append((state, round(t - before, 2)))
    assert [state for state, _ in states] == ["shut", "open"] * 3 + ["shut"], \
        f"(state, s after the request) {states}; frames (s, pose, pixels): " \
        f"{[(round(t - before, 2), round(v, 2), round(c, 2)) for t, v, c in frames]}"
    # ... and at the closures' times: the request arrived between `before` and `after`.
    for (state, t), (start, end) in zip((states[2], states[4]), CLOSURES):
        assert start - 0.04 <= t <= end + (after - before), (states, CLOSURES)
