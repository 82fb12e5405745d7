"""The smooth stream's keyframes: exact renders' editor outputs, stored by time.

A frame takes the keyframe at or before its time and the one after it (`bracket`). A keyframe for a new
future replaces the old future's ones before it; those the clock has left behind go, but the latest before
now stays (frames need it).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from talkinghead import keyframe_plan as plan


@dataclass(eq=False)
class Keyframe:
    """The editor's outputs for one exact pose, in the composer's layout (compose.editor_outputs)."""
    t: float
    generation: int
    image_version: int
    pose: np.ndarray
    sample_map: np.ndarray  # (512, 512, 2) float32: where each pixel samples the image, in pixels
    color: np.ndarray       # (512, 512, 4) float16: colour change
    alpha: np.ndarray       # (512, 512, 4) float16: colour-change alpha


class KeyframeStore:
    """Keyframes keyed by their time on the finest planned step (interval / 2^plan.SPLITS). Guarded by the
    lock it is given: the smooth source's, which also guards the state that goes with the keyframes."""

    def __init__(self, interval: float, lock: threading.Condition):
        self.interval = interval
        self._lock = lock
        self._keyframes: dict[int, Keyframe] = {}

    def key(self, t: float) -> int:
        return round(t * 2 ** plan.SPLITS / self.interval)

    def get(self, t: float) -> Keyframe | None:
        with self._lock:
            return self._keyframes.get(self.key(t))

    def bracket(self, t: float) -> tuple[Keyframe | None, Keyframe | None]:
        """The latest keyframe at or before t and the earliest after it. When the worker has fallen behind
        (a slow or busy CPU) planned keyframes are skipped and the blend simply spans a longer gap. A
        right-hand keyframe made before an event still carries the motion on until one for the new future
        lands (then `add` drops it)."""
        with self._lock:
            before = [kf for kf in self._keyframes.values() if kf.t <= t]
            after = [kf for kf in self._keyframes.values() if kf.t > t]
        left = max(before, key=lambda kf: kf.t) if before else None
        right = min(after, key=lambda kf: kf.t) if after else None
        return left, right

    def add(self, keyframe: Keyframe, now: float, generation: int) -> None:
        """Keep this keyframe (generation: the current future's). One for the current future replaces the
        other futures' keyframes between now and it; the past goes but for the latest keyframe before now."""
        with self._lock:
            if keyframe.generation == generation:  # the future before it is the new one's: old gone
                for key, kf in list(self._keyframes.items()):
                    if kf.generation != keyframe.generation and now < kf.t < keyframe.t:
                        del self._keyframes[key]
            self._keyframes[self.key(keyframe.t)] = keyframe
            # Drop keyframes the clock has left behind, but keep the latest one before now: frames need it.
            past = sorted((kf.t, key) for key, kf in self._keyframes.items() if kf.t <= now)
            for _, key in past[:-1]:
                del self._keyframes[key]

    def made_for(self, generation: int) -> set[int]:
        """The keys of the keyframes made for this future."""
        with self._lock:
            return {key for key, kf in self._keyframes.items() if kf.generation == generation}

    def last_time(self, generation: int | None = None) -> float | None:
        """The time of the last keyframe made for this future (None: for any); None if there is none."""
        with self._lock:
            times = [kf.t for kf in self._keyframes.values() if generation is None or kf.generation == generation]
        return max(times, default=None)

    def clear(self) -> None:
        with self._lock:
            self._keyframes.clear()

    def __iter__(self):
        with self._lock:
            return iter(list(self._keyframes.values()))

    def __len__(self) -> int:
        with self._lock:
            return len(self._keyframes)
