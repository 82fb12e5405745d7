"""What the smooth stream's two workers make next, ahead of the clock, and their threads.

* The **keyframe worker** renders the planned keyframes (talkinghead.keyframe_plan) up to KEYFRAME_LOOKAHEAD
  ahead, skipping those it could no longer make in time.
* The **face worker** makes the faces of the coming frame ticks, first those of the next second, then further
  ahead, then the mouth shapes talking will need. After an event it makes the new future's first face
  while the keyframe worker waits (a "rush"): both on the cores would halve its speed.

The work itself (a face, a keyframe) is the smooth source's; this module decides which and when.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from talkinghead import keyframe_plan as plan
from talkinghead import memory
from talkinghead.smooth.faces import VOWEL_STEPS, VOWELS, FaceCache, face_key
from talkinghead.smooth.keyframes import Keyframe, KeyframeStore
from talkinghead.smooth.threads import lower_priority, one_torch_thread

log = logging.getLogger(__name__)

# The share of the keyframe worker's time the plan may ask for (the rest is margin: a keyframe takes longer
# while the face worker runs). On a slower CPU, or a busy one, the finest splits of the plan are left out
# so that the keyframes made are spread evenly, rather than the worker falling behind the clock (then the
# head stops, holding the last keyframe, until one lands).
KEYFRAME_DUTY = 0.75
# Seconds: keyframes are made this far ahead of the clock, so the worker renders a turn's several keyframes
# during the rest before it (the idle motion is known in advance; an event cuts it short).
KEYFRAME_LOOKAHEAD = 6.0
# Faces for more than a second ahead (and the speech warm-up) wait while the keyframes reach less far.
KEYFRAMES_BEFORE_FAR_FACES = 1.5
# Seconds: when the keyframes ahead reach less than one keyframe's cost plus this, faces wait altogether.
KEYFRAME_RESERVE = 0.25


@dataclass
class Animation:
    """The animation as the smooth stream sees it. pose_at(t): the (face-quantised) pose shown at t;
    generation(): a number that changes on every event, so work done for the old future can be dropped."""
    pose_at: Callable[[float], np.ndarray]
    generation: Callable[[], int]
    fps: Callable[[], float]
    clock: Callable[[], float] = time.monotonic


class WorkScheduler:
    """The two worker threads and the choice of their next job. The work is the smooth source's:
    make_face(pose, future) -> face or None, render_keyframe(t, pose, future) -> Keyframe or None,
    store(keyframe); face_made(t, generation, key) records a face made for frame time t; new_future() stops
    the work for an old future; character() is the current character's number. `lock` is the source's."""

    def __init__(self, animation: Animation, lock: threading.Condition, keyframes: KeyframeStore,
                 faces: FaceCache, *, make_face: Callable, render_keyframe: Callable,
                 store: Callable[[Keyframe], None], face_made: Callable[[float, int, bytes], None],
                 new_future: Callable[[], None], character: Callable[[], int], face_lookahead: float = 3.0):
        self.animation = animation
        self._lock = lock
        self.keyframes = keyframes
        self.faces = faces
        self._make_face = make_face
        self._render_keyframe = render_keyframe
        self._store = store
        self._face_made = face_made
        self._new_future = new_future
        self._character = character
        self.face_lookahead = face_lookahead
        self.keyframe_cost = 0.5  # seconds, a running estimate: how far ahead the next keyframe must be
        self.face_cost = 0.2  # seconds, the same for a face
        self.face_generation = -1  # the future the face worker last worked for
        self.rush = False  # the face worker is making the first face of a new future: keyframes wait
        self._scanned: tuple[tuple, int] = ((), 0)  # (future, tick): faces of the ticks before it are cached
        self._plans: dict[int, list[tuple[float, int]]] = {}  # keyframe interval number -> its plan
        self._plans_generation = -1
        self._threads: list[threading.Thread] = []
        self._paused = False
        self._closed = False

    # -- the threads -----------------------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            self._paused = False
            self._lock.notify_all()
        if not self._threads:
            self._threads = [threading.Thread(target=self._work, args=(jobs,), name=f"talkinghead-{name}",
                                              daemon=True)
                             for name, jobs in (("keyframes", self.keyframe_jobs), ("faces", self.face_jobs))]
            for thread in self._threads:
                thread.start()

    def pause(self) -> None:
        with self._lock:
            self._paused = True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)

    @property
    def running(self) -> bool:
        """The workers are at work (started, not paused or closed). Read holding the lock."""
        return bool(self._threads) and not self._paused and not self._closed

    def _work(self, next_job: Callable[[], bool]) -> None:
        one_torch_thread()
        lower_priority()
        logged = None  # the failure logged with its traceback, while it repeats (twice a second otherwise)
        while True:
            with self._lock:
                while self._paused and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
            try:
                if not next_job():
                    with self._lock:
                        self._lock.wait(0.02)
                logged = None
            except Exception as e:
                if repr(e) != logged:
                    log.exception("smooth-stream worker failed on a job; continuing (logged once while it repeats)")
                    logged = repr(e)
                time.sleep(0.5)

    # -- what the work costs -----------------------------------------------------------------------------------
    def face_took(self, seconds: float) -> None:
        if not self.rush:  # a rush face has the cores to itself: faster than the usual one
            self.face_cost = 0.7 * self.face_cost + 0.3 * seconds

    def keyframe_took(self, seconds: float) -> None:
        self.keyframe_cost = 0.7 * self.keyframe_cost + 0.3 * seconds

    # -- the face worker ---------------------------------------------------------------------------------------
    def face_jobs(self) -> bool:
        """One face: the first one missing for the coming frames, from the first frame it can be ready for
        (a face made for a time already past would only ever be shown late). After an event it is the new
        future's first face that differs from the old one's, for the next frame: frames show the latest face
        made before their time when their own is missing, so it shows as soon as it is made (aiming at the
        frame it would be ready for cost an event ~100 ms more); the keyframe worker waits for it. Idle, the
        face changes only in blinks, scheduled seconds ahead: they are ready long before."""
        generation = self.animation.generation()
        if generation != self.face_generation:
            self.face_generation, self.rush = generation, True
            self._new_future()  # the engine says so on each command; this covers any other source of change
        try:
            now = self.animation.clock()
            ready = now + (0.0 if self.rush else self.face_cost) + 1.0 / max(self.animation.fps(), 1.0)
            if (not self.rush and self.keyframes_ahead(now, current_future_only=False)
                    < self.keyframe_cost + KEYFRAME_RESERVE):
                return False  # no keyframe ahead soon: the head would freeze, worse than a mouth a frame late
            if self.face_job(ready, now + 1.0, generation):
                return True
            if self.keyframes_ahead(now) < KEYFRAMES_BEFORE_FAR_FACES:  # the keyframe worker is behind: the
                return False  # cores are its until then (a missing keyframe freezes the head's motion)
            return (self.face_job(now + 1.0, now + self.face_lookahead, generation)
                    or self.speech_warm_job(now, generation))
        finally:
            self.rush = False

    def keyframes_ahead(self, now: float, current_future_only: bool = True) -> float:
        """Seconds from now to the last keyframe made for the current future (or for any: after an event the
        old future's keyframes still carry the head on until new ones land)."""
        last = self.keyframes.last_time(self.animation.generation() if current_future_only else None)
        return (now if last is None else last) - now

    def face_job(self, t0: float, t1: float, generation: int | None = None) -> bool:
        """The first face missing for a frame tick in [t0, t1), for this generation (None: the current one).
        Ticks already found cached (for this future and character) are not looked at again: asking the
        animator costs the GIL the frame thread needs."""
        step = 1.0 / max(self.animation.fps(), 1.0)
        generation = self.animation.generation() if generation is None else generation
        future = (generation, self._character(), step)
        tick = math.ceil(t0 / step)
        if self._scanned[0] == future:
            tick = max(tick, self._scanned[1])
        while tick * step < t1:
            pose = self.animation.pose_at(tick * step)
            key = face_key(pose)
            if key not in self.faces:
                if self._make_face(pose, generation) is not None:
                    self._face_made(tick * step, future[0], key)
                return True
            tick += 1
            self._scanned = (future, tick)
        return False

    def speech_warm_job(self, now: float, generation: int) -> bool:
        """With nothing else to do, make the mouth shapes talking will need with the current face (each
        vowel at each lattice level), so `start_talking` shows in the next frame instead of after a face
        computation."""
        base = self.animation.pose_at(now)
        for vowel in VOWELS:
            for level in range(1, VOWEL_STEPS + 1):
                pose = base.copy()
                pose[VOWELS] = 0.0
                pose[vowel] = level / VOWEL_STEPS
                if face_key(pose) not in self.faces:
                    self._make_face(pose, generation)
                    return True
        return False

    # -- the keyframe worker -----------------------------------------------------------------------------------
    def keyframe_jobs(self) -> bool:
        """One keyframe: the first planned one still ahead of the clock when one started now is done (behind
        schedule, planned keyframes are skipped rather than rendered as history), up to KEYFRAME_LOOKAHEAD
        ahead."""
        generation = self.animation.generation()
        if self.rush or self.face_generation != generation:
            return False  # an event: its first face comes first (both workers on the cores would halve its speed)
        now = self.animation.clock()
        if not len(self.keyframes):
            interval = self.keyframes.interval
            return self.keyframe_job(math.floor(now / interval) * interval, generation)
        return any(self.keyframe_job(t, generation) for t in self.keyframes_to_make(now))

    def keyframes_to_make(self, now: float) -> list[float]:
        """The planned keyframes from the first one a render started now can be in time for, up to
        KEYFRAME_LOOKAHEAD ahead, not made yet; the finest splits are left out when the worker could not make
        them all in time (KEYFRAME_DUTY)."""
        t0, t1 = now + self.keyframe_cost, now + KEYFRAME_LOOKAHEAD
        made = self.keyframes.made_for(self.animation.generation())
        missing = [(t, depth) for t, depth in self._planned(t0, t1) if self.keyframes.key(t) not in made]
        return plan.within_budget(missing, max(t1 - t0, 0.0) / max(self.keyframe_cost, 1e-3) * KEYFRAME_DUTY)

    def keyframe_job(self, t: float, generation: int | None = None) -> bool:
        """The keyframe at t for this generation (None: the current one), unless it is there already."""
        generation = self.animation.generation() if generation is None else generation
        existing = self.keyframes.get(t)
        if existing is not None and existing.generation == generation:
            return False
        keyframe = self._render_keyframe(t, self.animation.pose_at(t), future=generation)
        if keyframe is not None and keyframe.generation == self.animation.generation():  # else an event
            self._store(keyframe)  # made it stale
        memory.release_free_memory()  # a keyframe's temporaries are ~200 MB; see talkinghead/memory.py
        return True

    def planned_keyframes(self, t0: float, t1: float) -> list[float]:
        """Keyframe times in [t0, t1) for the current future: every keyframe interval, and more where the
        head turns (talkinghead.keyframe_plan)."""
        return [t for t, _ in self._planned(t0, t1)]

    def _planned(self, t0: float, t1: float) -> list[tuple[float, int]]:
        """planned_keyframes() with each one's depth: 0 at the start of an interval, k for a split of the
        k-th halving."""
        generation = self.animation.generation()
        if self._plans_generation != generation:
            self._plans, self._plans_generation = {}, generation
        interval = self.keyframes.interval
        times = []
        for cell in range(math.floor(t0 / interval), math.floor(t1 / interval) + 1):
            planned = self._plans.get(cell)
            if planned is None:
                if len(self._plans) > 64:
                    self._plans.clear()
                planned = self._plans[cell] = plan.plan_interval(self.animation.pose_at, cell * interval, interval)
            times += [(t, depth) for t, depth in planned if t0 <= t < t1]
        return times
