"""The animator with a fake clock: pure calls of pose_at(t), no renderer."""
from __future__ import annotations

import math

import numpy as np
import pytest

from talkinghead import pose
from talkinghead.animation import TICK, Animator
from talkinghead.emotions import load_default_templates
from talkinghead.settings import SWAYABLE_MORPHS, VOWEL_MORPHS, AnimatorSettings, SettingsError

SEED = 1234
TEMPLATES = load_default_templates()
SWAY = [pose.INDEX[name] for name in SWAYABLE_MORPHS]
VOWELS = [pose.INDEX[name] for name in VOWEL_MORPHS]
WINK_LEFT = pose.INDEX["eye_wink_left_index"]


def make_animator(seed: int = SEED, **settings) -> Animator:
    return Animator(TEMPLATES, AnimatorSettings(**settings), seed=seed, start_time=0.0)


def sample(animator: Animator, times) -> np.ndarray:
    return np.array([animator.pose_at(t) for t in times])


def value(animator: Animator, t: float, name: str) -> float:
    return float(animator.pose_at(t)[pose.INDEX[name]])


def episodes_above(signal: np.ndarray, times: np.ndarray, level: float) -> list[float]:
    """Times at which `signal` rises above `level`."""
    above = signal > level
    return list(times[1:][above[1:] & ~above[:-1]])


# ---- the pose ------------------------------------------------------------------------------------------
def test_pose_is_45_float32_within_range_through_every_kind_of_event():
    animator = make_animator()
    animator.set_emotion("fear", 1.0)
    animator.start_talking(2.0)
    animator.set_emotion("confusion", 3.0)
    animator.set_settings(AnimatorSettings(sway_macro_strength=1.0, sway_micro_strength=0.2), 4.0)
    poses = sample(animator, np.arange(0.0, 30.0, 0.05))
    assert poses.shape[1:] == (45,) and poses.dtype == np.float32
    assert np.all(poses >= pose.LOW) and np.all(poses <= pose.HIGH)


def test_unknown_emotion_falls_back_to_neutral():
    animator = make_animator()
    animator.set_emotion("joy", 1.0)
    assert animator.set_emotion("hangry", 2.0) == "neutral"
    assert animator.emotion == "neutral"


def test_pose_is_continuous_across_events():
    animator = make_animator()
    events = [
        (1.0, lambda t: animator.set_emotion("joy", t)),
        (2.0, lambda t: animator.start_talking(t)),
        (2.5, lambda t: animator.set_emotion("anger", t)),
        (3.0, lambda t: animator.set_settings(AnimatorSettings(talking_fps=8, breathing_cycle_duration=3.0,
                                                               sway_morphs=["head_x_index"]), t)),
        (3.5, lambda t: animator.set_templates({**TEMPLATES, "anger": TEMPLATES["sadness"]}, t)),
        (4.0, lambda t: animator.stop_talking(t)),
    ]
    for t, event in events:
        before = animator.pose_at(t)
        event(t)
        after = animator.pose_at(t)
        # Only the jitter may differ (the set of swaying morphs changed at 3.0).
        assert np.abs(after - before).max() <= 0.021, t


def test_earlier_times_and_late_events_do_not_crash():
    animator = make_animator()
    animator.set_emotion("joy", 10.0)
    animator.pose_at(9.5)
    animator.set_emotion("sadness", 9.0)  # arrives late: acts at the latest event's time
    animator.start_talking(8.0)
    assert animator.pose_at(7.0).shape == (45,)
    assert animator.emotion == "sadness" and animator.talking


# ---- wall-clock purity ---------------------------------------------------------------------------------
def run_script(fps: float, until: float) -> dict[float, np.ndarray]:
    """Poses of a scripted session sampled at `fps`, events applied in time order between frames."""
    animator = make_animator()
    events = [(1.3, "emotion", "joy"), (2.1, "talk", None), (4.7, "emotion", "confusion"),
              (6.05, "quiet", None), (7.3, "emotion", "sadness")]
    poses = {}
    for frame in range(int(until * fps) + 1):
        t = frame / fps
        while events and events[0][0] <= t:
            when, kind, arg = events.pop(0)
            {"emotion": lambda: animator.set_emotion(arg, when), "talk": lambda: animator.start_talking(when),
             "quiet": lambda: animator.stop_talking(when)}[kind]()
        poses[round(t, 6)] = animator.pose_at(t)
    return poses


def test_same_pose_at_same_time_at_5_and_60_fps():
    slow, fast = run_script(5, 12.0), run_script(60, 12.0)
    for t, slow_pose in slow.items():
        np.testing.assert_allclose(slow_pose, fast[t], atol=1e-5, err_msg=f"t={t}")


def test_render_ahead_gives_the_same_pose_later():
    animator = make_animator()
    animator.set_emotion("amusement", 0.5)
    animator.start_talking(1.0)
    ahead = animator.pose_at(20.0)
    sample(animator, np.arange(1.0, 20.0, 1 / 30))
    np.testing.assert_array_equal(animator.pose_at(20.0), ahead)

    fresh = make_animator()
    fresh.set_emotion("amusement", 0.5)
    fresh.start_talking(1.0)
    np.testing.assert_array_equal(fresh.pose_at(20.0), ahead)


def test_same_seed_gives_same_animation_and_another_seed_another():
    times = np.arange(0.0, 20.0, 0.1)
    first, again, other = (sample(make_animator(seed), times) for seed in (7, 7, 8))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


# ---- blinking ------------------------------------------------------------------------------------------
def test_blinks_are_at_least_interval_min_apart_and_as_frequent_as_the_per_tick_chance():
    animator = make_animator()
    starts = np.array(animator.blinks_between(0.0, 5000.0))
    gaps = np.diff(starts)
    assert gaps.min() >= 2.0
    assert gaps.max() <= 5.0 + 40 * TICK * 10  # a geometric wait of > 400 ticks has a chance of 5e-6
    # Mean gap = mean pause U(2, 5) + mean geometric wait at 0.03 per tick.
    expected = 3.5 + TICK * (1 - 0.03) / 0.03
    assert gaps.mean() == pytest.approx(expected, abs=0.2)


def test_blinking_seen_in_the_pose_is_spaced_by_at_least_2_s():
    animator = make_animator()
    times = np.arange(0.0, 60.0, 1 / 60)
    wink = sample(animator, times)[:, WINK_LEFT]
    closings = episodes_above(wink, times, 0.5)
    assert len(closings) >= 8
    assert np.diff(closings).min() >= 2.0 - 1 / 60


def test_each_blink_closes_fully_then_reopens_smoothly():
    animator = make_animator()
    for start in animator.blinks_between(0.0, 20.0):
        times = start + np.arange(-0.05, 0.35, 0.002)
        wink = sample(animator, times)[:, WINK_LEFT]
        peak = int(np.argmax(wink))
        assert wink[0] == 0.0 and wink[-1] == 0.0
        assert wink.max() == pytest.approx(1.0)
        assert np.all(np.diff(wink[:peak + 1]) >= 0) and np.all(np.diff(wink[peak:]) <= 0)
        closed_for = (times[wink > 0.0][-1] - times[wink > 0.0][0])
        assert 0.15 <= closed_for <= 0.25
        assert np.abs(np.diff(wink)).max() < 0.05  # no jumps at 500 Hz


def test_confusion_allows_rapid_blinking_for_10_s():
    animator = make_animator(blink_probability=0.3)  # so that rapid blinks surely come up
    animator.set_emotion("confusion", 10.0)
    rapid = np.diff(animator.blinks_between(10.0, 20.0))
    assert len(rapid) >= 10 and rapid.min() < 2.0
    later = np.diff(animator.blinks_between(20.0, 200.0))
    assert later.min() >= 2.0


def test_leaving_confusion_ends_rapid_blinking():
    animator = make_animator(blink_probability=0.3)
    animator.set_emotion("confusion", 10.0)
    animator.set_emotion("neutral", 11.0)
    assert np.diff(animator.blinks_between(11.0, 100.0)).min() >= 2.0


# ---- breathing -----------------------------------------------------------------------------------------
def test_breathing_is_sin_squared_with_a_4_s_period():
    animator = make_animator()
    for t in np.arange(0.0, 12.0, 0.37):
        assert value(animator, t, "breathing_index") == pytest.approx(math.sin(math.pi * t / 4.0) ** 2, abs=1e-6)
    assert value(animator, 2.0, "breathing_index") == pytest.approx(1.0)
    assert value(animator, 4.0, "breathing_index") == pytest.approx(0.0, abs=1e-6)


# ---- emotion transitions -------------------------------------------------------------------------------
def test_emotion_transition_covers_10_percent_per_tick_and_half_in_026_s():
    animator = make_animator()
    name = "eyebrow_happy_left_index"
    target = float(TEMPLATES["joy"][pose.INDEX[name]])
    animator.set_emotion("joy", 10.0)
    assert value(animator, 10.0 + TICK, name) == pytest.approx(0.1 * target, rel=1e-4)
    times = 10.0 + np.arange(0.0, 1.0, 0.001)
    values = sample(animator, times)[:, pose.INDEX[name]]
    half_life = times[np.argmax(values >= target / 2)] - 10.0
    assert half_life == pytest.approx(0.26, abs=0.03)
    assert value(animator, 13.0, name) == pytest.approx(target, abs=1e-3)


# ---- sway ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("emotion", ["neutral", "caring", "curiosity"])
def test_sway_stays_within_macro_plus_micro_strength_of_the_emotion(emotion):
    animator = make_animator()
    animator.set_emotion(emotion, 0.0)
    sway = sample(animator, np.arange(0.0, 120.0, 0.1))[:, SWAY]
    center = TEMPLATES[emotion][SWAY]
    assert np.all(np.abs(sway - center) <= 0.6 + 0.02 + 1e-6)
    assert np.all(np.abs(sway) <= 1.0)
    assert np.all(sway.std(axis=0) > 0.05)  # it does move


def resting_poses(animator: Animator, seconds: float = 240.0) -> list[tuple[float, ...]]:
    """The sway's values at each rest (no micro sway), in order, rounded."""
    times = np.arange(0.0, seconds, 0.1)
    sway = sample(animator, times)[:, SWAY]
    still = np.abs(np.diff(sway, axis=0)).max(axis=1) < 1e-5
    rests = [tuple(np.round(sway[i], 3)) for i in range(1, len(still)) if still[i] and not still[i - 1]]
    return [r for k, r in enumerate(rests) if k == 0 or r != rests[k - 1]]


def test_sway_moves_among_three_postures_the_same_after_a_restart_never_staying_in_one():
    rests = resting_poses(make_animator(seed=1, sway_micro_strength=0.0))
    assert len(rests) >= 20 and len(set(rests)) == 3
    assert all(a != b for a, b in zip(rests, rests[1:]))  # each move goes to another posture
    restarted = resting_poses(make_animator(seed=2, sway_micro_strength=0.0))
    assert set(restarted) == set(rests) and restarted != rests  # the same postures, in another order
    # They surround the emotion's pose, each a visible move from the others.
    postures = np.array(sorted(set(rests)))
    assert np.abs(postures.mean(axis=0) - TEMPLATES["neutral"][SWAY]).max() < 0.25
    assert min(np.abs(postures[i] - postures[j]).max() for i in range(3) for j in range(i)) > 0.2


def test_sway_with_no_postures_draws_every_target_afresh():
    rests = resting_poses(make_animator(sway_micro_strength=0.0, sway_postures=0))
    assert len(set(rests)) == len(rests) >= 20


def test_sway_moves_to_new_targets_every_5_to_10_s_and_rests_in_between():
    animator = make_animator(sway_micro_strength=0.0)
    times = np.arange(0.0, 200.0, 0.1)
    head = sample(animator, times)[:, pose.INDEX["head_x_index"]]
    moving = np.abs(np.diff(head)) > 1e-3  # moving[i]: between times[i] and times[i + 1]
    starts = times[1:-1][moving[1:] & ~moving[:-1]]
    gaps = np.diff(starts)
    assert 200 / 10 - 3 <= len(starts) <= 200 / 5 + 1
    assert gaps.min() >= 5.0 - 0.2  # one move may start late when its first steps are tiny


def test_micro_sway_drifts_like_the_original_noisy_target():
    """The original adds the ±strength noise to the sway *target* every tick and the pose follows at 10 % per
    tick: a small, continuous drift (std ≈ strength·√(0.1/1.9)/√3), never a per-tick shake."""
    animator = make_animator(sway_macro_strength=0.0)
    sway = sample(animator, np.arange(0.0, 60.0, 0.01))[:, SWAY]
    strength = 0.02
    assert np.abs(sway).max() <= strength
    expected_std = strength * np.sqrt(0.1 / 1.9) / np.sqrt(3.0)
    assert sway.std(axis=0) == pytest.approx(np.full(len(SWAY), expected_std), rel=0.3)
    # Within a quarter tick the pose moves at most a tenth of the noise's range (0.1 · 2·strength per tick).
    assert np.abs(np.diff(sway, axis=0)).max() < 0.1 * 2 * strength / 4 * 1.2
    # The same t gives the same jitter whatever was asked before (render-ahead asks out of order).
    later_first = make_animator(sway_macro_strength=0.0)
    later_first.pose_at(59.0)
    assert np.array_equal(later_first.pose_at(12.345)[SWAY], animator.pose_at(12.345)[SWAY])


# ---- talking -------------------------------------------------------------------------------------------
def syllable_peaks(openness: np.ndarray) -> list[int]:
    """Indices where the mouth is widest in a syllable (a local maximum of total vowel openness over 0.3)."""
    return [i for i in range(1, len(openness) - 1)
            if openness[i] > 0.3 and openness[i] >= openness[i - 1] and openness[i] > openness[i + 1]]


def test_talking_moves_the_mouth_like_speech():
    animator = make_animator()
    animator.start_talking(1.0)
    times = np.arange(1.5, 21.5, 1 / 60)
    vowels = sample(animator, times)[:, VOWELS]
    openness = vowels.sum(axis=1)
    peaks = syllable_peaks(openness)
    syllables_per_second = len(peaks) / 20.0
    assert 2.5 <= syllables_per_second <= 7.0
    dominant = np.argmax(vowels[peaks], axis=1)
    counts = np.bincount(dominant, minlength=5)
    assert np.count_nonzero(counts) >= 4 and counts.max() <= 0.7 * len(peaks)
    # At a peak one vowel dominates: the runner-up is much smaller.
    runner_up = np.sort(vowels[peaks], axis=1)[:, -2]
    assert np.all(runner_up <= 0.5 * vowels[peaks].max(axis=1))
    closed_fraction = np.mean(openness < 0.05)
    assert 0.05 <= closed_fraction <= 0.5  # pauses between words, but mostly speaking
    # Smooth, not a random flap: a syllable opens in ~75 ms, so at 60 FPS a frame moves at most ~1/3 of the
    # way, and most frames show the mouth in between open and shut.
    assert np.abs(np.diff(vowels, axis=0)).max() < 0.45
    assert np.mean((openness > 0.1) & (openness < 0.9 * openness.max())) > 0.4


@pytest.mark.parametrize("talking_morph", ["mouth_aaa_index", "mouth_ooo_index"])
def test_talking_morph_setting_picks_the_most_used_vowel(talking_morph):
    animator = make_animator(talking_morph=talking_morph)
    animator.start_talking(0.0)
    times = np.arange(0.5, 120.5, 1 / 30)
    vowels = sample(animator, times)[:, VOWELS]
    peaks = syllable_peaks(vowels.sum(axis=1))
    counts = np.bincount(np.argmax(vowels[peaks], axis=1), minlength=5)
    assert np.argmax(counts) == VOWEL_MORPHS.index(talking_morph)


def test_stop_talking_returns_the_mouth_smoothly_to_the_emotion():
    animator = make_animator()
    animator.set_emotion("joy", 0.0)
    animator.start_talking(1.0)
    stop = 4.37
    animator.stop_talking(stop)
    times = np.arange(stop, stop + 2.0, 1 / 60)
    vowels = sample(animator, times)[:, VOWELS]
    assert np.abs(np.diff(vowels, axis=0)).max() < 0.1
    np.testing.assert_allclose(vowels[-1], TEMPLATES["joy"][VOWELS], atol=0.01)
    assert not animator.talking


def test_not_talking_keeps_the_emotions_mouth():
    animator = make_animator()
    animator.set_emotion("surprise", 0.0)
    vowels = sample(animator, np.arange(3.0, 10.0, 0.1))[:, VOWELS]
    np.testing.assert_allclose(vowels, np.tile(TEMPLATES["surprise"][VOWELS], (len(vowels), 1)), atol=1e-3)


# ---- lip-sync tracks -------------------------------------------------------------------------------------
class StepTrack:
    """A lip-sync track of 10 ms frames: (seconds, openness, vowel index or None) segments in order."""

    def __init__(self, *segments):
        opens, weights = [], []
        for seconds, openness, vowel in segments:
            for _ in range(round(seconds * 100)):
                opens.append(openness)
                w = np.zeros(5)
                if vowel is not None:
                    w[vowel] = 0.7  # soft weights, as the analyser gives: the animator sharpens them
                    w[(vowel + 1) % 5] = 0.2
                    w[(vowel + 2) % 5] = 0.1
                weights.append(w)
        self.open, self.vowels = np.array(opens), np.array(weights)
        self.duration_s = len(opens) / 100

    def at(self, t):
        if not 0.0 <= t <= self.duration_s:
            return 0.0, np.zeros(5)
        i = min(int(t * 100), len(self.open) - 1)
        return self.open[i], self.vowels[i]


AAA, III, OOO = 0, 1, 4
SPEECH = StepTrack((0.3, 0.0, None), (0.5, 1.0, AAA), (0.3, 0.0, None), (0.4, 0.8, III), (0.2, 0.0, None),
                   (0.4, 1.0, OOO), (0.3, 0.0, None))


def test_a_track_drives_the_vowels_in_sync_with_the_clock():
    animator = make_animator()
    animator.play_track(SPEECH, start=2.0, t=2.0)
    mouth = lambda t: animator.pose_at(t)[VOWELS]  # noqa: E731
    assert np.argmax(mouth(2.55)) == AAA and mouth(2.55)[AAA] == pytest.approx(1.0, abs=1e-6)
    assert np.argmax(mouth(3.3)) == III and mouth(3.3).sum() == pytest.approx(0.8 * 0.8, abs=1e-6)
    assert np.argmax(mouth(3.9)) == OOO
    for silent in (2.1, 2.9, 3.65):  # the track's silences close the mouth
        assert mouth(silent).max() == 0.0
    # One clear shape: the analyser's 0.7/0.2/0.1 weights leave one vowel.
    assert np.count_nonzero(mouth(2.55)) == 1
    assert animator.talking


@pytest.mark.parametrize("probability", [5e-324, 1e-300, 1e-17])
def test_a_vanishing_blink_chance_means_no_blinks_not_a_failure(probability):
    from talkinghead.animation import KeyedRandom
    from talkinghead.animation.blink import BlinkSchedule

    settings = AnimatorSettings()
    object.__setattr__(settings, "blink_probability", probability)  # below what load_animator_settings takes
    schedule = BlinkSchedule(KeyedRandom(1), 0, 0.0, None, -math.inf, settings)
    assert schedule.closure(100.0) == 0.0 and schedule.starts_between(0.0, 1000.0) == []


def test_a_track_of_undecided_vowels_still_opens_the_mouth():
    track = StepTrack((0.5, 1.0, None))
    track.vowels[:] = 0.2  # all five alike: none stands out
    animator = make_animator()
    animator.play_track(track, start=0.0, t=0.0)
    vowels = animator.pose_at(0.25)[VOWELS]
    assert np.all(np.isfinite(vowels)) and vowels.sum() > 0.5


def test_a_track_keeps_the_rest_of_the_face_and_the_emotions_corners():
    animator, quiet = make_animator(), make_animator()
    for a in (animator, quiet):
        a.set_emotion("joy", 0.0)
    animator.play_track(SPEECH, start=1.0, t=1.0)
    others = [i for i in range(pose.NUM_PARAMS) if i not in VOWELS]
    for t in (1.1, 1.5, 2.2, 2.9):
        np.testing.assert_array_equal(animator.pose_at(t)[others], quiet.pose_at(t)[others])


def test_a_track_started_in_the_past_plays_from_its_offset():
    animator = make_animator()
    animator.play_track(SPEECH, start=1.5, t=2.0)  # the audio has played for 0.5 s already
    vowels = animator.pose_at(2.05)[VOWELS]
    assert np.argmax(vowels) == AAA and vowels[AAA] == pytest.approx(1.0, abs=1e-6)


def test_a_track_ends_with_the_mouth_gliding_back_to_the_emotion():
    animator = make_animator()
    animator.set_emotion("surprise", 0.0)
    track = StepTrack((0.3, 1.0, III))  # ends open: the mouth must not snap shut
    animator.play_track(track, start=5.0, t=5.0)
    times = np.arange(5.2, 7.5, 1 / 60)
    vowels = sample(animator, times)[:, VOWELS]
    assert np.abs(np.diff(vowels, axis=0)).max() < 0.1
    np.testing.assert_allclose(vowels[-1], TEMPLATES["surprise"][VOWELS], atol=0.01)


@pytest.mark.parametrize("how", ["stop_talking", "new track"])
def test_stop_talking_or_a_new_track_ends_a_track_smoothly(how):
    animator = make_animator()
    animator.play_track(SPEECH, start=1.0, t=1.0)
    before = animator.pose_at(1.5)[VOWELS]
    if how == "stop_talking":
        animator.stop_talking(1.5)
    else:
        animator.play_track(StepTrack((1.0, 0.0, None)), start=1.5, t=1.5)
    np.testing.assert_allclose(animator.pose_at(1.5)[VOWELS], before, atol=1e-6)  # no jump
    np.testing.assert_allclose(animator.pose_at(4.0)[VOWELS], 0.0, atol=0.01)  # the old track is over
    assert (how == "stop_talking") != animator.talking


def test_stop_track_ends_a_track_but_not_random_talking():
    animator = make_animator()
    animator.start_talking(1.0)
    generation = animator.generation
    animator.stop_track(1.5)
    assert animator.talking and animator.generation == generation
    animator.play_track(SPEECH, start=2.0, t=2.0)
    animator.stop_track(2.5)
    assert not animator.talking
    np.testing.assert_allclose(animator.pose_at(5.0)[VOWELS], 0.0, atol=0.01)


def test_start_talking_during_a_track_changes_nothing():
    animator, reference = make_animator(), make_animator()
    for a in (animator, reference):
        a.play_track(SPEECH, start=1.0, t=1.0)
    generation = animator.generation
    animator.start_talking(1.2)  # SillyTavern's TTS says so around each clip, interleaved with our client
    assert animator.generation == generation
    times = np.arange(1.0, 4.0, 0.02)
    np.testing.assert_array_equal(sample(animator, times), sample(reference, times))


def test_after_a_track_start_talking_moves_the_mouth_again():
    animator = make_animator()
    animator.play_track(StepTrack((0.2, 0.0, None)), start=1.0, t=1.0)
    animator.start_talking(3.0)
    openness = sample(animator, np.arange(3.5, 6.0, 1 / 30))[:, VOWELS].sum(axis=1)
    assert openness.max() > 0.5


def test_a_queued_track_plays_from_the_next_start_talking():
    animator = make_animator()
    animator.queue_track(SPEECH, offset=0.1)
    assert np.all(sample(animator, np.arange(0.0, 3.0, 0.05))[:, VOWELS] == 0.0)  # nothing plays yet
    animator.start_talking(4.0)  # the track's time 0 is 0.1 s before it
    vowels = animator.pose_at(4.0 + 0.45)[VOWELS]
    assert np.argmax(vowels) == AAA and vowels[AAA] == pytest.approx(1.0, abs=1e-6)


def test_a_track_is_a_pure_function_of_time():
    def played():
        a = make_animator()
        a.play_track(SPEECH, start=1.0, t=1.0)
        return a

    times = np.arange(0.0, 5.0, 0.01)
    forward = sample(played(), times)
    backward = sample(played(), times[::-1])[::-1]
    np.testing.assert_array_equal(forward, backward)


# ---- settings ------------------------------------------------------------------------------------------
def test_settings_from_empty_json_are_the_defaults():
    settings = AnimatorSettings.from_json({})
    assert settings == AnimatorSettings()
    assert (settings.target_fps, settings.blink_probability, settings.sway_macro_strength,
            settings.sway_micro_strength, settings.breathing_cycle_duration, settings.talking_fps,
            settings.talking_morph) == (25, 0.03, 0.6, 0.02, 4.0, 12, "mouth_aaa_index")
    assert settings.sway_morphs == SWAYABLE_MORPHS


def test_partial_settings_change_only_their_keys():
    settings = AnimatorSettings.from_json({"target_fps": 30, "sway_morphs": ["head_x_index", "neck_z_index"]})
    assert settings.target_fps == 30 and settings.sway_morphs == ("head_x_index", "neck_z_index")
    assert settings.blink_interval_max == AnimatorSettings().blink_interval_max
    assert AnimatorSettings.from_json(settings.to_json()) == settings


@pytest.mark.parametrize("body, key, hint", [
    ({"target_fps": 0}, "target_fps", "[1, 60]"),
    ({"target_fps": -5}, "target_fps", "[1, 60]"),
    ({"target_fps": 61}, "target_fps", "[1, 60]"),
    ({"target_fps": 12.5}, "target_fps", "integer"),
    ({"target_fps": "25"}, "target_fps", "[1, 60]"),
    ({"blink_probability": 1.5}, "blink_probability", "[0, 1]"),
    ({"sway_macro_strength": True}, "sway_macro_strength", "[0, 1]"),
    ({"breathing_cycle_duration": None}, "breathing_cycle_duration", "[0.5, 60]"),
    ({"talking_morph": "mouth_smirk"}, "talking_morph", "mouth_aaa_index"),
    ({"sway_morphs": ["head_x_index", "tail_index"]}, "sway_morphs", "head_x_index"),
    ({"sway_morphs": "head_x_index"}, "sway_morphs", "list"),
    ({"blink_interval_min": 6.0}, "blink_interval_min", "blink_interval_max"),
    ({"postprocessor_chain": []}, "postprocessor_chain", "target_fps"),
])
def test_invalid_settings_name_the_key_and_its_valid_range(body, key, hint):
    with pytest.raises(SettingsError) as error:
        AnimatorSettings.from_json(body)
    assert key in str(error.value) and hint in str(error.value)
    assert isinstance(error.value, ValueError)


def test_settings_body_must_be_an_object():
    with pytest.raises(SettingsError):
        AnimatorSettings.from_json(["target_fps", 25])


def test_every_setting_is_documented():
    description = AnimatorSettings.describe()
    assert set(description) == set(AnimatorSettings().to_json())
    assert "default 25" in description["target_fps"] and "[1, 60]" in description["target_fps"]


def test_new_settings_take_effect_without_jumps():
    animator = make_animator()
    animator.set_settings(AnimatorSettings(breathing_cycle_duration=2.0, blink_probability=0.0), 3.0)
    assert animator.settings.breathing_cycle_duration == 2.0
    assert animator.blinks_between(3.3, 100.0) == []
    # Breathing keeps its phase at the change and then runs twice as fast.
    before = value(animator, 3.0, "breathing_index")
    assert before == pytest.approx(math.sin(math.pi * 3.0 / 4.0) ** 2, abs=1e-6)
    assert value(animator, 4.0, "breathing_index") == pytest.approx(math.sin(math.pi * (0.75 + 0.5)) ** 2)


def test_new_templates_move_the_face_to_the_current_emotions_new_template():
    animator = make_animator(blink_probability=0.0)  # a blink would fade the eye shapes compared here
    animator.set_emotion("joy", 0.0)
    animator.set_templates({**TEMPLATES, "joy": TEMPLATES["anger"]}, 5.0)
    face = slice(0, pose.INDEX["iris_rotation_x_index"])
    eyes_and_brows = [i for i in range(face.stop) if i not in VOWELS and i not in (WINK_LEFT, WINK_LEFT + 1)]
    animator_pose = animator.pose_at(10.0)
    np.testing.assert_allclose(animator_pose[eyes_and_brows], TEMPLATES["anger"][eyes_and_brows], atol=1e-3)


def test_a_long_run_keeps_a_bounded_history_and_stays_exact_near_now():
    def talking_animator():  # frequent sway moves and syllables: thousands of each in 1000 s
        animator = make_animator(sway_interval_min=0.5, sway_interval_max=1.0)
        animator.start_talking(0.0)
        return animator

    animator = talking_animator()
    for t in np.arange(0.0, 1000.0, 7.0):
        animator.pose_at(t)
    recent = animator.pose_at(995.0)
    assert animator._sway._segments.dropped > 0  # noqa: SLF001 - memory is not visible otherwise
    assert len(animator._sway._segments.starts) <= 2 * 512  # noqa: SLF001
    assert len(animator._mouth.speech._syllables.starts) <= 2 * 512  # noqa: SLF001
    np.testing.assert_array_equal(talking_animator().pose_at(995.0), recent)


def test_resending_the_same_templates_and_settings_changes_nothing():
    animator = make_animator()
    animator.set_emotion("joy", 1.0)
    ahead = animator.pose_at(30.0)
    animator.set_templates(load_default_templates(), 2.0)  # the client sends `{}` on every load
    animator.set_settings(AnimatorSettings.from_json({}), 2.0)
    np.testing.assert_array_equal(animator.pose_at(30.0), ahead)


def test_turning_sway_off_stops_the_head_within_the_settle_time():
    animator = make_animator(seed=7)
    animator.pose_at(2.0)
    animator.set_settings(AnimatorSettings.from_json({"sway_macro_strength": 0, "sway_micro_strength": 0}), 2.0)
    sway = [pose.INDEX[name] for name in SWAYABLE_MORPHS]
    for t in (4.0, 5.0, 6.0):
        assert np.abs(animator.pose_at(t)[sway]).max() < 0.01, t
