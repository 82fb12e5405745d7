"""A smooth-stream frame from keyframes and a face: blend the keyframes' editor outputs by their weights, then
apply them to the character image with the face pasted in. One warp and a blend, as the editor itself does:
at a keyframe's pose this *is* the exact frame; elsewhere the rotation is interpolated.

The frame thread has 40 ms per frame at 25 FPS on cores it shares with the workers, so this runs on numpy and
OpenCV in the (H, W, C) layout, not on torch: per 512² frame (one thread, measured on this 2-core machine)
the warp is cv2.remap at ~0.5-2.8 ms instead of grid_sample's 4.6-5.6 ms (same bilinear sampling at pixel
centres with the edge repeated; within 2e-4), and linear → sRGB bytes is a 65536-entry table at ~1.7 ms instead
of torch's power function at ~20-30 ms. Keyframes are converted to this layout once, by the worker that
makes them (`editor_outputs`).
"""
from __future__ import annotations

import collections

import cv2
import numpy as np
import torch

from talkinghead.smooth.faces import FACE_BOX
from talkinghead.smooth.keyframes import Keyframe
from talkinghead.smooth.region import Region, pixel_grid

EditorOutputs = tuple[np.ndarray, np.ndarray, np.ndarray]  # sampling map (H, W, 2), colour change, its alpha

# The frame thread keeps one OpenCV thread, as it keeps one torch thread (two on two cores fight the workers).
cv2.setNumThreads(1)


def editor_outputs(grid_change: torch.Tensor, color: torch.Tensor, alpha: torch.Tensor) -> EditorOutputs:
    """The editor's outputs in the composer's layout: the map of where each pixel samples the image, in
    pixels (H, W, 2) float32 (the grid must stay float32: half would move edges by up to 0.06 px), and the
    colour change and its alpha (H, W, 4) in half precision (within 0.1 of an 8-bit level; a keyframe ahead
    of the clock takes 6 MB instead of 10)."""
    h, w = grid_change.shape[2:]
    change = grid_change[0].permute(1, 2, 0).float().numpy()
    sample_map = pixel_grid(h, w) + change * np.array([w / 2, h / 2], np.float32)
    return (sample_map.astype(np.float32),
            color[0].permute(1, 2, 0).to(torch.float16).contiguous().numpy(),
            alpha[0].permute(1, 2, 0).to(torch.float16).contiguous().numpy())


class Composer:
    """Frames from a character image, a face and editor outputs. Used by the frame thread only: it keeps the
    character image in its layout, and pastes each frame's face into that copy (the face box is always
    overwritten, so no copy per frame)."""

    def __init__(self):
        self._image: torch.Tensor | None = None  # the poser's image the buffer was made from
        self._buffer: np.ndarray | None = None  # (H, W, 4) float32, -1..1

    def compose(self, image: torch.Tensor, face: torch.Tensor, sample_map: np.ndarray, color: np.ndarray,
                alpha: np.ndarray, region: Region | None = None) -> np.ndarray:
        """The RGBA uint8 frame (H, W, 4): `image` (1, 4, H, W) with `face` (1, 4, 192, 192) pasted into
        FACE_BOX, sampled at `sample_map` and blended with the colour change by alpha (tha3.editor's last
        step, apply_changes). The outputs may be packed in a `region` (region.py): only its pixels are
        computed, the rest of the frame is transparent."""
        if image is not self._image:
            self._buffer = image[0].permute(1, 2, 0).float().numpy().copy()
            self._image = image
        self._buffer[FACE_BOX] = face[0].permute(1, 2, 0).float().numpy()
        warped = cv2.remap(self._buffer, sample_map, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        blended = color - warped  # colour * alpha + warped * (1 - alpha), in three passes
        blended *= alpha
        blended += warped
        frame = to_rgba_uint8(blended)
        return frame if region is None else region.unpack(frame)


def compose(image: torch.Tensor, face: torch.Tensor, grid_change: torch.Tensor, color: torch.Tensor,
            alpha: torch.Tensor) -> np.ndarray:
    """One frame straight from the editor's torch outputs (tests, tools; the stream uses a Composer)."""
    return Composer().compose(image, face, *(np.asarray(x, np.float32) for x in
                                             editor_outputs(grid_change, color, alpha)))


def to_rgba_uint8(image: np.ndarray) -> np.ndarray:
    """(H, W, 4) float32 -1..1, linear RGB and alpha → uint8 sRGB RGB and alpha: the float32 math of
    tha3.poser.tensor_to_rgba_uint8_tensor, through a table of 65536 steps (within 1 level of it). OpenCV
    scales, rounds and clamps to the table's index in one pass."""
    index = cv2.addWeighted(image, _TABLE_HALF, image, 0.0, _TABLE_HALF, dtype=cv2.CV_16U)
    out = _SRGB_TABLE.take(index)
    out[..., 3] = _LINEAR_TABLE.take(index[..., 3])
    return out


def _srgb_table() -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(0.0, 1.0, 65536, dtype=np.float64)
    srgb = np.where(x <= 0.003130804953560372, x * 12.92, 1.055 * x ** (1.0 / 2.4) - 0.055)
    return np.round(srgb * 255.0).astype(np.uint8), np.round(x * 255.0).astype(np.uint8)


_TABLE_HALF = 65535 / 2
_SRGB_TABLE, _LINEAR_TABLE = _srgb_table()


class Blender:
    """A frame's editor outputs: its keyframes' outputs summed by their weights (interpolation.py). Used by the
    frame thread only: it keeps float32 copies of the keyframes it blended last (consecutive frames share most
    of theirs; a copy costs ~2 ms, a blend ~1 ms per keyframe)."""

    # 10.5 MB each for the whole frame (5.8 in lambda_00's region); a blend has 2-5 keyframes (weights under 1 %
    # dropped), up to NEIGHBOURS
    KEEP = 8

    def __init__(self):
        self._float: collections.OrderedDict[Keyframe, EditorOutputs] = collections.OrderedDict()

    def outputs(self, used: list[tuple[Keyframe, float]],
                motion: list[tuple[Keyframe, float]] = ()) -> EditorOutputs:
        """The blended outputs. Weights may be negative (a pose beyond its keyframes): the warp follows them,
        but the colour change and its alpha take only the positive ones (renormalised) — extrapolated, an
        alpha edge leaves a ghost of itself beside the character. `motion`: weights summing to 0 that move the
        warp only (KeyframeStore.frame_blend: a lone keyframe's frame borrowing the others' motion)."""
        if len(used) == 1 and not motion:
            return self._float_outputs(used[0][0])
        positive = [(k, w) for k, w in used if w > 0.0]
        total = sum(w for _, w in positive)
        convex = [(k, w / total) for k, w in positive]
        if len(convex) == 1:
            colour = self._float_outputs(convex[0][0])[1:]
        else:
            colour = tuple(self._blend(convex, i) for i in (1, 2))
        return (self._blend([*used, *motion], 0), *colour)

    def _blend(self, used: list[tuple[Keyframe, float]], which: int) -> np.ndarray:
        (first, w0), rest = used[0], used[1:]
        total = self._float_outputs(first)[which] * np.float32(w0)
        for keyframe, w in rest:
            cv2.scaleAdd(self._float_outputs(keyframe)[which], w, total, dst=total)
        return total

    def _float_outputs(self, keyframe: Keyframe) -> EditorOutputs:
        outputs = self._float.get(keyframe)
        if outputs is None:
            while len(self._float) >= self.KEEP:
                self._float.popitem(last=False)
            outputs = self._float[keyframe] = (keyframe.sample_map, keyframe.color.astype(np.float32),
                                               keyframe.alpha.astype(np.float32))
        else:
            self._float.move_to_end(keyframe)
        return outputs
