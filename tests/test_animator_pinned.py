"""The animator's poses pinned: a seeded animator through every kind of event gives the same 45 numbers at the
same times as the code it was recorded from (talkinghead/animator.py before it became talkinghead/animation/).

A change of behaviour shows here even where the behaviour tests in test_animator.py still pass. When a change
of the animation is meant, record the poses again (and say why in the commit):
    .venv/bin/python -m tests.test_animator_pinned --record
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from talkinghead.animation import Animator
from talkinghead.emotions import load_default_templates
from talkinghead.lipsync import Track
from talkinghead.settings import AnimatorSettings

RECORDED = Path(__file__).parent / "data" / "animator_pinned.json"
SEED = 20260
TIMES = [round(0.17 * i, 2) for i in range(180)] + [55.5, 123.45, 600.0]  # 0 .. 30 s, then later
# Float noise only: the animation is double precision rounded to float32 (~6e-8 near 1).
TOLERANCE = 1e-6


def lipsync_track() -> Track:
    """A made-up analyser track (no audio needed): 2 s of a mouth opening and closing over changing vowels."""
    n = 200
    frames = np.arange(n)
    openness = (0.5 + 0.5 * np.sin(frames / 7.0)) * (frames % 40 > 5)
    vowels = np.zeros((n, 5), np.float32)
    vowels[frames, (frames // 25) % 5] = 0.7
    vowels[frames, (frames // 25 + 1) % 5] = 0.3
    return Track(open=openness.astype(np.float32), vowels=vowels, duration_s=n / 100, voiced_ratio=0.8)


def scripted_poses() -> dict[str, list]:
    """Every kind of event at its time; between two events the poses (and resting poses) at TIMES, asked out of
    order, after a render-ahead look past the event."""
    templates = load_default_templates()
    animator = Animator(templates, AnimatorSettings(), seed=SEED, start_time=0.0)
    events = [
        (0.0, lambda t: None),
        (1.0, lambda t: animator.set_emotion("joy", t)),
        (2.0, lambda t: animator.start_talking(t)),
        (3.0, lambda t: animator.set_emotion("confusion", t)),  # rapid blinking
        (5.0, lambda t: animator.play_track(lipsync_track(), start=4.5, t=t, rate=1.25)),
        (8.0, lambda t: animator.set_settings(AnimatorSettings(sway_micro_strength=0.05, blink_probability=0.05), t)),
        (9.5, lambda t: animator.stop_talking(t)),
        (11.0, lambda t: animator.queue_track(lipsync_track(), offset=0.5)),
        (11.5, lambda t: animator.start_talking(t)),
        (12.5, lambda t: animator.stop_track(t)),
        (13.0, lambda t: animator.set_templates({**templates, "joy": templates["anger"]}, t)),
        (14.0, lambda t: animator.set_emotion("fear", t)),
        (16.0, lambda t: animator.set_settings(AnimatorSettings(sway_postures=0, sway_macro_strength=0.8), t)),
        (18.0, lambda t: animator.start_talking(t)),
        (24.0, lambda t: animator.stop_talking(t)),
    ]
    poses, resting = {}, {}
    for (at, event), (until, _) in zip(events, events[1:] + [(float("inf"), None)]):
        for ahead in (at + 0.5, at + 3.0):  # render-ahead asks a future the event then changes
            animator.pose_at(ahead)
        event(at)
        window = [t for t in TIMES if at <= t < until]
        for t in sorted(window, key=lambda t: (t * 7.3) % 1.0):  # asked in any order
            poses[t] = animator.pose_at(t)
            resting[t] = animator.pose_at(t, transient=False)
    return {"times": TIMES, "poses": [rounded(poses[t]) for t in TIMES],
            "resting": [rounded(resting[t]) for t in TIMES[::3]],
            "blinks": rounded(animator.blinks_between(20.0, 60.0))}


def rounded(values) -> list[float]:
    """To 1e-7: well inside TOLERANCE, and a recording a diff can be read in."""
    return [round(float(v), 7) for v in values]


def test_a_seeded_animator_gives_the_recorded_poses():
    recorded = json.loads(RECORDED.read_text())
    now = scripted_poses()
    assert now["times"] == recorded["times"]
    for kind, times in (("poses", TIMES), ("resting", TIMES[::3])):
        difference = np.abs(np.array(now[kind]) - np.array(recorded[kind]))
        worst = np.unravel_index(np.argmax(difference), difference.shape)
        assert difference.max() <= TOLERANCE, \
            f"{kind}: {difference.max():.2g} off at t={times[worst[0]]} s, value index {worst[1]}"
    assert np.allclose(now["blinks"], recorded["blinks"], rtol=0, atol=TOLERANCE)


if __name__ == "__main__" and "--record" in sys.argv:
    RECORDED.write_text(json.dumps(scripted_poses()) + "\n")
    print(f"recorded {len(TIMES)} poses in {RECORDED}")
