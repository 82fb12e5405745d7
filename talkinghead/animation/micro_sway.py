"""The micro sway (jitter): the small drift of the swaying morphs on top of the sway, as the original animator
makes it: a fresh random offset of the sway *target* every tick, which the pose follows at
`pose_interpolator_step` per tick. So the head drifts a little (a few thousandths) instead of shaking by the
full strength, and it moves continuously.

The offset at tick n is the filtered noise of the ticks before it; within a tick it heads for that tick's
noise. Closed form over the last _JITTER_MEMORY ticks, so any t gives the same answer in any order of asking.
The noise is keyed by the tick alone (not by events), so it runs on unchanged through every command.

Threads: not thread-safe on its own. The Animator makes one MicroSway and uses it only under its RLock
(talkinghead/animation/animator.py): its caches fill as poses are asked.
"""
from __future__ import annotations

import math

import numpy as np

from talkinghead import pose
from talkinghead.animation.keyed_random import KeyedRandom, Stream
from talkinghead.animation.timing import TICK

# Ticks of target noise the micro sway remembers: (1 - 0.1)^64 < 0.2 %, less than the rounding of a frame.
_JITTER_MEMORY = 64


class MicroSway:
    """The micro sway's offsets at any t, from keyed noise per tick (the last ticks' noise and filtered values
    kept: every pose asks for the last _JITTER_MEMORY ticks)."""

    def __init__(self, random: KeyedRandom):
        self._random = random
        self._noise_cache: dict[int, np.ndarray] = {}
        self._jitter_cache: dict[tuple[int, float], np.ndarray] = {}

    def offsets(self, t: float, strength: float, step: float, indices: list[int]) -> np.ndarray:
        """The offsets of the pose values `indices` at t, for sway_micro_strength `strength` and
        pose_interpolator_step `step`."""
        if strength == 0.0 or not indices:
            return np.zeros(len(indices))
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
                noise[i] = 2.0 * self._random.uniform(Stream.JITTER, tick, i) - 1.0
            self._noise_cache[tick] = noise
        return noise
