"""The capture override: a face-capture source drives the pose over the animator's (talkinghead.mocap.Puppeteer,
or anything with the three members of `CaptureSource`).

The engine connects a source once (`PoseOverride.use`) and hands it, through `connect`, the two things the
source needs from the engine: `on_change()`, to call when what it publishes changes (an event: the smooth stream
looks again), and `ramp()`, the seconds a move to a new capture takes (a frame: any pose shows in the next one).
The engine then asks `override_at(t)` for each pose and reads `generation` to know when the future changed.

Threads: HTTP threads replace the source; the frame thread and the smooth stream's workers ask for poses; the
source's receiver thread calls on_change. `_lock` guards the source and the generations of the sources
replaced (read together, so the generation never repeats).
"""
from __future__ import annotations

import threading
from typing import Callable, Protocol

import numpy as np

from talkinghead import pose as P
from talkinghead.smooth.faces import VOWELS

# The face values a capture's resting face leaves out (closed mouth, open eyes), as the animator's does.
TRANSIENT = [*VOWELS, P.INDEX["eye_wink_left_index"], P.INDEX["eye_wink_right_index"]]
BREATHING = P.INDEX["breathing_index"]


class CaptureSource(Protocol):
    @property
    def generation(self) -> int:
        """Changes whenever what override_at gives changes."""

    def override_at(self, t: float) -> tuple[np.ndarray, float] | None:
        """(45 values, weight 0..1) over the animator's pose at t, or None: the animator alone."""

    def connect(self, on_change: Callable[[], None], ramp: Callable[[], float]) -> None:
        """From now on call on_change() when the override changes, and move to a new capture over ramp() s."""


class PoseOverride:
    """The source in use (at most one) and the pose it makes. on_change and ramp go to each source connected."""

    def __init__(self, on_change: Callable[[], None], ramp: Callable[[], float]):
        self._on_change = on_change
        self._ramp = ramp
        self._lock = threading.Lock()
        self._source: CaptureSource | None = None
        self._replaced = 0  # generations of the sources replaced, so generation() never repeats

    def use(self, source: CaptureSource | None) -> None:
        """While `source.override_at(t)` gives (values, weight), the pose is weight × values + (1 − weight) ×
        the animator's, breathing left to the animator. None: no override."""
        if source is not None:
            source.connect(self._on_change, self._ramp)
        with self._lock:
            if self._source is not None:
                self._replaced += self._source.generation + 1
            self._source = source

    def generation(self) -> int:
        """Changes whenever the override does (a new source, each capture it publishes)."""
        with self._lock:
            return self._replaced + (self._source.generation if self._source is not None else 0)

    def replaced(self) -> int:
        """Changes only when the source is replaced (a command, not a capture update)."""
        with self._lock:
            return self._replaced

    def driving(self, t: float) -> bool:
        """Whether a source drives the pose at t (the smooth stream then fills in where it went lately)."""
        source = self._source
        return source is not None and source.override_at(t) is not None

    def apply(self, t: float, pose: np.ndarray, *, resting: bool = False) -> np.ndarray:
        """The animator's `pose` at t under the override. resting: with the capture's resting face (its mouth
        closed and eyes open), as the animator's resting pose has it."""
        source = self._source
        if source is None:
            return pose
        found = source.override_at(t)
        if found is not None:
            values, weight = found
            breathing = pose[BREATHING]
            pose = (weight * values + (1.0 - weight) * pose).astype(np.float32)
            pose[BREATHING] = breathing
        if resting:
            pose[TRANSIENT] = 0.0
        return pose
