"""Faces of the smooth stream: the lattice the eyebrow/face values are snapped to, and the cache of the face
morpher's outputs keyed by it.

The face morpher's output depends only on the 39 eyebrow/face values. Snapped to a lattice, the same few
shapes recur (blink levels, mouth shapes), so each is computed once and kept.
"""
from __future__ import annotations

import collections
import threading

import numpy as np
import torch

from talkinghead import pose as P

# Eyebrow/face values are snapped to a lattice, so the same face shapes recur and each is computed once:
# steps of 1/16 (invisible in a blink or an emotion's transition), and 1/4 for the five vowel shapes, which
# change many times a second while talking (speech at 12 shapes/s stays readable on that lattice).
FACE_STEPS = 16
VOWEL_STEPS = 4
VOWELS = [P.INDEX[f"mouth_{v}_index"] for v in ("aaa", "iii", "uuu", "eee", "ooo")]
_STEPS = np.full(P.NUM_EYEBROW + P.NUM_FACE, FACE_STEPS, dtype=np.float32)
_STEPS[VOWELS] = VOWEL_STEPS
FACE_BOX = (slice(32, 224), slice(160, 352))  # where the face morpher's 192×192 crop sits in the 512×512 image


def quantize_face(pose: np.ndarray) -> np.ndarray:
    """The pose with its 39 eyebrow/face values snapped to the face lattice (rotation untouched)."""
    out = np.array(pose, dtype=np.float32)
    face = slice(0, P.NUM_EYEBROW + P.NUM_FACE)
    out[face] = np.round(out[face] * _STEPS) / _STEPS
    return out


def face_key(pose: np.ndarray) -> bytes:
    """The face cache's key of a (quantised) pose: its eyebrow/face values in lattice steps."""
    return np.round(np.asarray(pose[:P.NUM_EYEBROW + P.NUM_FACE]) * _STEPS).astype(np.int8).tobytes()


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
