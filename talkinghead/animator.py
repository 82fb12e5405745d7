"""The animator: the character's 45-number pose as a pure function of (events so far, seed, time).

Emotion transitions, blinking, breathing, sway and a talking mouth are layered on the current emotion's
template. Everything is driven by the wall clock given to `pose_at(t)`, never by how often it is called:

* smooth motions are closed-form functions of the time since the event that started them (an exponential
  approach, a critically damped spring, a smoothstep), so 5 FPS and 60 FPS see the same pose at the same t;
* random events (blink times, sway targets, jitter, syllables) come from counter-based random numbers keyed
  by (seed, event count, slot index), so asking about a future t early (render-ahead) and again later gives
  the same answer, in any order of asking.

Each command (`set_emotion`, `start_talking`, `stop_talking`, `play_track`, `set_templates`, `set_settings`) is
an event:
it snapshots the current values at its time t and starts new motions from there, so the pose stays
continuous. Rates and probabilities are specified per 1/25 s ("tick", the original animator's frame at
its default 25 FPS) and applied for any elapsed time.
"""
from __future__ import annotations

import bisect
import logging
import math
import secrets
import threading
from typing import Mapping, Protocol

import numpy as np

from talkinghead import pose
from talkinghead.curves import smoothstep as _smoothstep
from talkinghead.settings import VOWEL_MORPHS, AnimatorSettings

log = logging.getLogger(__name__)

TICK = 1.0 / 25.0  # the time unit of per-tick rates and probabilities (settings and api.md)
FALLBACK_EMOTION = "neutral"
CONFUSION = "confusion"  # entering it allows rapid blinking for a while (as in the original animator)

_EYE_WINK = [pose.INDEX["eye_wink_left_index"], pose.INDEX["eye_wink_right_index"]]
_EYE_HAPPY_WINK = [pose.INDEX["eye_happy_wink_left_index"], pose.INDEX["eye_happy_wink_right_index"]]
# Eye shapes that would fight a closed eyelid; a blink fades them out while it lasts.
_EYE_SHAPES = [pose.INDEX[f"eye_{shape}_{side}_index"] for shape in ("surprised", "relaxed", "unimpressed",
                                                                    "raised_lower_eyelid")
               for side in ("left", "right")]
_VOWELS = [pose.INDEX[name] for name in VOWEL_MORPHS]
_BREATHING = pose.INDEX["breathing_index"]

# Blink shape, as fractions of blink_duration: the lid falls fast, stays shut a moment, rises slower.
_BLINK_CLOSE_END, _BLINK_OPEN_START = 0.35, 0.5
# The sway spring is twice as fast as the emotion transition rate, so a sway move settles in about as long
# as the original's interpolated one, but starts and ends gently instead of jumping off at full speed.
_SWAY_SPRING_FACTOR = 2.0
# Ticks of target noise the micro sway remembers: (1 - 0.1)^64 < 0.2 %, less than the rounding of a frame.
_JITTER_MEMORY = 64
# Ticks (~32 years) beyond which a drawn wait for a blink counts as never (math.floor of a huge wait overflows).
_NEVER_TICKS = 2.5e10
# Talking fades in faster than an emotion transition so the first syllable is not swallowed.
_TALK_FADE_IN_FACTOR = 3.0


class MouthTrack(Protocol):
    """What lip-sync plays (talkinghead.lipsync.Track): mouth openness and vowel weights over time."""
    duration_s: float

    def at(self, t: float) -> tuple[float, np.ndarray]:
        """(openness 0..1, weights of aaa/iii/uuu/eee/ooo) t s into the track."""


class Animator:
    """Pose = emotion template (with transitions) + sway + blink + talking mouth + breathing.

    Thread-safe: commands and `pose_at` may come from different threads.
    """

    def __init__(self, templates: Mapping[str, np.ndarray], settings: AnimatorSettings | None = None,
                 seed: int | None = None, start_time: float = 0.0):
        self._lock = threading.RLock()
        self._templates = _checked_templates(templates)
        self._settings = settings or AnimatorSettings()
        self._random = KeyedRandom(seed if seed is not None else secrets.randbits(63))
        self._noise_cache: dict[int, np.ndarray] = {}
        self._jitter_cache: dict[tuple[int, float], np.ndarray] = {}
        self._events = 0  # event count: part of every random key, so each event gets fresh random numbers
        self._last_event_time = start_time
        self._emotion = FALLBACK_EMOTION
        self._talking = False
        target = self._templates[FALLBACK_EMOTION]
        self._face = _Approach(start_time, target, target, self._settings.pose_interpolator_step)
        self._sway = _SwayTrack.start(self._random, 0, start_time, target, self._settings)
        self._blinks = _BlinkSchedule(self._random, 0, start_time, None, -math.inf, self._settings)
        self._mouth = _Mouth(start_time, np.zeros(len(_VOWELS)), None, self._settings)
        self._queued_track: tuple[MouthTrack, float, float] | None = None  # (track, offset s, rate): next start_talking
        self._breathing = _Breathing(start_time, 0.0, self._settings.breathing_cycle_duration)

    # -- state ---------------------------------------------------------------------------------------------
    @property
    def emotion(self) -> str:
        return self._emotion

    @property
    def talking(self) -> bool:
        return self._talking

    @property
    def generation(self) -> int:
        """Changes on every event: work planned for the old future (render-ahead) is then stale."""
        return self._events

    @property
    def settings(self) -> AnimatorSettings:
        return self._settings

    @property
    def templates(self) -> dict[str, np.ndarray]:
        with self._lock:
            return dict(self._templates)

    # -- events --------------------------------------------------------------------------------------------
    def set_emotion(self, name: str, t: float) -> str:
        """Move toward emotion `name` from time t; an unknown name means neutral. Returns the name used."""
        with self._lock:
            if name not in self._templates:
                log.info("unknown emotion %r, using %r", name, FALLBACK_EMOTION)
                name = FALLBACK_EMOTION
            if name == self._emotion:
                return name
            t = self._begin_event(t)
            was_confused = self._emotion == CONFUSION
            self._emotion = name
            self._retarget_face(t)
            self._redraw_sway(t)
            if name == CONFUSION:
                self._reschedule_blinks(t, rapid_until=t + self._settings.blink_confusion_duration)
            elif was_confused and t < self._blinks.rapid_until:
                self._reschedule_blinks(t, rapid_until=-math.inf)
            return name

    def set_templates(self, templates: Mapping[str, np.ndarray], t: float) -> None:
        """Use new emotion templates from time t; the current emotion moves to its new template."""
        with self._lock:
            checked = _checked_templates(templates)
            if _same_templates(checked, self._templates):
                return  # the client re-sends `{}` on every load; nothing changes
            t = self._begin_event(t)
            self._templates = checked
            if self._emotion not in checked:
                self._emotion = FALLBACK_EMOTION
            self._retarget_face(t)
            self._redraw_sway(t)

    def set_settings(self, settings: AnimatorSettings, t: float) -> None:
        """Use new settings from time t; motions in progress continue smoothly under the new settings."""
        with self._lock:
            if settings == self._settings:
                return  # the client re-sends its settings on every load; nothing changes
            t = self._begin_event(t)
            old, self._settings = self._settings, settings
            self._retarget_face(t)
            # Keep heading for the current sway target unless the sway's own settings changed: a target
            # drawn under the old strength (say ±0.6) must not outlive a new one (say 0).
            same_sway = all(getattr(settings, k) == getattr(old, k) for k in
                            ("sway_morphs", "sway_macro_strength", "sway_micro_strength"))
            self._sway = _SwayTrack.start(self._random, self._events, t, self._templates[self._emotion],
                                          settings, previous=self._sway, keep_target=same_sway)
            self._reschedule_blinks(t, rapid_until=self._blinks.rapid_until)
            self._breathing = _Breathing(t, self._breathing.phase(t), settings.breathing_cycle_duration)
            self._restart_mouth(t, self._talking)

    def start_talking(self, t: float) -> None:
        """Speech-like mouth motion from t; or the track queued for this (`queue_track`). While a track
        plays this changes nothing (SillyTavern's TTS says start_talking around the clip it plays)."""
        with self._lock:
            if self._queued_track is not None:
                track, offset, rate = self._queued_track
                self._queued_track = None
                self._play(track, t - offset / rate, t, rate)
            elif not self._talking or self._track_ended(t):
                self._restart_mouth(self._begin_event(t), talking=True)

    def stop_talking(self, t: float) -> None:
        """The mouth returns smoothly to the emotion's shape (a playing track ends here)."""
        with self._lock:
            self._queued_track = None
            if self._talking:
                self._restart_mouth(self._begin_event(t), talking=False)

    def play_track(self, track: MouthTrack, start: float, t: float, rate: float = 1.0) -> None:
        """Lip-sync: from t the vowel morphs follow `track`, whose time 0 is at `start` (before t when the
        audio is already playing), played `rate` times as fast as recorded (the audio's playback rate).
        Random speech is off meanwhile; at the track's end the mouth returns smoothly to the emotion's, as it
        does on stop_talking or a new track."""
        with self._lock:
            self._queued_track = None
            self._play(track, start, t, rate)

    def stop_track(self, t: float) -> None:
        """End a lip-sync track (playing or queued) at t, the mouth gliding back; random talking goes on."""
        with self._lock:
            self._queued_track = None
            if isinstance(self._mouth.speech, _TrackSpeech) and not self._track_ended(t):
                self._restart_mouth(self._begin_event(t), talking=False)

    def queue_track(self, track: MouthTrack, offset: float = 0.0, rate: float = 1.0) -> None:
        """Play `track` at `rate` from the next start_talking, `offset` s of it (track time) already played."""
        with self._lock:
            self._queued_track = (track, offset, rate)

    def _play(self, track: MouthTrack, start: float, t: float, rate: float = 1.0) -> None:
        t = self._begin_event(t)
        self._restart_mouth(t, talking=True, speech=_TrackSpeech(track, start, rate))

    # -- the pose ------------------------------------------------------------------------------------------
    def pose_at(self, t: float, transient: bool = True) -> np.ndarray:
        """The pose at wall-clock time t: 45 float32 within pose.LOW..HIGH. transient=False: without the
        blink and the talking mouth (the emotion's own mouth), the face the smooth stream renders keyframes
        with."""
        with self._lock:
            result = self._face.value(t).astype(np.float64)
            result[self._sway.indices] = self._sway.position(t) + self._jitter(t)
            if transient:
                _apply_blink(result, self._blinks.closure(t))
                result[_VOWELS] = self._mouth.vowels(t, result[_VOWELS])
            result[_BREATHING] = self._breathing.value(t)
            return np.clip(result, pose.LOW, pose.HIGH).astype(np.float32)

    def blinks_between(self, t0: float, t1: float) -> list[float]:
        """Start times of the blinks scheduled in [t0, t1), as things stand now (for tests and tools)."""
        with self._lock:
            return self._blinks.starts_between(t0, t1)

    # -- helpers -------------------------------------------------------------------------------------------
    def _begin_event(self, t: float) -> float:
        """Count an event; events never go back in time (a late command acts at the latest event's time)."""
        t = max(t, self._last_event_time)
        self._last_event_time = t
        self._events += 1
        return t

    def _retarget_face(self, t: float) -> None:
        """Head for the current template from what shows at t (swaying morphs: where the sway has them, so a
        morph that stops swaying glides back to the template)."""
        start = self._face.value(t)
        start[self._sway.indices] = self._sway.position(t)
        self._face = _Approach(t, start, self._templates[self._emotion], self._settings.pose_interpolator_step)

    def _redraw_sway(self, t: float) -> None:
        """A new sway target around the (new) emotion's head pose, reached smoothly from where the head is."""
        self._sway = _SwayTrack.start(self._random, self._events, t, self._templates[self._emotion],
                                      self._settings, previous=self._sway)

    def _reschedule_blinks(self, t: float, rapid_until: float) -> None:
        self._blinks = _BlinkSchedule(self._random, self._events, t, self._blinks.last_start(t), rapid_until,
                                      self._settings)

    def _restart_mouth(self, t: float, talking: bool, speech: _Speech | _TrackSpeech | None = None) -> None:
        """The mouth from t: `speech` if given (a lip-sync track), else random speech while talking, else the
        emotion's."""
        base_vowels = self._face.value(t)[_VOWELS]
        offset = self._mouth.vowels(t, base_vowels) - base_vowels  # carried over, then fades out
        self._talking = talking
        if speech is None and talking:
            speech = _Speech(self._random, self._events, t, self._settings)
        self._mouth = _Mouth(t, offset, speech, self._settings)

    def _track_ended(self, t: float) -> bool:
        speech = self._mouth.speech
        return isinstance(speech, _TrackSpeech) and t >= speech.end

    def _jitter(self, t: float) -> np.ndarray:
        """Micro sway, as the original animator makes it: a fresh random offset of the sway *target* every
        tick, which the pose follows at `pose_interpolator_step` per tick. So the head drifts a little
        (a few thousandths) instead of shaking by the full strength, and it moves continuously.

        The pose's offset at tick n is the filtered noise of the ticks before it; within a tick it heads for
        that tick's noise. Closed form over the last _JITTER_MEMORY ticks, so any t gives the same answer in
        any order of asking."""
        strength = self._settings.sway_micro_strength
        indices = self._sway.indices
        if strength == 0.0 or not indices:
            return np.zeros(len(indices))
        step = self._settings.pose_interpolator_step
        tick = math.floor(t / TICK)
        remaining = (1.0 - step) ** (t / TICK - tick)
        at_tick = self._jitter_at_tick(tick, step)
        return strength * (remaining * at_tick + (1.0 - remaining) * self._tick_noise(tick))[indices]

    def _jitter_at_tick(self, tick: int, step: float) -> np.ndarray:
        """The filtered noise at the start of `tick` (per unit strength), for every pose index."""
        key = (tick, step)
        value = self._jitter_cache.get(key)
        if value is None:
            if len(self._jitter_cache) > 16 * _JITTER_MEMORY:
                self._jitter_cache.clear()
            past = np.stack([self._tick_noise(tick - 1 - j) for j in range(_JITTER_MEMORY)])
            value = (step * (1.0 - step) ** np.arange(_JITTER_MEMORY)) @ past
            self._jitter_cache[key] = value
        return value

    def _tick_noise(self, tick: int) -> np.ndarray:
        """Uniform [-1, 1) numbers for one tick, one per pose index; recent ticks are kept (a pure cache:
        every pose asks for the last _JITTER_MEMORY ticks)."""
        noise = self._noise_cache.get(tick)
        if noise is None:
            if len(self._noise_cache) > 16 * _JITTER_MEMORY:
                self._noise_cache.clear()
            noise = np.zeros(pose.NUM_PARAMS)
            for i in range(pose.ROTATION.start, pose.ROTATION.stop):  # every morph that may sway
                noise[i] = 2.0 * self._random.uniform(_Stream.JITTER, tick, i) - 1.0
            self._noise_cache[tick] = noise
        return noise


# ---- random numbers ---------------------------------------------------------------------------------------
_MASK64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """SplitMix64's finaliser: a well-mixed 64-bit hash of x."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


class _Stream:
    """First part of every random key, so blinks, sway, jitter and speech never share numbers."""
    BLINK, SWAY, JITTER, SPEECH = 1, 2, 3, 4


class KeyedRandom:
    """Counter-based random numbers: the same key always gives the same number, whatever was asked before."""

    def __init__(self, seed: int):
        self._root = _mix64(seed & _MASK64)

    def uniform(self, *key: int) -> float:
        """A number in [0, 1) for this key of integers."""
        return (self._hash(key) >> 11) * 2.0 ** -53

    def uniforms(self, count: int, *key: int) -> list[float]:
        """`count` numbers in [0, 1): the same as uniform(*key, i) for i in range(count)."""
        prefix = self._hash(key)
        return [(_mix64(prefix ^ i) >> 11) * 2.0 ** -53 for i in range(count)]

    def _hash(self, key: tuple[int, ...]) -> int:
        h = self._root
        for part in key:
            h = _mix64(h ^ (part & _MASK64))
        return h


# ---- smooth curves -----------------------------------------------------------------------------------------
def _decay(step: float, dt: float) -> float:
    """Fraction of a distance still left after dt seconds when each tick covers `step` of what is left."""
    return (1.0 - step) ** (max(dt, 0.0) / TICK)


def _rate(step: float) -> float:
    """The exponential rate (1/s) equal to covering `step` of the remaining distance per tick."""
    return -math.log(max(1.0 - step, 1e-6)) / TICK


class _Approach:
    """Exponential approach from `start` (at time t0) to `target`: step of the remaining distance per tick."""

    def __init__(self, t0: float, start: np.ndarray, target: np.ndarray, step: float):
        self.t0, self.step = t0, step
        self.start, self.target = np.array(start, np.float64), np.array(target, np.float64)

    def value(self, t: float) -> np.ndarray:
        return self.target + (self.start - self.target) * _decay(self.step, t - self.t0)


class _Timeline:
    """Items starting at increasing times, appended lazily as later times are asked about. Only the latest
    items are kept (a server may run for weeks): a time before the oldest kept item gets the oldest one, so
    asking far into the past (hours of sway, minutes of speech) is the only thing that is not exact."""

    KEEP = 512

    def __init__(self):
        self.starts: list[float] = []
        self.items: list = []
        self.dropped = 0  # items forgotten from the front

    @property
    def count(self) -> int:
        """Items ever appended: the next item's number."""
        return self.dropped + len(self.starts)

    def append(self, start: float, item=None) -> None:
        self.starts.append(start)
        self.items.append(item)
        if len(self.starts) > 2 * self.KEEP:
            del self.starts[:self.KEEP], self.items[:self.KEEP]
            self.dropped += self.KEEP

    def index_at(self, t: float) -> int:
        """Position (in the kept lists) of the last item starting at or before t; -1 if none."""
        return bisect.bisect_right(self.starts, t) - 1


# ---- sway --------------------------------------------------------------------------------------------------
# The postures' own random numbers: fixed, not the animator's seed, so a character sways among the same
# postures after a restart too (the smooth stream's keyframes for them are kept on disk).
_POSTURE_SEED = 0x5EED_2026
# The postures lie on a circle around the emotion's pose, of this radius (in units of sway_macro_strength, for
# head_y; the other values scaled by _SWAY_SCALE): three postures are then ~2 strength apart in head_y terms,
# moves a little shorter than the average between two random targets of the whole ±strength box (~2.5), and
# each a few keyframes long on a CPU (docs/cpu-stream.md).
_POSTURE_RADIUS = 1.0
# How far one unit moves the picture, per swaying value: the smooth stream's keyframe spacing
# (talkinghead.smooth.interpolation.GAP) relative to head_y's. The circle is round in these units, so no value
# dominates the moves.
_SWAY_SCALE = {"head_x_index": 0.75, "head_y_index": 1.0, "neck_z_index": 0.5, "body_y_index": 1.5,
               "body_z_index": 0.5}


def _posture(number: int, count: int, names: tuple[str, ...]) -> np.ndarray:
    """Posture `number` of `count`'s offsets (in [-1, 1], times the sway strength) for the swaying morphs
    `names`: evenly spaced on a circle in a fixed random plane of the swaying values, so the postures surround
    the emotion's pose and every move between two of them is about as long."""
    random = KeyedRandom(_POSTURE_SEED)
    scale = np.array([_SWAY_SCALE.get(name, 1.0) for name in names])
    u = np.array([random.uniform(_Stream.SWAY, 0, pose.INDEX[name]) - 0.5 for name in names])
    v = np.array([random.uniform(_Stream.SWAY, 1, pose.INDEX[name]) - 0.5 for name in names])
    u /= max(np.linalg.norm(u), 1e-9)
    v -= (v @ u) * u
    v /= max(np.linalg.norm(v), 1e-9)
    angle = 2.0 * math.pi * (random.uniform(_Stream.SWAY, 2) + number / count)
    direction = math.cos(angle) * u + math.sin(angle) * v
    offsets = _POSTURE_RADIUS * direction * scale
    return np.clip(offsets, -1.0, 1.0)


class _SwayTrack:
    """Head and body sway: a target every U(interval_min, interval_max) s around the emotion's pose, followed
    by a critically damped spring (no jumps in position or speed). A target is one of `sway_postures` fixed
    postures (never the one it is in), or with 0 postures a fresh random point: a person shifts among a few
    comfortable postures, and on a CPU the keyframes of those postures and of the moves between them are
    made once instead of for every move (docs/cpu-stream.md). Segments are drawn lazily from keyed random
    numbers and cached, so any t can be asked in any order."""

    def __init__(self, random: KeyedRandom, event: int, t0: float, position: np.ndarray, velocity: np.ndarray,
                 first_target: np.ndarray | None, template: np.ndarray, settings: AnimatorSettings):
        self.indices = [pose.INDEX[name] for name in settings.sway_morphs]
        self._random, self._event, self._settings = random, event, settings
        self._center = template[self.indices].astype(np.float64)
        self._omega = _SWAY_SPRING_FACTOR * _rate(settings.pose_interpolator_step)
        # Segments: (target, position, velocity at the segment's start).
        self._segments = _Timeline()
        self._postures: list[int] = []  # each segment's posture (-1: a target not among them)
        if first_target is None:
            first_target = self._draw_target(0)
        else:
            self._postures.append(-1)
        self._segments.append(t0, (first_target, position, velocity))

    @classmethod
    def start(cls, random: KeyedRandom, event: int, t0: float, template: np.ndarray, settings: AnimatorSettings,
              previous: _SwayTrack | None = None, keep_target: bool = False) -> _SwayTrack:
        """A track from t0 around `template`, continuing from where `previous` has the head at t0 (else at rest
        on the template); with keep_target it heads on to the previous target, else to a newly drawn one."""
        indices = [pose.INDEX[name] for name in settings.sway_morphs]
        if previous is None:  # at rest in its first posture (with no postures: on the template)
            track = cls(random, event, t0, template[indices].astype(np.float64), np.zeros(len(indices)), None,
                        template, settings)
            if settings.sway_postures > 0:
                track._segments.items[0] = (track.target_at(t0), track.target_at(t0), np.zeros(len(indices)))
            return track
        position = _reindex(previous.position(t0), previous.indices, indices, template)
        velocity = _reindex(previous.velocity(t0), previous.indices, indices, np.zeros(pose.NUM_PARAMS))
        target = _reindex(previous.target_at(t0), previous.indices, indices, template) if keep_target else None
        return cls(random, event, t0, position, velocity, target, template, settings)

    def position(self, t: float) -> np.ndarray:
        k = self._segment_at(t)
        return self._spring(k, t)[0]

    def velocity(self, t: float) -> np.ndarray:
        k = self._segment_at(t)
        return self._spring(k, t)[1]

    def target_at(self, t: float) -> np.ndarray:
        return self._segments.items[self._segment_at(t)][0]

    def _segment_at(self, t: float) -> int:
        while self._segments.starts[-1] <= t:  # extend the cached schedule past t
            self._append_next_segment()
        return max(self._segments.index_at(t), 0)

    def _append_next_segment(self) -> None:
        last = len(self._segments.starts) - 1
        number = self._segments.count  # the new segment's number, for its random numbers
        s = self._settings
        interval = s.sway_interval_min + (s.sway_interval_max - s.sway_interval_min) * self._uniform(number, 0)
        t_next = self._segments.starts[last] + interval
        position, velocity = self._spring(last, t_next)
        self._segments.append(t_next, (self._draw_target(number), position, velocity))

    def _draw_target(self, k: int) -> np.ndarray:
        """Segment k's target (segments are drawn in order: k is the number of targets drawn so far)."""
        count = self._settings.sway_postures
        if count == 0:
            offsets = np.array([2.0 * self._uniform(k, 1 + j) - 1.0 for j in range(len(self.indices))])
            self._postures.append(-1)
        else:
            previous = self._postures[-1] if self._postures else -1
            if previous < 0 or count == 1:
                number = min(int(self._uniform(k, 1) * count), count - 1)
            else:  # another posture than the one it is in
                number = min(int(self._uniform(k, 1) * (count - 1)), count - 2)
                number += number >= previous
            offsets = _posture(number, count, self._settings.sway_morphs)
            self._postures.append(number)
        return np.clip(self._center + self._settings.sway_macro_strength * offsets, -1.0, 1.0)

    def _uniform(self, k: int, j: int) -> float:
        return self._random.uniform(_Stream.SWAY, self._event, k, j)

    def _spring(self, k: int, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Critically damped spring toward (kept) segment k's target: (position, velocity) at t."""
        target, x0, v0 = self._segments.items[k]
        tau = max(t - self._segments.starts[k], 0.0)
        w = self._omega
        a = x0 - target
        b = v0 + w * a
        fade = math.exp(-w * tau)
        return target + (a + b * tau) * fade, (b - w * (a + b * tau)) * fade


def _reindex(values: np.ndarray, old: list[int], new: list[int], default: np.ndarray) -> np.ndarray:
    """`values` given for pose indices `old`, as a vector for indices `new` (default[i] where not given)."""
    by_index = dict(zip(old, values))
    return np.array([by_index.get(i, default[i]) for i in new], dtype=np.float64)


# ---- blinking ----------------------------------------------------------------------------------------------
class _BlinkSchedule:
    """Blink start times: after each blink no blink for U(interval_min, interval_max) s, then a chance of
    blink_probability per tick (a geometric wait, drawn in one go). Until `rapid_until` the pause is skipped
    (rapid blinking in confusion). Drawn lazily and cached."""

    def __init__(self, random: KeyedRandom, event: int, t0: float, previous_start: float | None,
                 rapid_until: float, settings: AnimatorSettings):
        self._random, self._event, self._settings = random, event, settings
        self.t0, self.rapid_until = t0, rapid_until
        self._starts = _Timeline()
        if previous_start is not None:
            self._starts.append(previous_start)
        self._draws = 0  # blinks drawn so far: the key of the next one's random numbers
        self._exhausted = False  # blink_probability 0: no more blinks

    def closure(self, t: float) -> float:
        """How closed a blink has the eyes at t: 0 open .. 1 shut."""
        start = self.last_start(t)
        if start is None:
            return 0.0
        return _blink_curve((t - start) / self._settings.blink_duration)

    def last_start(self, t: float) -> float | None:
        self._extend_past(t)
        i = self._starts.index_at(t)
        return self._starts.starts[i] if i >= 0 else None

    def starts_between(self, t0: float, t1: float) -> list[float]:
        """Blink starts in [t0, t1), drawing as many as needed (t0 within the kept history)."""
        found = [s for s in self._starts.starts if t0 <= s < t1]
        while not self._exhausted and self._latest() < t1:
            self._draw_one()
            if t0 <= self._latest() < t1:
                found.append(self._latest())
        return found

    def _latest(self) -> float:
        return self._starts.starts[-1] if self._starts.starts else -math.inf

    def _extend_past(self, t: float) -> None:
        while not self._exhausted and self._latest() <= t:
            self._draw_one()

    def _draw_one(self) -> None:
        start = self._next_start()
        if math.isinf(start):
            self._exhausted = True
        else:
            self._starts.append(start)

    def _next_start(self) -> float:
        s = self._settings
        k = self._draws
        self._draws += 1
        previous = self._starts.starts[-1] if self._starts.starts else None
        earliest = self.t0 if previous is None else max(self.t0, previous + s.blink_duration)
        if earliest < self.rapid_until:
            start = earliest + self._geometric_wait(k, 0)
            if start < self.rapid_until:
                return start
            earliest = self.rapid_until
        pause = s.blink_interval_min + (s.blink_interval_max - s.blink_interval_min) * self._uniform(k, 1)
        since = self.t0 if previous is None else previous
        return max(earliest, since + max(pause, s.blink_duration)) + self._geometric_wait(k, 2)

    def _geometric_wait(self, k: int, j: int) -> float:
        """Seconds until a per-tick chance of blink_probability first comes up (0 if on the first tick)."""
        p = self._settings.blink_probability
        if p >= 1.0:
            return 0.0
        if p <= 0.0:
            return math.inf
        u = 1.0 - self._uniform(k, j)  # in (0, 1]
        ticks = math.log(u) / math.log1p(-p)
        if not ticks < _NEVER_TICKS:  # a tiny chance (or an infinite wait): no blink in this server's life
            return math.inf
        return math.floor(ticks) * TICK

    def _uniform(self, k: int, j: int) -> float:
        return self._random.uniform(_Stream.BLINK, self._event, k, j)


def _blink_curve(u: float) -> float:
    """Eyelid closure over one blink (u in [0, 1)): ease shut, hold, ease open; 0 outside the blink."""
    if u < 0.0 or u >= 1.0:
        return 0.0
    if u < _BLINK_CLOSE_END:
        return _smoothstep(u / _BLINK_CLOSE_END)
    if u < _BLINK_OPEN_START:
        return 1.0
    return 1.0 - _smoothstep((u - _BLINK_OPEN_START) / (1.0 - _BLINK_OPEN_START))


def _apply_blink(result: np.ndarray, closure: float) -> None:
    """Close the eyelids over the emotion's eyes. Eyes already closed happily (^^) are left alone, and other
    eye shapes fade while the lid is down so the two morphs don't fight."""
    if closure == 0.0:
        return
    strength = closure * (1.0 - result[_EYE_HAPPY_WINK])  # [left, right]
    result[_EYE_WINK] += (1.0 - result[_EYE_WINK]) * strength
    result[_EYE_SHAPES] *= np.tile(1.0 - strength, len(_EYE_SHAPES) // 2)  # _EYE_SHAPES alternates L, R


# ---- talking -----------------------------------------------------------------------------------------------
class _Mouth:
    """The vowel morphs: speech (random, or a lip-sync track) while talking, else the emotion's. `offset`
    (mouth minus emotion at t0) is what was showing when the last talk event came; it fades so the mouth
    never jumps. A track replaces the emotion's vowels at once (the sync is the point); after its end the
    mouth glides back to the emotion's."""

    def __init__(self, t0: float, offset: np.ndarray, speech: _Speech | _TrackSpeech | None,
                 settings: AnimatorSettings):
        self.t0, self.offset, self.speech = t0, offset, speech
        self._step = settings.pose_interpolator_step
        self._fade_in_step = 1.0 - (1.0 - self._step) ** _TALK_FADE_IN_FACTOR

    def vowels(self, t: float, emotion_vowels: np.ndarray) -> np.ndarray:
        if isinstance(self.speech, _TrackSpeech):
            return self._track_vowels(t, emotion_vowels)
        carried = self.offset * _decay(self._step, t - self.t0)
        if self.speech is None:
            return emotion_vowels + carried
        speaking = 1.0 - _decay(self._fade_in_step, t - self.t0)
        return emotion_vowels + speaking * (self.speech.vowels(t) - emotion_vowels) + carried

    def _track_vowels(self, t: float, emotion_vowels: np.ndarray) -> np.ndarray:
        track = self.speech
        if t < track.end:
            return track.vowels(t) + self.offset * _decay(self._step, t - self.t0)
        last = track.vowels(track.end) + self.offset * _decay(self._step, track.end - self.t0)
        return emotion_vowels + (last - emotion_vowels) * _decay(self._step, t - track.end)


# A lip-sync vowel weight below this share (after sharpening) is left out: the mouth takes one or two clear
# shapes rather than a blur of five (and the smooth stream has fewer distinct faces to make ahead).
_TRACK_MIN_WEIGHT = 0.4
_TRACK_SHARPNESS = 4.0  # weights^4, renormalised: the analyser's soft 0.6/0.3 becomes 0.94/0.06


class _TrackSpeech:
    """The vowel morphs of a lip-sync track playing from `start` at `rate` (track seconds per wall-clock
    second): openness times the sharpened vowel weights, at the gains random speech uses."""

    def __init__(self, track: MouthTrack, start: float, rate: float = 1.0):
        self.track, self.start, self.rate = track, start, rate
        self.end = start + track.duration_s / rate

    def vowels(self, t: float) -> np.ndarray:
        openness, weights = self.track.at(min((min(t, self.end) - self.start) * self.rate, self.track.duration_s))
        return openness * _sharpened(np.asarray(weights, np.float64)) * _VOWEL_GAIN


def _sharpened(weights: np.ndarray) -> np.ndarray:
    total = weights.sum()
    if total <= 0.0:
        return np.zeros(len(weights))
    sharp = (weights / total) ** _TRACK_SHARPNESS
    sharp /= sharp.sum()
    sharp[(sharp < _TRACK_MIN_WEIGHT) & (sharp < sharp.max())] = 0.0  # the strongest stays, whatever its share
    return sharp / sharp.sum()


class _Syllable:
    """One open-close of the mouth (or a pause, with peak 0) from `start` to `end`."""
    __slots__ = ("start", "end", "open_from", "peak", "open_to", "weights")

    def __init__(self, start: float, end: float, open_from: float, peak: float, open_to: float,
                 weights: np.ndarray):
        self.start, self.end, self.open_from, self.peak, self.open_to = start, end, open_from, peak, open_to
        self.weights = weights


# How wide each vowel morph opens at full voice (ooo/uuu are already big shapes on THA3 models).
_VOWEL_GAIN = np.array([1.0, 0.8, 0.7, 0.8, 0.8])
_SYLLABLE_PEAK_AT = 0.45  # fraction of a syllable at which the mouth is widest
_VOWEL_BLEND = 0.3  # fraction of a syllable over which its vowel shape blends in from the previous one


class _Speech:
    """Speech-like mouth movement: words of 1-4 syllables, each an open-close cycle of 2-4 keyframes
    (1/talking_fps s each) with its own vowel (mostly one dominant, sometimes a second mixed in), short
    pauses between words and now and then a longer one (a breath). Generated lazily in order from keyed
    random numbers, so it is the same whenever asked."""

    def __init__(self, random: KeyedRandom, event: int, t0: float, settings: AnimatorSettings):
        self._random, self._event = random, event
        self._keyframe = 1.0 / settings.talking_fps
        favourite = VOWEL_MORPHS.index(settings.talking_morph)
        self._vowel_odds = np.where(np.arange(len(VOWEL_MORPHS)) == favourite, 0.4, 0.15)
        self._syllables_left_in_word = 0
        closed = np.zeros(len(VOWEL_MORPHS))
        closed[favourite] = 1.0
        # A short silent lead-in: the mouth opens on the first syllable, not already open.
        self._syllables = _Timeline()
        self._syllables.append(t0, _Syllable(t0, t0 + self._keyframe, 0.0, 0.0, 0.0, closed))

    def vowels(self, t: float) -> np.ndarray:
        """The five vowel morph values at t."""
        while self._syllables.items[-1].end <= t:
            self._append_next()
        i = max(self._syllables.index_at(t), 0)
        syllable = self._syllables.items[i]
        u = min(max((t - syllable.start) / (syllable.end - syllable.start), 0.0), 1.0)
        previous = self._syllables.items[i - 1].weights if i > 0 else syllable.weights
        blend = _smoothstep(u / _VOWEL_BLEND)
        weights = (1.0 - blend) * previous + blend * syllable.weights
        return _openness(syllable, u) * weights * _VOWEL_GAIN

    def _append_next(self) -> None:
        r = self._random.uniforms(8, _Stream.SPEECH, self._event, self._syllables.count)
        last = self._syllables.items[-1]
        if self._syllables_left_in_word == 0 and last.peak > 0.0:
            self._append(_Syllable(last.end, last.end + self._pause_length(r[0], r[1]), 0.0, 0.0, 0.0,
                                   last.weights))
            return
        if self._syllables_left_in_word == 0:
            self._syllables_left_in_word = _pick((0.3, 0.35, 0.25, 0.1), r[0]) + 1
        self._syllables_left_in_word -= 1
        keyframes = _pick((0.6, 0.3, 0.1), r[1]) + 2
        length = keyframes * self._keyframe * (0.85 + 0.3 * r[2])
        peak = 0.55 + 0.45 * r[3]
        # Inside a word the mouth only half-closes between syllables; it shuts at the word's end.
        open_to = 0.0 if self._syllables_left_in_word == 0 else peak * (0.05 + 0.2 * r[4])
        self._append(_Syllable(last.end, last.end + length, last.open_to, peak, open_to, self._vowel(r[5], r[6],
                                                                                                     r[7])))

    def _pause_length(self, long_chance: float, r: float) -> float:
        if long_chance < 0.15:  # a breath between sentences
            return self._keyframe * (4.0 + 4.0 * r)
        return self._keyframe * (1.0 + 2.0 * r)

    def _vowel(self, r_main: float, r_second: float, r_mix: float) -> np.ndarray:
        """Weights of the five vowels: one dominant, half the time a second one mixed in at up to 35 %."""
        main = _pick(self._vowel_odds, r_main)
        weights = np.zeros(len(VOWEL_MORPHS))
        weights[main] = 1.0
        if r_mix < 0.5:
            second = (main + 1 + int(r_second * (len(VOWEL_MORPHS) - 1))) % len(VOWEL_MORPHS)
            weights[second] = 0.7 * r_mix  # r_mix < 0.5, so at most 0.35
        return weights

    def _append(self, syllable: _Syllable) -> None:
        self._syllables.append(syllable.start, syllable)


def _openness(syllable: _Syllable, u: float) -> float:
    """Mouth opening over a syllable: ease from open_from up to the peak, then down to open_to."""
    if u < _SYLLABLE_PEAK_AT:
        x = _smoothstep(u / _SYLLABLE_PEAK_AT)
        return syllable.open_from + (syllable.peak - syllable.open_from) * x
    x = _smoothstep((u - _SYLLABLE_PEAK_AT) / (1.0 - _SYLLABLE_PEAK_AT))
    return syllable.peak + (syllable.open_to - syllable.peak) * x


def _pick(odds, r: float) -> int:
    """Index chosen with the given odds (summing to 1) by a uniform r in [0, 1)."""
    total = 0.0
    for i, p in enumerate(odds):
        total += p
        if r < total:
            return i
    return len(odds) - 1


# ---- breathing ---------------------------------------------------------------------------------------------
class _Breathing:
    """breathing_index = sin²(π · phase); the phase advances one per cycle and never jumps on a change."""

    def __init__(self, t0: float, phase0: float, cycle_duration: float):
        self.t0, self.phase0, self.cycle_duration = t0, phase0, cycle_duration

    def phase(self, t: float) -> float:
        return self.phase0 + (t - self.t0) / self.cycle_duration

    def value(self, t: float) -> float:
        return math.sin(math.pi * self.phase(t)) ** 2


def _checked_templates(templates: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Templates as 45-float32 vectors clipped to range (own copies); neutral is added (all zeros) if missing."""
    checked = {}
    for name, values in templates.items():
        array = np.asarray(values, dtype=np.float32)
        if array.shape != (pose.NUM_PARAMS,):
            raise ValueError(f"template {name!r} must have {pose.NUM_PARAMS} values, got shape {array.shape}")
        checked[name] = np.clip(array, pose.LOW, pose.HIGH)
    checked.setdefault(FALLBACK_EMOTION, pose.zeros())
    return checked


def _same_templates(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[name], b[name]) for name in a)
