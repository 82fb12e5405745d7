"""Where a frame's editor outputs come from: weights over the stored keyframes nearest its pose.

A keyframe is the editor's output for one exact pose. The editor's output depends on the six rotation values
and on the face the character wears (its colour change repaints the face), so a keyframe is a point in a
space of both: the rotation in "gaps" (GAP: how far apart two keyframes may lie in each value for a frame
halfway between them to stay ~40 dB from exact on lambda_00) and the face's resting values (FACE_SCALE per
unit: a whole emotion's face apart is like a head turn of a few gaps). Blinks and the talking mouth are left
out: a keyframe is rendered with the resting face, and a frame pastes its own face in.

A frame's outputs are a weighted sum of its nearest keyframes' (`blend_weights`): weights that sum to 1,
reproduce the frame's point as a weighted sum of the keyframes' points (so anything linear in the pose is
exact, and a frame between keyframes moves between them), and favour near keyframes. The weight function
grows without bound toward the distance of the first keyframe not used, so a keyframe enters and leaves the
blend at weight 0: the frames stay continuous as the pose moves and keyframes are added. At a keyframe's own
point its weight is 1: there the frame is the exact render.

How good a blend will be (`Blend.error`) is what the keyframe worker reads to decide where a new keyframe is
needed: the second-order error of interpolating (weights times squared distances, in gaps²: 0.25 halfway
between two keyframes one gap apart) plus (twice) the first-order error of what the keyframes cannot reproduce (a pose
outside the directions they span, e.g. a breath with only one keyframe at this head pose).

Pure numpy, no state: the store (keyframes.py) calls it under its lock.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from talkinghead import pose as P

# Per rotation value (head_x, head_y, neck_z, body_y, body_z, breathing): two keyframes this far apart in one
# value leave the face ~40 dB from exact halfway between them (measured on lambda_00; the editor's warp is
# curved in the neck and body tilts, nearly straight in the others). A full breath is a third of a gap.
GAP = np.array([0.3, 0.4, 0.2, 0.6, 0.2, 3.0])
# Resting face values (0..1) per gap. A keyframe rendered with another emotion's face is 28-37 dB from exact
# (its colour change repaints the face), like a head 2-3 gaps off.
FACE_SCALE = 2.0
# The face values that make a keyframe's point: eyebrows and face, rotation apart (P.ROTATION).
FACE = slice(0, P.NUM_EYEBROW + P.NUM_FACE)
DIMENSIONS = P.NUM_EYEBROW + P.NUM_FACE + P.NUM_ROTATION
NEIGHBOURS = 8  # keyframes a frame may blend
LINEAR = 100.0  # how strongly the weights must reproduce the frame's point (vs favour near keyframes)
UNREPRODUCED = 2.0  # error per gap of the frame's point the keyframes cannot reach (first order) ...
# ... beyond this many gaps (summed over the values): the idle sway's jitter (a few thousandths, ~0.1 gap) is
# not worth a keyframe of its own.
UNREPRODUCED_FREE = 0.1
MAX_SPREAD = 2.0  # sum of |weights| at most: extrapolating further only amplifies the keyframes' differences
SAME = 1e-10  # gaps²: a point this close to a keyframe's is that keyframe
# Weights below this are dropped (and the rest renormalised): a keyframe joins or leaves the blend with 1 % of
# its difference from the others, under a tenth of a pixel where they differ by ten.
MIN_WEIGHT = 0.01


def point(pose: np.ndarray) -> np.ndarray:
    """The pose as a point of the keyframe space: face values scaled, rotation in gaps (float64)."""
    pose = np.asarray(pose, dtype=np.float64)
    return np.concatenate([pose[FACE] * FACE_SCALE, pose[P.ROTATION] / GAP])


@dataclass(frozen=True)
class Blend:
    """Which keyframes (indices into the points given) with which weights, and the estimated error."""
    indices: np.ndarray
    weights: np.ndarray
    error: float


NOTHING = Blend(np.zeros(0, int), np.zeros(0), np.inf)


def blend_weights(points: np.ndarray, target: np.ndarray, neighbours: int = NEIGHBOURS) -> Blend:
    """Weights over `points` (n, DIMENSIONS) for the point `target`: see the module's docstring.

    Minimises sum(w² φ(d)) + LINEAR |sum(w (x - target))|² subject to sum(w) = 1 over the nearest
    `neighbours`, with φ(d) = d² / (1 - d²/R²)², R the distance of the next nearest point (so weights fade to 0
    there and a point joins or leaves the blend without a jump); closed form w ∝ M⁻¹1."""
    n = len(points)
    if n == 0:
        return NOTHING
    offsets = points - target
    d2 = np.einsum("ij,ij->i", offsets, offsets)
    order = np.argsort(d2, kind="stable")
    nearest = order[0]
    if d2[nearest] < SAME:
        return Blend(np.array([nearest]), np.ones(1), 0.0)
    near = order[:neighbours]
    dn = d2[near]
    if n > neighbours:
        support = d2[order[neighbours]]
        fading = np.maximum(1.0 - dn / support, 1e-9)
        phi = dn / fading ** 2
    else:
        phi = dn
    a = offsets[near]
    m = np.diag(phi) + LINEAR * (a @ a.T)
    try:
        x = np.linalg.solve(m, np.ones(len(near)))
    except np.linalg.LinAlgError:
        x = 1.0 / phi
    total = x.sum()
    shepard = 1.0 / phi
    shepard /= shepard.sum()
    w = x / total if abs(total) > 1e-300 else shepard
    w = _limit_spread(w, shepard)
    keep = np.abs(w) > MIN_WEIGHT  # each keyframe in a blend costs ~1 ms of the frame's 40
    w = w[keep] / w[keep].sum()
    unreproduced = np.abs(a[keep].T @ w).sum()
    error = float(np.abs(w) @ dn[keep] + UNREPRODUCED * max(unreproduced - UNREPRODUCED_FREE, 0.0))
    return Blend(near[keep], w, error)


def _limit_spread(w: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Extrapolation beyond the keyframes (negative weights) pulled back toward `positive` (weights that
    only favour near keyframes, continuous in the pose) until the weights' absolute sum is at most
    MAX_SPREAD: continuous in the pose as well."""
    spread = np.abs(w).sum()
    if spread <= MAX_SPREAD:
        return w
    a = (MAX_SPREAD - 1.0) / (spread - 1.0)
    return a * w + (1.0 - a) * positive


def breathing_at(pose: np.ndarray, value: float) -> np.ndarray:
    """A copy of the pose (float32) with breathing at `value`."""
    pose = np.array(pose, dtype=np.float32)
    pose[P.INDEX["breathing_index"]] = value
    return pose


def unbreathing_point(pose: np.ndarray) -> np.ndarray:
    """The pose's point with breathing left out: a keyframe's breathing is put at an end of a breath anyway
    (schedule.py), so only the rest of a motion decides how far one keyframe reaches."""
    return point(breathing_at(pose, 0.0))


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """How far apart two poses are in the keyframe space, breathing left out."""
    return float(np.linalg.norm(unbreathing_point(a) - unbreathing_point(b)))
