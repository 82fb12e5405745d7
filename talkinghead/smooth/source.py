"""The smooth source: `frame_at(t)` for the renderer thread, from the keyframes and faces its two workers
make (talkinghead.smooth.schedule), and the making of a face and of a keyframe.

Threads: the renderer thread calls frame_at; the two workers make faces and keyframes; HTTP threads send
events and new characters; a loader thread brings a character's keyframes back from disk. One lock (a
Condition, `_lock`) guards the state they share: the faces made for coming frames, the last face shown, the
character's number and placeholder; the workers wait on it. The keyframe store and the face caches have their
own small locks; the disk store is written by the keyframe worker only.
"""
from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import threading
import time
from typing import Callable

import numpy as np
import torch

from talkinghead import backends
from talkinghead import pose as P
from talkinghead.smooth import interpolation
from talkinghead.smooth.cancellation import ANY, Cancellation
from talkinghead.smooth.compose import Blender, Composer, editor_outputs
from talkinghead.smooth.faces import FACE_BOX, FaceCache, face_key
from talkinghead.smooth.keyframes import DEFAULT_MAX_BYTES, Keyframe, KeyframeStore
from talkinghead.smooth.region import Region
from talkinghead.smooth.schedule import Animation, WorkScheduler
from talkinghead.smooth.threads import one_torch_thread
from talkinghead.turns import PoserLocks

log = logging.getLogger(__name__)


class SmoothSource:
    """`frame_at(t)` for the renderer; two worker threads keep keyframes and faces ready.

    One class of ~360 lines, on purpose: frame_at, the making of a face or a keyframe and the keyframes read
    back from disk share the face caches, the keyframe store, the faces made for coming frames, the
    character's number and the condition the workers wait on; split apart, each part would reach into the
    others' state under the others' lock. What to make next is
    schedule.py's, stopping work cancellation.py's, the blend and the composite compose.py's.

    pose_at(t): the (face-quantised) pose the animator shows at t; base_pose_at(t): the same with its resting
    face (keyframes are rendered with it); generation(): a number that changes whenever the future does;
    urgent(): one that changes on commands. disk: where keyframes are kept across restarts (disk.KeyframeDisk;
    None: not kept).
    """

    def __init__(self, poser, pose_at: Callable[[float], np.ndarray], generation: Callable[[], int],
                 fps: Callable[[], float], clock: Callable[[], float] = time.monotonic, *,
                 base_pose_at: Callable[[float], np.ndarray] | None = None,
                 urgent: Callable[[], int] | None = None, live: Callable[[float], bool] | None = None,
                 locks: PoserLocks | None = None,
                 face_lookahead: float = 3.0, max_faces: int = 400, max_keyframe_bytes: int = DEFAULT_MAX_BYTES,
                 disk=None):
        self.poser = poser
        self.animation = Animation(pose_at, generation, fps, clock, base_pose_at, urgent, live)
        self._lock = threading.Condition()
        self._locks = locks or PoserLocks()  # shared with whoever else runs the poser
        self.faces = FaceCache(max_faces)
        self._eyebrows = FaceCache(8)  # eyebrow-combiner outputs: eyebrows rarely move while the face does
        self.keyframes = KeyframeStore(max_keyframe_bytes)
        self.disk = disk
        self._cancellation = Cancellation(poser, generation, self._lock)
        self.scheduler = WorkScheduler(self.animation, self._lock, self.keyframes, self.faces,
                                       make_face=self._compute_face, render_keyframe=self._make_keyframe,
                                       face_made=self._face_made, new_future=self.event,
                                       character=lambda: self._image_version, face_lookahead=face_lookahead,
                                       kept=self._kept_near, bring_back=self._bring_back)
        self._blender = Blender()  # frame thread only
        self._composer = Composer()  # frame thread only
        # Faces made for coming frames, in time order: (frame time, generation, key). A frame whose own face
        # is not ready shows the latest of these at or before its time (else the last face shown).
        self._made: collections.deque[tuple[float, int, bytes]] = collections.deque(maxlen=64)
        self._last_face: tuple[bytes, torch.Tensor] | None = None  # key and face of the last face shown
        self._image_version = 0  # bumped on a new character; work begun for the old one is not kept
        self._placeholder: np.ndarray | None = None  # the new character as uploaded, until its first keyframe
        self._region: Region | None = None  # where the character's frames can show (None: everywhere)
        self._character_key: str | None = None  # the disk store's name for the current character
        self.keyframes_rendered = 0
        self.keyframes_loaded = 0  # from disk, for the current character
        self.keyframes_recalled = 0  # of those, brought back when the stream came near them again
        self._on_disk: dict = {}  # the current character's keyframe files: their poses (from the disk store)
        self.last_keyframe_ms = 0.0
        self.timings: dict[str, float] = {}  # ms of the latest: face (eyebrows + face morpher), keyframe, blend, compose
        self.stale_frames = 0  # frames shown with a face that was not the exact one (cache miss)
        self.last_blend_error = float("inf")  # of the latest frame (interpolation.Blend.error; 0: exact)

    @property
    def character(self) -> int:
        """The number the current character's frames carry in their meta ("character")."""
        return self._image_version

    def stats(self) -> dict:
        """What /stats says of the smooth stream."""
        return {"keyframes_rendered": self.keyframes_rendered, "keyframe_ms": round(self.last_keyframe_ms, 1),
                "keyframes": {"stored": len(self.keyframes), "rendered": self.keyframes_rendered,
                              "loaded_from_disk": self.keyframes_loaded,
                              "recalled_from_disk": self.keyframes_recalled, "evicted": self.keyframes.evicted,
                              "megabytes": round(self.keyframes.nbytes / 2 ** 20, 1),
                              "frame_error": round(self.last_blend_error, 4)},
                "face_cache": {"entries": len(self.faces), "hits": self.faces.hits,
                               "misses": self.faces.misses},
                "stale_face_frames": self.stale_frames}

    # -- control -----------------------------------------------------------------------------------------
    def start(self) -> None:
        self.scheduler.start()

    def pause(self) -> None:
        self.scheduler.pause()

    def close(self) -> None:
        """Stop for good: the workers' runs in progress end early (their networks may be shared with other
        avatars, which wait for their turn), the threads end, and keyframes still loading from disk stop."""
        self._cancellation.stop_for_new_image()
        with self._lock:
            self._image_version += 1
        self.scheduler.close()

    def event(self, urgent: bool = True) -> None:
        """The future changed. urgent (a command): stop the face in progress for the old future, it is
        wasted, and two workers on two cores beside the frame thread would halve the speed of the new
        future's first face. Not urgent (a face-capture update, many a second): the workers only look again.
        A keyframe in progress is never stopped: it serves any future that comes near its pose."""
        if urgent:
            self._cancellation.event()
        else:
            with self._lock:
                self._lock.notify_all()

    def image_coming(self) -> None:
        """A new character is about to replace the poser's image, which waits for the poser's locks: stop
        the workers' face and keyframe in progress (work for the old character), and start none until
        image_changed() or image_kept(). Before, a load waited ~0.5 s for the face worker's runs."""
        self._cancellation.stop_for_new_image()

    @contextlib.contextmanager
    def workers_held(self):
        """While the block runs, the workers' runs in progress stop and none start (an exact still takes
        the cores and the poser); they go on after it."""
        self._cancellation.stop_for_new_image()
        try:
            yield
        finally:
            self.image_kept()

    def image_kept(self) -> None:
        """The new character was not set after all (image_coming() without image_changed())."""
        with self._lock:
            self._cancellation.image_settled()
            self._lock.notify_all()

    def image_changed(self) -> None:
        """The poser has a new character: every cached face and keyframe belongs to the old one. Until the
        first keyframe is there (from disk, when this character was seen before, or made by the workers),
        frames show it as uploaded (see frame_at)."""
        with self._lock:
            self._image_version += 1
            self._cancellation.image_settled()
            self._placeholder = getattr(self.poser, "rgba", None)
            self._region = _region_of(self._placeholder)
            self.faces.clear()
            self._eyebrows.clear()
            self._made.clear()
            self.keyframes.clear()
            self.scheduler.shown.clear()
            self._last_face = None
            character_key = self._character_key = (self.disk.key(self._placeholder)
                                                    if self.disk is not None and self._placeholder is not None
                                                    else None)
            self.keyframes_loaded = self.keyframes_recalled = 0
            self._on_disk = {}
            version = self._image_version
        if character_key is not None:
            threading.Thread(target=self._load_keyframes, args=(character_key, version),
                             name="talkinghead-keyframes-load", daemon=True).start()

    def _load_keyframes(self, character_key: str, version: int) -> None:
        """Bring the character's keyframes back from disk, most recently used first (its resting poses), as
        many as memory holds."""
        started = time.perf_counter()
        on_disk = dict(self.disk.poses(character_key))
        with self._lock:
            if version != self._image_version:
                return
            self._on_disk.update(on_disk)
        for pose, outputs in self.disk.load(character_key):
            with self._lock:
                if version != self._image_version:
                    return  # another character came meanwhile
                keyframe = self._fit(Keyframe(pose, version, *outputs))
                if keyframe is None:
                    continue
                if self.keyframes.nbytes + keyframe.nbytes > self.keyframes.max_bytes:
                    break  # memory is full: the rest come back when the stream comes near them (_bring_back)
                self.keyframes.add(keyframe)
                self.keyframes_loaded += 1
                self._lock.notify_all()
        if self.keyframes_loaded:
            log.info("%d keyframes of this character loaded from disk in %.1f s", self.keyframes_loaded,
                     time.perf_counter() - started)

    # -- the frame: called by the renderer thread --------------------------------------------------------
    @torch.inference_mode()
    def frame_at(self, t: float) -> tuple[np.ndarray, dict]:
        """The frame for time t, and how it was made: {"pose", "generation", "character" (a number that
        changes with each new character), "stale_face", "keyframes" (their numbers), "blend" (their weights),
        "blend_error" (interpolation.Blend.error), ...; "placeholder": the image as uploaded}."""
        one_torch_thread()
        generation = self.animation.generation()
        version = self._image_version
        pose = self.animation.pose_at(t)
        base_pose = self.animation.base_pose_at(t)
        if self.animation.live is not None and self.animation.live(t):
            self.scheduler.shown.add(t, self.animation.urgent(), base_pose)  # where the keyframes may go next
        used, motion, error = self.keyframes.frame_blend(base_pose)
        if not used:  # nothing to interpolate from yet (start, new character)
            placeholder = self._placeholder_frame(pose, generation, version)
            if placeholder is not None:
                return placeholder
            keyframe = self._render_keyframe(base_pose, future=None)  # no worker: now
            self._store(keyframe)
            used, error = [(keyframe, 1.0)], 0.0
        with self._lock:
            if self._last_face is None:  # a new character: a keyframe's face stands in until ours is made
                self._last_face = self._cached_face(used[0][0].pose)
        face, shown_key, stale = self._face_for(pose, t, generation)
        self.last_blend_error = error
        started = time.perf_counter()
        sample_map, color, alpha = self._blender.outputs(used, motion)
        self.timings["blend"] = (time.perf_counter() - started) * 1000
        meta = {"pose": pose, "generation": generation, "character": version, "stale_face": stale,
                "face_shown": shown_key, "keyframes": [k.number for k, _ in used],
                "blend": [round(w, 4) for _, w in used], "blend_error": round(error, 4)}
        started = time.perf_counter()
        frame = self._composer.compose(self.poser.image, face, sample_map, color, alpha, used[0][0].region)
        self.timings["compose"] = (time.perf_counter() - started) * 1000
        return frame, meta

    def _placeholder_frame(self, pose: np.ndarray, generation: int,
                           version: int) -> tuple[np.ndarray, dict] | None:
        """A new character's frame while the workers make its first keyframe: the image as uploaded (its rest
        pose). The frame thread would otherwise spend a keyframe's time (~0.4 s, more on a busy CPU) on it,
        and the stream would keep showing the old character meanwhile. None: no workers running (at start,
        or tests driving the source by hand), or no image."""
        with self._lock:
            if self._placeholder is None or not self.scheduler.running:
                return None
            self._lock.notify_all()  # the workers, should they be waiting
            return self._placeholder, {"pose": pose, "generation": generation, "character": version,
                                       "placeholder": True, "stale_face": True, "face_shown": None,
                                       "keyframes": [], "blend": [], "blend_error": float("inf")}

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
    def _make_keyframe(self, base_pose: np.ndarray) -> Keyframe | None:
        """The keyframe worker's job: render, store and save a keyframe at this pose (None: a new character
        stopped it)."""
        keyframe = self._render_keyframe(base_pose, future=ANY)
        if keyframe is not None:
            self._store(keyframe)
        return keyframe

    def _store(self, keyframe: Keyframe) -> None:
        with self._lock:
            if keyframe.image_version != self._image_version:
                return
            character_key = self._character_key
            keyframe = self._fit(keyframe)
            if keyframe is None:
                return
            self.keyframes.add(keyframe)
        if self.disk is not None and character_key is not None:
            path = self.disk.save(character_key, keyframe.number, keyframe.pose,
                                  (keyframe.offset, keyframe.color, keyframe.alpha), keyframe.region)
            with self._lock:
                if path is not None and character_key == self._character_key:
                    self._on_disk[path] = keyframe.pose

    def _fit(self, keyframe: Keyframe) -> Keyframe | None:
        """(Under _lock.) The keyframe packed in the character's region, which grows to hold its region first
        (one kept on disk before a growth, or rendered while the region grew). None: it cannot be shown with
        the others (a region where the character has none: never for the same image)."""
        if self._region is None or keyframe.region is None:
            return keyframe if keyframe.region == self._region else None
        if not self._region.contains(keyframe.region):
            self._set_region(self._region.union(keyframe.region))
        return keyframe.in_region(self._region)

    def _set_region(self, region: Region) -> None:
        """(Under _lock.) The character shows beyond its region: from now on keyframes keep the larger one,
        and those kept are packed again into it (region.py)."""
        before, self._region = self._region, region
        self.keyframes.repack(region)
        log.info("the character shows beyond the %d%% of the frame its keyframes kept: now %d%% (%d keyframes "
                 "packed again)", round(before.fraction * 100), round(region.fraction * 100), len(self.keyframes))

    def _kept_near(self, pose: np.ndarray, count: int) -> list[tuple[object, np.ndarray]]:
        """The `count` keyframes nearest this pose that are kept on disk but no longer in memory (evicted):
        (file, pose). The keyframe worker brings one back (_bring_back) instead of rendering one anew when
        it serves a coming frame: ~10 ms of reading instead of ~0.4 s of networks."""
        with self._lock:
            kept = list(self._on_disk.items())
        target = interpolation.point(pose)
        nearest = sorted(kept, key=lambda item: float(np.sum((interpolation.point(item[1]) - target) ** 2)))
        evicted = ((path, kept_pose) for path, kept_pose in nearest if not self.keyframes.holds(kept_pose))
        return list(itertools.islice(evicted, count))

    def _bring_back(self, path) -> bool:
        with self._lock:
            character_key, version = self._character_key, self._image_version
        kept = self.disk.read(character_key, path) if self.disk is not None and character_key else None
        with self._lock:
            if kept is None:
                self._on_disk.pop(path, None)
                return False
            if version != self._image_version:
                return False
            pose, outputs = kept
            keyframe = self._fit(Keyframe(pose, version, *outputs))
            if keyframe is None:
                return False
            self.keyframes.add(keyframe)
            self.keyframes_recalled += 1
            self._lock.notify_all()
        return True

    @torch.inference_mode()
    def _render_keyframe(self, pose: np.ndarray, future=ANY) -> Keyframe | None:
        """The keyframe for this (resting-face) pose. future: ANY (a worker: only a new character stops
        it), None (a frame waits for it: it is made whatever comes)."""
        started = time.perf_counter()
        version, region = self._image_version, self._region
        face = self._face_for_keyframe(pose, future)
        if face is None:
            return None  # a new character stopped it
        p = torch.as_tensor(pose, dtype=self.poser.dtype, device=self.poser.device)[None]
        rotation = p[:, P.ROTATION]
        with self._locks.body, self._cancellation.cancellable("body", future):
            if version != self._image_version:
                return None  # a new character came while the lock was awaited: the face is the old one's
            try:
                self._cancellation.stop_if_stale(future)
                image = self.poser.image.clone()
                image[(..., *FACE_BOX)] = face.to(image.dtype)
                warped, grid_change = self.poser.rotate(image, rotation)
                self._cancellation.stop_if_stale(future)
                grid, color, alpha = self.poser.edit_changes(image, warped, grid_change, rotation)
            except backends.Cancelled:
                return None
        outputs = editor_outputs(grid, color, alpha)
        if region is not None:
            region = self._region_showing(outputs, image[0, 3].float().numpy(), region, version)
        keyframe = Keyframe.of(pose, version, *outputs, region)
        self.keyframes_rendered += 1
        self.last_keyframe_ms = (time.perf_counter() - started) * 1000
        self.timings["keyframe"] = self.last_keyframe_ms
        self.scheduler.keyframe_took(self.last_keyframe_ms / 1000)
        return keyframe

    def _region_showing(self, outputs, image_alpha: np.ndarray, region: Region, version: int) -> Region:
        """The character's region, grown first if this keyframe shows something outside it (region.py)."""
        outside = region.outside(*outputs, image_alpha)
        with self._lock:
            if outside.any() and version == self._image_version:
                self._set_region(self._region.union(region.grown(outside)))
            return self._region if version == self._image_version else region

    def _face_for_keyframe(self, pose: np.ndarray, future) -> torch.Tensor | None:
        face = self.faces.get(face_key(pose))
        return face if face is not None else self._compute_face(pose, future)

    @torch.inference_mode()
    def _compute_face(self, pose: np.ndarray, future=None) -> torch.Tensor | None:
        """The face for this pose, now (and into the cache). future (the workers): the generation it is made
        for, or ANY; None if an event (or a new character) makes that stale first. None: it is made whatever
        comes."""
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


def _region_of(rgba: np.ndarray | None) -> Region | None:
    """The character's region (region.py), None (the whole frame) for an image that is not 512×512 RGBA."""
    if rgba is None or getattr(rgba, "shape", None) != (512, 512, 4):
        return None
    region = Region.of(rgba)
    log.info("the character shows within %d%% of the frame: keyframes keep that part", round(region.fraction * 100))
    return region
