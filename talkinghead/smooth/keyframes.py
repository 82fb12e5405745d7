"""The smooth stream's keyframes: exact renders' editor outputs, stored by the pose they were rendered at.

A keyframe serves every frame whose pose lies near it, at any time: the idle sway and breathing come back to
poses already seen, an emotion's face comes back, and a face-capture pose is shown at once from the keyframes
around it (interpolation.py says with which weights). Keyframes are kept up to a memory budget, the least
recently used going first; a new character drops them all (its keyframes may come back from disk: disk.py).

Threads: the workers add keyframes, the frame thread asks for blends and marks what it used. The store's own
lock guards the list and the points matrix; a Keyframe's arrays are never written after it is made.
"""
from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field

import numpy as np

from talkinghead.smooth import interpolation
from talkinghead.smooth.region import FILL, Region, packed_grid, pixel_grid

# Keyframes kept in memory: 5 MB each for the whole frame (half precision: the sampling map as each pixel's
# offset, the colour change and its alpha), 2.7 MB in a character's region (region.py: lambda_00), so ~43 of
# them: the resting poses and turns of the last minute or so, and the coming ones. With the face cache, the
# blender's float copies and the networks, the server with both modules stays under 1.5 GB.
DEFAULT_MAX_BYTES = 120 * 2 ** 20

_numbers = itertools.count(1)


@dataclass(eq=False)
class Keyframe:
    """The editor's outputs for one exact pose. `pose` is the pose it was rendered at, with its resting face
    (no blink, the emotion's mouth). The sampling map is kept as each pixel's offset from its own position
    in half precision: within 0.02 px for the offsets THA3 makes (the map itself in half precision would move
    edges by up to 0.25 px). The arrays are packed in `region` (region.py; None: the whole frame, as given)."""
    pose: np.ndarray
    image_version: int
    offset: np.ndarray  # (rows, 512, 2) float16: where each pixel samples the image, minus its own position
    color: np.ndarray   # (rows, 512, 4) float16: colour change
    alpha: np.ndarray   # (rows, 512, 4) float16: colour-change alpha
    region: Region | None = None
    number: int = field(default_factory=lambda: next(_numbers))  # for logs and frame metadata
    last_used: float = 0.0  # the store's use count when a frame last blended it (least recently used go first)

    @classmethod
    def of(cls, pose: np.ndarray, image_version: int, sample_map: np.ndarray, color: np.ndarray,
           alpha: np.ndarray, region: Region | None = None) -> Keyframe:
        """A keyframe from the editor's outputs in the composer's layout (compose.editor_outputs), kept in
        `region` (None: all of them)."""
        if region is not None:
            sample_map, color, alpha = (region.pack(a) for a in (sample_map, color, alpha))
        offset = (sample_map - _grid(region, sample_map)).astype(np.float16)
        return cls(np.asarray(pose, np.float32), image_version, offset, color.astype(np.float16),
                   alpha.astype(np.float16), region)

    def in_region(self, region: Region) -> Keyframe:
        """This keyframe packed in `region` (itself if it is there already): a larger one, after its region grew
        (region.py). Outside its own region it is transparent, as it was rendered (FILL)."""
        if region == self.region or self.region is None:
            return self
        arrays = (region.pack(self.region.unpack(array, FILL[name]))
                  for name, array in (("offset", self.offset), ("color", self.color), ("alpha", self.alpha)))
        return Keyframe(self.pose, self.image_version, *arrays, region, number=self.number,
                        last_used=self.last_used)

    @property
    def sample_map(self) -> np.ndarray:
        """(rows, W, 2) float32: where each pixel samples the image, in pixels (cv2.remap's map)."""
        return self.offset.astype(np.float32) + _grid(self.region, self.offset)

    @property
    def point(self) -> np.ndarray:
        return interpolation.point(self.pose)

    @property
    def nbytes(self) -> int:
        return self.offset.nbytes + self.color.nbytes + self.alpha.nbytes


def _grid(region: Region | None, like: np.ndarray) -> np.ndarray:
    return pixel_grid(*like.shape[:2]) if region is None else packed_grid(region)


class KeyframeStore:
    """Keyframes by pose, up to `max_bytes`; blends for a pose and how good they would be."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._keyframes: list[Keyframe] = []
        self._points = np.zeros((0, interpolation.DIMENSIONS))
        self._uses = itertools.count(1)  # a use counter as the LRU clock: frames mark what they blend
        self.evicted = 0
        self.changes = 0  # counts every change of the keyframes kept (for caches of their blends' errors)

    def blend(self, base_pose: np.ndarray, mark_used: bool = False) -> tuple[list[tuple[Keyframe, float]], float]:
        """The keyframes and weights for a frame at this (resting-face) pose, and the estimated error
        (interpolation.Blend.error; inf: no keyframe). mark_used: the frame thread shows it."""
        used, _, error = self.frame_blend(base_pose, mark_used=mark_used, lone_motion=False)
        return used, error

    def frame_blend(self, base_pose: np.ndarray, mark_used: bool = True, lone_motion: bool = True
                    ) -> tuple[list[tuple[Keyframe, float]], list[tuple[Keyframe, float]], float]:
        """blend(), and the motion a lone keyframe's frame borrows: (used, motion, error).

        The first keyframe of a new face (an emotion, a capture's expression) is alone near every frame of it
        until the second is made (~0.4 s): blended from it alone, the frames stood still. So where one
        keyframe serves a frame by itself and others are stored, `motion` has the others' weights for how
        their blends move from that keyframe's pose to the frame's (they sum to 0; the warp follows them, the
        colour stays the keyframe's: Blender.outputs). At the keyframe's own pose it is empty."""
        target = interpolation.point(base_pose)
        with self._lock:
            blend = interpolation.blend_weights(self._points, target)
            used = [(self._keyframes[i], float(w)) for i, w in zip(blend.indices, blend.weights)]
            motion = self._lone_motion(blend, target) if lone_motion else []
            if mark_used:
                use = next(self._uses)
                for keyframe, _ in used:
                    keyframe.last_used = use
        return used, motion, blend.error

    def _lone_motion(self, blend: interpolation.Blend, target: np.ndarray) -> list[tuple[Keyframe, float]]:
        """(Under _lock.) See frame_blend."""
        if len(blend.indices) != 1 or blend.error == 0.0 or len(self._keyframes) < 2:
            return []
        lone = int(blend.indices[0])
        others = np.array([i for i in range(len(self._keyframes)) if i != lone])
        points = self._points[others]
        # The others' blends are taken with the face of the keyframe nearest the lone one (the old emotion's),
        # at the frame's rotation and at the lone keyframe's: a face they cannot reproduce would leave their
        # weights the same at both. Four neighbours: each keyframe in the motion costs the frame ~1 ms.
        face = points[np.argmin(((points - self._points[lone]) ** 2).sum(axis=1)), interpolation.FACE]

        def with_old_face(point: np.ndarray) -> np.ndarray:
            return np.concatenate([face, point[interpolation.FACE.stop:]])

        at_frame = interpolation.blend_weights(points, with_old_face(target), neighbours=4)
        at_keyframe = interpolation.blend_weights(points, with_old_face(self._points[lone]), neighbours=4)
        weights: dict[int, float] = {}
        for blend_, sign in ((at_frame, 1.0), (at_keyframe, -1.0)):
            for i, w in zip(blend_.indices, blend_.weights):
                weights[int(others[i])] = weights.get(int(others[i]), 0.0) + sign * float(w)
        return [(self._keyframes[i], w) for i, w in weights.items() if abs(w) > interpolation.MIN_WEIGHT / 10]

    def error(self, base_pose: np.ndarray) -> float:
        """How far from exact a frame at this pose would be (see interpolation.Blend.error)."""
        with self._lock:
            return interpolation.blend_weights(self._points, interpolation.point(base_pose)).error

    def error_with(self, base_pose: np.ndarray, extra_pose: np.ndarray) -> float:
        """error(base_pose) if a keyframe at extra_pose were added: whether one kept on disk would serve it."""
        with self._lock:
            points = np.vstack([self._points, interpolation.point(extra_pose)[None]])
            return interpolation.blend_weights(points, interpolation.point(base_pose)).error

    def holds(self, pose: np.ndarray) -> bool:
        """A keyframe at this very pose is in the store."""
        with self._lock:
            if not len(self._points):
                return False
            offsets = self._points - interpolation.point(pose)
            return bool(np.einsum("ij,ij->i", offsets, offsets).min() < interpolation.SAME)

    def add(self, keyframe: Keyframe) -> list[Keyframe]:
        """Keep this keyframe; returns the ones evicted to stay within max_bytes (never the new one)."""
        with self._lock:
            keyframe.last_used = next(self._uses)
            self._keyframes.append(keyframe)
            evicted = []
            while len(self._keyframes) > 1 and sum(k.nbytes for k in self._keyframes) > self.max_bytes:
                oldest = min(self._keyframes[:-1], key=lambda k: k.last_used)
                self._keyframes.remove(oldest)
                evicted.append(oldest)
            self.evicted += len(evicted)
            self.changes += 1
            self._points = np.array([k.point for k in self._keyframes])
            return evicted

    def repack(self, region: Region) -> None:
        """Every keyframe packed in `region` (its region grew)."""
        with self._lock:
            self._keyframes = [k.in_region(region) for k in self._keyframes]
            self.changes += 1

    def clear(self) -> None:
        with self._lock:
            self._keyframes = []
            self._points = np.zeros((0, interpolation.DIMENSIONS))
            self.changes += 1

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(k.nbytes for k in self._keyframes)

    def __iter__(self):
        with self._lock:
            return iter(list(self._keyframes))

    def __len__(self) -> int:
        with self._lock:
            return len(self._keyframes)
