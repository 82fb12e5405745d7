"""What the smooth stream's two workers make next, and their threads.

* The **keyframe worker** looks along the coming frames (the animation is a pure function of time, known
  KEYFRAME_LOOKAHEAD ahead; a face capture holds its latest pose) for the first pose whose blend from the
  stored keyframes would be worse than MAX_ERROR, and renders a keyframe there, moved on along the motion
  as far as one keyframe can serve (SPAN), so a head turn gets a keyframe every gap or so and a resting
  head two (one per end of a breath). Poses already covered cost nothing: the idle sway, talking and an
  emotion seen before are served from the store.
* Under a **face capture** the coming frames are the latest capture pose, held; while the head moves, the
  keyframe worker fills in the poses shown lately instead (live.py).
* The **face worker** makes the faces of the coming frame ticks, first those of the next second, then further
  ahead, then the mouth shapes talking will need. After a command (an event) it makes the new future's
  first face while the keyframe worker waits (a "rush"): both on the cores would halve its speed.

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

from talkinghead import memory
from talkinghead import pose as P
from talkinghead.smooth import interpolation
from talkinghead.smooth.faces import VOWEL_STEPS, VOWELS, FaceCache, face_key
from talkinghead.smooth.keyframes import KeyframeStore
from talkinghead.smooth.live import ShownPoses
from talkinghead.smooth.threads import lower_priority, one_torch_thread

log = logging.getLogger(__name__)

# A coming frame whose blend would be worse than this (interpolation.Blend.error, gaps²) gets a keyframe.
# 0.25 is a frame halfway between two keyframes one gap apart (~40 dB from exact in the face, worst case);
# most frames lie nearer a keyframe than that, and a resting head sits on one.
MAX_ERROR = 0.3
# Gaps (distance in the keyframe space) a new keyframe is moved on along the coming motion beyond the first
# pose that needs one, while the motion stays within BEND of the straight line: halfway the error is then
# 0.16, leaving MAX_ERROR room for a breath the keyframes do not span and a bend.
SPAN = 0.8
BEND = 0.2
# Gaps a second: a pose moving faster than this is in a move (a sway or capture turn covers 2-5 gaps a
# second; the idle jitter and a breath far less).
MOVING = 0.5
# Keyframes kept on disk, nearest first, looked at for one that serves a pose before a new one is rendered.
RECALL_CANDIDATES = 3
# ... and brought back when it would make that pose's blend error this much smaller or better.
RECALL_GAIN = 0.7
# Seconds: the keyframe worker looks this far ahead of the clock, so it renders a turn's keyframes during the
# rest before it (the idle motion is known in advance; an event cuts it short).
KEYFRAME_LOOKAHEAD = 6.0
# Faces for more than a second ahead (and the speech warm-up) wait while the keyframes reach less far.
KEYFRAMES_BEFORE_FAR_FACES = 1.5
# Frame ticks between two poses the keyframe worker looks at (a turn covers at most ~0.2 gap per tick).
SCAN_STRIDE = 2


@dataclass
class Animation:
    """The animation as the smooth stream sees it. pose_at(t): the (face-quantised) pose shown at t;
    base_pose_at(t): the same with its resting face (no blink, the emotion's mouth), which keyframes are
    rendered and looked up with (None: pose_at); generation(): a number that changes whenever the future
    changes, so work planned for the old one is planned again; urgent(): a number that changes on commands
    (set_emotion, talking, ...), whose first face is rushed (None: generation); live(t): whether the pose at t
    follows a live source (a face capture) whose future is its latest pose held, not known ahead (live.py;
    None: never)."""
    pose_at: Callable[[float], np.ndarray]
    generation: Callable[[], int]
    fps: Callable[[], float]
    clock: Callable[[], float] = time.monotonic
    base_pose_at: Callable[[float], np.ndarray] | None = None
    urgent: Callable[[], int] | None = None
    live: Callable[[float], bool] | None = None

    def __post_init__(self):
        if self.base_pose_at is None:
            self.base_pose_at = self.pose_at
        if self.urgent is None:
            self.urgent = self.generation


class WorkScheduler:
    """The two worker threads and the choice of their next job. The work is the smooth source's:
    make_face(pose, future) -> face or None, render_keyframe(base_pose) -> Keyframe or None (stored by the
    source); face_made(t, generation, key) records a face made for frame time t; new_future() stops the
    face work for an old future; character() is the current character's number. `lock` is the source's."""

    def __init__(self, animation: Animation, lock: threading.Condition, keyframes: KeyframeStore,
                 faces: FaceCache, *, make_face: Callable, render_keyframe: Callable,
                 face_made: Callable[[float, int, bytes], None], new_future: Callable[[], None],
                 character: Callable[[], int], face_lookahead: float = 3.0,
                 kept: Callable[[np.ndarray, int], list] = lambda pose, count: [],
                 bring_back: Callable[[object], bool] = lambda kept: False):
        self.animation = animation
        self._lock = lock
        self.keyframes = keyframes
        self.faces = faces
        self._make_face = make_face
        self._render_keyframe = render_keyframe
        self._face_made = face_made
        self._new_future = new_future
        self._character = character
        self.face_lookahead = face_lookahead
        self._kept = kept
        self._bring_back = bring_back
        self.keyframe_cost = 0.5  # seconds, a running estimate
        self.face_cost = 0.2  # seconds, the same for a face
        self.face_generation = -1  # the future the face worker last worked for
        self.urgent_seen = -1  # the last command the face worker saw
        self.rush = False  # the face worker is making the first face after a command: keyframes wait
        self._scanned: tuple[tuple, int] = ((), 0)  # (future, tick): faces of the ticks before it are cached
        # (future, character, keyframes in the store, tick): the coming frames before that tick were found
        # served by the store (it only gets better until a keyframe is evicted or the future changes).
        self._covered: tuple[tuple, int] = ((), 0)
        self.covered_until = -math.inf  # the frame time up to which coming frames are served
        self.shown = ShownPoses(MOVING)  # the poses a capture showed lately (the frame thread adds them)
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
                        self._lock.wait(0.04)
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
        (a face made for a time already past would only ever be shown late). After a command it is the new
        future's first face that differs from the old one's, for the next frame: frames show the latest face
        made before their time when their own is missing, so it shows as soon as it is made; the keyframe
        worker waits for it. Idle, the face changes only in blinks, scheduled seconds ahead: they are ready
        long before."""
        generation = self.animation.generation()
        urgent = self.animation.urgent()
        if urgent != self.urgent_seen:
            self.urgent_seen, self.rush = urgent, True
            self._new_future()  # the engine says so on each command; this covers any other source of change
        self.face_generation = generation
        try:
            now = self.animation.clock()
            ready = now + (0.0 if self.rush else self.face_cost) + 1.0 / max(self.animation.fps(), 1.0)
            if self.face_job(ready, now + 1.0, generation):
                return True
            if self.covered_until - now < KEYFRAMES_BEFORE_FAR_FACES:  # the keyframe worker is behind: the
                return False  # cores are its until then (a frame far from its keyframes is blurred)
            return (self.face_job(now + 1.0, now + self.face_lookahead, generation)
                    or self.speech_warm_job(now, generation))
        finally:
            self.rush = False

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
        """One keyframe where the coming frames need one (next_keyframe), if any."""
        if self.rush or self.urgent_seen != self.animation.urgent():
            return False  # a command: its first face comes first (both workers on the cores would halve its speed)
        now = self.animation.clock()
        planned = self._plan_keyframe(now)
        if self.animation.live is not None and self.animation.live(now):
            planned = self._plan_live(now, planned)
        if planned is None:
            return False
        keyframe, needing = planned
        if self._recall(needing):
            return True
        self._render_keyframe(keyframe)
        memory.release_free_memory()  # a keyframe's temporaries are ~200 MB; see talkinghead/memory.py
        return True

    def _recall(self, pose: np.ndarray) -> bool:
        """A keyframe kept on disk (evicted from memory) that would serve this pose better, brought back
        instead of a new one rendered (~20 ms instead of ~0.4 s): the sway's postures and the moves between
        them, or a puppeteer's range of motion, need more keyframes than memory holds, and come back. Several
        may be needed: each job brings back one while one helps."""
        error = self.keyframes.error(pose)
        for path, kept_pose in self._kept(pose, RECALL_CANDIDATES):
            if self.keyframes.error_with(pose, kept_pose) < RECALL_GAIN * error:
                return self._bring_back(path)
        return False

    def next_keyframe(self, now: float) -> np.ndarray | None:
        """The (resting-face) pose of the next keyframe to render: the first coming frame, from the first one
        a render started now can be in time for to KEYFRAME_LOOKAHEAD ahead, whose blend would be worse than
        MAX_ERROR, moved on along the motion
        (`_reach`), breathing at the nearer end of a breath (a breath interpolates to within 55 dB, so two
        keyframes serve a resting head's every breath). None: every coming frame is served."""
        planned = self._plan_keyframe(now)
        return None if planned is None else planned[0]

    def _plan_keyframe(self, now: float) -> tuple[np.ndarray, np.ndarray] | None:
        """(the next keyframe's pose, as next_keyframe; the coming frame's pose that needs it, which a kept
        keyframe may serve instead: `_recall`), or None."""
        step = SCAN_STRIDE / max(self.animation.fps(), 1.0)
        future = (self.animation.generation(), self._character(), len(self.keyframes), self.keyframes.evicted)
        tick = math.ceil((now + min(self.keyframe_cost, 1.0)) / step)  # the first frame it can be in time for
        if self._covered[0] == future:
            tick = max(tick, self._covered[1])
        last_tick = math.floor((now + KEYFRAME_LOOKAHEAD) / step)
        previous = None
        while tick <= last_tick:
            pose = self.animation.base_pose_at(tick * step)
            if self._needs_keyframe(pose, previous, step):
                self._covered = (future, tick)
                self.covered_until = tick * step
                for keyframe in (self._reach(pose, previous, tick, last_tick, step), pose):
                    keyframe = self._breath_end(keyframe)
                    if self.keyframes.error(keyframe) > 0.0:  # not one the store has already
                        log.debug("keyframe for the frame at %.2f s (%.2f s ahead): its blend error %.2f",
                                  tick * step, tick * step - now, self.keyframes.error(pose))
                        return keyframe, pose
                # Nothing a keyframe could add here (the store has both): take the frame as served.
            previous = pose
            tick += 1
            self._covered = (future, tick)
        self.covered_until = tick * step
        return None

    def _plan_live(self, now: float, planned: tuple[np.ndarray, np.ndarray] | None
                   ) -> tuple[np.ndarray, np.ndarray] | None:
        """Under a face capture (live.py): while the head moves, the pose shown lately that the store serves
        worst, unless the live pose is served worse; while it rests, the plan's (the live pose)."""
        command = self.animation.urgent()
        if planned is not None and not self.shown.moving(now, command):
            return planned
        worst = self.shown.worst(self._served_error, (self._character(), self.keyframes.changes), now, command,
                                 MAX_ERROR)
        if worst is None or (planned is not None and self.keyframes.error(planned[1]) >= worst.error):
            return planned
        return self._breath_end(worst.pose), worst.pose

    def _needs_keyframe(self, pose: np.ndarray, previous: np.ndarray | None, step: float) -> bool:
        """Whether the frame at `pose` would be served worse than MAX_ERROR (see _served_error)."""
        return self._served_error(pose, previous, step) > MAX_ERROR

    def _served_error(self, pose: np.ndarray, previous: np.ndarray | None, seconds: float) -> float:
        """How well the store serves a frame at `pose`, `seconds` after one at `previous` (None: none before):
        its blend error (interpolation.Blend.error). A frame in a move (faster than MOVING) is served by
        keyframes at either end of a breath, whichever serves it better: a breath during a head turn does not
        show, and keyframes along a move are then made once, not once per end of a breath. (The error at the
        ends is looked at only when the pose itself is served worse than MAX_ERROR.)"""
        error = self.keyframes.error(pose)
        if error <= MAX_ERROR or previous is None or interpolation.distance(pose, previous) < MOVING * seconds:
            return error
        return min(error, *(self.keyframes.error(interpolation.breathing_at(pose, end)) for end in (0.0, 1.0)))

    def _reach(self, pose: np.ndarray, previous: np.ndarray | None, tick: int, last_tick: int,
               step: float) -> np.ndarray:
        """The furthest coming pose, from `pose` on, within SPAN of where coverage ends (`previous`, the last
        served pose; else `pose`) and with the motion between within BEND of the straight line to it: one
        keyframe there serves the whole stretch."""
        start = interpolation.unbreathing_point(previous if previous is not None else pose)
        chosen, between = pose, []
        for later in range(tick + 1, min(last_tick, tick + 2 * int(1.0 / step)) + 1):
            candidate = self.animation.base_pose_at(later * step)
            end = interpolation.unbreathing_point(candidate)
            if np.linalg.norm(end - start) > SPAN or any(_off_line(p, start, end) > BEND for p in between):
                break
            between.append(interpolation.unbreathing_point(chosen))
            chosen = candidate
        return chosen

    def _breath_end(self, pose: np.ndarray) -> np.ndarray:
        """The pose with breathing at the nearer end of a breath (in or out), or the other end when the
        store has the nearer one already."""
        breathing = P.INDEX["breathing_index"]
        ends = [interpolation.breathing_at(pose, value)
                for value in sorted((0.0, 1.0), key=lambda v: abs(v - pose[breathing]))]
        return ends[0] if self.keyframes.error(ends[0]) > 0.0 else ends[1]


def _off_line(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """How far point p lies from the segment a-b."""
    span = b - a
    length = float(span @ span)
    along = float((p - a) @ span) / length if length > 1e-12 else 0.0
    return float(np.linalg.norm(p - a - min(max(along, 0.0), 1.0) * span))
