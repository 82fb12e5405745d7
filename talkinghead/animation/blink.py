"""Blinking: when the eyelids close (a schedule of blink starts) and how (the lid's curve over one blink,
applied over the emotion's eyes).

After each blink no blink for U(blink_interval_min, blink_interval_max) s, then a chance of blink_probability
per tick; in confusion the pause is skipped for a while (rapid blinking). The starts are drawn from keyed
random numbers, so they are the same whenever asked.

Threads: not thread-safe on its own. It belongs to one Animator and is used only under that Animator's RLock
(talkinghead/animation/animator.py): it is drawn lazily and cached, so even reading it changes it.
"""
from __future__ import annotations

import math

import numpy as np

from talkinghead import pose
from talkinghead.animation.keyed_random import KeyedRandom, Stream
from talkinghead.animation.timing import TICK, Timeline
from talkinghead.curves import smoothstep
from talkinghead.settings import AnimatorSettings

_EYE_WINK = [pose.INDEX["eye_wink_left_index"], pose.INDEX["eye_wink_right_index"]]
_EYE_HAPPY_WINK = [pose.INDEX["eye_happy_wink_left_index"], pose.INDEX["eye_happy_wink_right_index"]]
# Eye shapes that would fight a closed eyelid; a blink fades them out while it lasts.
_EYE_SHAPES = [pose.INDEX[f"eye_{shape}_{side}_index"] for shape in ("surprised", "relaxed", "unimpressed",
                                                                    "raised_lower_eyelid")
               for side in ("left", "right")]
# Blink shape, as fractions of blink_duration: the lid falls fast, stays shut a moment, rises slower.
_BLINK_CLOSE_END, _BLINK_OPEN_START = 0.35, 0.5
# Ticks (~32 years) beyond which a drawn wait for a blink counts as never (math.floor of a huge wait overflows).
_NEVER_TICKS = 2.5e10


class BlinkSchedule:
    """Blink start times: after each blink no blink for U(interval_min, interval_max) s, then a chance of
    blink_probability per tick (a geometric wait, drawn in one go). Until `rapid_until` the pause is skipped
    (rapid blinking in confusion). Drawn lazily and cached."""

    def __init__(self, random: KeyedRandom, event: int, t0: float, previous_start: float | None,
                 rapid_until: float, settings: AnimatorSettings):
        self._random, self._event, self._settings = random, event, settings
        self.t0, self.rapid_until = t0, rapid_until
        self._starts = Timeline()
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
        return self._random.uniform(Stream.BLINK, self._event, k, j)


def _blink_curve(u: float) -> float:
    """Eyelid closure over one blink (u in [0, 1)): ease shut, hold, ease open; 0 outside the blink."""
    if u < 0.0 or u >= 1.0:
        return 0.0
    if u < _BLINK_CLOSE_END:
        return smoothstep(u / _BLINK_CLOSE_END)
    if u < _BLINK_OPEN_START:
        return 1.0
    return 1.0 - smoothstep((u - _BLINK_OPEN_START) / (1.0 - _BLINK_OPEN_START))


def apply_blink(result: np.ndarray, closure: float) -> None:
    """Close the eyelids over the emotion's eyes. Eyes already closed happily (^^) are left alone, and other
    eye shapes fade while the lid is down so the two morphs don't fight."""
    if closure == 0.0:
        return
    strength = closure * (1.0 - result[_EYE_HAPPY_WINK])  # [left, right]
    result[_EYE_WINK] += (1.0 - result[_EYE_WINK]) * strength
    result[_EYE_SHAPES] *= np.tile(1.0 - strength, len(_EYE_SHAPES) // 2)  # _EYE_SHAPES alternates L, R
