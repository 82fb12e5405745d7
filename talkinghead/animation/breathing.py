"""Breathing: breathing_index rises and falls with a period of breathing_cycle_duration, continuing in phase
when the settings change.

Threads: a Breathing never changes after it is made (the Animator replaces it under its RLock); any thread may
read it.
"""
from __future__ import annotations

import math


class Breathing:
    """breathing_index = sin²(π · phase); the phase advances one per cycle and never jumps on a change."""

    def __init__(self, t0: float, phase0: float, cycle_duration: float):
        self.t0, self.phase0, self.cycle_duration = t0, phase0, cycle_duration

    def phase(self, t: float) -> float:
        return self.phase0 + (t - self.t0) / self.cycle_duration

    def value(self, t: float) -> float:
        return math.sin(math.pi * self.phase(t)) ** 2
