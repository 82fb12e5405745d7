"""Keyframes for a live motion (a face capture), whose future is not known ahead: where the poses shown lately
need them.

The keyframe worker's plan looks along the coming frames (schedule.py); under a face capture those are the
latest capture pose, held, so the plan can only ever ask for a keyframe at the live pose. A head turning back
and forth then got keyframes wherever the head happened to be when the worker was free, often beside one the
store had, and much of its path stayed far from any. But a person's motion repeats: the poses shown over the
last few seconds are where the head will be again. So while a capture moves, the worker renders the one of
those poses the store serves worst (the farthest from its keyframes: they fill the path evenly, as
farthest-point sampling does); when the head rests, the live pose comes first, so the picture is exact again
within a second.

Threads: the frame thread adds the poses it shows (`add`); the keyframe worker asks for the worst one
(`worst`, `moving`). `_lock` guards the recorded poses; the errors cached for them are the keyframe worker's.
"""
from __future__ import annotations

import collections
import threading
from typing import Callable, NamedTuple

import numpy as np

from talkinghead.smooth import interpolation

# Seconds of shown poses looked at: two or three swings of a head turning back and forth.
WINDOW = 4.0
# Shown frames recorded: one in this many (a turn moves at most ~0.2 gap a frame; every third is enough to
# find the worst served stretch, and keeps the worker's look at them at ~10 ms per new keyframe).
STRIDE = 3
# Seconds over which the head counts as resting when it moved less than MOVING gaps a second.
STILL = 0.25


class Shown(NamedTuple):
    t: float
    command: int  # the animation's urgent() when it was shown: a command (set_emotion ...) makes them old
    pose: np.ndarray  # with its resting face, as keyframes are rendered


class Worst(NamedTuple):
    pose: np.ndarray
    error: float


class ShownPoses:
    """The (resting-face) poses the stream showed under a capture lately, and which of them the store serves
    worst. `moving_speed`: gaps a second above which a pose is in a move (schedule.MOVING)."""

    def __init__(self, moving_speed: float):
        self.moving_speed = moving_speed
        self._lock = threading.Lock()
        self._poses: collections.deque[Shown] = collections.deque()
        self._frames = 0
        self._errors: dict[float, float] = {}  # t -> effective error, for the store as it was at `_errors_for`
        self._errors_for: object = None

    def add(self, t: float, command: int, pose: np.ndarray) -> None:
        """The frame thread showed `pose` at t (one in STRIDE frames is kept, WINDOW seconds of them)."""
        self._frames += 1
        if self._frames % STRIDE:
            return
        with self._lock:
            self._poses.append(Shown(t, command, pose))
            while self._poses and self._poses[0].t < t - WINDOW:
                self._poses.popleft()

    def clear(self) -> None:
        with self._lock:
            self._poses.clear()

    def _recent(self, now: float, command: int) -> list[Shown]:
        with self._lock:
            return [s for s in self._poses if s.t >= now - WINDOW and s.command == command]

    def moving(self, now: float, command: int) -> bool:
        """Whether the shown pose moved faster than moving_speed over the last STILL seconds."""
        recent = [s for s in self._recent(now, command) if s.t >= now - STILL]
        if len(recent) < 2:
            return False
        travelled = interpolation.distance(recent[0].pose, recent[-1].pose)
        return travelled > self.moving_speed * max(recent[-1].t - recent[0].t, 1e-3)

    def worst(self, served_error: Callable[[np.ndarray, np.ndarray | None, float], float], store_state: object,
              now: float, command: int, max_error: float) -> Worst | None:
        """The shown pose of the last WINDOW seconds the store serves worst, if worse than max_error.
        served_error(pose, previous pose, seconds between): the scheduler's measure (a pose in a move counts as
        served by a keyframe at either end of a breath). store_state: changes whenever the store's keyframes do
        (the errors are cached until then)."""
        if store_state != self._errors_for:
            self._errors, self._errors_for = {}, store_state
        recent = self._recent(now, command)
        worst = None
        for previous, shown in zip([None, *recent], recent):
            error = self._errors.get(shown.t)
            if error is None:
                error = self._errors[shown.t] = served_error(
                    shown.pose, None if previous is None else previous.pose,
                    0.0 if previous is None else shown.t - previous.t)
            if error > max_error and (worst is None or error > worst.error):
                worst = Worst(shown.pose, error)
        for t in [t for t in self._errors if t < now - WINDOW]:
            del self._errors[t]
        return worst
