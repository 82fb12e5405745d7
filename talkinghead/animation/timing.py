"""Time and the closed-form motions the others are made of: the tick, an exponential approach, and a
timeline of items drawn lazily as later times are asked about.

Rates and probabilities are given per TICK (1/25 s, the original animator's frame at its default 25 FPS) and
applied for any elapsed time, so a motion is a function of the time since its event, never of the frame rate.

Threads: `decay`, `rate` and an `Approach` are pure (an Approach is never changed after it is made). A
`Timeline` grows when read; it belongs to one motion of one Animator and is used only under that Animator's
RLock (talkinghead/animation/animator.py).
"""
from __future__ import annotations

import bisect
import math

import numpy as np

TICK = 1.0 / 25.0  # the time unit of per-tick rates and probabilities (settings and api.md)


def decay(step: float, dt: float) -> float:
    """Fraction of a distance still left after dt seconds when each tick covers `step` of what is left."""
    return (1.0 - step) ** (max(dt, 0.0) / TICK)


def rate(step: float) -> float:
    """The exponential rate (1/s) equal to covering `step` of the remaining distance per tick."""
    return -math.log(max(1.0 - step, 1e-6)) / TICK


class Approach:
    """Exponential approach from `start` (at time t0) to `target`: step of the remaining distance per tick."""

    def __init__(self, t0: float, start: np.ndarray, target: np.ndarray, step: float):
        self.t0, self.step = t0, step
        self.start, self.target = np.array(start, np.float64), np.array(target, np.float64)

    def value(self, t: float) -> np.ndarray:
        return self.target + (self.start - self.target) * decay(self.step, t - self.t0)


class Timeline:
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
