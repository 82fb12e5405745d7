"""Head and body sway: the big, slow moves among a few postures around the emotion's pose (the macro sway;
the small drift on top of it is micro_sway.py).

A target every U(sway_interval_min, sway_interval_max) s, followed by a critically damped spring, so the
head never jumps in position or speed. The targets are `sway_postures` fixed postures per emotion, the same
after a restart (their own fixed seed), or with 0 postures fresh random points.

Threads: `posture` is pure. A SwayTrack is not thread-safe: it belongs to one Animator and is used only under
that Animator's RLock (talkinghead/animation/animator.py); its segments are drawn lazily and cached, so even
reading a position changes it.
"""
from __future__ import annotations

import math

import numpy as np

from talkinghead import pose
from talkinghead.animation.keyed_random import KeyedRandom, Stream
from talkinghead.animation.timing import Timeline, rate
from talkinghead.settings import AnimatorSettings

# The sway spring is twice as fast as the emotion transition rate, so a sway move settles in about as long
# as the original's interpolated one, but starts and ends gently instead of jumping off at full speed.
_SWAY_SPRING_FACTOR = 2.0

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


def posture(number: int, count: int, names: tuple[str, ...]) -> np.ndarray:
    """Posture `number` of `count`'s offsets (in [-1, 1], times the sway strength) for the swaying morphs
    `names`: evenly spaced on a circle in a fixed random plane of the swaying values, so the postures surround
    the emotion's pose and every move between two of them is about as long."""
    random = KeyedRandom(_POSTURE_SEED)
    scale = np.array([_SWAY_SCALE.get(name, 1.0) for name in names])
    u = np.array([random.uniform(Stream.SWAY, 0, pose.INDEX[name]) - 0.5 for name in names])
    v = np.array([random.uniform(Stream.SWAY, 1, pose.INDEX[name]) - 0.5 for name in names])
    u /= max(np.linalg.norm(u), 1e-9)
    v -= (v @ u) * u
    v /= max(np.linalg.norm(v), 1e-9)
    angle = 2.0 * math.pi * (random.uniform(Stream.SWAY, 2) + number / count)
    direction = math.cos(angle) * u + math.sin(angle) * v
    offsets = _POSTURE_RADIUS * direction * scale
    return np.clip(offsets, -1.0, 1.0)


class SwayTrack:
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
        self._omega = _SWAY_SPRING_FACTOR * rate(settings.pose_interpolator_step)
        # Segments: (target, position, velocity at the segment's start).
        self._segments = Timeline()
        self._postures: list[int] = []  # each segment's posture (-1: a target not among them)
        if first_target is None:
            first_target = self._draw_target(0)
        else:
            self._postures.append(-1)
        self._segments.append(t0, (first_target, position, velocity))

    @classmethod
    def start(cls, random: KeyedRandom, event: int, t0: float, template: np.ndarray, settings: AnimatorSettings,
              previous: SwayTrack | None = None, keep_target: bool = False) -> SwayTrack:
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
            offsets = posture(number, count, self._settings.sway_morphs)
            self._postures.append(number)
        return np.clip(self._center + self._settings.sway_macro_strength * offsets, -1.0, 1.0)

    def _uniform(self, k: int, j: int) -> float:
        return self._random.uniform(Stream.SWAY, self._event, k, j)

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
