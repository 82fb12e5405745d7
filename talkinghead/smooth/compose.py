"""A smooth-stream frame from two keyframes and a face: blend the keyframes' editor outputs, then apply them
to the character image with the face pasted in. One warp and a blend, as the editor itself does: at a
keyframe's time this *is* the exact frame; in between, the rotation is interpolated.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from talkinghead import keyframe_plan as plan
from talkinghead import pose as P
from talkinghead.smooth.faces import FACE_BOX
from talkinghead.smooth.keyframes import Keyframe
from talkinghead.tha3.blocks import blend
from talkinghead.tha3.poser import tensor_to_rgba_uint8_tensor

EditorOutputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # grid change, colour change, its alpha


@torch.inference_mode()
def compose(image: torch.Tensor, face: torch.Tensor, grid_change: torch.Tensor, color: torch.Tensor,
            alpha: torch.Tensor) -> np.ndarray:
    """The RGBA uint8 frame (512, 512, 4): `image` (1, 4, 512, 512) with `face` pasted into FACE_BOX, warped
    by the editor's grid change (1, 2, 512, 512) and blended with its colour change by alpha (1, 4, 512, 512).
    The editor's last step (tha3.editor.apply_changes), with the identity grid made once, not per frame."""
    image = image.float().clone()
    image[(..., *FACE_BOX)] = face
    grid = _identity_grid(*grid_change.shape[2:]) + grid_change.permute(0, 2, 3, 1)
    warped = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return tensor_to_rgba_uint8_tensor(blend(alpha, color, warped)).numpy()


@functools.lru_cache(maxsize=2)
def _identity_grid(h: int, w: int) -> torch.Tensor:
    identity = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    with torch.inference_mode():
        return F.affine_grid(identity, [1, 4, h, w], align_corners=False)


class InBetween:
    """The editor outputs for a frame between two keyframes. Used by the frame thread only: it keeps the
    float32 copies of the keyframes it blends now (the frames between two keyframes reuse them)."""

    def __init__(self):
        self._float: dict[Keyframe, EditorOutputs] = {}

    @torch.inference_mode()
    def outputs(self, pose: np.ndarray, t: float, left: Keyframe,
                right: Keyframe | None) -> tuple[float, EditorOutputs]:
        """(w, outputs): left's outputs blended toward right's by w, how far pose's rotation is along the
        line between theirs (keyframe_plan.blend_weight). No right keyframe: left's."""
        if right is None or right.t <= left.t:
            return 0.0, self._float_outputs(left)
        w = plan.blend_weight(pose[P.ROTATION], left.pose[P.ROTATION], right.pose[P.ROTATION],
                              (t - left.t) / (right.t - left.t))
        blended = (torch.lerp(a, b, w) for a, b in zip(self._float_outputs(left), self._float_outputs(right)))
        return w, tuple(blended)

    def _float_outputs(self, keyframe: Keyframe) -> EditorOutputs:
        outputs = self._float.get(keyframe)
        if outputs is None:
            if len(self._float) >= 3:
                self._float.pop(next(iter(self._float)))
            outputs = self._float[keyframe] = (keyframe.grid, keyframe.color.float(), keyframe.alpha.float())
        return outputs
