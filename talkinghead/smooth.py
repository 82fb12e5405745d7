"""A smooth stream on a slow CPU: exact keyframes, and in-between frames that cost one warp.

An exact THA3 frame costs ~0.3–0.5 s on 2 cores, but most of it (body rotator + editor) only depends on the
six rotation values, which move slowly and smoothly. So:

* **Keyframes** are exact renders at a fixed grid of times (every `keyframe_interval` s), rendered ahead of
  the clock by a worker thread (the animator's idle motion is a pure function of time). Of each keyframe we
  keep the editor's outputs: its warp grid, colour change and colour-change alpha.
* **Faces**: the face morpher's output depends only on the 39 eyebrow/face values. The engine quantises those
  (`quantize_face`) so the same few shapes recur (blink levels, mouth shapes), and each is computed once and
  kept in a memory-capped LRU cache. The worker fills it ahead of the clock for the coming frames.
* **A delivered frame** at time t takes the face at t's exact face pose, blends the two neighbouring
  keyframes' editor outputs by time, and applies them: one `grid_sample` and a blend, as the editor itself
  does. At a keyframe time this *is* the exact frame; in between the rotation is interpolated.

Events (set_emotion, talking, new settings or templates) change the future: keyframes ahead of the clock
are then dropped and rendered again, and the face is always the one of the current pose, so an event shows
in the next frame that finds its face in the cache (the worker computes it first).
"""
from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from talkinghead import backends, memory
from talkinghead import keyframe_plan as plan
from talkinghead import pose as P

log = logging.getLogger(__name__)

# Eyebrow/face values are snapped to a lattice, so the same face shapes recur and each is computed once:
# steps of 1/16 (invisible in a blink or an emotion's transition), and 1/4 for the five vowel shapes, which
# change many times a second while talking (speech at 12 shapes/s stays readable on that lattice).
FACE_STEPS = 16
VOWEL_STEPS = 4
_STEPS = np.full(P.NUM_EYEBROW + P.NUM_FACE, FACE_STEPS, dtype=np.float32)
_VOWELS = [P.INDEX[f"mouth_{v}_index"] for v in ("aaa", "iii", "uuu", "eee", "ooo")]
_STEPS[_VOWELS] = VOWEL_STEPS
FACE_BOX = (slice(32, 224), slice(160, 352))
# What each worker's part runs: a keyframe (after its face), a face.
NETWORKS = {"body": ("two_algo_face_body_rotator", "editor"), "face": ("eyebrow_morphing_combiner", "face_morpher")}
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
# Threads per network for the backend in smooth mode: the frame thread and two workers already share the
# cores, so each network runs on one (more only makes them fight over the same two cores).
SMOOTH_BACKEND_THREADS = 1
WORKER_NICENESS = 10  # the workers' nice value (the frame thread keeps the process's)


def _one_torch_thread() -> None:
    """Torch's thread count is per calling thread. The frame thread and the worker each keep theirs at one:
    two threads each on two cores made a 16 ms composite take 200 ms (they fight over the same cores).
    The backend (OpenVINO) runs the networks on its own threads."""
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def _lower_priority() -> None:
    """Workers yield the cores to the frame thread: a frame is due every 40 ms, their work is ahead of the
    clock. (Linux: a thread is a task with its own nice value; elsewhere this does nothing.)"""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICENESS)
    except (AttributeError, OSError) as e:
        log.debug("could not lower the worker thread's priority: %s", e)


def apply_backend(poser, name: str = "auto", *, threads: int = SMOOTH_BACKEND_THREADS):
    """backends.apply_backend for the smooth stream: `threads` per network, compiled from a thread at the
    workers' priority. OpenVINO creates its inference threads when it compiles, and a Linux thread inherits
    the nice value of the thread that creates it; so the network runs, which do the workers' work, yield the
    cores to the frame thread as the workers do. (Lowering the workers' own threads alone did nothing for
    them: those only wait for the backend's.) With another process keeping one of the 2 cores busy, the
    stream kept 25.0 FPS idle and talking (fewer keyframes), against 23.8 with the network threads at the
    frame thread's priority."""
    outcome: dict = {}

    def compile_networks() -> None:
        _lower_priority()
        try:
            outcome["poser"] = backends.apply_backend(poser, name, threads=threads)
        except BaseException as e:  # noqa: BLE001 - re-raised on the calling thread
            outcome["error"] = e

    thread = threading.Thread(target=compile_networks, name="talkinghead-compile")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["poser"]


def quantize_face(pose: np.ndarray) -> np.ndarray:
    """The pose with its 39 eyebrow/face values snapped to the face lattice (rotation untouched)."""
    out = np.array(pose, dtype=np.float32)
    face = slice(0, P.NUM_EYEBROW + P.NUM_FACE)
    out[face] = np.round(out[face] * _STEPS) / _STEPS
    return out


def face_key(pose: np.ndarray) -> bytes:
    return np.round(np.asarray(pose[:P.NUM_EYEBROW + P.NUM_FACE]) * _STEPS).astype(np.int8).tobytes()


@dataclass(eq=False)
class Keyframe:
    """The editor's outputs for one exact pose. Colour and alpha are kept in half precision (within 0.1 of
    an 8-bit level) so the keyframes ahead of the clock take 6 MB each instead of 10; the grid stays float32
    (half would move edges by up to 0.06 px)."""
    t: float
    generation: int
    image_version: int
    pose: np.ndarray
    grid: torch.Tensor    # (1, 2, 512, 512) editor's output grid change, float32
    color: torch.Tensor   # (1, 4, 512, 512) colour change, float16
    alpha: torch.Tensor   # (1, 4, 512, 512) colour-change alpha, float16


class PoserLocks:
    """The face networks (eyebrow combiner, face morpher) and the body networks (rotator, editor) are
    different models, so the two workers may run one each at the same time; a whole render, or a new
    character, takes both (`with locks:`)."""

    def __init__(self):
        self.face = threading.Lock()
        self.body = threading.Lock()

    def __enter__(self):
        self.face.acquire()
        self.body.acquire()
        return self

    def __exit__(self, *exc):
        self.body.release()
        self.face.release()


class FaceCache:
    """Face-morphed 192×192 crops (half precision) keyed by the quantised eyebrow/face pose; least recently
    used goes first."""

    def __init__(self, max_entries: int):
        self._items: collections.OrderedDict[bytes, torch.Tensor] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.max_entries = max_entries
        self.hits = self.misses = 0

    def get(self, key: bytes) -> torch.Tensor | None:
        with self._lock:
            face = self._items.get(key)
            if face is None:
                self.misses += 1
            else:
                self.hits += 1
                self._items.move_to_end(key)
            return face

    def __contains__(self, key: bytes) -> bool:
        with self._lock:
            return key in self._items

    def put(self, key: bytes, face: torch.Tensor) -> None:
        with self._lock:
            self._items[key] = face
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class SmoothSource:
    """`frame_at(t)` for the renderer; a worker thread keeps keyframes and faces ahead of the clock.

    pose_at(t): the (face-quantised) pose the animator shows at t; generation(): a number that changes on
    every event, so work done for the old future can be dropped.
    """

    def __init__(self, poser, pose_at: Callable[[float], np.ndarray], generation: Callable[[], int],
                 fps: Callable[[], float], clock: Callable[[], float] = time.monotonic, *,
                 locks: PoserLocks | None = None, keyframe_interval: float = 2.0,
                 face_lookahead: float = 3.0, max_faces: int = 400):
        self.poser = poser
        self._pose_at = pose_at
        self._generation = generation
        self._fps = fps
        self._clock = clock
        self.keyframe_interval = keyframe_interval
        self.face_lookahead = face_lookahead
        self.faces = FaceCache(max_faces)
        self._keyframes: dict[int, Keyframe] = {}  # _key(t) -> keyframe
        self._plans: dict[int, list[tuple[float, int]]] = {}  # keyframe_interval number -> its plan
        self._plans_generation = -1
        self._float_cache: dict[Keyframe, tuple] = {}  # frame thread only: the keyframes it blends now
        self._lock = threading.Condition()
        self._locks = locks or PoserLocks()  # shared with whoever else runs the poser
        # Faces made for coming frames, in time order: (frame time, generation, key). A frame whose own face
        # is not ready shows the latest of these at or before its time (else the last face shown).
        self._made: collections.deque[tuple[float, int, bytes]] = collections.deque(maxlen=64)
        self._face_generation = -1  # the future the face worker last worked for
        self._rush = False  # the face worker is making the first face of a new future: keyframes wait
        # "body" / "face": the future (generation) of the keyframe or face a worker is making, while it does
        self._working_for: dict[str, int] = {}
        self._eyebrows = FaceCache(8)  # eyebrow-combiner outputs: eyebrows rarely move while the face does
        self._last_face: tuple[bytes, torch.Tensor] | None = None  # key and face of the last face shown
        self._base_grid: torch.Tensor | None = None
        self._image_version = 0  # bumped on a new character; work begun for the old one is not kept
        self._placeholder: np.ndarray | None = None  # the new character as uploaded, until its first keyframe
        self._image_coming = False  # between image_coming() and image_changed(): the workers start nothing
        self._closed = False
        self._paused = False
        self._threads: list[threading.Thread] = []
        self.keyframes_rendered = 0
        self.last_keyframe_ms = 0.0
        self.timings: dict[str, float] = {}  # ms of the latest: face (eyebrows + face morpher), keyframe, compose
        self.keyframe_cost = 0.5  # seconds, a running estimate: how far ahead the next keyframe must be
        self.face_cost = 0.2  # seconds, the same for a face
        self._scanned: tuple[tuple, int] = ((), 0)  # (future, tick): faces of the ticks before it are cached
        self.stale_frames = 0  # frames shown with a face that was not the exact one (cache miss)

    # -- control -----------------------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            self._paused = False
            self._lock.notify_all()
        if not self._threads:
            self._threads = [threading.Thread(target=self._work, args=(jobs,), name=f"talkinghead-{name}",
                                              daemon=True)
                             for name, jobs in (("keyframes", self._keyframe_jobs), ("faces", self._face_jobs))]
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

    def image_changed(self) -> None:
        """The poser has a new character: every cached face and keyframe belongs to the old one. Until the
        workers have made its first keyframe, frames show it as uploaded (see frame_at)."""
        with self._lock:
            self._image_version += 1
            self._image_coming = False
            self._placeholder = getattr(self.poser, "rgba", None)
            self.faces.clear()
            self._eyebrows.clear()
            self._made.clear()
            self._keyframes.clear()
            self._last_face = None

    @property
    def character(self) -> int:
        """The number the current character's frames carry in their meta ("character")."""
        return self._image_version

    # -- the frame: called by the renderer thread --------------------------------------------------------
    @torch.inference_mode()
    def frame_at(self, t: float) -> tuple[np.ndarray, dict]:
        """The frame for time t, and how it was made: {"pose", "generation", "character" (a number that
        changes with each new character), "stale_face", "blend", ...; "placeholder": the image as uploaded}."""
        _one_torch_thread()
        generation = self._generation()
        version = self._image_version
        pose = self._pose_at(t)
        left, right = self._bracket(t)
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
        if right is None or right.t <= left.t:
            w, (grid, color, alpha) = 0.0, self._float_outputs(left)
        else:
            w = plan.blend_weight(pose[P.ROTATION], left.pose[P.ROTATION], right.pose[P.ROTATION],
                                  (t - left.t) / (right.t - left.t))
            grid, color, alpha = (torch.lerp(a, b, w)
                                  for a, b in zip(self._float_outputs(left), self._float_outputs(right)))
        meta = {"pose": pose, "generation": generation, "character": version, "stale_face": stale,
                "face_shown": shown_key, "blend": w,
                "keyframes": (left.t, None if right is None else right.t),
                "keyframe_gap": (0.0 if right is None
                                 else plan.gap(left.pose[P.ROTATION], right.pose[P.ROTATION]))}
        started = time.perf_counter()
        frame = self._compose(face, grid, color, alpha)
        self.timings["compose"] = (time.perf_counter() - started) * 1000
        return frame, meta

    def _placeholder_frame(self, pose: np.ndarray, generation: int,
                           version: int) -> tuple[np.ndarray, dict] | None:
        """A new character's frame while the workers make its first keyframe: the image as uploaded (its rest
        pose). The frame thread would otherwise spend a keyframe's time (~0.5 s, more on a busy CPU) on it,
        and the stream would keep showing the old character meanwhile. None: no workers running (at start,
        or tests driving the source by hand), or no image."""
        with self._lock:
            if self._placeholder is None or not self._threads or self._paused or self._closed:
                return None
            self._lock.notify_all()  # the workers, should they be waiting
            return self._placeholder, {"pose": pose, "generation": generation, "character": version,
                                       "placeholder": True,
                                       "stale_face": True, "face_shown": None, "blend": 0.0,
                                       "keyframes": (None, None), "keyframe_gap": 0.0}

    def _float_outputs(self, keyframe: Keyframe) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A keyframe's grid, colour and alpha in float32; the frames between two keyframes reuse them."""
        outputs = self._float_cache.get(keyframe)
        if outputs is None:
            if len(self._float_cache) >= 3:
                self._float_cache.pop(next(iter(self._float_cache)))
            outputs = self._float_cache[keyframe] = (keyframe.grid, keyframe.color.float(), keyframe.alpha.float())
        return outputs

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

    def _compose(self, face: torch.Tensor, grid: torch.Tensor, color: torch.Tensor,
                 alpha: torch.Tensor) -> np.ndarray:
        from talkinghead.tha3.blocks import blend
        from talkinghead.tha3.poser import tensor_to_rgba_uint8_tensor

        image = self.poser.image.float().clone()
        image[(..., *FACE_BOX)] = face
        warped = F.grid_sample(image, self._grid(grid), mode="bilinear", padding_mode="border",
                               align_corners=False)
        return tensor_to_rgba_uint8_tensor(blend(alpha, color, warped)).numpy()

    def _grid(self, grid_change: torch.Tensor) -> torch.Tensor:
        n, _, h, w = grid_change.shape
        if self._base_grid is None or self._base_grid.shape[1:3] != (h, w):
            identity = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
            self._base_grid = F.affine_grid(identity, [1, 4, h, w], align_corners=False)
        return self._base_grid + grid_change.permute(0, 2, 3, 1)

    # -- keyframes -----------------------------------------------------------------------------------------
    def _key(self, t: float) -> int:
        """A keyframe's key: its time in the finest planned steps (keyframe_interval / 2^plan.SPLITS)."""
        return round(t * 2 ** plan.SPLITS / self.keyframe_interval)

    def _bracket(self, t: float) -> tuple[Keyframe | None, Keyframe | None]:
        """The latest keyframe at or before t and the earliest after it. When the worker has fallen behind
        (a slow or busy CPU) planned keyframes are skipped and the blend simply spans a longer gap. A
        right-hand keyframe made before an event still carries the motion on until one for the new future
        lands (then `_store` drops it)."""
        with self._lock:
            before = [kf for kf in self._keyframes.values() if kf.t <= t]
            after = [kf for kf in self._keyframes.values() if kf.t > t]
        left = max(before, key=lambda kf: kf.t) if before else None
        right = min(after, key=lambda kf: kf.t) if after else None
        return left, right

    def _store(self, keyframe: Keyframe) -> None:
        with self._lock:
            if keyframe.image_version != self._image_version:
                return
            now = self._clock()
            if keyframe.generation == self._generation():  # the future before it is the new one's: old gone
                for key, kf in list(self._keyframes.items()):
                    if kf.generation != keyframe.generation and now < kf.t < keyframe.t:
                        del self._keyframes[key]
            self._keyframes[self._key(keyframe.t)] = keyframe
            # Drop keyframes the clock has left behind, but keep the latest one before now: frames need it.
            past = sorted((kf.t, key) for key, kf in self._keyframes.items() if kf.t <= now)
            for _, key in past[:-1]:
                del self._keyframes[key]

    @torch.inference_mode()
    def _render_keyframe(self, t: float, pose: np.ndarray, future: int | None = None) -> Keyframe | None:
        """The keyframe for pose (shown at t). future (the keyframe worker): the generation it is made for;
        None if an event makes that stale before it is done (the cores are the new future's then). None: a
        frame waits for it, it is made whatever comes."""
        started = time.perf_counter()
        generation = self._generation() if future is None else future
        version = self._image_version
        face = self._face_for_keyframe(pose, future)
        if face is None:
            return None  # an event stopped it
        p = torch.as_tensor(pose, dtype=self.poser.dtype, device=self.poser.device)[None]
        rotation = p[:, P.ROTATION]
        with self._locks.body, self._cancellable_by_events("body", future):
            if version != self._image_version:
                return None  # a new character came while the lock was awaited: the face is the old one's
            try:
                self._stop_if_stale(future)  # an event while the face was made or the lock awaited
                image = self.poser.image.clone()
                image[(..., *FACE_BOX)] = face.to(image.dtype)
                warped, grid_change = self.poser.rotate(image, rotation)
                self._stop_if_stale(future)
                grid, color, alpha = self.poser.edit_changes(image, warped, grid_change, rotation)
            except backends.Cancelled:
                return None
        keyframe = Keyframe(t, generation, version, pose, grid.float(), color.half(), alpha.half())
        self.keyframes_rendered += 1
        self.last_keyframe_ms = (time.perf_counter() - started) * 1000
        self.timings["keyframe"] = self.last_keyframe_ms
        self.keyframe_cost = 0.7 * self.keyframe_cost + 0.3 * self.last_keyframe_ms / 1000
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
        with self._locks.face, self._cancellable_by_events("face", future):
            try:
                self._stop_if_stale(future)
                version = self._image_version
                eyebrows = self._eyebrows.get(eyebrow_key)
                if eyebrows is None:
                    eyebrows = self.poser.morph_eyebrows(p[:, P.EYEBROW])
                    self._eyebrows.put(eyebrow_key, eyebrows)
                self._stop_if_stale(future)  # an event between the networks: cancel() found none running
                full = self.poser.face_morph(p[:, P.FACE], eyebrows)
            except backends.Cancelled:
                return None
        face = full[(..., *FACE_BOX)].half()  # 0.3 MB instead of 0.6; within 0.06 of an 8-bit level
        if version == self._image_version:
            self.faces.put(key, face)
        elapsed = time.perf_counter() - started
        self.timings["face"] = elapsed * 1000
        if not self._rush:  # a rush face has the cores to itself: faster than the usual one
            self.face_cost = 0.7 * self.face_cost + 0.3 * elapsed
        return face

    # -- the worker ----------------------------------------------------------------------------------------
    def _work(self, next_job: Callable[[], bool]) -> None:
        _one_torch_thread()
        _lower_priority()
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
            except Exception:
                log.exception("smooth-stream worker failed on a job; continuing")
                time.sleep(0.5)

    def _face_jobs(self) -> bool:
        """One face: the first one missing for the coming frames, from the first frame it can be ready for
        (a face made for a time already past would only ever be shown late). After an event it is the new
        future's first face that differs from the old one's, for the next frame: frames show the latest face
        made before their time when their own is missing, so it shows as soon as it is made (aiming at the
        frame it would be ready for cost an event ~100 ms more); the keyframe worker waits for it. Idle, the
        face changes only in blinks, scheduled seconds ahead: they are ready long before."""
        generation = self._generation()
        if generation != self._face_generation:
            self._face_generation, self._rush = generation, True
            self.event()  # the engine says so on each command; this covers any other source of change
        try:
            now = self._clock()
            ready = now + (0.0 if self._rush else self.face_cost) + 1.0 / max(self._fps(), 1.0)
            if (not self._rush and self._keyframes_ahead(now, current_future_only=False)
                    < self.keyframe_cost + KEYFRAME_RESERVE):
                return False  # no keyframe ahead soon: the head would freeze, worse than a mouth a frame late
            if self._face_job(ready, now + 1.0, generation):
                return True
            if self._keyframes_ahead(now) < KEYFRAMES_BEFORE_FAR_FACES:  # the keyframe worker is behind: the
                return False  # cores are its until then (a missing keyframe freezes the head's motion)
            return (self._face_job(now + 1.0, now + self.face_lookahead, generation)
                    or self._speech_warm_job(now, generation))
        finally:
            self._rush = False

    def _keyframes_ahead(self, now: float, current_future_only: bool = True) -> float:
        """Seconds from now to the last keyframe made for the current future (or for any: after an event the
        old future's keyframes still carry the head on until new ones land)."""
        generation = self._generation()
        with self._lock:
            times = [kf.t for kf in self._keyframes.values()
                     if kf.generation == generation or not current_future_only]
        return max(times, default=now) - now

    def event(self) -> None:
        """A command changed the future: stop the work in progress for the old one (a keyframe, a face): it
        is wasted, and two workers on two cores beside the frame thread would halve the speed of the new
        future's first face."""
        generation = self._generation()
        with self._lock:
            self._stop_work(part for part, future in self._working_for.items() if future != generation)
            self._lock.notify_all()

    def image_coming(self) -> None:
        """A new character is about to replace the poser's image, which waits for the poser's locks: stop
        the workers' face and keyframe in progress (work for the old character), and start none until
        image_changed() or image_kept(). Before, a load waited ~0.5 s for the face worker's runs."""
        with self._lock:
            self._image_coming = True
            self._stop_work(self._working_for)

    def _stop_work(self, parts) -> None:
        """Cancel the networks of these parts ("body", "face") at work, and those they start until their
        block ends (sticky: see _cancellable_by_events). Called holding self._lock."""
        for part in list(parts):
            backends.cancel_runs(self.poser, NETWORKS[part], sticky=True)

    def image_kept(self) -> None:
        """The new character was not set after all (image_coming() without image_changed())."""
        with self._lock:
            self._image_coming = False
            self._lock.notify_all()

    @contextlib.contextmanager
    def _cancellable_by_events(self, part: str, generation: int | None):
        """While the block runs (holding `part`'s poser lock), `event()` may cancel its networks when the
        future changes: the run in progress and those after it in the block. generation None: not
        cancellable (a frame waits for this work)."""
        if generation is None:
            yield
            return
        with self._lock:
            self._working_for[part] = generation
        try:
            yield
        finally:
            with self._lock:
                del self._working_for[part]
                backends.reset_cancels(self.poser, NETWORKS[part])  # the next holder of the lock may run them

    def _stop_if_stale(self, generation: int | None) -> None:
        """Raise Cancelled if work for this future (None: work that must finish) is no longer wanted: an
        event came while it waited for a poser lock, or between two networks, or a new character is coming."""
        if generation is not None and (generation != self._generation() or self._image_coming):
            raise backends.Cancelled("the future changed")

    def _speech_warm_job(self, now: float, generation: int) -> bool:
        """With nothing else to do, make the mouth shapes talking will need with the current face (each
        vowel at each lattice level), so `start_talking` shows in the next frame instead of after a face
        computation."""
        base = self._pose_at(now)
        for vowel in _VOWELS:
            for level in range(1, VOWEL_STEPS + 1):
                pose = base.copy()
                pose[_VOWELS] = 0.0
                pose[vowel] = level / VOWEL_STEPS
                if face_key(pose) not in self.faces:
                    self._compute_face(pose, generation)
                    return True
        return False

    def _keyframe_jobs(self) -> bool:
        """One keyframe: the first planned one still ahead of the clock when one started now is done (behind
        schedule, planned keyframes are skipped rather than rendered as history), up to KEYFRAME_LOOKAHEAD
        ahead."""
        generation = self._generation()
        if self._rush or self._face_generation != generation:
            return False  # an event: its first face comes first (both workers on the cores would halve its speed)
        now = self._clock()
        with self._lock:
            empty = not self._keyframes
        if empty:
            return self._keyframe_job(math.floor(now / self.keyframe_interval) * self.keyframe_interval, generation)
        return any(self._keyframe_job(t, generation) for t in self.keyframes_to_make(now))

    def keyframes_to_make(self, now: float) -> list[float]:
        """The planned keyframes from the first one a render started now can be in time for, up to
        KEYFRAME_LOOKAHEAD ahead, not made yet; the finest splits are left out when the worker could not make
        them all in time (KEYFRAME_DUTY)."""
        t0, t1 = now + self.keyframe_cost, now + KEYFRAME_LOOKAHEAD
        generation = self._generation()
        with self._lock:
            made = {key for key, kf in self._keyframes.items() if kf.generation == generation}
        missing = [(t, depth) for t, depth in self._planned(t0, t1) if self._key(t) not in made]
        return plan.within_budget(missing, max(t1 - t0, 0.0) / max(self.keyframe_cost, 1e-3) * KEYFRAME_DUTY)

    def _keyframe_job(self, t: float, generation: int | None = None) -> bool:
        """The keyframe at t for this generation (None: the current one), unless it is there already."""
        generation = self._generation() if generation is None else generation
        with self._lock:
            existing = self._keyframes.get(self._key(t))
        if existing is not None and existing.generation == generation:
            return False
        keyframe = self._render_keyframe(t, self._pose_at(t), future=generation)
        if keyframe is not None and keyframe.generation == self._generation():  # else an event made it stale
            self._store(keyframe)
        memory.release_free_memory()  # a keyframe's temporaries are ~200 MB; see talkinghead/memory.py
        return True

    def planned_keyframes(self, t0: float, t1: float) -> list[float]:
        """Keyframe times in [t0, t1) for the current future: every keyframe_interval, and more where the
        head turns (talkinghead.keyframe_plan)."""
        return [t for t, _ in self._planned(t0, t1)]

    def _planned(self, t0: float, t1: float) -> list[tuple[float, int]]:
        """planned_keyframes() with each one's depth: 0 at the start of an interval, k for a split of the
        k-th halving."""
        generation = self._generation()
        if self._plans_generation != generation:
            self._plans, self._plans_generation = {}, generation
        times = []
        for cell in range(math.floor(t0 / self.keyframe_interval), math.floor(t1 / self.keyframe_interval) + 1):
            planned = self._plans.get(cell)
            if planned is None:
                if len(self._plans) > 64:
                    self._plans.clear()
                planned = self._plans[cell] = plan.plan_interval(self._pose_at, cell * self.keyframe_interval,
                                                                 self.keyframe_interval)
            times += [(t, depth) for t, depth in planned if t0 <= t < t1]
        return times

    def _face_job(self, t0: float, t1: float, generation: int | None = None) -> bool:
        """The first face missing for a frame tick in [t0, t1), for this generation (None: the current one).
        Ticks already found cached (for this future and character) are not looked at again: asking the
        animator costs the GIL the frame thread needs."""
        step = 1.0 / max(self._fps(), 1.0)
        generation = self._generation() if generation is None else generation
        future = (generation, self._image_version, step)
        tick = math.ceil(t0 / step)
        if self._scanned[0] == future:
            tick = max(tick, self._scanned[1])
        while tick * step < t1:
            pose = self._pose_at(tick * step)
            key = face_key(pose)
            if key not in self.faces:
                if self._compute_face(pose, generation) is not None:
                    with self._lock:
                        self._made.append((tick * step, future[0], key))
                return True
            tick += 1
            self._scanned = (future, tick)
        return False
