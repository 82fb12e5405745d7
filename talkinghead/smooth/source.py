"""The smooth source: `frame_at(t)` for the renderer thread, from the keyframes and faces its two workers
keep ahead of the clock (talkinghead.smooth.schedule), and the making of a face and of a keyframe.

One lock (a Condition, `_lock`) guards the state the threads share: the keyframes, the faces made for
coming frames, the last face shown, the character, which future each part works for; the workers wait on
it. The face caches have their own small locks.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Callable

import numpy as np
import torch

from talkinghead import backends
from talkinghead import keyframe_plan as plan
from talkinghead import pose as P
from talkinghead.smooth.cancellation import Cancellation, PoserLocks
from talkinghead.smooth.compose import Composer, InBetween, editor_outputs
from talkinghead.smooth.faces import FACE_BOX, FaceCache, face_key
from talkinghead.smooth.keyframes import Keyframe, KeyframeStore
from talkinghead.smooth.schedule import Animation, WorkScheduler
from talkinghead.smooth.threads import one_torch_thread


class SmoothSource:
    """`frame_at(t)` for the renderer; two worker threads keep keyframes and faces ahead of the clock.

    pose_at(t): the (face-quantised) pose the animator shows at t; generation(): a number that changes on
    every event, so work done for the old future can be dropped.
    """

    def __init__(self, poser, pose_at: Callable[[float], np.ndarray], generation: Callable[[], int],
                 fps: Callable[[], float], clock: Callable[[], float] = time.monotonic, *,
                 locks: PoserLocks | None = None, keyframe_interval: float = 2.0,
                 face_lookahead: float = 3.0, max_faces: int = 400):
        self.poser = poser
        self.animation = Animation(pose_at, generation, fps, clock)
        self._lock = threading.Condition()
        self._locks = locks or PoserLocks()  # shared with whoever else runs the poser
        self.faces = FaceCache(max_faces)
        self._eyebrows = FaceCache(8)  # eyebrow-combiner outputs: eyebrows rarely move while the face does
        self.keyframes = KeyframeStore(keyframe_interval, self._lock)
        self._cancellation = Cancellation(poser, generation, self._lock)
        self.scheduler = WorkScheduler(self.animation, self._lock, self.keyframes, self.faces,
                                       make_face=self._compute_face, render_keyframe=self._render_keyframe,
                                       store=self._store, face_made=self._face_made, new_future=self.event,
                                       character=lambda: self._image_version, face_lookahead=face_lookahead)
        self._in_between = InBetween()  # frame thread only
        self._composer = Composer()  # frame thread only
        # Faces made for coming frames, in time order: (frame time, generation, key). A frame whose own face
        # is not ready shows the latest of these at or before its time (else the last face shown).
        self._made: collections.deque[tuple[float, int, bytes]] = collections.deque(maxlen=64)
        self._last_face: tuple[bytes, torch.Tensor] | None = None  # key and face of the last face shown
        self._image_version = 0  # bumped on a new character; work begun for the old one is not kept
        self._placeholder: np.ndarray | None = None  # the new character as uploaded, until its first keyframe
        self.keyframes_rendered = 0
        self.last_keyframe_ms = 0.0
        self.timings: dict[str, float] = {}  # ms of the latest: face (eyebrows + face morpher), keyframe, compose
        self.stale_frames = 0  # frames shown with a face that was not the exact one (cache miss)

    @property
    def keyframe_interval(self) -> float:
        return self.keyframes.interval

    @property
    def character(self) -> int:
        """The number the current character's frames carry in their meta ("character")."""
        return self._image_version

    def planned_keyframes(self, t0: float, t1: float) -> list[float]:
        return self.scheduler.planned_keyframes(t0, t1)

    # -- control -----------------------------------------------------------------------------------------
    def start(self) -> None:
        self.scheduler.start()

    def pause(self) -> None:
        self.scheduler.pause()

    def close(self) -> None:
        self.scheduler.close()

    def event(self) -> None:
        """A command changed the future: stop the work in progress for the old one (a keyframe, a face): it
        is wasted, and two workers on two cores beside the frame thread would halve the speed of the new
        future's first face."""
        self._cancellation.event()

    def image_coming(self) -> None:
        """A new character is about to replace the poser's image, which waits for the poser's locks: stop
        the workers' face and keyframe in progress (work for the old character), and start none until
        image_changed() or image_kept(). Before, a load waited ~0.5 s for the face worker's runs."""
        self._cancellation.stop_for_new_image()

    def image_kept(self) -> None:
        """The new character was not set after all (image_coming() without image_changed())."""
        with self._lock:
            self._cancellation.image_settled()
            self._lock.notify_all()

    def image_changed(self) -> None:
        """The poser has a new character: every cached face and keyframe belongs to the old one. Until the
        workers have made its first keyframe, frames show it as uploaded (see frame_at)."""
        with self._lock:
            self._image_version += 1
            self._cancellation.image_settled()
            self._placeholder = getattr(self.poser, "rgba", None)
            self.faces.clear()
            self._eyebrows.clear()
            self._made.clear()
            self.keyframes.clear()
            self._last_face = None

    # -- the frame: called by the renderer thread --------------------------------------------------------
    @torch.inference_mode()
    def frame_at(self, t: float) -> tuple[np.ndarray, dict]:
        """The frame for time t, and how it was made: {"pose", "generation", "character" (a number that
        changes with each new character), "stale_face", "blend", ...; "placeholder": the image as uploaded}."""
        one_torch_thread()
        generation = self.animation.generation()
        version = self._image_version
        pose = self.animation.pose_at(t)
        left, right = self.keyframes.bracket(t)
        if left is None and right is not None:  # only keyframes ahead (a new character): hold the first
            left, right = right, None
        if left is None:  # nothing to interpolate from yet (start, new character)
            placeholder = self._placeholder_frame(pose, generation, version)
            if placeholder is not None:
                return placeholder
            left = self._render_keyframe(t, pose)  # no worker to make one: render it exactly, now
            self._store(left)
        with self._lock:
            if self._last_face is None:  # a new character: its first keyframe's face stands in until ours is made
                self._last_face = self._cached_face(left.pose)
        face, shown_key, stale = self._face_for(pose, t, generation)
        w, (sample_map, color, alpha) = self._in_between.outputs(pose, t, left, right)
        meta = {"pose": pose, "generation": generation, "character": version, "stale_face": stale,
                "face_shown": shown_key, "blend": w,
                "keyframes": (left.t, None if right is None else right.t),
                "keyframe_gap": (0.0 if right is None
                                 else plan.gap(left.pose[P.ROTATION], right.pose[P.ROTATION]))}
        started = time.perf_counter()
        frame = self._composer.compose(self.poser.image, face, sample_map, color, alpha)
        self.timings["compose"] = (time.perf_counter() - started) * 1000
        return frame, meta

    def _placeholder_frame(self, pose: np.ndarray, generation: int,
                           version: int) -> tuple[np.ndarray, dict] | None:
        """A new character's frame while the workers make its first keyframe: the image as uploaded (its rest
        pose). The frame thread would otherwise spend a keyframe's time (~0.5 s, more on a busy CPU) on it,
        and the stream would keep showing the old character meanwhile. None: no workers running (at start,
        or tests driving the source by hand), or no image."""
        with self._lock:
            if self._placeholder is None or not self.scheduler.running:
                return None
            self._lock.notify_all()  # the workers, should they be waiting
            return self._placeholder, {"pose": pose, "generation": generation, "character": version,
                                       "placeholder": True,
                                       "stale_face": True, "face_shown": None, "blend": 0.0,
                                       "keyframes": (None, None), "keyframe_gap": 0.0}

    def _face_for(self, pose: np.ndarray, t: float, generation: int) -> tuple[torch.Tensor, bytes, bool]:
        """The face for this pose and its key, or (stale=True) while the worker has not made it yet: the face
        it made for the latest frame time before t, else the last one shown."""
        key = face_key(pose)
        version = self._image_version
        face = self.faces.get(key)
        if face is None:
            if self._last_face is None:
                face = self._compute_face(pose)
            else:
                with self._lock:
                    self._lock.notify_all()  # the face worker, should it be waiting
                self.stale_frames += 1
                return (*self._nearest_made(t, generation), True)
        with self._lock:
            if version == self._image_version:  # not a face of the character that was just replaced
                self._last_face = (key, face)
        return face, key, False

    def _cached_face(self, pose: np.ndarray) -> tuple[bytes, torch.Tensor] | None:
        key = face_key(pose)
        face = self.faces.get(key)
        return None if face is None else (key, face)

    def _face_made(self, t: float, generation: int, key: bytes) -> None:
        """The face worker made this face for the frame at t."""
        with self._lock:
            self._made.append((t, generation, key))

    def _nearest_made(self, t: float, generation: int) -> tuple[torch.Tensor, bytes]:
        with self._lock:
            made = list(self._made)
        for made_t, made_generation, key in reversed(made):
            if made_t <= t and made_generation == generation:
                face = self.faces.get(key)
                if face is not None:
                    with self._lock:
                        self._last_face = (key, face)
                    return face, key
        key, face = self._last_face
        return face, key

    # -- making keyframes and faces (the workers; the frame thread when there is nothing yet) ---------------
    def _store(self, keyframe: Keyframe) -> None:
        with self._lock:
            if keyframe.image_version != self._image_version:
                return
            self.keyframes.add(keyframe, self.animation.clock(), self.animation.generation())

    @torch.inference_mode()
    def _render_keyframe(self, t: float, pose: np.ndarray, future: int | None = None) -> Keyframe | None:
        """The keyframe for pose (shown at t). future (the keyframe worker): the generation it is made for;
        None if an event makes that stale before it is done (the cores are the new future's then). None: a
        frame waits for it, it is made whatever comes."""
        started = time.perf_counter()
        generation = self.animation.generation() if future is None else future
        version = self._image_version
        face = self._face_for_keyframe(pose, future)
        if face is None:
            return None  # an event stopped it
        p = torch.as_tensor(pose, dtype=self.poser.dtype, device=self.poser.device)[None]
        rotation = p[:, P.ROTATION]
        with self._locks.body, self._cancellation.cancellable("body", future):
            if version != self._image_version:
                return None  # a new character came while the lock was awaited: the face is the old one's
            try:
                self._cancellation.stop_if_stale(future)  # an event while the face was made or the lock awaited
                image = self.poser.image.clone()
                image[(..., *FACE_BOX)] = face.to(image.dtype)
                warped, grid_change = self.poser.rotate(image, rotation)
                self._cancellation.stop_if_stale(future)
                grid, color, alpha = self.poser.edit_changes(image, warped, grid_change, rotation)
            except backends.Cancelled:
                return None
        keyframe = Keyframe(t, generation, version, pose, *editor_outputs(grid, color, alpha))
        self.keyframes_rendered += 1
        self.last_keyframe_ms = (time.perf_counter() - started) * 1000
        self.timings["keyframe"] = self.last_keyframe_ms
        self.scheduler.keyframe_took(self.last_keyframe_ms / 1000)
        return keyframe

    def _face_for_keyframe(self, pose: np.ndarray, future: int | None) -> torch.Tensor | None:
        face = self.faces.get(face_key(pose))
        return face if face is not None else self._compute_face(pose, future)

    @torch.inference_mode()
    def _compute_face(self, pose: np.ndarray, future: int | None = None) -> torch.Tensor | None:
        """The face for this pose, now (and into the cache). future (the workers): the generation it is made
        for; None if an event makes that stale first. None: it is made whatever comes."""
        key = face_key(pose)
        started = time.perf_counter()
        p = torch.as_tensor(pose, dtype=self.poser.dtype, device=self.poser.device)[None]
        eyebrow_key = key[:P.NUM_EYEBROW]
        with self._locks.face, self._cancellation.cancellable("face", future):
            try:
                self._cancellation.stop_if_stale(future)
                version = self._image_version
                eyebrows = self._eyebrows.get(eyebrow_key)
                if eyebrows is None:
                    eyebrows = self.poser.morph_eyebrows(p[:, P.EYEBROW])
                    self._eyebrows.put(eyebrow_key, eyebrows)
                self._cancellation.stop_if_stale(future)  # an event between the networks: cancel() found none running
                full = self.poser.face_morph(p[:, P.FACE], eyebrows)
            except backends.Cancelled:
                return None
        face = full[(..., *FACE_BOX)].half()  # 0.3 MB instead of 0.6; within 0.06 of an 8-bit level
        if version == self._image_version:
            self.faces.put(key, face)
        elapsed = time.perf_counter() - started
        self.timings["face"] = elapsed * 1000
        self.scheduler.face_took(elapsed)
        return face
